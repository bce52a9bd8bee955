"""Hero readiness: the action plan's checklist, one test per item, before the hero budget.

The fixture (fixtures/hero.py) climbs the plan's ladder once per config: Stage A (latent
prefix), then Stage B rungs from its checkpoint until one passes. The tests read the final
rung: each item is recomputed here from the stored diagnostics and eval files against the
thresholds of the config, not read from the ladder's own verdict. Bars: the plan's (peak
first_acc >= 12%, final >= 80% of it, F1 > 0 somewhere, mean F1 >= the scale's bar, grad
norm < 500, < 10% repetitions) plus ours: the latent beats the answer priors.
"""

import json

import pytest

from expspec.fixtures.scale import SCALES
from expspec.kernels.hero.checklist import hero_projection
from expspec.kernels.hero.diagnostics import read_diagnostics
from expspec.kernels.hero.qa_data import load_questions
from expspec.kernels.hero.squad import is_repetition, prior_baselines, squad_f1

pytestmark = [pytest.mark.parametrize("scale", SCALES, scope="session"), pytest.mark.xdist_group("hero")]


def _eval_rows(run, prefix_used="latent"):
    rows = [json.loads(line) for line in (run.folder / "eval_detailed.jsonl").read_text().splitlines() if line]
    return [r for r in rows if r["prefix_used"] == prefix_used]


def _eval_series(run):
    """The run's eval records, Stage A then Stage B (steps run on across stages); the log is
    read with the strict reader first, so a malformed line fails here, naming it."""
    read_diagnostics(run.folder / "diagnostics.jsonl")
    return [p for stage in ("A", "B") for p in _points(run) if p["stage"] == stage and p["mode"] == "eval"]


def _points(run):
    return [json.loads(line) for line in (run.folder / "diagnostics.jsonl").read_text().splitlines() if line]


def _record_common(run, criterion):
    criterion.record("rung", f"{run.final['name']} {run.final['delta'] or ''}".strip())
    criterion.artifact(run.folder / "diagnostics.jsonl")


def test_first_token_learning(scale, hero_ladder, hero_config, criterion):
    points = _eval_series(hero_ladder)
    peak = max(points, key=lambda p: float(p["first_acc"]))
    _record_common(hero_ladder, criterion)
    criterion.plot(hero_ladder.plots["first_acc"])
    criterion.record("peak step", peak["global_step"])
    criterion.check(float(peak["first_acc"]), ">=", hero_config["min_peak_first_acc"], "peak eval first_acc",
                    tolerance=0.02)


def test_first_token_stability(scale, hero_ladder, hero_config, criterion):
    points = _eval_series(hero_ladder)
    peak = max(float(p["first_acc"]) for p in points)
    final = float(points[-1]["first_acc"])
    criterion.record("final / peak first_acc", f"{final:.3f} / {peak:.3f}")
    criterion.check(final / peak if peak > 0 else 0.0, ">=", hero_config["min_final_over_peak"],
                    "final eval first_acc over its peak", tolerance=0.05)


def test_f1_breakthrough(scale, hero_ladder, hero_config, criterion):
    rows = _eval_rows(hero_ladder)
    nonzero = [r for r in rows if squad_f1(r["prediction"], r["gold"]) > 0]
    criterion.artifact(hero_ladder.folder / "eval_detailed.jsonl")
    if nonzero:
        criterion.record("first F1 > 0", f"{nonzero[0]['question']} -> {nonzero[0]['prediction']!r}")
    criterion.check(len(nonzero), ">=", hero_config["min_f1_nonzero_examples"], "eval examples with F1 > 0",
                    tolerance=2)


def test_generation_quality(scale, hero_ladder, hero_config, criterion):
    rows = _eval_rows(hero_ladder)
    mean_f1 = sum(squad_f1(r["prediction"], r["gold"]) for r in rows) / len(rows)
    text = _eval_rows(hero_ladder, "text")
    if text:
        criterion.record("text-prompt baseline mean F1 (no prefix, no LoRA)",
                         f"{sum(r['f1'] for r in text) / len(text):.3f}")
    criterion.record("decision", hero_ladder.final["decision"]["text"])
    criterion.record("hero projection", hero_projection(mean_f1))
    criterion.artifact(hero_ladder.folder / "eval.json")
    criterion.check(mean_f1, ">=", hero_config["min_mean_f1"], f"mean F1 over {len(rows)} eval questions",
                    tolerance=0.02)


def test_gradient_health(scale, hero_ladder, hero_config, criterion):
    norms = [float(p["grad_norm"]) for p in _points(hero_ladder)]
    worst = max(norms, key=lambda n: float("inf") if n != n else n)
    criterion.plot(hero_ladder.plots["losses"])
    criterion.check(float("inf") if worst != worst else worst, "<", hero_config["max_grad_norm"],
                    "max pre-clip grad norm", tolerance="25%")


