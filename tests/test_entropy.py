"""Entropy decay: per-position loss indexing, plug-in n-gram entropies, gamma in both forms,
and gamma's interval as a bootstrap over evaluation windows (a sampling interval)."""

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from synthetic_streams import iid_stream, zipf_probs

from expspec.kernels.lane_b.entropy import (
    entropy_decay,
    ngram_conditional_entropy,
    per_position_loss,
    per_window_loss,
)
from expspec.kernels.errors import ExpspecError
from expspec.kernels.models.gpt import build_tiny_gpt

VOCAB = 16


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny models on a shared 2-core box: one thread is faster and never oversubscribes."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def unigram_entropy(probs):
    return float(-np.sum(probs * np.log(probs)))


class PositionOnlyModel(torch.nn.Module):
    """Predicts token distribution q_t at position t whatever the input: a known answer."""

    def __init__(self, log_probs: torch.Tensor):
        super().__init__()
        self.log_probs = log_probs  # [T, V]

    def forward(self, input_ids):
        logits = self.log_probs[: input_ids.shape[1]].expand(input_ids.shape[0], -1, -1)
        return type("Output", (), {"logits": logits})()


def test_per_position_loss_index_zero_is_one_token_of_context():
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, VOCAB, size=500)
    log_probs = torch.log_softmax(torch.randn(8, VOCAB, generator=torch.Generator().manual_seed(0)), -1)
    losses = per_position_loss(PositionOnlyModel(log_probs), tokens, context_len=8, n_windows=40, seed=3)
    starts = np.random.default_rng(3).choice(500 - 8 + 1, size=40, replace=False)
    targets = tokens[starts[:, None] + np.arange(1, 8)]  # token n+1 of each window, n = 1..7
    expected = -log_probs.numpy()[np.arange(7), targets].mean(0)  # predicted at position n-1
    assert losses.shape == (7,)
    np.testing.assert_allclose(losses, expected, rtol=1e-6)


def test_per_position_loss_of_a_tiny_gpt_is_finite_seeded_and_keeps_train_mode():
    torch.manual_seed(0)
    model = build_tiny_gpt(1, 32, 32, VOCAB, 32, seed=0)
    model.train()
    tokens = iid_stream(4_000, VOCAB, seed=1)
    losses = per_position_loss(model, tokens, context_len=32, n_windows=16, seed=0, batch_size=5)
    assert losses.shape == (31,) and np.all(np.isfinite(losses))
    np.testing.assert_allclose(losses, per_position_loss(model, tokens, 32, 16, seed=0), rtol=1e-5)
    assert model.training  # restored after evaluation


