"""fit_power_law: recovers planted power laws, with and without an offset; rejects bad input."""

import json

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from expspec.kernels.errors import ExpspecError
from expspec.kernels.fit.power_law import fit_power_law

X = np.arange(1, 128, dtype=float)

exponents = st.floats(0.05, 2.5)
prefactors = st.floats(0.01, 100.0)
offsets = st.floats(-5.0, 10.0)


@pytest.mark.property
@settings(deadline=None, max_examples=60, derandomize=True)
@given(exponent=exponents, prefactor=prefactors)
def test_offset_free_fit_recovers_exact_power_law(exponent, prefactor):
    fit = fit_power_law(X, prefactor * X ** -exponent)
    assert fit.exponent == pytest.approx(exponent, abs=1e-9)
    assert fit.prefactor == pytest.approx(prefactor, rel=1e-9)
    assert fit.offset == 0.0 and fit.r2 == pytest.approx(1.0, abs=1e-12)


@pytest.mark.property
@settings(deadline=None, max_examples=40, derandomize=True)
@given(exponent=exponents, prefactor=prefactors, seed=st.integers(0, 2**16))
def test_offset_free_fit_tolerates_multiplicative_noise(exponent, prefactor, seed):
    noise = np.exp(np.random.default_rng(seed).normal(0.0, 0.05, X.size))  # 5% scatter
    fit = fit_power_law(X, prefactor * X ** -exponent * noise)
    # slope standard error = 0.05 / sqrt(sum (log x - mean)^2) ~ 0.005; allow ~6 sigma
    assert fit.exponent == pytest.approx(exponent, abs=0.03)


@pytest.mark.property
@settings(deadline=None, max_examples=40, derandomize=True)
@given(exponent=st.floats(0.1, 2.0), prefactor=st.floats(0.1, 20.0), offset=offsets)
@example(exponent=0.05 + 0.05, prefactor=0.1, offset=10.0)  # tiny decay above a large floor
@example(exponent=2.0, prefactor=0.1, offset=4.0)  # the curve is flat after a few points
def test_offset_fit_recovers_prefactor_exponent_and_floor(exponent, prefactor, offset):
    fit = fit_power_law(X, prefactor * X ** -exponent + offset, offset=True)
    assert fit.exponent == pytest.approx(exponent, rel=1e-6)
    assert fit.prefactor == pytest.approx(prefactor, rel=1e-6)
    assert fit.offset == pytest.approx(offset, abs=1e-6 * (1 + abs(offset)))


def test_offset_fit_with_noise_is_close():
    rng = np.random.default_rng(0)
    y = (2.0 * X ** -0.3 + 3.0) * np.exp(rng.normal(0.0, 0.002, X.size))
    fit = fit_power_law(X, y, offset=True, bootstrap=50, seed=1)
    assert fit.exponent == pytest.approx(0.3, abs=0.03)
    assert fit.offset == pytest.approx(3.0, abs=0.05)
    low, high = fit.ci
    assert low < fit.exponent < high


def test_offset_stays_below_min_y_and_y_may_be_negative():
    y = -1.0 + 0.5 * X ** -0.7  # a mirrored accuracy-like curve, all values negative
    fit = fit_power_law(X, y, offset=True)
    assert fit.offset < y.min()
    assert fit.exponent == pytest.approx(0.7, rel=1e-6)


def test_window_restricts_points():
    y = np.where(X <= 10, 5.0 * X ** -0.5, 100.0)  # garbage outside the window
    fit = fit_power_law(X, y, window=(2, 10))
    assert fit.n_points == 9 and fit.window == (2.0, 10.0)
    assert fit.exponent == pytest.approx(0.5, abs=1e-12)


def test_bootstrap_ci_is_seeded_and_brackets_the_estimate():
    y = 3.0 * X ** -0.6 * np.exp(np.random.default_rng(3).normal(0, 0.1, X.size))
    first = fit_power_law(X, y, bootstrap=100, seed=7)
    again = fit_power_law(X, y, bootstrap=100, seed=7)
    assert first.ci == again.ci
    assert first.ci[0] < first.exponent < first.ci[1]
    assert fit_power_law(X, y).ci is None


def test_fit_serialises_to_json():
    record = fit_power_law(X, X ** -1.0, bootstrap=10).to_dict()
    assert set(record) == {"exponent", "prefactor", "offset", "r2", "n_points", "window", "ci"}
    json.dumps(record)


@pytest.mark.parametrize("x, y, kwargs, message", [
    ([1.0], [1.0], {}, "at least 2 points"),
    ([1.0, 2.0], [1.0, 0.5], {"offset": True}, "at least 3 points"),
    ([1.0, 2.0, 3.0], [1.0, 0.5, 0.2], {"window": (5, 9)}, "window"),
    ([0.0, 1.0, 2.0], [1.0, 0.5, 0.2], {}, "x must be finite and > 0"),
    ([1.0, np.inf, 2.0], [1.0, 0.5, 0.2], {}, "x must be finite and > 0"),
    ([1.0, 2.0, 3.0], [1.0, -0.5, 0.2], {}, "y must be > 0"),
    ([1.0, 2.0, 3.0], [1.0, np.nan, 0.2], {"offset": True}, "y must be finite"),
    ([2.0, 2.0, 2.0], [1.0, 0.5, 0.2], {}, "distinct x"),
    ([1.0, 2.0], [1.0, 0.5, 0.2], {}, "same length"),
])
def test_bad_input_is_a_one_line_error(x, y, kwargs, message):
    with pytest.raises(ExpspecError, match=message) as err:
        fit_power_law(x, y, **kwargs)
    assert "\n" not in str(err.value)
