"""Best-of-N emergence acceptance criteria: does sampling more make a small model jump, can
the jump be predicted, and does a best-of-N-distilled adapter move it?

Each test is a row of the seed's checklist. The fixtures (fixtures/bon.py) run the real
steps once per config through the run cache (collect, distill + LoRA SFT, collect with the
adapter, analyze + predict); the tests only read their files and assert.
"""

import math
import random

import pytest

from expspec.fixtures.bon import base_and_adapter_runs
from expspec.fixtures.scale import SCALES
from expspec.kernels.atomic_io import read_json
from expspec.kernels.bon.collector import adapter_fingerprint, read_run
from expspec.kernels.bon.config import REVIEW_INTERVAL
from expspec.kernels.bon.predict import FEATURES, emergence_label, feature_table, gate_fingerprint, prompt_features
from expspec.kernels.bon.scoring import pass_at_k
from expspec.kernels.bon.sft import STEP_LOG
from expspec.kernels.review import reviewed_gate

pytestmark = [pytest.mark.parametrize("scale", SCALES, scope="session"), pytest.mark.xdist_group("bon")]


def _exact_pass_at_k(n: int, c: int, k: int) -> float:
    """The binomial ratio itself, written out independently of the kernel."""
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def _fmt(curve: dict) -> str:
    return ", ".join(f"pass@{k}={float(curve[k]):.3f}" for k in sorted(curve, key=int))


def _mean_pass_at_k(records, k: int) -> float:
    """Mean unbiased pass@k over prompt records, c counted from the samples' scores."""
    return sum(pass_at_k(r["n"], sum(s["score"] > 0 for s in r["samples"]), k) for r in records) / len(records)


def test_pass_at_k_consistent(scale, bon_base_run, bon_adapter_run, criterion):
    """pass@1 is the mean fraction correct; pass@k never falls as k grows; every stored value
    is the exact binomial ratio of its (n, c)."""
    problems, checked = [], 0
    for run in base_and_adapter_runs(bon_base_run, bon_adapter_run):
        criterion.record(f"{run.label} mean", _fmt(run.summary["mean_pass_at_k"]))
        for r in run.prompts:
            values = [(int(k), v) for k, v in r["pass_at_k"].items()]
            correct = sum(s["score"] for s in r["samples"])
            if not math.isclose(r["pass_at_k"]["1"], correct / r["n"], abs_tol=1e-12) or correct != r["c"]:
                problems.append(f"{run.label}/{r['id']}: pass@1 {r['pass_at_k']['1']} vs {correct}/{r['n']}")
            if any(b[1] < a[1] - 1e-12 for a, b in zip(values, values[1:])):
                problems.append(f"{run.label}/{r['id']}: pass@k decreases: {values}")
            if any(not math.isclose(v, _exact_pass_at_k(r["n"], r["c"], k), abs_tol=1e-9) for k, v in values):
                problems.append(f"{run.label}/{r['id']}: pass@k != 1 - C(n-c,k)/C(n,k)")
            checked += 1
        mean_c = sum(r["c"] / r["n"] for r in run.prompts) / len(run.prompts)
        if not math.isclose(run.summary["mean_pass_at_k"]["1"], mean_c, abs_tol=1e-12):
            problems.append(f"{run.label}: mean pass@1 {run.summary['mean_pass_at_k']['1']} != mean c/n {mean_c}")
    criterion.artifact(bon_base_run.path)
    criterion.artifact(bon_adapter_run.path)
    criterion.expect(f"{checked} prompt records, {len(problems)} inconsistent",
                     "pass@1 = c/n, non-decreasing in k, = 1 - C(n-c,k)/C(n,k)", not problems, "; ".join(problems[:5]))