def test_no_mode_collapse(scale, hero_ladder, hero_config, criterion):
    rows = _eval_rows(hero_ladder)
    rate = sum(is_repetition(r["prediction"]) for r in rows) / len(rows)
    criterion.check(rate, "<", hero_config["max_repetition_rate"], "share of 'thethethe' answers", tolerance=0.02)


def test_latent_beats_prior(scale, hero_ladder, hero_config, criterion):
    # the priors recomputed from the questions themselves (cheap), not read from the ladder
    train, evals = load_questions(hero_config["qa_dataset"],
                                  max(hero_config["stage_a_samples"], hero_config["stage_b_samples"]),
                                  hero_config["eval_samples"], hero_config["qa_seed"],
                                  hero_config["qa_multi_token_share"], hero_config["qa_max_facts"])
    priors = prior_baselines(train, evals)
    rows = _eval_rows(hero_ladder)
    assert [r["id"] for r in rows] == [q.id for q in evals], "eval rows are not this config's eval set"
    stored = hero_ladder.final["eval"]["priors"]  # first-token accuracy needs the decoder's tokenizer
    for key in ("overall", "per_type"):
        assert priors[key]["f1"] == pytest.approx(stored[key]["f1"]), f"{key} prior differs from the ladder's"
        priors[key]["first_acc"] = stored[key]["first_acc"]
    f1 = sum(squad_f1(r["prediction"], r["gold"]) for r in rows) / len(rows)
    first = sum(r["first_token_correct"] for r in rows) / len(rows)
    best_f1 = max(priors["overall"]["f1"], priors["per_type"]["f1"])
    best_first = max(priors["overall"]["first_acc"], priors["per_type"]["first_acc"])
    margin = hero_config["min_prior_margin"]
    criterion.record("priors (mean F1 | first-token acc)",
                     f"overall {priors['overall']['f1']:.3f} | {priors['overall']['first_acc']:.3f}; "
                     f"per type {priors['per_type']['f1']:.3f} | {priors['per_type']['first_acc']:.3f}")
    criterion.expect(f"latent F1 {f1:.3f}, first-token acc {first:.3f}",
                     f"both > the best prior + {margin} (F1 {best_f1:.3f}, first {best_first:.3f})",
                     f1 - best_f1 > margin and first - best_first > margin,
                     f"latent F1 {f1:.3f} vs prior {best_f1:.3f}, first-token {first:.3f} vs prior {best_first:.3f}: "
                     f"the prefix must beat a model that never reads it by > {margin}")


def test_ladder_follows_the_plan(scale, hero_ladder, criterion):
    """Every rung after a failing one is the rung the plan's decision tree names, and the
    ladder stops at the first rung whose checklist passes."""
    from expspec.kernels.hero.ladder import next_rung

    rungs = hero_ladder.ladder["rungs"]
    for r in rungs:
        failed = ", ".join(r["decision"]["failed"]) or "none"
        criterion.record(f"rung {r['index']} {r['name']}",
                         f"mean F1 {r['mean_f1']:.3f}, peak first_acc {r['peak_first_acc']:.3f}, failed: {failed}, "
                         f"{r['wall_s']:.0f} s -> {r['decision']['diagnosis']}")
    criterion.artifact(hero_ladder.folder.parent / "ladder.json")
    # each rung's diagnosis recomputed from its own files (diagnostics + eval.json) and config
    from pathlib import Path

    from expspec.kernels.atomic_io import read_json
    from expspec.kernels.hero.checklist import checklist, decision, run_series

    for r in rungs:
        folder = Path(r["folder"])
        cfg = read_json(folder / "result.json")["config"]
        series = run_series(read_diagnostics(folder / "diagnostics.jsonl")[0])
        evaluation = read_json(folder / "eval.json")
        again = decision(checklist(series, evaluation, cfg), series, evaluation, cfg)
        assert again["diagnosis"] == r["decision"]["diagnosis"], f"rung {r['name']}: files say {again['diagnosis']}"
    expected = [next_rung(rungs[:i]) for i in range(len(rungs))]
    ok = [r["name"] for r in rungs] == expected and next_rung(rungs) is None
    ok = ok and all(not r["decision"]["ready"] for r in rungs[:-1])
    criterion.expect(" -> ".join(r["name"] for r in rungs), "the plan's decision tree, stopped at the first pass",
                     ok, f"ladder rungs {[r['name'] for r in rungs]} vs the decision tree's {expected}")
    criterion.expect(hero_ladder.final["decision"]["text"], "a rung whose checklist passes",
                     hero_ladder.ladder["ready"], f"no rung passed: {hero_ladder.final['decision']['text']}")
