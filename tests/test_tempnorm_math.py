"""Tempnorms in log space: equal to the direct product and the naive mean/variance where those
are representable, finite and shift-covariant where they under- or overflow."""

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from expspec.kernels.tempnorm.tempnorms import log_mean_exp, log_tempnorms, log_variance_exp, tempnorm_summary

probabilities = st.floats(1e-3, 1.0)
alphas = st.floats(1.0, 6.0)


@pytest.mark.property
@settings(deadline=None, max_examples=80, derandomize=True)
@given(probs=st.lists(st.lists(probabilities, min_size=20, max_size=20), min_size=1, max_size=6),
       length=st.integers(1, 20), alpha=alphas)
@example(probs=[[1.0] * 20], length=20, alpha=4.0)  # certain tokens: weight exactly 1
def test_log_tempnorm_equals_the_direct_product(probs, length, alpha):
    # the smallest product here is (1e-3)^(5 * 20) = 1e-300: representable in float64
    direct = [math.prod(p ** (alpha - 1) for p in q[:length]) for q in probs]
    logs = log_tempnorms(probs, length, alpha)
    assert np.exp(logs) == pytest.approx(direct, rel=1e-9, abs=0)
    summary = tempnorm_summary(probs, [length], alpha)
    assert summary[f"individual_tempnorms_{length}"] == pytest.approx(direct, rel=1e-9, abs=0)


def test_log_tempnorm_survives_where_the_product_underflows():
    probs = [[1e-3] * 100, [0.5] * 100]  # alpha = 4, L = 100: (1e-3)^300 = 1e-900 underflows float64
    assert math.prod(p ** 3 for p in probs[0]) == 0.0
    logs = log_tempnorms(probs, 100, 4.0)
    assert logs == pytest.approx([300 * math.log(1e-3), 300 * math.log(0.5)], rel=1e-12)
    summary = tempnorm_summary(probs, [100], 4.0)
    assert summary["log_tempnorm_mean_100"] == pytest.approx(300 * math.log(0.5) - math.log(2), rel=1e-12)
    assert math.isfinite(summary["log_tempnorm_variance_100"])


well_scaled = st.lists(st.floats(-20.0, 5.0), min_size=1, max_size=16)


@pytest.mark.property
@settings(deadline=None, max_examples=100, derandomize=True)
@given(logs=well_scaled)
@example(logs=[-3.0])  # one completion: variance 0
@example(logs=[-1.0, -1.0, -1.0])  # equal weights: variance 0, log variance -inf
def test_stable_mean_and_variance_equal_the_naive_ones(logs):
    x = np.exp(np.asarray(logs))
    assert log_mean_exp(logs) == pytest.approx(math.log(x.mean()), rel=1e-12, abs=1e-12)
    naive_var = float(np.var(x))
    if naive_var < 1e-12 * float(x.max()) ** 2:  # the naive variance is rounding noise here
        assert log_variance_exp(logs) <= 2 * math.log(float(x.max())) + math.log(1e-12) + 1e-9
    else:
        assert log_variance_exp(logs) == pytest.approx(math.log(naive_var), rel=1e-9, abs=1e-9)


@pytest.mark.property
@settings(deadline=None, max_examples=100, derandomize=True)
@given(logs=well_scaled, shift=st.one_of(st.floats(-5000.0, -800.0), st.floats(800.0, 5000.0)))
@example(logs=[-0.5, -2.0, -7.0], shift=-600 * 3.0)  # alpha = 4, L = 100 territory
def test_stable_statistics_stay_finite_where_the_naive_ones_fail(logs, shift):
    shifted = [v + shift for v in logs]
    with np.errstate(over="ignore", under="ignore"):
        naive = np.exp(np.asarray(shifted))
    assert not np.all(np.isfinite(naive) & (naive > 0))  # every weight under- or overflows
    # the law: shifting the logs by c multiplies the weights by e^c, the mean by e^c, the variance by e^2c
    assert log_mean_exp(shifted) == pytest.approx(log_mean_exp(logs) + shift, rel=1e-12)
    assert math.isfinite(log_mean_exp(shifted))
    var, var_shifted = log_variance_exp(logs), log_variance_exp(shifted)
    if math.isinf(var):
        assert var_shifted == -math.inf
    else:
        # the shift rounds each log by ~|shift| * 2^-53, which moves the variance by that much relative
        assert var_shifted == pytest.approx(var + 2 * shift, rel=1e-9, abs=1e-6 * max(1.0, abs(var)))
        assert math.isfinite(var_shifted)


@pytest.mark.property
@settings(deadline=None, max_examples=60, derandomize=True)
@given(probs=st.lists(st.lists(st.floats(1e-6, 1.0), min_size=30, max_size=30), min_size=2, max_size=5),
       alpha=st.floats(1.0, 8.0))
def test_log_tempnorm_never_rises_with_length_when_alpha_exceeds_one(probs, alpha):
    lengths = [1, 2, 5, 10, 20, 30]
    series = np.stack([log_tempnorms(probs, L, alpha) for L in lengths], axis=1)
    assert np.all(np.diff(series, axis=1) <= 0)
    means = [log_mean_exp(series[:, i]) for i in range(len(lengths))]
    assert all(b <= a + 1e-12 for a, b in zip(means, means[1:]))  # each weight falls, so their mean does


def test_summary_fields_and_zero_variance():
    summary = tempnorm_summary([[0.5, 0.25], [0.5, 0.5]], [1, 2], 4.0)
    assert summary["log_individual_tempnorms_1"] == pytest.approx([3 * math.log(0.5)] * 2)
    assert summary["log_tempnorm_variance_1"] == -math.inf and summary["tempnorm_variance_1"] == 0.0
    weights = [0.5 ** 3 * 0.25 ** 3, 0.5 ** 6]
    assert summary["tempnorm_mean_2"] == pytest.approx(np.mean(weights), rel=1e-12)
    assert summary["tempnorm_variance_2"] == pytest.approx(np.var(weights), rel=1e-9)
    assert set(summary) == {f"{f}_{L}" for L in (1, 2) for f in (
        "individual_tempnorms", "tempnorm_mean", "tempnorm_variance",
        "log_individual_tempnorms", "log_tempnorm_mean", "log_tempnorm_variance")}
