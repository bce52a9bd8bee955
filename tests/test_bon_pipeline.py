"""Best-of-N's steps on run files: distill picks the right sample, analyze averages the right
numbers, the predictor's features see only the first m samples, the coverage law
extrapolates on a population where it holds, and every CLI step turns bad input into one
line (exit 2) without writing anything."""

import hashlib
import json
import random
from pathlib import Path

import numpy as np
import pytest

from expspec.kernels.bon.analyze import compare_runs
from expspec.kernels.bon.collector import Run, prompt_record, read_run
from expspec.kernels.bon.distill import distill_pairs
from expspec.kernels.bon.predict import (BUDGET_FIELDS, Unfittable, coverage_law, feature_budget, feature_table,
                                         fit_emergence_predictor, prompt_features, write_predictions)
from expspec.kernels.cli import main
from expspec.kernels.errors import ExpspecError


def _sample(rng, correct: bool, answer: str, logprob: float | None = None) -> dict:
    return {"text": f"it is {answer}", "answer": answer, "score": float(correct),
            "logprob": rng.uniform(-20, -1) if logprob is None else logprob, "sampling_logprob": -5.0,
            "tokens": rng.randint(2, 12), "token_ids": [1, 2], "finished": rng.random() < 0.5, "latency_s": 0.01,
            "first_token_entropy": 1.0, "mean_token_entropy": rng.uniform(0.5, 3)}


def write_run(path: Path, rates: list[float], n: int = 8, seed: int = 0, label: str | None = None) -> Path:
    """A run file whose prompt i has about rates[i] * n correct samples (confident when easy)."""
    rng = random.Random(seed)
    records = []
    for i, rate in enumerate(rates):
        c = round(rate * n)
        samples = [_sample(rng, j < c, str(i) if j < c else str(rng.randint(100, 999)),
                          logprob=-2.0 - 10 * (1 - rate) + rng.random()) for j in range(n)]
        rng.shuffle(samples)
        records.append(prompt_record(i, {"id": f"p{i}", "prompt": f"q{i}", "answer": str(i)}, samples, [1, 2, 4, n]))
    header = {"record": "header", "config": {"k_values": [1, 2, 4, n]}, "model": "m", "seed": seed,
              "adapter": {"name": label, "path": "x", "fingerprint": "f"} if label else None}
    summary = {"record": "summary", "batches": [], "seconds": 1.0, "tokens": 1, "tok_per_s": 1.0,
               "mean_pass_at_k": {"1": float(np.mean([r["pass_at_k"]["1"] for r in records]))}}
    path.write_text("".join(json.dumps(r) + "\n" for r in [header, *records, summary]))
    return path


RATES = [0.0, 0.0, 0.125, 0.25, 0.25, 0.375, 0.5, 0.875, 1.0, 0.0, 0.125, 0.625]


@pytest.fixture
def runs(tmp_path):
    return [read_run(write_run(tmp_path / "bon_run_a.jsonl", RATES)),
            read_run(write_run(tmp_path / "bon_run_b.jsonl", [min(1, r + 0.25) for r in RATES], seed=1, label="ad"))]


def test_distill_picks_the_most_likely_correct_sample(runs):
    pairs = distill_pairs(runs[:1], keep_unsolved=False)
    solved = [r for r in runs[0].prompts if r["c"] > 0]
    assert [p["id"] for p in pairs] == [r["id"] for r in solved]
    for pair, record in zip(pairs, solved):
        best = max((s for s in record["samples"] if s["score"] > 0), key=lambda s: s["logprob"])
        assert pair["target"] == best["text"] and pair["source"] == "best_of_n"
    with_gold = distill_pairs(runs[:1], keep_unsolved=True, exclude=["p0"])
    gold = [p for p in with_gold if p["source"] == "gold"]
    assert {p["id"] for p in gold} == {"p1", "p9"} and all(p["target"] == p["id"][1:] for p in gold)
    pooled = distill_pairs(runs, keep_unsolved=False)  # the second run solves p0: pooled runs give it a pair
    assert "p0" in {p["id"] for p in pooled}


