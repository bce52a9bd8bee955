"""Correlation norms: sparse == dense, i.i.d. sits at the floor, a planted beta comes back."""

import json

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from synthetic_streams import iid_stream, planted_norm, planted_power_law_stream, zipf_probs

from expspec.kernels.lane_b.correlation import (
    block_resample,
    correlation_decay,
    correlation_norms,
    noise_floor,
    pair_positions,
    stream_fingerprint,
    usable_lags,
)
from expspec.kernels.errors import ExpspecError

LAGS = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64]


def dense_norms(tokens, lags, vocab_size, positions=None):
    """The V x V reference: materialise C(n) and take its 2-norm and Frobenius norm."""
    tokens = np.asarray(tokens)
    if positions is None:
        positions = np.arange(tokens.size - max(lags))
    out = []
    for lag in lags:
        joint = np.zeros((vocab_size, vocab_size))
        np.add.at(joint, (tokens[positions], tokens[positions + lag]), 1.0)
        joint /= positions.size
        centred = joint - np.outer(joint.sum(1), joint.sum(0))
        out.append((np.linalg.norm(centred, 2), np.linalg.norm(centred)))
    return np.array(out)


@st.composite
def small_streams(draw):
    vocab_size = draw(st.integers(2, 12))
    n_tokens = draw(st.integers(20, 600))
    tokens = draw(st.lists(st.integers(0, vocab_size - 1), min_size=n_tokens, max_size=n_tokens))
    lags = draw(st.lists(st.integers(1, 15), min_size=1, max_size=4, unique=True))
    return np.array(tokens), lags, vocab_size


