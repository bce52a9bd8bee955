"""A criterion's metrics, their declared direction and tolerance, and a comparison with a
reference run. Pure data: no MLflow here, so xdist workers can judge a regression without
touching the store.

What counts as a metric of a criterion (in this order; the first name wins):

- the numbers it stated explicitly: ``criterion.check(measured, op, required)`` records
  its measured value as ``measured`` (property ``metric:measured``);
- every recorded value that is a number, a text starting with one (``"0.3124 [0.28,
  0.35]"`` -> its key; under a key ``"A | B"`` the first number is ``A``), or a dict of
  numbers (``{"42": 0.91}`` -> ``key/42``), and every ``name=number`` pair inside a
  recorded text (``"pass@1=0.12, pass@8=0.40"`` -> ``key/pass_at_1``, ``key/pass_at_8``);
- every ``name=number`` pair of its measured text (``"alpha=0.31 (beta=0.52)"`` ->
  ``alpha``, ``beta``), and a number it starts with (``"0.912 (env 0.912)"`` ->
  ``measured``).

A direction and a tolerance are declared next to the threshold they belong to: ``check``
takes ``tolerance=`` for its measured value (its direction is the comparison's: ``>=`` ->
higher is better); ``check`` and ``expect`` take ``tolerances={"R2": ("higher", 0.01)}``
for the other metrics, by name or glob (``"base pass_at_k/*"``). A tolerance is absolute,
or relative to the reference value when written ``"5%"``. Only declared metrics can
regress; every metric shows its change.
"""

from __future__ import annotations

import fnmatch
import math
import re
from dataclasses import dataclass, field

from expspec.kernels.errors import ExpspecError

DIRECTIONS = ("higher", "lower", "both")  # which way is better; "both": any move is bad
OP_DIRECTION = {">=": "higher", ">": "higher", "<=": "lower", "<": "lower", "==": "both", "in": "both"}
_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?inf|nan"
_PAIR = re.compile(rf"(?<![\w@.])([A-Za-z][\w@]*)=({_NUMBER})(?![\w.])")
_LEADING = re.compile(rf"^\s*({_NUMBER})(?=$|[\s,;|\[(])")
_WHOLE = re.compile(rf"^\s*({_NUMBER})\s*$")
_BAD_CHARS = re.compile(r"[^\w.\- :/]+")
MAX_NAME = 250  # MLflow's longest metric name


def metric_name(text: str) -> str:
    """A name MLflow accepts (letters, digits, ``_ - . : /`` and spaces): ``pass@1`` ->
    ``pass_at_1``, ``gamma (offset-free | offset)`` -> ``gamma _offset-free _ offset``."""
    name = _BAD_CHARS.sub("_", str(text).replace("@", "_at_"))
    parts = [p.strip(" _") for p in name.split("/")]  # MLflow refuses '//', '/./', '..', a leading '/'
    name = "/".join(p for p in parts if p not in ("", ".", ".."))
    return name[:MAX_NAME].rstrip("/") or "value"


def _number(value) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:  # numpy scalar
        return _number(value.item())
    return None


def _from_text(text: str, leading_name: str | None) -> dict[str, float]:
    out = {}
    if leading_name is not None and (m := _LEADING.match(text)):
        out[leading_name] = float(m.group(1))
    prefix = f"{leading_name}/" if leading_name is not None else ""
    for name, value in _PAIR.findall(text):
        out.setdefault(metric_name(prefix + name), float(value))
    return out


def criterion_metrics(record) -> dict[str, float]:
    """{name: value} of a CriterionRecord (see the module docstring for the rules)."""
    out = {metric_name(k): float(v) for k, v in record.metrics.items()}

    def add(found: dict[str, float]) -> None:
        for name, value in found.items():
            out.setdefault(name, value)

    for key, value in record.values.items():
        name = metric_name(str(key).split(" | ")[0])
        if (number := _number(value)) is not None:
            add({name: number})
        elif isinstance(value, str):
            add(_from_text(value, name))
        elif isinstance(value, dict) and value:
            parts = {k: _number(v) if _number(v) is not None else (
                float(m.group(1)) if isinstance(v, str) and (m := _WHOLE.match(v)) else None) for k, v in value.items()}
            if all(v is not None for v in parts.values()):
                add({metric_name(f"{key}/{k}"): v for k, v in parts.items()})
    add(_from_text(record.measured, None))
    if (m := _LEADING.match(record.measured)) and "measured" not in out:
        out["measured"] = float(m.group(1))
    return out


def key_metric(record) -> tuple[str, float] | None:
    """The metric a one-line summary shows: the checked value, else the first one the
    measured text names, else the first recorded one."""
    metrics = criterion_metrics(record)
    stated = _from_text(record.measured, None)
    if "measured" in metrics and ("measured" in record.metrics or not stated):
        return "measured", metrics["measured"]
    name = next(iter(stated or metrics), None)
    return (name, metrics[name]) if name is not None else None


