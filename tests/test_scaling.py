"""The worksheet's algebra: alpha, the gate, calibration, the solve and its guards."""

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from expspec.kernels.errors import ExpspecError
from expspec.kernels.fit.power_law import fit_power_law
from expspec.kernels.lane_b.scaling import (
    STATUSES,
    alpha_from_exponents,
    alpha_interval,
    alpha_plausible,
    calibrate,
    empirical_alpha,
    infer_budget,
    solve_target_tokens,
)

alphas = st.floats(0.1, 1.0)
amplitudes = st.floats(0.5, 500.0)
floors = st.floats(-3.0, 5.0)
token_counts = st.lists(st.floats(1e5, 1e10), min_size=2, max_size=6, unique=True).filter(
    lambda ds: min(abs(a - b) / max(a, b) for i, a in enumerate(ds) for b in ds[i + 1:]) > 0.05
)


def curve(A, L_inf, alpha, D):
    return A * np.asarray(D, dtype=float) ** -alpha + L_inf


def test_alpha_is_gamma_over_two_beta():
    assert alpha_from_exponents(0.5, 0.4) == pytest.approx(0.4)
    assert math.isnan(alpha_from_exponents(0.0, 0.4))
    assert math.isnan(alpha_from_exponents(-0.1, 0.4))
    assert math.isnan(alpha_from_exponents(float("nan"), 0.4))
    assert alpha_interval((0.4, 0.5), (0.3, 0.6)) == pytest.approx((0.3, 0.75))
    assert alpha_interval((-0.1, 0.5), (0.3, 0.6)) is None


def test_plausibility_gate_is_inclusive_at_its_boundaries():
    assert alpha_plausible(0.2) and alpha_plausible(0.8)
    assert not alpha_plausible(0.2 - 1e-12) and not alpha_plausible(0.8 + 1e-12)
    assert not alpha_plausible(float("nan"))
    assert alpha_plausible(1.5, alpha_min=1.0, alpha_max=2.0)


@pytest.mark.property
@settings(deadline=None, max_examples=60, derandomize=True)
@given(A=amplitudes, L_inf=floors, alpha=alphas, D=token_counts)
def test_two_points_are_reproduced_exactly(A, L_inf, alpha, D):
    points = [(d, float(curve(A, L_inf, alpha, d))) for d in D[:2]]
    cal = calibrate(points, alpha)
    for d, value in points:
        assert float(cal.predict(d)) == pytest.approx(value, rel=1e-9, abs=1e-9)
    assert cal.n_points == 2 and cal.r2 == pytest.approx(1.0)


@pytest.mark.property
@settings(deadline=None, max_examples=60, derandomize=True)
@given(A=amplitudes, L_inf=floors, alpha=alphas, D=token_counts.filter(lambda ds: len(ds) >= 3))
def test_exact_points_give_back_the_true_curve(A, L_inf, alpha, D):
    cal = calibrate([(d, float(curve(A, L_inf, alpha, d))) for d in D], alpha)
    scale = A * min(D) ** -alpha  # the size of the signal the fit can see
    assert cal.A * min(D) ** -alpha == pytest.approx(scale, rel=1e-6)
    assert cal.L_inf == pytest.approx(L_inf, abs=1e-6 * (abs(L_inf) + scale))


@pytest.mark.property
@settings(deadline=None, max_examples=60, derandomize=True)
@given(A=amplitudes, L_inf=floors, alpha=alphas, gap=st.floats(1e-3, 10.0),
       direction=st.sampled_from(["lower_is_better", "higher_is_better"]))
def test_curve_at_the_solved_tokens_equals_the_threshold(A, L_inf, alpha, gap, direction):
    sign = 1.0 if direction == "lower_is_better" else -1.0
    threshold = sign * (L_inf + gap)  # a reachable threshold in metric units
    points = [(d, sign * float(curve(A, L_inf, alpha, d))) for d in (1e6, 4e6, 1.6e7)]
    cal = calibrate(points, alpha, direction)
    sol = solve_target_tokens(cal.A, cal.L_inf, alpha, threshold, direction,
                              n_scaling_params=1e3, unreachable_factor=math.inf)
    assert sol.status == "ok"
    assert float(cal.predict(sol.target_tokens)) == pytest.approx(threshold, rel=1e-6, abs=1e-9)
    assert sol.ratio == pytest.approx(sol.target_tokens / 1e3)
    assert sol.confirmation_ratio == pytest.approx(sol.ratio * 1.05)


