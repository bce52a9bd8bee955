"""From exponents to a token budget: the Lane B worksheet, one small function per line.

Why: arXiv 2602.07488 predicts the data-scaling exponent of the loss, L(D) = A D^-alpha
+ L_inf, from two statistics of the data alone: alpha = gamma / (2 beta), with beta the
correlation decay (lane_b/correlation.py) and gamma the entropy decay
(lane_b/entropy.py). With alpha fixed, two or three short training runs calibrate A and
L_inf, and the curve is solved for the tokens D that reach a target metric:

    gate:       alpha_min <= alpha <= alpha_max         (else: implausible_alpha)
    calibrate:  A = (L1 - L2) / (D1^-a - D2^-a),  L_inf = L1 - A D1^-a   (2 points)
                least squares in (A, L_inf) with alpha fixed           (3+ points)
    solve:      D_target = (A / (threshold - L_inf))^(1/alpha)    (threshold > L_inf)
    physical:   L_inf < 0 for a loss (bits per byte)  -> nonphysical_fit (handled as unsolved)
    guard:      D_target > unreachable_factor * default_ratio * N  -> likely_unreachable
    position:   D_target inside or beyond the calibrated token range (a real extrapolation?)
    empirical:  with >= 3 points, alpha fitted freely (L_inf >= 0) beside the inferred one
    budget:     ratio = D_target / N,  confirmation_ratio = ratio * confirmation_factor

Higher-is-better metrics (accuracy) are solved on a mirrored loss proxy: the curve is
fitted to -value and solved for -threshold, so "A" and "L_inf" of such a calibration
describe -value (its ceiling is -L_inf). ``calibrate`` and ``solve_target_tokens`` take
``direction`` and do the mirroring; callers pass metric values as measured.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from expspec.kernels.errors import ExpspecError
from expspec.kernels.fit.power_law import fit_power_law, percentile_interval, r2_score

DIRECTIONS = ("lower_is_better", "higher_is_better")
STATUSES = ("ok", "implausible_alpha", "threshold_below_floor", "likely_unreachable",
            "insufficient_points", "nonphysical_fit")


def alpha_from_exponents(beta: float, gamma: float) -> float:
    """alpha = gamma / (2 beta); nan when beta <= 0 or either exponent is not finite."""
    if not (math.isfinite(beta) and math.isfinite(gamma)) or beta <= 0:
        return float("nan")
    return gamma / (2.0 * beta)


def alpha_interval(beta_ci, gamma_ci) -> tuple[float, float] | None:
    """Conservative interval of gamma / (2 beta) from the two exponents' intervals."""
    if beta_ci is None or gamma_ci is None:
        return None
    (beta_lo, beta_hi), (gamma_lo, gamma_hi) = sorted(beta_ci), sorted(gamma_ci)
    if not all(map(math.isfinite, (beta_lo, beta_hi, gamma_lo, gamma_hi))) or beta_lo <= 0:
        return None
    return gamma_lo / (2.0 * beta_hi), gamma_hi / (2.0 * beta_lo)


def alpha_plausible(alpha: float, alpha_min: float = 0.2, alpha_max: float = 0.8) -> bool:
    """The worksheet's gate: alpha_min <= alpha <= alpha_max (nan is not plausible)."""
    return bool(math.isfinite(alpha) and alpha_min <= alpha <= alpha_max)


def _check_direction(direction: str) -> float:
    """+1 for lower_is_better, -1 for higher_is_better (the mirror to a loss proxy)."""
    if direction not in DIRECTIONS:
        raise ExpspecError(f"direction: expected one of {', '.join(DIRECTIONS)}, got {direction!r}")
    return 1.0 if direction == "lower_is_better" else -1.0


def _check_alpha(alpha: float, where: str) -> None:
    try:
        ok = math.isfinite(float(alpha)) and float(alpha) > 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ExpspecError(f"{where}: alpha must be a finite number > 0, got {alpha!r}")


