"""Hero's losses, the latent prefix and the checklist's decision, on small tensors."""

import math

import pytest
import torch
from hypothesis import given, settings, strategies as st

from expspec.kernels.config import resolve_scale
from expspec.kernels.hero.checklist import EXPOSURE_BIAS, READY, TUNE, checklist, decision, hero_projection
from expspec.kernels.hero.latent import LatentPrefix, embedding_stats
from expspec.kernels.hero.losses import IGNORE, first_token_accuracy, first_token_ce, k_token_ce, kd_loss


def _logits(seed, b=3, k=4, v=11):
    return torch.randn(b, k, v, generator=torch.Generator().manual_seed(seed)) * 3


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), tau=st.floats(0.5, 8.0))
def test_kd_is_zero_when_student_is_teacher_and_positive_otherwise(seed, tau):
    logits = _logits(seed)
    targets = torch.zeros(3, 4, dtype=torch.long)
    assert float(kd_loss(logits, logits.clone(), targets, tau)) == pytest.approx(0.0, abs=1e-5)
    other = _logits(seed + 1)
    assert float(kd_loss(logits, other, targets, tau)) > 0.0


def test_kd_is_tau_squared_kl_over_valid_positions_and_trains_the_student_only():
    student, teacher = _logits(1).requires_grad_(), _logits(2).requires_grad_()
    targets = torch.tensor([[1, 2, IGNORE, IGNORE]] * 3)
    tau = 2.0
    loss = kd_loss(student, teacher, targets, tau)
    p = torch.softmax(teacher / tau, -1)
    kl = (p * (torch.log_softmax(teacher / tau, -1) - torch.log_softmax(student / tau, -1))).sum(-1)[:, :2]
    assert float(loss) == pytest.approx(float(tau ** 2 * kl.mean()), rel=1e-5)
    loss.backward()
    assert student.grad is not None and teacher.grad is None


def test_first_and_k_token_ce_and_accuracy():
    logits = _logits(3)
    targets = torch.tensor([[1, 2, 3, IGNORE], [4, 5, IGNORE, IGNORE], [6, 7, 8, 9]])
    assert float(first_token_ce(logits, targets)) == pytest.approx(
        float(torch.nn.functional.cross_entropy(logits[:, 0], targets[:, 0])))
    valid = targets != IGNORE
    manual = torch.nn.functional.cross_entropy(logits[valid], targets[valid])
    assert float(k_token_ce(logits, targets)) == pytest.approx(float(manual), rel=1e-6)
    perfect = torch.full_like(logits, -10.0)
    perfect[torch.arange(3), 0, targets[:, 0]] = 10.0
    assert first_token_accuracy(perfect, targets) == 1.0
    assert first_token_accuracy(-perfect, targets, top=1) == 0.0


def test_latent_prefix_reads_only_real_tokens_and_has_the_embedding_statistics():
    torch.manual_seed(0)
    table = torch.randn(500, 12) * torch.linspace(0.1, 5.0, 12) + torch.linspace(-2, 2, 12)
    mean, std = embedding_stats(table)
    latent = LatentPrefix(d_enc=8, d_dec=12, latent_len=4, d_z=16, emb_mean=mean, emb_std=std)
    states = torch.randn(2, 6, 8)
    mask = torch.tensor([[True] * 6, [True] * 3 + [False] * 3])
    out = latent(states, mask)
    assert out.shape == (2, 4, 12)
    changed = states.clone()
    changed[1, 3:] += 100.0  # padding positions: never read
    assert torch.allclose(latent(changed, mask)[1], out[1], atol=1e-5)
    assert not torch.allclose(latent(changed, torch.ones_like(mask))[1], out[1], atol=1e-3)
    # per-dimension scaling: the prefix sits around each dimension's mean, in its own units
    z = (out - mean) / std
    assert z.abs().max() < 5.0


def _series(peak, final, norm=50.0):
    return {"peak_first_acc": peak, "final_over_peak": final / peak if peak else None, "max_grad_norm": norm}


def _evaluation(mean_f1, n_nonzero, first_acc=0.3, repetition=0.0, prior_f1=0.1, prior_first=0.1):
    return {"latent": {"mean_f1": mean_f1, "n_f1_nonzero": n_nonzero,
                       "error_modes": {"repetition": {"rate": repetition}}},
            "first_token": {"first_acc": first_acc},
            "priors": {"overall": {"f1": prior_f1 / 2, "first_acc": prior_first / 2},
                       "per_type": {"f1": prior_f1, "first_acc": prior_first}}}


def test_checklist_and_the_plans_decision_tree():
    cfg = resolve_scale("smoke")["hero"]
    ok = _evaluation(0.4, 80)
    checks = checklist(_series(0.5, 0.45), ok, cfg)
    assert all(c["passed"] for c in checks.values())
    assert decision(checks, _series(0.5, 0.45), ok, cfg)["text"] == READY
    no_f1 = _evaluation(0.0, 0)
    checks = checklist(_series(0.3, 0.3), no_f1, cfg)  # first token learned, nothing scores
    assert decision(checks, _series(0.3, 0.3), no_f1, cfg)["text"] == EXPOSURE_BIAS
    checks = checklist(_series(0.05, 0.05), no_f1, cfg)
    assert decision(checks, _series(0.05, 0.05), no_f1, cfg)["text"] == TUNE
    # each bar on its own
    assert not checklist(_series(0.5, 0.3), ok, cfg)["first_token_stability"]["passed"]
    assert not checklist(_series(0.5, 0.45, norm=math.inf), ok, cfg)["gradient_health"]["passed"]
    assert not checklist(_series(0.5, 0.45), _evaluation(0.4, 80, repetition=0.2), cfg)["no_mode_collapse"]["passed"]
    prior_wins = _evaluation(0.4, 80, prior_f1=0.5)
    assert not checklist(_series(0.5, 0.45), prior_wins, cfg)["latent_beats_prior"]["passed"]


@pytest.mark.parametrize("f1, words", [(0.005, "no projection"), (0.03, "0.10-0.20"), (0.07, "0.20-0.40"),
                                       (0.5, "0.40+")])
def test_hero_projection_ranges(f1, words):
    assert words in hero_projection(f1)