@dataclass(frozen=True)
class Tolerance:
    direction: str  # higher | lower | both
    tolerance: float  # absolute, or relative when `relative`
    relative: bool = False

    def allowed(self, reference: float) -> float:
        return self.tolerance * abs(reference) if self.relative else self.tolerance

    def __str__(self) -> str:
        amount = f"{self.tolerance * 100:g}%" if self.relative else f"{self.tolerance:g}"
        return {"higher": f"higher is better, tolerance {amount}", "lower": f"lower is better, tolerance {amount}",
                "both": f"tolerance ±{amount}"}[self.direction]


def parse_tolerance(name: str, direction: str, tolerance) -> Tolerance:
    """``("higher", 0.01)`` / ``("lower", "5%")``; a bad one is an ExpspecError naming the metric."""
    where = f"tolerance of metric {name!r}"
    if direction not in DIRECTIONS:
        raise ExpspecError(f"{where}: direction {direction!r}, expected one of {', '.join(DIRECTIONS)}")
    relative = isinstance(tolerance, str) and tolerance.strip().endswith("%")
    try:
        amount = float(tolerance.strip().rstrip("%")) / 100 if relative else float(tolerance)
    except (TypeError, ValueError):
        raise ExpspecError(f"{where}: {tolerance!r}, expected a number >= 0 or a percentage like '5%'") from None
    if not amount >= 0:
        raise ExpspecError(f"{where}: {tolerance!r}, expected a number >= 0 or a percentage like '5%'")
    return Tolerance(direction, amount, relative)


def encode_tolerance(tol: Tolerance) -> str:
    """The text a criterion records (``higher 0.01`` / ``lower 5%``): plain in junit XML."""
    return f"{tol.direction} {tol.tolerance * 100:g}%" if tol.relative else f"{tol.direction} {tol.tolerance!r}"


def decode_tolerance(name: str, text: str) -> Tolerance:
    direction, _, amount = str(text).partition(" ")
    return parse_tolerance(name, direction, amount)


def declared_tolerances(record) -> dict[str, Tolerance]:
    """{name or glob: Tolerance} as the criterion declared them."""
    return {k: decode_tolerance(k, v) for k, v in record.tolerances.items()}


def tolerance_for(name: str, declared: dict[str, Tolerance]) -> Tolerance | None:
    """The declaration naming ``name``: by its exact (or MLflow-safe) name, else the first glob."""
    for pattern, tol in declared.items():
        if pattern == name or metric_name(pattern) == name:
            return tol
    return next((tol for pattern, tol in declared.items() if fnmatch.fnmatchcase(name, pattern)), None)


@dataclass
class Change:
    name: str
    reference: float
    value: float
    tolerance: Tolerance | None

    @property
    def delta(self) -> float:
        return self.value - self.reference

    @property
    def regressed(self) -> bool:
        """Moved beyond the tolerance in the bad direction (a NaN where the reference had a
        number is a regression too)."""
        tol = self.tolerance
        if tol is None or (math.isnan(self.reference) and math.isnan(self.value)):
            return False
        if math.isnan(self.value) or math.isnan(self.reference):
            return True
        allowed = tol.allowed(self.reference)
        if tol.direction == "higher":
            return self.delta < -allowed
        if tol.direction == "lower":
            return self.delta > allowed
        return abs(self.delta) > allowed

    def describe(self, ref_label: str) -> str:
        return (f"{self.name} regressed: {self.value:.6g} now vs {self.reference:.6g} in {ref_label} "
                f"(Δ {self.delta:+.4g}; {self.tolerance})")


@dataclass
class Comparison:
    """A criterion against its reference run: its metrics' changes, or no reference."""

    label: str  # e.g. "run 3f2a... (session 20260101-120000, commit abc123)"
    run_id: str | None  # the reference child run, None when the reference session lacks it
    changes: list[Change] = field(default_factory=list)
    key: str | None = None  # the key metric's name

    @property
    def regressions(self) -> list[Change]:
        return [c for c in self.changes if c.regressed]

    def key_delta(self) -> str:
        """The summary's Δ cell: 'new' (no reference run), '' (no key metric), or the change."""
        if self.run_id is None:
            return "new"
        change = next((c for c in self.changes if c.name == self.key), None)
        if change is None:
            return ""
        text = "nan" if math.isnan(change.delta) else f"{change.delta:+.4g}"
        return text + (" REGRESSED" if change.regressed else "")


def compare(record, reference: dict | None, label: str) -> Comparison:
    """``reference``: {"run_id": ..., "metrics": {...}} of the same criterion, or None."""
    key = key_metric(record)
    if reference is None:
        return Comparison(label, None, key=key[0] if key else None)
    now, tolerances = criterion_metrics(record), declared_tolerances(record)
    changes = [Change(name, float(reference["metrics"][name]), value, tolerance_for(name, tolerances))
               for name, value in now.items() if name in reference["metrics"]]
    return Comparison(label, reference["run_id"], changes, key[0] if key else None)