def test_bon_gain(scale, bon_base_run, bon_analysis, bon_config, criterion):
    """The phenomenon exists at this scale: best-of-k_max solves more than one sample does
    (recomputed from the base run's samples with the unbiased estimator)."""
    base = read_run(bon_base_run.path)
    k_max = bon_config["k_values"][-1]
    curve = {k: _mean_pass_at_k(base.prompts, k) for k in bon_config["k_values"]}
    solved = sum(any(s["score"] > 0 for s in r["samples"]) for r in base.prompts)
    criterion.plot(bon_analysis.plots / "pass_at_k.png")
    criterion.artifact(bon_base_run.path)
    criterion.record("base pass@k", _fmt(curve))
    criterion.record("prompts solved by some sample", f"{solved} of {len(base.prompts)}")
    criterion.check(curve[k_max] - curve[1], ">", 0.0, f"pass@{k_max} - pass@1 of the base model", tolerance=0.05,
                    tolerances={"base pass_at_k/*": ("higher", 0.05)})


def test_coverage_law_predicts(scale, bon_base_run, bon_analysis, bon_config, criterion):
    """-log pass@k = A k^-b fitted on k <= coverage_fit_max_k predicts pass@k at the larger k:
    the held-out k are checked against the base run's samples, the predictions recomputed
    from the stored A and b."""
    laws = read_json(bon_analysis.path / "predict.json")["coverage_law"]
    criterion.plot(bon_analysis.plots / "coverage.png")
    for label, law in laws.items():
        criterion.record(f"{label} coverage law", f"A={law['A']:.3f}, b={law['b']:.3f}, "
                                                  f"R2={law['fit_r2']:.3f} (fitted on k <= {max(law['fit_ks'])})")
        criterion.record(f"{label}: predicted vs measured",
                         {k: (round(law["predicted"][k], 3), round(law["measured"][k], 3)) for k in law["measured"]})
    law, fit_max_k = laws["base"], bon_config["coverage_fit_max_k"]
    assert max(law["fit_ks"]) == fit_max_k and law["eval_ks"] and min(law["eval_ks"]) > fit_max_k, (
        f"fitted on k in {law['fit_ks']}, checked on {law['eval_ks']}: the checked k must lie beyond {fit_max_k}")
    records = read_run(bon_base_run.path).prompts
    errors = {}
    for k in law["eval_ks"]:
        measured = _mean_pass_at_k(records, k)
        predicted = math.exp(-law["A"] * k ** -law["b"])
        assert math.isclose(measured, law["measured"][str(k)], abs_tol=1e-9), f"stored measured pass@{k} != run file"
        assert math.isclose(predicted, law["predicted"][str(k)], abs_tol=1e-9), f"stored predicted pass@{k} != A, b"
        errors[k] = abs(predicted - measured) / measured
    criterion.check(max(errors.values()), "<=", bon_config["coverage_max_rel_error"],
                    f"base: max relative error of pass@k at the held-out k {sorted(errors)}", tolerance=0.05)


def test_predictor_no_leakage(scale, bon_base_run, bon_adapter_run, bon_config, criterion):
    """The features are computed from the first m samples and nothing else: through the same
    code path the predictor used (feature_table, per run), runs whose samples beyond m, gold
    answers, scores, c and pass@k are all replaced by garbage give the identical feature
    matrix, while a change inside the first m samples changes it."""
    m, tau, k_max = bon_config["predictor_m"], bon_config["emergence_tau"], bon_config["k_values"][-1]
    runs = list(base_and_adapter_runs(bon_base_run, bon_adapter_run))
    real = [feature_table(run.prompts, m=m, tau=tau, k_max=k_max) for run in runs]
    rng = random.Random(0)

    def garbage_sample():
        return {"text": str(rng.random()), "answer": str(rng.randint(0, 99)), "score": float(rng.random() < 0.5),
                "logprob": -rng.random() * 50, "tokens": rng.randint(1, 30), "first_token_entropy": rng.random() * 9,
                "mean_token_entropy": rng.random() * 9, "finished": True, "latency_s": 1.0, "sampling_logprob": -1.0}

    for run in runs:
        for r in run.prompts:
            r["samples"] = [dict(s, score=1.0 - s["score"]) for s in r["samples"][:m]] + [
                garbage_sample() for _ in r["samples"][m:]]
            r["c"] = rng.randint(0, r["n"])  # feature_table computes the label from these: it may change
            r["answer"], r["pass_at_k"], r["diversity"] = "garbage", {}, {}
    tampered = [feature_table(run.prompts, m=m, tau=tau, k_max=k_max) for run in runs]
    same = all((a["X"] == b["X"]).all() and a["features"] == b["features"] for a, b in zip(real, tampered))
    probe = runs[0].prompts[0]
    before = prompt_features(probe, m)
    probe["samples"][m - 1]["logprob"] -= 10.0
    inside_m_matters = prompt_features(probe, m) != before
    criterion.record("features", ", ".join(real[0]["features"]))
    criterion.expect(f"identical features after replacing samples {m + 1}..n, gold, scores, c, pass@k: {bool(same)}; "
                     f"a change in sample {m} changes them: {inside_m_matters}",
                     f"features from the first m={m} samples only", bool(same) and inside_m_matters
                     and all(tuple(t["features"][:len(FEATURES)]) == FEATURES for t in real),
                     "feature_table read something beyond the first m samples' label-free fields")


