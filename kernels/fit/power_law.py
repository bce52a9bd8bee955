"""One power-law fitter for the whole suite: y = prefactor * x^-exponent (+ offset).

Why one fitter: the correlation decay (beta), the entropy decay (gamma), the data
calibration and the coverage curves all ask the same question, "what exponent does
this curve decay with?". If each answered it with its own regression, two exponents
could differ because of the fitting code alone. Everything calls ``fit_power_law``.

Each form is least squares in the space where its noise is roughly uniform:

* offset-free: log y = log prefactor - exponent * log x, ordinary least squares in
  log-log space (closed form, exact on exact data); ``r2`` is that of log y;
* with offset: y = prefactor * x^-exponent + offset, nonlinear least squares on y
  with the offset kept strictly below min(y), so y - offset > 0 everywhere and the
  curve above its floor is a true power law. The offset may be negative and so may y
  (a mirrored higher-is-better metric). Initialisation profiles the offset over a
  grid below min(y), taking (prefactor, exponent) from the log-log line of y - offset
  at each grid value; the best grid point is refined jointly. ``r2`` is that of y.

``ci`` is a bootstrap percentile 95% interval of the exponent from resampling the
points with replacement (``bootstrap`` resamples, seeded). Callers whose points are not
independent (lags of one stream) pass their own interval instead (a block bootstrap).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import least_squares

from expspec.kernels.errors import ExpspecError

CI_LEVEL = 0.95


@dataclass
class PowerLawFit:
    exponent: float
    prefactor: float
    offset: float  # 0.0 for the offset-free form
    r2: float  # coefficient of determination: of log y (offset-free), of y (offset)
    n_points: int
    window: tuple[float, float] | None  # the (xmin, xmax) the fit was restricted to
    ci: tuple[float, float] | None  # bootstrap 95% interval of the exponent

    def predict(self, x) -> np.ndarray:
        return self.prefactor * np.asarray(x, dtype=float) ** -self.exponent + self.offset

    def to_dict(self) -> dict:
        return asdict(self)


def _points_in_window(x, y, window) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=float).ravel()
    y = np.asarray(y, dtype=float).ravel()
    if x.shape != y.shape:
        raise ExpspecError(f"fit_power_law: x and y must have the same length, got {x.size} and {y.size}")
    if window is not None:
        xmin, xmax = window
        keep = (x >= xmin) & (x <= xmax)
        x, y = x[keep], y[keep]
    return x, y


def _check_points(x: np.ndarray, y: np.ndarray, offset: bool, window) -> None:
    where = f"fit_power_law (window {tuple(window)})" if window is not None else "fit_power_law"
    needed = 3 if offset else 2
    if x.size < needed:
        raise ExpspecError(
            f"{where}: needs at least {needed} points for the {'offset' if offset else 'offset-free'} "
            f"form, got {x.size}"
        )
    if not np.all(np.isfinite(x)) or np.any(x <= 0):
        raise ExpspecError(f"{where}: x must be finite and > 0")
    if not np.all(np.isfinite(y)):
        raise ExpspecError(f"{where}: y must be finite")
    if not offset and np.any(y <= 0):
        raise ExpspecError(f"{where}: y must be > 0 for the offset-free form (fit with offset=True)")
    if np.unique(x).size < needed:
        raise ExpspecError(f"{where}: needs at least {needed} distinct x values")


def _log_line(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """OLS of log y on log x: returns (exponent, prefactor) of y = prefactor * x^-exponent."""
    slope, intercept = np.polyfit(np.log(x), np.log(y), 1)
    return float(-slope), float(np.exp(intercept))


def r2_score(observed: np.ndarray, fitted: np.ndarray) -> float:
    """Coefficient of determination; 1 for an exact fit of constant data, nan if inexact."""
    residual = float(np.sum((observed - fitted) ** 2))
    total = float(np.sum((observed - observed.mean()) ** 2))
    if total == 0.0:
        return 1.0 if residual == 0.0 else float("nan")
    return 1.0 - residual / total


def _fit_offset_free(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    exponent, prefactor = _log_line(x, y)
    return exponent, prefactor, 0.0


def _fit_with_offset(x: np.ndarray, y: np.ndarray, offset_min: float | None = None) -> tuple[float, float, float]:
    """Least squares on y of y = A x^-p + c with offset_min <= c < min(y); returns (p, A, c)."""
    log_x, y_min = np.log(x), float(y.min())
    spread = float(y.max() - y.min()) or abs(y_min) or 1.0
    max_gap = np.inf if offset_min is None else y_min - offset_min
    if not max_gap > 0:
        raise ExpspecError(f"fit_power_law: min(y) = {y_min:.6g} is not above offset_min = {offset_min}")

    def residuals(params: np.ndarray) -> np.ndarray:
        log_a, exponent, log_gap = params  # offset = y_min - exp(log_gap) < y_min
        return np.exp(log_a - exponent * log_x) + (y_min - np.exp(log_gap)) - y

    # Profile the offset: for each candidate gap below min(y), the log-log line of y - c.
    best, best_cost = None, np.inf
    gaps = spread * np.logspace(-6, 4, 81)
    for gap in np.append(gaps[gaps < max_gap], max_gap if np.isfinite(max_gap) else []):
        exponent, prefactor = _log_line(x, y - (y_min - gap))
        params = np.array([np.log(prefactor), exponent, np.log(gap)])
        cost = float(np.sum(residuals(params) ** 2))
        if np.isfinite(cost) and cost < best_cost:
            best, best_cost = params, cost
    with np.errstate(over="ignore", invalid="ignore"):
        if offset_min is None:
            refined = least_squares(residuals, best, method="lm", xtol=1e-15, ftol=1e-15, gtol=1e-15,
                                    max_nfev=20_000)
        else:  # the floor may not go below offset_min: bound log(gap) above
            upper = np.array([np.inf, np.inf, np.log(max_gap)])
            start = np.minimum(best, upper - 1e-12)
            refined = least_squares(residuals, start, method="trf", bounds=(-np.inf, upper), xtol=1e-15,
                                    ftol=1e-15, gtol=1e-15, max_nfev=20_000)
    params = refined.x if np.all(np.isfinite(refined.x)) and refined.cost <= 0.5 * best_cost else best
    log_a, exponent, log_gap = params
    return float(exponent), float(np.exp(log_a)), float(y_min - np.exp(log_gap))


def _bootstrap_exponent(x, y, offset: bool, n_resamples: int, seed: int,
                        offset_min: float | None = None) -> tuple[float, float] | None:
    rng = np.random.default_rng(seed)
    needed = 3 if offset else 2
    fit = (lambda a, b: _fit_with_offset(a, b, offset_min)) if offset else _fit_offset_free
    exponents = []
    for _ in range(n_resamples):
        pick = rng.integers(0, x.size, size=x.size)
        if np.unique(x[pick]).size < needed:
            continue  # a degenerate resample (all points at too few x) has no slope
        exponents.append(fit(x[pick], y[pick])[0])
    return percentile_interval(exponents)


def percentile_interval(estimates) -> tuple[float, float] | None:
    """The bootstrap percentile interval at CI_LEVEL; None from fewer than 2 estimates."""
    if len(estimates) < 2:
        return None
    tail = 100 * (1 - CI_LEVEL) / 2
    low, high = np.percentile(estimates, [tail, 100 - tail])
    return float(low), float(high)


def fit_power_law(x, y, offset: bool = False, window: tuple[float, float] | None = None,
                  bootstrap: int = 0, seed: int = 0, offset_min: float | None = None) -> PowerLawFit:
    """Fit y = prefactor * x^-exponent (+ offset, with offset_min <= offset < min(y)) to the
    points in window. ``offset_min`` bounds a physical floor (0 for a loss); None: unbounded."""
    if bootstrap < 0:
        raise ExpspecError(f"fit_power_law: bootstrap must be >= 0, got {bootstrap}")
    x, y = _points_in_window(x, y, window)
    _check_points(x, y, offset, window)
    exponent, prefactor, floor = _fit_with_offset(x, y, offset_min) if offset else _fit_offset_free(x, y)
    fitted = prefactor * x ** -exponent + floor
    r2 = r2_score(y, fitted) if offset else r2_score(np.log(y), np.log(fitted))
    ci = _bootstrap_exponent(x, y, offset, bootstrap, seed, offset_min) if bootstrap else None
    window_out = (float(window[0]), float(window[1])) if window is not None else None
    return PowerLawFit(exponent, prefactor, floor, r2, int(x.size), window_out, ci)