def test_per_position_loss_of_a_model_trained_on_an_iid_stream_is_flat():
    torch.manual_seed(0)
    probs = zipf_probs(VOCAB)
    tokens = iid_stream(2**14, VOCAB, seed=0, probs=probs)
    model = build_tiny_gpt(1, 32, 32, VOCAB, 32, seed=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    rng = np.random.default_rng(1)
    for _ in range(60):  # enough to learn the unigram, nothing else to learn
        starts = rng.integers(0, tokens.size - 33, size=16)
        batch = torch.from_numpy(tokens[starts[:, None] + np.arange(33)])
        logits = model(batch[:, :-1]).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), batch[:, 1:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    losses = per_position_loss(model, tokens, context_len=32, n_windows=256, seed=0)
    # 256 windows: each L_n has a standard error ~ 1.2 nats / 16 = 0.075
    assert abs(losses.mean() - unigram_entropy(probs)) < 0.1
    assert np.all(np.abs(losses - losses.mean()) < 0.3)
    assert abs(entropy_decay(losses).gamma_offset_free) < 0.03


def test_per_position_loss_rejects_a_stream_shorter_than_a_window():
    model = PositionOnlyModel(torch.zeros(8, VOCAB))
    with pytest.raises(ExpspecError, match="at least 8 tokens"):
        per_position_loss(model, np.arange(5), context_len=8, n_windows=2)


@pytest.mark.property
@settings(deadline=None, max_examples=10, derandomize=True)
@given(seed=st.integers(0, 10_000), vocab_size=st.integers(2, 8))
def test_ngram_entropy_of_an_iid_stream_is_the_unigram_entropy(seed, vocab_size):
    n_tokens = 2**15
    tokens = iid_stream(n_tokens, vocab_size, seed=seed, probs=zipf_probs(vocab_size))
    result = ngram_conditional_entropy(tokens, max_n=3)
    assert result.orders == [0, 1, 2, 3]
    for n, h in zip(result.orders, result.entropy):
        # plug-in bias ~ -(contexts x (V - 1)) / 2N, sampling error ~ 0.01 nats
        bias = vocab_size**n * (vocab_size - 1) / (2 * n_tokens)
        assert result.entropy[0] - bias - 0.02 < h < result.entropy[0] + 0.02


def test_ngram_entropy_of_a_markov_chain_stops_falling_after_order_one():
    rng = np.random.default_rng(0)
    transition = rng.dirichlet(np.full(4, 0.5), size=4)
    tokens = np.zeros(2**16, dtype=np.int64)
    draws = rng.random(tokens.size)
    for t in range(1, tokens.size):
        tokens[t] = np.searchsorted(np.cumsum(transition[tokens[t - 1]]), draws[t])
    stationary = np.linalg.matrix_power(transition, 200)[0]
    rate = -np.sum(stationary[:, None] * transition * np.log(transition))
    result = ngram_conditional_entropy(tokens, max_n=3)
    assert result.entropy[1] == pytest.approx(rate, abs=0.02)
    assert result.entropy[3] == pytest.approx(rate, abs=0.02)
    assert result.entropy[0] > rate + 0.1


def test_ngram_entropy_is_exact_on_a_tiny_stream_and_drops_starved_orders():
    result = ngram_conditional_entropy(np.array([0, 1, 0, 1, 0, 1, 0, 1]), max_n=2)
    assert result.entropy == pytest.approx([np.log(2), 0.0, 0.0])
    tokens = np.random.default_rng(0).integers(0, 1_000, size=2_000)
    starved = ngram_conditional_entropy(tokens, max_n=4, starvation=0.98)
    assert starved.orders == [0, 1] and starved.dropped == [2, 3, 4]
    assert starved.losses_by_n() == {1: starved.entropy[1]}
    json.dumps(starved.to_dict())


@pytest.mark.property
@settings(deadline=None, max_examples=30, derandomize=True)
@given(gamma=st.floats(0.05, 1.5), prefactor=st.floats(0.5, 10.0), floor=st.floats(0.5, 5.0))
def test_entropy_decay_recovers_both_forms(gamma, prefactor, floor):
    n = np.arange(1, 128, dtype=float)
    free = entropy_decay(prefactor * n**-gamma)
    assert free.form == "offset_free" and free.gamma == pytest.approx(gamma, abs=1e-9)
    floored = entropy_decay(prefactor * n**-gamma + floor, form="offset")
    assert floored.form == "offset" and floored.gamma == pytest.approx(gamma, rel=1e-5)
    assert floored.h_inf == pytest.approx(floor, rel=1e-5)
    assert floored.gamma_offset_free < gamma  # ignoring the floor flattens the decay


def test_entropy_decay_default_window_skips_one_token_of_context():
    losses = 3.0 * np.arange(1, 128, dtype=float) ** -0.4
    losses[0] = 100.0  # n = 1 is outside the default window, so it cannot matter
    result = entropy_decay(losses)
    assert result.window == (2.0, 127.0) and result.n_points == 126
    assert result.gamma == pytest.approx(0.4, abs=1e-9)
    assert result.ci is None and result.ci_method == "none"
    json.dumps(result.to_dict())


def test_entropy_decay_takes_a_mapping_of_context_lengths():
    result = entropy_decay({1: 4.0, 2: 4.0 * 2**-0.5, 4: 2.0}, window=(1, 4))
    assert result.gamma == pytest.approx(0.5) and result.n_points == 3


def test_entropy_decay_records_nan_offset_gamma_when_too_few_points():
    result = entropy_decay({1: 4.0, 2: 3.0})
    assert np.isnan(result.gamma_offset) and result.gamma == pytest.approx(np.log2(4 / 3))
    with pytest.raises(ExpspecError, match="at least 3"):
        entropy_decay({1: 4.0, 2: 3.0}, form="offset")
    with pytest.raises(ExpspecError, match="form"):
        entropy_decay({1: 4.0, 2: 3.0}, form="paper")


# ---- gamma's interval: a bootstrap over evaluation windows ---------------------------------

def synthetic_windows(n_windows: int, gamma: float = 0.3, noise: float = 1.0, seed: int = 0,
                      context_len: int = 128) -> np.ndarray:
    """Per-window losses whose mean over windows is 3 n^-gamma: each token's loss scatters
    with sd ``noise`` nats (a cross-entropy's scatter is of this order)."""
    n = np.arange(1, context_len, dtype=float)
    rng = np.random.default_rng(seed)
    return 3.0 * n ** -gamma * np.exp(noise * rng.standard_normal((n_windows, n.size)) - noise**2 / 2)


def test_per_window_loss_keeps_each_window_and_its_mean_is_the_per_position_loss():
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, VOCAB, size=500)
    log_probs = torch.log_softmax(torch.randn(8, VOCAB, generator=torch.Generator().manual_seed(0)), -1)
    model = PositionOnlyModel(log_probs)
    per_window = per_window_loss(model, tokens, context_len=8, n_windows=40, seed=3, batch_size=7)
    starts = np.random.default_rng(3).choice(500 - 8 + 1, size=40, replace=False)
    targets = tokens[starts[:, None] + np.arange(1, 8)]
    assert per_window.shape == (40, 7)
    np.testing.assert_allclose(per_window, -log_probs.numpy()[np.arange(7), targets], rtol=1e-6)
    np.testing.assert_allclose(per_position_loss(model, tokens, 8, 40, seed=3), per_window.mean(0), rtol=1e-12)