@dataclass
class Calibration:
    A: float  # of the loss proxy (the metric, or -metric when higher_is_better)
    L_inf: float
    r2: float
    n_points: int
    alpha: float
    direction: str = "lower_is_better"

    def predict(self, tokens) -> np.ndarray:
        """The metric (not the proxy) the calibrated curve gives at ``tokens``."""
        sign = _check_direction(self.direction)
        return sign * (self.A * np.asarray(tokens, dtype=float) ** -self.alpha + self.L_inf)

    def to_dict(self) -> dict:
        return asdict(self)


def _check_points(points) -> tuple[np.ndarray, np.ndarray]:
    try:
        pairs = np.asarray([(float(d), float(v)) for d, v in points], dtype=float).reshape(-1, 2)
    except (TypeError, ValueError):
        raise ExpspecError("calibration points: expected a list of (tokens D, metric L) pairs") from None
    tokens, values = pairs[:, 0], pairs[:, 1]
    if not np.all(np.isfinite(tokens)) or np.any(tokens <= 0):
        raise ExpspecError(f"calibration points: tokens D must be finite and > 0, got {tokens.tolist()}")
    if not np.all(np.isfinite(values)):
        raise ExpspecError(f"calibration points: metric values must be finite, got {values.tolist()}")
    if np.unique(tokens).size != tokens.size:
        raise ExpspecError(f"calibration points: duplicate token counts D in {tokens.tolist()}")
    return tokens, values


def calibrate(points, alpha: float, direction: str = "lower_is_better") -> Calibration:
    """A and L_inf of L(D) = A D^-alpha + L_inf through the (D, L) points, alpha fixed."""
    _check_alpha(alpha, "calibrate")
    sign = _check_direction(direction)
    tokens, values = _check_points(points)
    if tokens.size < 2:
        raise ExpspecError(f"calibrate: needs at least 2 (D, L) points, got {tokens.size}")
    loss = sign * values
    decay = tokens ** -alpha
    if tokens.size == 2:
        (d1, d2), (l1, l2) = decay, loss
        A = (l1 - l2) / (d1 - d2)
        L_inf = l1 - A * d1
    else:
        design = np.column_stack([decay, np.ones_like(decay)])
        (A, L_inf), *_ = np.linalg.lstsq(design, loss, rcond=None)
    r2 = r2_score(loss, A * decay + L_inf)
    return Calibration(float(A), float(L_inf), r2, int(tokens.size), float(alpha), direction)


@dataclass
class Solution:
    target_tokens: float | None  # D_target; None when there is none
    ratio: float | None  # D_target / n_scaling_params
    confirmation_ratio: float | None  # ratio * confirmation_factor
    status: str
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def solve_target_tokens(A: float, L_inf: float, alpha: float, threshold: float,
                        direction: str = "lower_is_better", *, n_scaling_params: float,
                        default_ratio: float = 10.5, unreachable_factor: float = 10.0,
                        confirmation_factor: float = 1.05) -> Solution:
    """Tokens D where A D^-alpha + L_inf reaches ``threshold``, and the run ratio it implies.

    A and L_inf are those ``calibrate`` returns for ``direction`` (the loss proxy), the
    threshold is in metric units and mirrored here for higher_is_better.
    """
    _check_alpha(alpha, "solve_target_tokens")
    sign = _check_direction(direction)
    if not all(map(math.isfinite, (A, L_inf, threshold))):
        raise ExpspecError(f"solve_target_tokens: A, L_inf and threshold must be finite, "
                           f"got {A}, {L_inf}, {threshold}")
    if not (math.isfinite(n_scaling_params) and n_scaling_params > 0):
        raise ExpspecError(f"solve_target_tokens: n_scaling_params must be > 0, got {n_scaling_params}")
    notes = []
    if direction == "higher_is_better":
        notes.append("higher_is_better: solved on the mirrored loss proxy -value for -threshold")
    proxy_threshold = sign * threshold
    if A <= 0:
        notes.append(f"calibration A = {A:.4g} <= 0: the metric does not improve with tokens")
        return Solution(None, None, None, "likely_unreachable", notes)
    if not proxy_threshold > L_inf:
        notes.append(f"threshold {threshold:.6g} is at or beyond the fitted floor "
                     f"{sign * L_inf:.6g}: no token count reaches it")
        return Solution(None, None, None, "threshold_below_floor", notes)
    target_tokens = (A / (proxy_threshold - L_inf)) ** (1.0 / alpha)
    ratio = target_tokens / n_scaling_params
    status = "ok"
    if target_tokens > unreachable_factor * default_ratio * n_scaling_params:
        status = "likely_unreachable"
        notes.append(f"D_target = {target_tokens:.4g} tokens exceeds {unreachable_factor:g} x the "
                     f"default ratio {default_ratio:g} x {n_scaling_params:.4g} params")
    return Solution(float(target_tokens), float(ratio), float(ratio * confirmation_factor), status, notes)