def test_predictor_beats_majority(scale, bon_base_run, bon_analysis, bon_config, criterion):
    """Held-out AUC of the per-prompt emergence predictor, fitted and scored on the base run's
    own prompts (nested grouped CV: C chosen inside each training fold); the adapter run's
    predictor is reported beside it, and the report says so when held-out accuracy does not
    beat the majority class."""
    from sklearn.metrics import roc_auc_score

    em = read_json(bon_analysis.path / "predict.json")["emergence"]
    criterion.artifact(bon_analysis.path / "predict.json")
    base = em["runs"][em["gate_run"]]
    records = read_run(bon_base_run.path).prompts
    labels = [emergence_label(r, bon_config["emergence_tau"], bon_config["k_values"][-1]) for r in records]
    assert em["gate_run"] == "base" and base["groups"] == [r["id"] for r in records] and base["labels"] == labels, (
        "the gate's rows are not the base run's prompts with their labels")
    assert len(set(labels)) == 2, (f"every base-run prompt has label {labels[0]} ({base['label_rule']}): "
                                   f"no AUC to gate on")
    auc = float(roc_auc_score(labels, base["oof_probability"]))
    assert math.isclose(auc, base["auc"], abs_tol=1e-12)
    criterion.record("label", f"{base['label_rule']}: {base['positives']} of {base['rows']} base-run prompts")
    criterion.record("nested CV", f"{base['folds']} outer folds (grouped by prompt, seed {em['seed']}), C from "
                                  f"{base['c_grid']} chosen per fold: {[f['c'] for f in base['per_fold']]}")
    fold_text = "n/a" if base["mean_fold_auc"] is None else f"{base['mean_fold_auc']:.3f} +- {base['fold_auc_sd']:.3f}"
    criterion.record("base: pooled OOF AUC / mean per-fold AUC",
                     f"{auc:.3f} / {fold_text} ({base['one_class_test_folds']} one-class held-out folds)")
    unseen = base["unseen_label"]
    criterion.record("base: AUC vs the label from the unseen samples only",
                     "n/a (one class)" if unseen["auc"] is None else f"{unseen['auc']:.3f} ({unseen['rule']})")
    criterion.record("base: held-out accuracy vs majority", f"{base['accuracy']:.3f} vs {base['majority_accuracy']:.3f}")
    for name, run in em["runs"].items():
        if name != em["gate_run"]:
            criterion.record(f"{name} run (reported, not gated)", run.get("skipped") or
                             f"pooled OOF AUC {run['auc']:.3f}, accuracy {run['accuracy']:.3f} vs majority "
                             f"{run['majority_accuracy']:.3f}, {run['positives']} of {run['rows']} positive")
    if base["accuracy"] <= base["majority_accuracy"]:
        criterion.review(f"held-out accuracy {base['accuracy']:.3f} does not beat the majority baseline "
                         f"{base['majority_accuracy']:.3f}: at p >= 0.5 the predictor is no better than always "
                         f"answering the majority class (the gate is its ranking, the AUC)")
    bar = bon_config["predictor_min_auc"]
    fingerprint = gate_fingerprint(read_run(bon_base_run.path), m=bon_config["predictor_m"],
                                   tau=bon_config["emergence_tau"], folds=bon_config["predictor_folds"],
                                   c_grid=bon_config["predictor_c_grid"])
    criterion.record("gate inputs fingerprint", fingerprint)
    gate = reviewed_gate("AUC", auc, auc >= bar, f"base run: pooled out-of-fold AUC={auc:.4f} below {bar} "
                         f"(a constant score has 0.5): flag for manual review", bon_config["predictor_review"],
                         fingerprint, "bon.predictor_review", REVIEW_INTERVAL)
    if gate["review"]:
        criterion.review(gate["review"])
    criterion.expect(f"AUC={auc:.4f}", f">= {bar} or an accepted review", gate["passed"], gate["message"],
                     tolerances={"AUC": ("higher", 0.05)})