@pytest.mark.property
@settings(deadline=None, max_examples=80, derandomize=True)
@given(stream=small_streams())
@example(stream=(np.zeros(50, dtype=int), [1, 3], 2))  # C == 0: only the absolute guard holds
@example(stream=(np.arange(60) % 3, [1, 2, 3], 3))  # deterministic cycle: degenerate top singular values
def test_sparse_norms_equal_dense_norms(stream):
    tokens, lags, vocab_size = stream
    sparse = correlation_norms(tokens, lags, vocab_size)
    dense = dense_norms(tokens, sorted(lags), vocab_size)
    np.testing.assert_allclose(sparse.op_norm, dense[:, 0], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(sparse.frob_norm, dense[:, 1], rtol=1e-6, atol=1e-9)


def test_sparse_norms_equal_dense_norms_on_a_zipf_stream_with_subsampled_pairs():
    vocab_size = 300
    tokens = iid_stream(20_000, vocab_size, seed=5, probs=zipf_probs(vocab_size))
    tokens[1::7] = tokens[::7][: tokens[1::7].size]  # some real lag-1 structure
    sparse = correlation_norms(tokens, [1, 5, 9], vocab_size, max_pairs=5_000, seed=3)
    positions = pair_positions(tokens.size, 9, 5_000, seed=3)
    dense = dense_norms(tokens, [1, 5, 9], vocab_size, positions)
    assert sparse.n_pairs == 5_000
    np.testing.assert_allclose(sparse.op_norm, dense[:, 0], rtol=1e-6)
    np.testing.assert_allclose(sparse.frob_norm, dense[:, 1], rtol=1e-6)


def test_every_lag_uses_the_same_seeded_pair_positions():
    first = pair_positions(10_000, 64, 1_000, seed=1)
    assert first.size == 1_000 and np.unique(first).size == 1_000 and first.max() < 10_000 - 64
    np.testing.assert_array_equal(first, pair_positions(10_000, 64, 1_000, seed=1))
    assert not np.array_equal(first, pair_positions(10_000, 64, 1_000, seed=2))
    assert pair_positions(100, 10, None, seed=0).size == 90
    assert pair_positions(100, 10, 10_000, seed=0).size == 90  # more than available: all


@pytest.mark.parametrize("seed, vocab_size", [(0, 8), (1, 8), (2, 64), (3, 64)])
def test_iid_stream_norms_sit_at_the_noise_floor(seed, vocab_size):
    tokens = iid_stream(2**15, vocab_size, seed=seed, probs=zipf_probs(vocab_size))
    result = correlation_decay(tokens, [1, 2, 4, 8, 16], vocab_size, seed=seed)
    for row in result.rows:  # stated factor: within 2x of the floor either way
        assert 0.5 < row["op_norm"] / row["floor_op"] < 2.0
        assert 0.5 < row["frob_norm"] / row["floor_frob"] < 2.0
    assert result.n_usable == 0 and np.isnan(result.beta) and result.window is None
    json.dumps(result.to_dict())


def test_noise_floor_is_the_norms_of_a_shuffled_stream():
    tokens = planted_power_law_stream(2**14, beta=0.5, seed=0)
    floor = noise_floor(tokens, [1, 2], 4, seed=0)
    signal = correlation_norms(tokens, [1, 2], 4)
    assert np.all(floor.op_norm < signal.op_norm / 10)


def test_planted_stream_has_the_planted_norms_at_short_lags():
    tokens = planted_power_law_stream(2**17, beta=0.8, seed=0)
    norms = correlation_norms(tokens, [1, 2, 3, 4], 4)
    np.testing.assert_allclose(norms.op_norm, planted_norm(norms.lags, 0.8, 0.5, 4), rtol=0.05)
    np.testing.assert_allclose(norms.frob_norm, norms.op_norm, rtol=0.05)  # rank one


@pytest.mark.property
@settings(deadline=None, max_examples=8, derandomize=True)
@given(beta=st.floats(0.4, 1.0), seed=st.integers(0, 1000), vocab_size=st.sampled_from([4, 8]))
def test_planted_beta_is_recovered(beta, seed, vocab_size):
    # Stated tolerance 0.1: at N = 2^17 the sample marginals of a long-memory stream bias
    # every norm down by ~Var(mean) ~ N^-beta (worst at small beta), and noise adds in
    # quadrature near the floor (worst at large beta, where the window is short).
    tokens = planted_power_law_stream(2**17, beta, vocab_size=vocab_size, seed=seed)
    result = correlation_decay(tokens, LAGS, vocab_size, seed=seed)
    assert result.n_usable >= 4 and result.window[0] == 1
    assert result.beta == pytest.approx(beta, abs=0.1)
    assert result.beta_frob == pytest.approx(beta, abs=0.1)


def test_block_bootstrap_ci_is_seeded_and_brackets_beta():
    tokens = planted_power_law_stream(2**15, beta=0.6, seed=4)
    first = correlation_decay(tokens, [1, 2, 4, 8, 16], 4, bootstrap=12, seed=1)
    again = correlation_decay(tokens, [1, 2, 4, 8, 16], 4, bootstrap=12, seed=1)
    assert first.ci == again.ci and first.n_bootstrap == 12
    assert first.ci[0] < first.beta < first.ci[1]


def test_block_resample_keeps_length_and_contiguity():
    tokens = np.arange(1_000)
    resampled = block_resample(tokens, 100, np.random.default_rng(0))
    assert resampled.size == 1_000
    assert np.all(np.diff(resampled.reshape(10, 100), axis=1) == 1)


def test_usable_window_is_contiguous_from_the_first_lag_above_the_floor():
    norms = np.array([0.5, 4.0, 3.5, 2.0, 5.0])  # lag 4 dips under, lag 5 does not count
    usable = usable_lags(norms, np.ones(5), floor_factor=3.0)
    assert usable.tolist() == [False, True, True, False, False]
    assert not usable_lags(norms, np.full(5, 10.0), 3.0).any()


def test_stream_fingerprint_names_stream_length_and_tokenizer():
    tokens = np.arange(10_000) % 97
    base = stream_fingerprint(tokens, "bpe:4096:abc", sample=100)
    assert base == stream_fingerprint(tokens.copy(), "bpe:4096:abc", sample=100)
    assert base != stream_fingerprint(tokens, "bpe:4096:abd", sample=100)
    assert base != stream_fingerprint(tokens[:-1], "bpe:4096:abc", sample=100)
    changed = tokens.copy()
    changed[0] += 1  # the first token is always sampled
    assert base != stream_fingerprint(changed, "bpe:4096:abc", sample=100)
    assert len(base) == 64


@pytest.mark.parametrize("tokens, lags, vocab_size, message", [
    ([0, 1, 5], [1], 4, r"\[0, 4\)"),
    ([0, 1, -1], [1], 4, r"\[0, 4\)"),
    ([0.5, 1.0, 2.0], [1], 4, "integer"),
    ([0, 1, 2, 3], [0], 4, "lags"),
    ([0, 1, 2, 3], [1, 1], 4, "distinct"),
    ([0, 1, 2, 3], [4], 4, "more than 4 tokens"),
    ([0, 1, 2, 3], [], 4, "non-empty"),
])
def test_bad_input_is_a_one_line_error(tokens, lags, vocab_size, message):
    with pytest.raises(ExpspecError, match=message):
        correlation_norms(np.array(tokens), lags, vocab_size)