def _finite_or_none(value):
    return float(value) if value is not None and math.isfinite(value) else None


def _target_interval(alpha_ci, points, threshold, direction, solve_kwargs, notes):
    """D_target and ratio at each end of alpha's CI (recalibrated); min/max, or None."""
    if alpha_ci is None:
        return None, None
    tokens = []
    for end in alpha_ci:
        if not (math.isfinite(end) and end > 0):
            notes.append(f"alpha CI end {end} is not > 0: no target at that end")
            continue
        cal = calibrate(points, end, direction)
        sol = solve_target_tokens(cal.A, cal.L_inf, end, threshold, direction, **solve_kwargs)
        if sol.target_tokens is None:
            notes.append(f"alpha CI end {end:.4g}: {sol.status}")
            continue
        tokens.append(sol.target_tokens)
    if len(tokens) < 2:
        return None, None
    n_params = solve_kwargs["n_scaling_params"]
    low, high = min(tokens), max(tokens)
    return [low, high], [low / n_params, high / n_params]


def infer_budget(alpha: float, points, threshold: float, n_scaling_params: float,
                 direction: str = "lower_is_better", alpha_min: float = 0.2, alpha_max: float = 0.8,
                 alpha_ci: tuple[float, float] | None = None, alpha_review_accepted: bool = False,
                 default_ratio: float = 10.5, unreachable_factor: float = 10.0,
                 confirmation_factor: float = 1.05) -> dict:
    """Gate -> calibrate -> solve; the infer.json record. Decided on the point estimate of
    alpha; the target interval from alpha's CI ends is reported alongside, not used."""
    _check_direction(direction)
    tokens, _ = _check_points(points)
    plausible = alpha_plausible(alpha, alpha_min, alpha_max)
    notes: list[str] = []
    record = {
        "alpha": _finite_or_none(alpha),
        "alpha_ci": [float(a) for a in alpha_ci] if alpha_ci is not None else None,
        "alpha_plausible": plausible, "alpha_min": alpha_min, "alpha_max": alpha_max,
        "alpha_review_accepted": bool(alpha_review_accepted),
        "direction": direction, "threshold": float(threshold), "n_scaling_params": float(n_scaling_params),
        "calib_A": None, "calib_L_inf": None, "calib_fit_r2": None, "calib_n_points": int(tokens.size),
        "inferred_target_tokens": None, "inferred_target_param_data_ratio": None,
        "confirmation_ratio": None, "solve_status": None,
        "inferred_target_tokens_interval": None, "inferred_target_param_data_ratio_interval": None,
        "calib_tokens_range": None, "target_position": None, "notes": notes,
    }
    if tokens.size < 2:
        notes.append(f"calibration needs >= 2 (D, L) points, got {tokens.size}")
        record["solve_status"] = "insufficient_points"
        return record
    if not (math.isfinite(alpha) and alpha > 0):
        notes.append(f"alpha = {alpha} is not a finite number > 0: nothing to calibrate")
        record["solve_status"] = "implausible_alpha"
        return record
    cal = calibrate(points, alpha, direction)
    record.update(calib_A=cal.A, calib_L_inf=cal.L_inf, calib_fit_r2=_finite_or_none(cal.r2),
                  calib_tokens_range=[float(tokens.min()), float(tokens.max())])
    solve_kwargs = dict(n_scaling_params=n_scaling_params, default_ratio=default_ratio,
                        unreachable_factor=unreachable_factor, confirmation_factor=confirmation_factor)
    tokens_interval, ratio_interval = _target_interval(alpha_ci, points, threshold, direction,
                                                       solve_kwargs, notes)
    record.update(inferred_target_tokens_interval=tokens_interval,
                  inferred_target_param_data_ratio_interval=ratio_interval)
    if not plausible:
        if not alpha_review_accepted:
            notes.append(f"alpha = {alpha:.4g} outside [{alpha_min:g}, {alpha_max:g}]: not solved "
                         f"(a review may accept it)")
            record["solve_status"] = "implausible_alpha"
            return record
        notes.append(f"alpha = {alpha:.4g} outside [{alpha_min:g}, {alpha_max:g}] accepted by review: "
                     f"solved anyway")
    if direction == "lower_is_better" and cal.L_inf < 0:
        notes.append(f"calibration L(D) = {cal.L_inf:.4g} + {cal.A:.4g} D^-{alpha:.4g}: a negative entropy "
                     f"floor L_inf is non-physical for a loss; not solved")
        record["solve_status"] = "nonphysical_fit"
        return record
    solution = solve_target_tokens(cal.A, cal.L_inf, alpha, threshold, direction, **solve_kwargs)
    notes.extend(solution.notes)
    if solution.target_tokens is not None:
        record["target_position"] = target_position(solution.target_tokens, tokens)
    record.update(inferred_target_tokens=solution.target_tokens,
                  inferred_target_param_data_ratio=solution.ratio,
                  confirmation_ratio=solution.confirmation_ratio, solve_status=solution.status)
    return record


