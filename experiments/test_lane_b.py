"""Lane B acceptance criteria: is the corpus-inferred token budget trustworthy?

Each test is a row of the Lane B worksheet's checklist. The fixtures (fixtures/lane_b.py)
run the real steps once per config through the run cache; the tests only read results.
"""

import math

import pytest

from fixtures.scale import SCALES
from kernels.lane_b_stats import alpha_gate

pytestmark = [pytest.mark.parametrize("scale", SCALES, scope="session"), pytest.mark.xdist_group("lane_b")]

MIN_USABLE_LAGS = 5  # the worksheet: a correlation fit needs at least 5 lags above the noise floor
MIN_FIT_R2 = 0.9


def _ci(value) -> str:
    return f"[{float(value[0]):.3f}, {float(value[1]):.3f}]" if value else "n/a"


def test_alpha_plausibility(scale, lane_b_stats, lane_b_config, criterion):
    stats = lane_b_stats.result
    alpha, beta, gamma = (float(stats[k]) for k in ("alpha", "beta", "gamma"))
    for key in ("alpha", "beta", "gamma"):
        criterion.record(key, f"{float(stats[key]):.4f} {_ci(stats[key + '_ci'])}")
    criterion.record("gamma (offset-free | offset)",
                     f"{float(stats['gamma_offset_free']):.4f} | {float(stats['gamma_offset']):.4f}")
    criterion.record("tokenizer", stats["tokenizer_id"])
    criterion.artifact(lane_b_stats.path / "stats.json")
    lo, hi = lane_b_config["alpha_min"], lane_b_config["alpha_max"]
    gate = alpha_gate(alpha, stats["alpha_ci"], lo, hi, lane_b_config["alpha_review"])
    if gate["review"]:
        criterion.review(gate["review"])
    criterion.expect(f"alpha={alpha:.4f} {_ci(stats['alpha_ci'])} (beta={beta:.3f}, gamma={gamma:.3f})",
                     f"in [{lo}, {hi}] or an accepted review", gate["passed"], gate["message"])


def test_correlation_fit_quality(scale, lane_b_stats, criterion):
    corr = lane_b_stats.result["correlation"]
    criterion.plot(lane_b_stats.path / "correlation_fit.png")
    criterion.record("usable lags", f"{corr['n_usable']} (window {corr['window']})")
    criterion.record("beta (op | frob)", f"{float(corr['beta']):.4f} | {float(corr['beta_frob']):.4f}")
    r2, n = float(corr["r2"]), corr["n_usable"]
    criterion.expect(f"R2={r2:.4f} on {n} lags", f"R2 >= {MIN_FIT_R2} on >= {MIN_USABLE_LAGS} lags",
                     n >= MIN_USABLE_LAGS and r2 >= MIN_FIT_R2,
                     f"correlation fit: R2={r2:.4f} on {n} usable lags (floor x{corr['floor_factor']}), "
                     f"required R2 >= {MIN_FIT_R2} on >= {MIN_USABLE_LAGS} lags")


def test_entropy_fit_quality(scale, lane_b_stats, criterion):
    fit = lane_b_stats.result["entropy"]["fit"]
    criterion.plot(lane_b_stats.path / "entropy_fit.png")
    criterion.record("source", f"{lane_b_stats.result['entropy']['source']}: {lane_b_stats.result['entropy']['model']}")
    criterion.record("fitted context lengths", f"{fit['n_points']} (window {fit['window']})")
    r2 = float(fit["r2_offset"] if fit["form"] == "offset" else fit["r2_offset_free"])
    gamma, n = float(fit["gamma"]), fit["n_points"]
    ok = math.isfinite(gamma) and gamma > 0 and n >= MIN_USABLE_LAGS and r2 >= MIN_FIT_R2
    criterion.expect(f"gamma={gamma:.4f}, R2={r2:.4f} on {n} points",
                     f"gamma > 0, R2 >= {MIN_FIT_R2} on >= {MIN_USABLE_LAGS} points", ok,
                     f"entropy fit ({fit['form']}): gamma={gamma:.4f}, R2={r2:.4f} on {n} context lengths, "
                     f"required gamma > 0 and R2 >= {MIN_FIT_R2} on >= {MIN_USABLE_LAGS}")