def test_gamma_interval_is_a_sampling_interval_over_windows():
    """>= 200 resamples of the windows; the width shrinks as 1/sqrt(windows) (16x the
    windows: ~1/4 the width) and the interval brackets the planted gamma."""
    widths = {}
    for n_windows in (64, 1024):
        result = entropy_decay(synthetic_windows(n_windows), bootstrap=200, seed=1, bins=16)
        assert result.n_bootstrap >= 200 and result.ci_method == "window bootstrap"
        assert result.n_windows == n_windows and len(result.samples) == 200
        assert result.ci[0] < 0.3 < result.ci[1]
        widths[n_windows] = result.ci[1] - result.ci[0]
    assert 2.5 < widths[64] / widths[1024] < 6.5


def test_gamma_interval_does_not_count_curvature_as_sampling_error():
    """Every window identical (no sampling error) and a curve that is no power law (a
    floor): the offset-free fit misses it, yet every resample is the same curve, so its
    interval has zero width. The old interval resampled the fitted bins and called the
    misfit a 95% interval."""
    n = np.arange(1, 128, dtype=float)
    curve = 2.0 * n**-0.5 + 1.5
    result = entropy_decay(np.tile(curve, (32, 1)), bootstrap=200, seed=0, bins=16)
    assert result.r2_offset_free < 0.99  # a visible misfit
    assert result.ci_offset_free[0] == pytest.approx(result.ci_offset_free[1], abs=1e-12)
    assert result.ci_offset_free[0] == pytest.approx(result.gamma_offset_free, abs=1e-12)


def test_gamma_bootstrap_needs_windows():
    with pytest.raises(ExpspecError, match="resamples evaluation windows"):
        entropy_decay(3.0 * np.arange(1, 64, dtype=float) ** -0.4, bootstrap=200)
    with pytest.raises(ExpspecError, match="resamples evaluation windows"):
        entropy_decay({1: 4.0, 2: 3.0, 4: 2.5}, bootstrap=200)