def test_threshold_at_the_floor_is_below_floor_and_just_above_is_ok():
    A, L_inf, alpha = 10.0, 2.0, 0.5
    at_floor = solve_target_tokens(A, L_inf, alpha, L_inf, n_scaling_params=1.0,
                                   unreachable_factor=math.inf)
    assert at_floor.status == "threshold_below_floor" and at_floor.target_tokens is None
    above = solve_target_tokens(A, L_inf, alpha, L_inf + 1e-3, n_scaling_params=1.0,
                                unreachable_factor=math.inf)
    assert above.status == "ok" and above.target_tokens == pytest.approx((A / 1e-3) ** 2)


def test_higher_is_better_threshold_above_ceiling_is_below_floor():
    points = [(1e6, 0.5), (4e6, 0.6)]
    cal = calibrate(points, 0.5, "higher_is_better")
    ceiling = -cal.L_inf
    assert ceiling == pytest.approx(0.7)
    beyond = solve_target_tokens(cal.A, cal.L_inf, 0.5, ceiling + 1e-6, "higher_is_better",
                                 n_scaling_params=1.0)
    assert beyond.status == "threshold_below_floor"
    assert any("mirrored" in note for note in beyond.notes)


def test_unreachable_guard_switches_exactly_at_its_boundary():
    A, L_inf, alpha, n_params = 1.0, 0.0, 0.5, 100.0
    limit = 10.0 * 10.5 * n_params  # unreachable_factor * default_ratio * params
    threshold_at_limit = A * limit ** -alpha  # D_target == limit
    at = solve_target_tokens(A, L_inf, alpha, threshold_at_limit * (1 + 1e-9), n_scaling_params=n_params)
    beyond = solve_target_tokens(A, L_inf, alpha, threshold_at_limit * (1 - 1e-9), n_scaling_params=n_params)
    assert at.status == "ok" and beyond.status == "likely_unreachable"
    assert beyond.target_tokens > limit and beyond.notes


def test_non_improving_calibration_is_flagged():
    sol = solve_target_tokens(-1.0, 3.0, 0.5, 2.5, n_scaling_params=10.0)
    assert sol.status == "likely_unreachable" and sol.target_tokens is None


@pytest.mark.parametrize("points, message", [
    ([(1e6, 3.0)], "at least 2"),
    ([(1e6, 3.0), (1e6, 2.9)], "duplicate"),
    ([(0.0, 3.0), (1e6, 2.9)], "finite and > 0"),
    ([(-5.0, 3.0), (1e6, 2.9)], "finite and > 0"),
    ([(float("inf"), 3.0), (1e6, 2.9)], "finite and > 0"),
    ([(1e5, float("nan")), (1e6, 2.9)], "must be finite"),
    ([(1e5,), (1e6, 2.9)], "pairs"),
])
def test_calibration_rejects_bad_points(points, message):
    with pytest.raises(ExpspecError, match=message):
        calibrate(points, 0.5)


def test_bad_alpha_direction_and_params_are_errors():
    with pytest.raises(ExpspecError, match="alpha"):
        calibrate([(1e5, 3.0), (1e6, 2.9)], 0.0)
    with pytest.raises(ExpspecError, match="direction"):
        calibrate([(1e5, 3.0), (1e6, 2.9)], 0.5, "sideways")
    with pytest.raises(ExpspecError, match="n_scaling_params"):
        solve_target_tokens(1.0, 0.0, 0.5, 0.1, n_scaling_params=0)


POINTS = [(1e6, float(curve(50.0, 2.0, 0.4, 1e6))), (4e6, float(curve(50.0, 2.0, 0.4, 4e6))),
          (1.6e7, float(curve(50.0, 2.0, 0.4, 1.6e7)))]
INFER_KEYS = {"alpha", "alpha_ci", "alpha_plausible", "calib_A", "calib_L_inf", "calib_fit_r2",
              "inferred_target_tokens", "inferred_target_param_data_ratio", "confirmation_ratio",
              "solve_status", "notes", "inferred_target_tokens_interval",
              "inferred_target_param_data_ratio_interval"}


def test_infer_budget_runs_gate_calibrate_solve():
    record = infer_budget(0.4, POINTS, threshold=2.2, n_scaling_params=1e6, alpha_ci=(0.3, 0.5))
    assert INFER_KEYS <= set(record) and record["solve_status"] == "ok"
    assert record["calib_A"] == pytest.approx(50.0) and record["calib_L_inf"] == pytest.approx(2.0)
    assert record["inferred_target_tokens"] == pytest.approx((50.0 / 0.2) ** (1 / 0.4))
    low, high = record["inferred_target_tokens_interval"]
    assert low <= record["inferred_target_tokens"] * 1.0000001 and low < high
    assert record["inferred_target_param_data_ratio_interval"][1] == pytest.approx(high / 1e6)
    json.dumps(record)


def test_infer_budget_implausible_alpha_reports_calibration_but_does_not_solve():
    record = infer_budget(0.9, POINTS, threshold=2.2, n_scaling_params=1e6)
    assert record["solve_status"] == "implausible_alpha" and record["alpha_plausible"] is False
    assert record["calib_A"] is not None and record["inferred_target_tokens"] is None