def target_position(target_tokens: float, calibrated_tokens) -> str:
    """Where D_target lies against the calibrated D range: inside it the 'inference' only
    interpolates between runs that were trained anyway."""
    low, high = float(np.min(calibrated_tokens)), float(np.max(calibrated_tokens))
    if target_tokens > high:
        return f"beyond (extrapolated {target_tokens / high:.2f}x past the longest calibration run)"
    if target_tokens < low:
        return f"below (under the shortest calibration run, {low / target_tokens:.2f}x)"
    return "inside (interpolated between calibration runs)"


@dataclass
class EmpiricalAlpha:
    alpha: float | None
    A: float | None
    L_inf: float | None
    r2: float | None
    ci: list | None  # 95% interval from refits under the measured run-to-run noise
    noise_sd: float | None
    noise_source: str
    n_points: int
    resamples: int

    def to_dict(self) -> dict:
        return asdict(self)


def empirical_alpha(points, noise_sd: float | None = None, noise_source: str = "", resamples: int = 200,
                    seed: int = 0) -> EmpiricalAlpha:
    """alpha, A, L_inf fitted freely to >= 3 calibration points, with L_inf >= 0 (a loss
    floor), through the suite's one power-law fitter. Its interval: refits of the points
    perturbed by Gaussian noise of ``noise_sd`` (the seed-to-seed spread of the baselines'
    final metric); without it, the residual spread when there are more points than
    parameters; else none."""
    tokens, values = _check_points(points)
    if tokens.size < 3:
        return EmpiricalAlpha(None, None, None, None, None, None, "fewer than 3 points", int(tokens.size), 0)
    fit = fit_power_law(tokens, values, offset=True, offset_min=0.0)
    if not (noise_sd and math.isfinite(noise_sd) and noise_sd > 0) and tokens.size > 3:
        residual = values - fit.predict(tokens)
        noise_sd, noise_source = float(np.sqrt(np.sum(residual ** 2) / (tokens.size - 3))), "fit residuals"
    ci = None
    if noise_sd and math.isfinite(noise_sd) and noise_sd > 0:
        rng = np.random.default_rng(seed)
        exponents = []
        for _ in range(resamples):
            noisy = values + rng.normal(0.0, noise_sd, size=values.size)
            try:
                exponents.append(fit_power_law(tokens, noisy, offset=True, offset_min=0.0).exponent)
            except ExpspecError:
                continue
        interval = percentile_interval(exponents)
        ci = list(interval) if interval else None
    else:
        noise_sd, noise_source = None, "no noise estimate (exactly 3 points and no baseline spread)"
    return EmpiricalAlpha(fit.exponent, fit.prefactor, fit.offset, _finite_or_none(fit.r2), ci, noise_sd,
                          noise_source, int(tokens.size), resamples if ci else 0)