def test_distilled_adapter_measured(scale, bon_adapter, bon_base_run, bon_adapter_run, bon_analysis, bon_config,
                                    criterion):
    """The SFT loss fell by the stated margin, the saved adapter is what the second run loaded
    and it changes the samples drawn with the same seeds; base vs adapter pass@k are both
    reported, and the report says so when the adapter does not raise pass@1."""
    training = bon_adapter.result
    adapter_dir = bon_adapter.path / training["adapter_dir"]
    base, adapted = base_and_adapter_runs(bon_base_run, bon_adapter_run)
    files_ok = (adapter_dir / "adapter_config.json").is_file() and any(adapter_dir.glob("adapter_model.*"))
    same_seed = base.header["seed"] == adapted.header["seed"]
    same_prompts = [r["id"] for r in base.prompts] == [r["id"] for r in adapted.prompts]
    loaded = (adapted.header["adapter"] or {}).get("fingerprint") == adapter_fingerprint(adapter_dir)
    pairs = [(a["text"], b["text"]) for ra, rb in zip(base.prompts, adapted.prompts)
             for a, b in zip(ra["samples"], rb["samples"])]
    changed = sum(a != b for a, b in pairs) / len(pairs)
    summary = read_json(bon_analysis.path / "summary.json")
    for subset in ("all", "trained", "held_out"):
        for s in summary[subset]["runs"]:
            if s.get("prompts"):
                criterion.record(f"{subset} prompts: {s['label']}",
                                 f"{_fmt(s['mean_pass_at_k'])} ({s['prompts']} prompts)")
    not_raised = []
    for subset in ("all", "trained", "held_out"):
        runs = summary[subset]["runs"]
        if not runs[0].get("prompts"):
            continue
        b1, a1 = runs[0]["mean_pass_at_k"]["1"], runs[1]["mean_pass_at_k"]["1"]
        criterion.record(f"pass@1 change, {subset} prompts", f"{b1:.3f} -> {a1:.3f} ({a1 - b1:+.3f})")
        if a1 <= b1:
            not_raised.append(f"{subset.replace('_', '-')} prompts ({b1:.3f} -> {a1:.3f})")
    if not_raised:
        criterion.review("the adapter did not raise pass@1 on " + ", ".join(not_raised))
    criterion.artifact(adapter_dir / "training.json")
    criterion.artifact(adapter_dir / STEP_LOG)  # per-step SFT loss: the run's train/loss curve
    criterion.plot(bon_analysis.plots / "pass_at_k.png")
    margin = bon_config["sft_min_loss_drop"]
    drop = training["loss_drop"]
    criterion.expect(f"SFT loss {training['initial_loss']:.3f} -> {training['final_loss']:.3f} ({drop:.1%} lower) on "
                     f"{training['pairs']} pairs; adapter files {files_ok}, loaded by the adapter run {loaded}; "
                     f"same seed {same_seed} and prompts {same_prompts} as the base run; {changed:.1%} of samples "
                     f"changed",
                     f"loss >= {margin:.0%} lower, the adapter saved and loaded, the base run's seed and prompts, "
                     f"some samples changed",
                     drop >= margin and files_ok and loaded and same_seed and same_prompts and changed > 0,
                     f"loss drop {drop:.3f} (need {margin}), files {files_ok}, loaded {loaded}, seed {same_seed}, "
                     f"prompts {same_prompts}, changed {changed:.3f}")