def test_infer_budget_review_acceptance_solves_an_implausible_alpha():
    record = infer_budget(0.9, POINTS, threshold=2.2, n_scaling_params=1e6, alpha_review_accepted=True)
    assert record["solve_status"] in STATUSES and record["solve_status"] != "implausible_alpha"
    assert record["inferred_target_tokens"] is not None
    assert any("accepted by review" in note for note in record["notes"])


def test_infer_budget_with_too_few_points_is_a_status_not_an_exception():
    record = infer_budget(0.4, POINTS[:1], threshold=2.2, n_scaling_params=1e6)
    assert record["solve_status"] == "insufficient_points" and record["calib_A"] is None


def test_infer_budget_with_unmeasurable_alpha_is_implausible():
    record = infer_budget(float("nan"), POINTS, threshold=2.2, n_scaling_params=1e6,
                          alpha_review_accepted=True)
    assert record["solve_status"] == "implausible_alpha" and record["alpha"] is None
    json.dumps(record)


# ---- physical fits, D_target's position, the empirical alpha --------------------------------

def test_negative_floor_is_nonphysical_and_unsolved():
    # the smoke calibration once fitted L(D) = -6.05 + 14.7 D^-0.047: a negative bits-per-byte floor
    points = [(d, -1.0 + 5.0 * d ** -0.3) for d in (1e5, 2e5, 4e5)]
    record = infer_budget(0.3, points, threshold=-0.96, n_scaling_params=1e4)
    assert record["solve_status"] == "nonphysical_fit" and "nonphysical_fit" in STATUSES
    assert record["calib_L_inf"] == pytest.approx(-1.0) and record["inferred_target_tokens"] is None
    assert any("non-physical" in note for note in record["notes"])


def test_target_position_says_whether_d_target_extrapolates():
    points = [(d, 1.0 + 20 * d ** -0.3) for d in (1e5, 2e5, 4e5)]
    beyond = infer_budget(0.3, points, threshold=1.0 + 20 * 1.6e6 ** -0.3, n_scaling_params=1e5)
    assert beyond["target_position"].startswith("beyond (extrapolated 4.00x")
    inside = infer_budget(0.3, points, threshold=1.0 + 20 * 3e5 ** -0.3, n_scaling_params=1e5)
    assert inside["target_position"].startswith("inside") and inside["calib_tokens_range"] == [1e5, 4e5]


@settings(max_examples=25, deadline=None)
@given(alpha=st.floats(0.1, 0.8), L_inf=st.floats(0.5, 3.0), seed=st.integers(0, 1000))
def test_empirical_alpha_recovers_a_planted_law_within_its_interval(alpha, L_inf, seed):
    tokens = np.array([1e5, 2e5, 4e5, 8e5])
    values = L_inf + 30 * tokens ** -alpha
    exact = empirical_alpha(list(zip(tokens, values)), noise_sd=1e-4, seed=seed)
    assert exact.alpha == pytest.approx(alpha, rel=1e-3) and exact.L_inf >= 0
    assert exact.ci[0] <= alpha <= exact.ci[1] and exact.resamples == 200


def test_empirical_alpha_floor_is_bounded_and_noise_is_stated():
    tokens = [1e5, 2e5, 4e5]
    # data whose unconstrained floor would be negative: the bounded fit keeps L_inf >= 0
    values = [-6.05 + 14.7 * d ** -0.047 + 6.5 for d in tokens]
    fit = empirical_alpha(list(zip(tokens, values)), noise_sd=0.002)
    assert fit.L_inf >= 0 and fit.ci is not None and fit.noise_source == ""
    none = empirical_alpha(list(zip(tokens, values)))  # 3 points, no baseline spread: no interval
    assert none.ci is None and none.noise_sd is None and "no noise estimate" in none.noise_source
    four = empirical_alpha([(d, 1 + 20 * d ** -0.3 + 0.001 * (-1) ** i) for i, d in enumerate([1e5, 2e5, 4e5, 8e5])])
    assert four.noise_source == "fit residuals" and four.ci is not None
    assert empirical_alpha([(1e5, 2.0), (2e5, 1.9)]).alpha is None  # fewer than 3 points


def test_offset_min_bounds_the_fitted_floor():
    x = np.array([10.0, 20, 40, 80])
    y = -2.0 + 10 * x ** -0.2  # the free floor is -2
    assert fit_power_law(x, y, offset=True).offset == pytest.approx(-2.0, abs=1e-6)
    bounded = fit_power_law(x, y + 2.5, offset=True, offset_min=0.6)
    assert bounded.offset >= 0.6 - 1e-12