def _one_prompt_run(name: str, logprobs: list[float], correct: list[bool]) -> Run:
    samples = [{"text": f"{name}{i}", "score": float(ok), "logprob": lp, "finished": True}
               for i, (lp, ok) in enumerate(zip(logprobs, correct))]
    return Run(Path(f"{name}.jsonl"), {}, [{"id": "p", "prompt": "q", "answer": "1", "samples": samples}], {})


def test_distill_compares_logprobs_within_a_run_only():
    """Logprobs of two models are not on one scale: the first run (in the order given) that
    solved a prompt gives its own most likely correct sample, however likely the other
    model found its own."""
    first = _one_prompt_run("a", [-30.0, -20.0, -5.0], [True, True, False])
    second = _one_prompt_run("b", [-1.0], [True])
    (pair,) = distill_pairs([first, second], keep_unsolved=False)
    assert pair["target"] == "a1" and pair["run"] == "a.jsonl"
    unsolved = _one_prompt_run("c", [-2.0], [False])
    (pair,) = distill_pairs([unsolved, second], keep_unsolved=False)
    assert pair["target"] == "b0"


def test_analyze_means(runs):
    summary = compare_runs(runs)
    base = summary["runs"][0]
    assert base["label"] == "base" and summary["runs"][1]["label"] == "ad"
    assert base["mean_pass_at_k"]["1"] == pytest.approx(np.mean([round(r * 8) / 8 for r in RATES]))
    assert base["pass_at_k_curve"]["8"] == pytest.approx(np.mean([r > 0 for r in RATES]))
    assert summary["pass_at_k_change_vs_first"]["ad"]["1"] > 0
    sub = compare_runs(runs, ids=["p0", "p8"])
    assert sub["runs"][0]["prompts"] == 2 and sub["runs"][0]["mean_pass_at_k"]["1"] == 0.5


def test_features_see_only_the_first_m_samples(runs):
    record = runs[0].prompts[5]
    budget = feature_budget(record, 3)
    assert len(budget) == 3 and all(set(s) == set(BUDGET_FIELDS) for s in budget)
    before = prompt_features(record, 3)
    for s in record["samples"][3:]:
        s.update(logprob=0.0, tokens=999, answer="x", score=1.0)
    record.update(c=8, answer="nothing", pass_at_k={})
    assert prompt_features(record, 3) == before
    with pytest.raises(ExpspecError, match="needs m=9"):
        feature_budget(record, 9)


GRID = [0.01, 0.1, 1.0, 10.0]


def test_predictor_learns_a_separable_signal_and_refuses_one_class(runs):
    table = feature_table(runs[0].prompts, m=4, tau=0.25, k_max=8)
    assert table["X"].shape == (len(RATES), len(table["features"])) and table["groups"] == [f"p{i}" for i in
                                                                                             range(len(RATES))]
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 60)
    X = np.c_[y + 0.1 * rng.standard_normal(60), rng.standard_normal(60)]
    fit = fit_emergence_predictor(X, y, [f"g{i // 2}" for i in range(60)], folds=5, c_grid=GRID, seed=3)
    assert fit["auc"] > 0.95 and fit["mean_fold_auc"] > 0.95 and 0.4 <= fit["majority_accuracy"] <= 0.6
    assert fit["accuracy"] > fit["majority_accuracy"] and fit["one_class_test_folds"] == 0
    assert {f["c"] for f in fit["per_fold"]} <= set(GRID) and fit["c"] in GRID and fit["seed"] == 3
    with pytest.raises(Unfittable, match="every prompt has emergence label 0"):
        fit_emergence_predictor(X, np.zeros(60, int), [str(i) for i in range(60)], folds=5, c_grid=GRID, seed=0)


