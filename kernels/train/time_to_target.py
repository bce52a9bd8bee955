"""Time-to-target: when did (or would) a run's validation metric reach a threshold?

Why: Lane B compares training recipes by wall-clock time to a fixed val_bpb, not by
final loss. A run that reaches the threshold gives a *measured* time: the cumulative
training time (evaluation time excluded) at the first evaluation whose metric reaches
it. A run that stops short gives an *extrapolated* time: a fit over its last few
evaluation points, projected to the threshold and converted to seconds with the run's
median step time. The two are kept apart (and the method is recorded) because a
projection is a guess, and one fitted inside a warmdown is an optimistic one.

Both the trainer and the nanochat log parser call ``time_to_target`` so a builtin run
and a nanochat run are scored by the same rule.

Ranking runs uses ``score_sec`` = the crossing step x the run's median step time: for
a reached threshold the step is interpolated between the two evals that bracket it,
so two runs that cross at the same eval differ by where they cross, not by wall-clock
jitter (the measured wall seconds are still reported, as the worksheet asks).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np

from expspec.kernels.errors import ExpspecError
from expspec.kernels.fit.power_law import fit_power_law

# Step-time medians skip the first steps of a run (allocator warm-up, compilation,
# caches): they are not the steady-state speed the medians are meant to describe.
WARMUP_STEPS_EXCLUDED = 3
FIT_POINTS = 4  # most recent eval points (step > 0) used by the extrapolation
FITS = ("power_law", "power_law_offset", "linear")


def step_time_medians(dt_ms: Sequence[float], tok_per_sec: Sequence[float],
                      skip: int = WARMUP_STEPS_EXCLUDED) -> tuple[float, float]:
    """(median tok/sec, median step ms) over all steps but the first ``skip``.

    When a run has no more than ``skip`` steps, all of them are used.
    """
    if len(dt_ms) == 0:
        return float("nan"), float("nan")
    first = skip if len(dt_ms) > skip else 0
    return float(np.median(np.asarray(tok_per_sec[first:], dtype=float))), float(
        np.median(np.asarray(dt_ms[first:], dtype=float))
    )


@dataclass
class TimeToTarget:
    method: str  # measured | extrapolated:<fit> | unreachable | no_threshold | too_few_evals
    measured_sec: float = float("nan")
    extrapolated_sec: float = float("nan")
    crossing_step: float = float("nan")  # interpolated between bracketing evals, or fitted
    reached_within_horizon: bool = False
    fit: dict = field(default_factory=dict)  # the fitted curve, for the report
    score_sec: float = float("nan")  # crossing_step x median step seconds: what runs are ranked by

    @property
    def seconds(self) -> float:
        """The time-to-target: measured when reached, else the extrapolated one."""
        return self.measured_sec if self.method == "measured" else self.extrapolated_sec

    def to_dict(self) -> dict:
        return asdict(self)


def finite_min(values) -> float:
    """min over the finite values (a NaN eval must not poison min_val_bpb); nan if none."""
    return min((v for v in values if math.isfinite(v)), default=math.nan)


def _reached(value: float, threshold: float, lower_is_better: bool) -> bool:
    return value <= threshold if lower_is_better else value >= threshold


def fit_crossing_step(steps: Sequence[float], values: Sequence[float], threshold: float,
                      fit: str = "power_law") -> tuple[float, dict]:
    """Step at which a curve fitted through (steps, values) meets ``threshold``.

    ``power_law``: v = A s^-e (expspec.kernels.fit.power_law, log-log least squares, >= 2 points);
    ``power_law_offset``: v = A s^-e + c (>= 3 points; a floor c beyond the threshold
    makes it unreachable); ``linear``: v = a + b s. Returns (inf, fit) when the curve
    moves away from the threshold or never meets it.
    """
    if fit not in FITS:
        raise ExpspecError(f"time-to-target fit {fit!r}: expected one of {', '.join(FITS)}")
    s = np.asarray(steps, dtype=float)
    v = np.asarray(values, dtype=float)
    toward = threshold < v[-1]  # the threshold lies below the last value (lower is better)
    if fit == "linear":
        b, a = np.polyfit(s, v, 1)
        info = {"fit": fit, "intercept": float(a), "slope": float(b), "n_points": len(s)}
        if b == 0 or (b < 0) != toward:
            return math.inf, info
        return float((threshold - a) / b), info
    try:
        law = fit_power_law(s, v, offset=fit == "power_law_offset")
    except ExpspecError as exc:
        return math.inf, {"fit": fit, "error": str(exc)}
    info = {"fit": fit, "prefactor": law.prefactor, "exponent": law.exponent, "offset": law.offset,
            "r2": law.r2, "n_points": law.n_points}
    ratio = (threshold - law.offset) / law.prefactor  # = s^-e at the crossing
    if law.exponent == 0 or (law.exponent > 0) != toward or ratio <= 0:
        return math.inf, info
    return float(ratio ** (-1.0 / law.exponent)), info


def time_to_target(evals: Sequence[tuple[int, float]], train_time_at_eval: Sequence[float],
                   threshold: float, horizon: int, sec_per_step: float,
                   lower_is_better: bool = True, fit: str = "power_law",
                   fit_points: int = FIT_POINTS) -> TimeToTarget:
    """Measured time at the first eval reaching ``threshold``, else a fitted projection.

    ``evals`` are (step, metric) in step order; ``train_time_at_eval[i]`` is the
    cumulative training time (seconds, evals excluded) when eval ``i`` was taken.
    ``horizon`` is the run's planned number of steps; ``sec_per_step`` converts a
    projected step into seconds (use the median step time).
    """
    if len(evals) != len(train_time_at_eval):
        raise ExpspecError("time-to-target: one training time per eval point is required")
    if threshold is None or math.isnan(threshold):
        return TimeToTarget("no_threshold")
    previous = None
    for (step, value), sec in zip(evals, train_time_at_eval):
        if math.isfinite(value) and _reached(value, threshold, lower_is_better):
            crossing = float(step)
            if previous is not None and previous[1] != value:  # linear between the bracketing evals
                (s0, v0) = previous
                crossing = s0 + (threshold - v0) / (value - v0) * (step - s0)
            return TimeToTarget("measured", measured_sec=float(sec), crossing_step=crossing,
                                reached_within_horizon=step <= horizon, score_sec=crossing * sec_per_step)
        if math.isfinite(value):
            previous = (float(step), float(value))
    points = [(s, v) for s, v in evals if s > 0 and math.isfinite(v)][-fit_points:]
    if len(points) < 2:
        return TimeToTarget("too_few_evals")
    crossing, info = fit_crossing_step([p[0] for p in points], [p[1] for p in points],
                                       threshold, fit)
    if not math.isfinite(crossing):
        return TimeToTarget("unreachable", extrapolated_sec=math.inf, crossing_step=math.inf,
                            fit=info)
    # The evals up to the last one did not reach the threshold: a fitted crossing at or
    # before that step contradicts the data, so it cannot count as reached in time.
    return TimeToTarget(f"extrapolated:{fit}", extrapolated_sec=crossing * sec_per_step,
                        crossing_step=crossing, reached_within_horizon=points[-1][0] < crossing <= horizon,
                        fit=info, score_sec=crossing * sec_per_step)