def test_predictor_cv_is_seeded_and_nested():
    """The split follows the seed; each outer fold chooses C on its own training rows (a
    fold whose training rows hold one example of the rarer class cannot run the inner CV
    and predicts its training rate instead, counted as such)."""
    rng = np.random.default_rng(1)
    y = (rng.random(80) < 0.4).astype(int)
    X = np.c_[y + rng.standard_normal(80), rng.standard_normal((80, 3))]
    groups = [f"g{i}" for i in range(80)]
    a, b = (fit_emergence_predictor(X, y, groups, folds=5, c_grid=GRID, seed=s) for s in (0, 0))
    assert a["oof_probability"] == b["oof_probability"]
    c = fit_emergence_predictor(X, y, groups, folds=5, c_grid=GRID, seed=1)
    assert c["oof_probability"] != a["oof_probability"]
    y2 = np.zeros(20, int)
    y2[[3, 11]] = 1
    rare = fit_emergence_predictor(rng.standard_normal((20, 2)), y2, [str(i) for i in range(20)], folds=5,
                                   c_grid=GRID, seed=0)
    assert rare["folds"] == 2 and rare["no_inner_cv_folds"] == 2 and rare["one_class_test_folds"] == 0
    assert set(np.round(rare["oof_probability"], 9)) == {round(1 / 10, 9)}


def test_predictor_is_fitted_per_run(runs, tmp_path):
    """Each run gets its own predictor on its own rows; the gate is the run without an
    adapter. A feature that only tells the runs apart says nothing within either run."""
    result = write_predictions(runs, tmp_path, m=4, tau=0.25, folds=3, c_grid=GRID, fit_max_k=4, seed=0)
    em = result["emergence"]
    assert em["gate_run"] == "base" and set(em["runs"]) == {"base", "ad"}
    for run, name in zip(runs, ("base", "ad")):
        record = em["runs"][name]
        if "skipped" in record:
            continue
        assert record["groups"] == [r["id"] for r in run.prompts] and record["rows"] == len(run.prompts)
    assert "label_rule" in em["runs"]["base"] and "all n=8 samples" in em["runs"]["base"]["label_rule"]
    assert (tmp_path / "predict.json").is_file() and (tmp_path / "bon_predictor.pkl").is_file()


def test_run_label_falls_back_to_the_adapter_folder():
    assert Run(Path("r"), {"adapter": {"name": None, "path": "/a/my_adapter"}}, [], {}).label == "my_adapter"
    assert Run(Path("r"), {"adapter": {"name": "x", "path": "/a/b"}}, [], {}).label == "x"
    assert Run(Path("r"), {"adapter": None}, [], {}).label == "base"


def test_coverage_law_extrapolates_where_it_holds():
    """A Beta(0.3, 3) population of per-prompt solve rates has power-law coverage
    (Schaeffer et al. 2025): fitted on k <= 8, pass@16..64 are predicted within 5%."""
    rng = np.random.default_rng(0)
    records = [{"n": 64, "c": int(c)} for c in rng.binomial(64, rng.beta(0.3, 3, size=3000))]
    law = coverage_law(records, 8, [16, 32, 64])
    assert law["max_relative_error"] < 0.05 and law["fit_r2"] > 0.99
    with pytest.raises(ExpspecError, match="strictly between 0 and 1"):
        coverage_law([{"n": 8, "c": 0}] * 3, 4, [8])


# --- the CLI: bad input is one line, exit 2, nothing written --------------------------------

def _tree_hash(folder: Path) -> str:
    digest = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        digest.update(str(p.relative_to(folder)).encode() + (p.read_bytes() if p.is_file() else b"/"))
    return digest.hexdigest()


@pytest.mark.parametrize("argv, word", [
    (["bon", "collect", "--config", "{d}/missing.json"], "file not found"),
    (["bon", "collect", "--config", "{d}/bad_k.json"], "16 > samples_per_prompt 8"),
    (["bon", "collect", "--config", "{d}/unknown.json"], "unknown key 'colour'"),
    (["bon", "collect", "--config", "{d}/bad_prompts.json"], "line 2: not valid JSON"),
    (["bon", "collect", "--set", "bon.k_values=1,32"], "32 > bon.samples_per_prompt"),
    (["bon", "distill", "{d}/nope.jsonl", "--out", "{d}/out/pairs.jsonl"], "file not found"),
    (["bon", "distill", "{d}/truncated.jsonl", "--out", "{d}/out/pairs.jsonl"], "no closing summary"),
    (["bon", "analyze", "{d}/bad_prompts.jsonl", "--out", "{d}/out/s.json"], "line 2: not valid JSON"),
    (["bon", "predict", "{d}/a.jsonl", "--out-dir", "{d}/out", "--telemetry", "{d}/t.csv"], "no row for prompt id"),
    (["bon", "sft", "--pairs", "{d}/a.jsonl", "--out-dir", "{d}/out"], "expected an object with text"),
    (["bon", "predict", "{d}/a.jsonl", "--out-dir", "{d}/out", "--set", "bon.predictor_m=8"],
     "bon.predictor_m=8: run a.jsonl has 8 samples per prompt"),
    (["bon", "predict", "{d}/a.jsonl", "--out-dir", "{d}/out", "--set", "bon.coverage_fit_max_k=8"],
     "bon.coverage_fit_max_k=8: run a.jsonl has k_values [1, 2, 4, 8], none above it"),
])
def test_cli_bad_input_writes_nothing(tmp_path, capsys, argv, word):
    d = tmp_path
    good = {"base_model": "smollm2-135m-instruct", "prompts_file": str(d / "bad_prompts.jsonl"),
            "k_values": [1, 2, 4, 8], "samples_per_prompt": 8, "max_new_tokens": 4, "output_dir": str(d / "out")}
    (d / "bad_prompts.jsonl").write_text('{"prompt": "q", "answer": 1}\n{oops\n')
    (d / "bad_prompts.json").write_text(json.dumps(good))
    (d / "bad_k.json").write_text(json.dumps(dict(good, k_values=[4, 8, 16])))
    (d / "unknown.json").write_text(json.dumps(dict(good, colour="red")))
    write_run(d / "a.jsonl", RATES)
    (d / "truncated.jsonl").write_text("".join((d / "a.jsonl").read_text().splitlines(keepends=True)[:-1]))
    (d / "t.csv").write_text("id,wait\np0,1.5\n")
    before = _tree_hash(d)
    assert main([a.format(d=d) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("expspec: error:") and "\n" not in err and word in err
    assert _tree_hash(d) == before


def test_cli_distill_analyze_predict(tmp_path, capsys):
    a = write_run(tmp_path / "a.jsonl", RATES)
    b = write_run(tmp_path / "b.jsonl", [min(1, r + 0.25) for r in RATES], seed=1, label="ad")
    assert main(["bon", "distill", str(a), "--out", str(tmp_path / "pairs.jsonl"), "--keep-unsolved"]) == 0
    assert len((tmp_path / "pairs.jsonl").read_text().splitlines()) == len(RATES)
    assert main(["bon", "analyze", str(a), str(b), "--out", str(tmp_path / "summary.json")]) == 0
    assert json.loads((tmp_path / "summary.json").read_text())["runs"][1]["label"] == "ad"
    (tmp_path / "t.csv").write_text("id,wait\n" + "".join(f"p{i},{i * 0.5}\n" for i in range(len(RATES))))
    assert main(["bon", "predict", str(a), str(b), "--out-dir", str(tmp_path / "pred"), "--telemetry",
                 str(tmp_path / "t.csv"), "--set", "bon.predictor_m=3", "--set", "bon.predictor_folds=3",
                 "--set", "bon.k_values=1,2,4,8", "--set", "bon.samples_per_prompt=8"]) == 0
    result = json.loads((tmp_path / "pred" / "predict.json").read_text())
    base = result["emergence"]["runs"]["base"]
    assert "telemetry_wait" in base["features"] and (tmp_path / "pred" / "coverage.png").is_file()
    assert result["emergence"]["seed"] == 42  # common.seed, not a constant
    assert (tmp_path / "pred" / "bon_predictor.pkl").is_file()
