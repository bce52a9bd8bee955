"""TempNorm acceptance criteria: is the data the model's, the math right, the regression honest?

Each test is a row of the issue's checklist. The fixtures (fixtures/tempnorm.py) run phase 1,
the teacher-forced rescoring and phase 2 once per config through the run cache; the tests
read the files those steps wrote and check them against their own recomputation.
"""

import json
import math
import pickle
from decimal import Decimal, getcontext

import numpy as np
import pytest

from expspec.fixtures.scale import SCALES
from expspec.kernels.atomic_io import read_json
from expspec.kernels.tempnorm.contexts import contexts_path, read_contexts

pytestmark = [pytest.mark.parametrize("scale", SCALES, scope="session"), pytest.mark.xdist_group("tempnorm")]

# The seed's record schema, written out here (not imported from the writer).
RECORD_FIELDS = {"context_index": int, "initial_context": str, "starting_point": str, "starting_point_token_ids": list,
                 "starting_hidden_vector_dtype": str, "starting_hidden_vector": list, "generations": list,
                 "config": dict}
GENERATION_FIELDS = {"generation_index": int, "token_ids": list, "generated_text": str, "model_probs": list}
PER_L = ("individual_tempnorms", "tempnorm_mean", "tempnorm_variance",
         "log_individual_tempnorms", "log_tempnorm_mean", "log_tempnorm_variance")
SIDECAR_FIELDS = ("model", "dtype", "model_dtype", "alpha", "seeds", "git_commit", "config", "inputs", "eval_lengths",
                  "hidden_size", "n_records")
METRIC_FIELDS = ("train_r2_log", "test_r2_log", "train_mse_log", "test_mse_log", "train_mae_log", "test_mae_log",
                 "n_train", "n_test", "baseline", "r2_ceiling", "ridge_alpha")
MAX_PROB_DIFF = 1e-4  # the issue: recorded probabilities equal a teacher-forced pass within 1e-4
MAX_HIDDEN_DIFF = 2.0 ** -10  # of the vector's largest element: float16 rounds to 2^-11 of it
MAX_REFIT_GAP = 1e-6  # of the target's scale: a train-only refit predicts the test rows as the pickled model does


def _raw_records(data):
    """The data file's lines as plain JSON (not through the writer's own reader)."""
    return [json.loads(line) for line in (data.path / data.result["data_file"]).read_text().splitlines() if line]


def _number(value):
    return float(value)  # "-inf" (a zero variance) is written as a string


def test_phase1_schema(scale, tempnorm_data, tempnorm_config, criterion):
    from transformers import AutoConfig, AutoTokenizer

    from expspec.kernels.models.pretrained import resolve_model_path

    records = _raw_records(tempnorm_data)
    meta = read_json(tempnorm_data.path / "experiment_data.meta.json")
    path = resolve_model_path(tempnorm_config["model"])
    hidden_size = AutoConfig.from_pretrained(path).hidden_size
    tokenizer = AutoTokenizer.from_pretrained(path)
    contexts = read_contexts(contexts_path(tempnorm_config["contexts_file"]), tempnorm_config["max_contexts"])
    lengths, n = tempnorm_config["eval_lengths"], tempnorm_config["gen_number"]
    problems = []

    def need(ok, what):
        if not ok and len(problems) < 5:
            problems.append(what)

    need(len(records) == len(contexts), f"{len(records)} records for {len(contexts)} contexts")
    need(all(k in meta for k in SIDECAR_FIELDS), f"sidecar lacks {[k for k in SIDECAR_FIELDS if k not in meta]}")
    need(meta.get("model_dtype") == f"torch.{tempnorm_config['dtype']}",
         f"the model ran in {meta.get('model_dtype')}, not tempnorm.dtype = {tempnorm_config['dtype']}")
    need(meta.get("n_records") == len(records), f"sidecar n_records {meta.get('n_records')} for {len(records)} lines")
    for i, (r, context) in enumerate(zip(records, contexts)):
        need(all(isinstance(r.get(k), t) for k, t in RECORD_FIELDS.items()), f"record {i}: a field's type")
        context_ids = list(tokenizer(context)["input_ids"])
        start = r["starting_point_token_ids"]
        need(r["initial_context"] == context and start[:len(context_ids)] == context_ids
             and len(start) == len(context_ids) + tempnorm_config["initial_wander"],
             f"record {i}: starting point is not context + {tempnorm_config['initial_wander']} tokens")
        vec = np.asarray(r["starting_hidden_vector"], dtype=np.float64)
        need(r["starting_hidden_vector_dtype"] == "float16" and vec.shape == (hidden_size,)
             and np.array_equal(vec.astype(np.float16).astype(np.float64), vec),
             f"record {i}: hidden vector is not {hidden_size} float16 values")
        gens = r["generations"]
        need(len(gens) == n and all(all(isinstance(g.get(k), t) for k, t in GENERATION_FIELDS.items())
                                    and len(g["token_ids"]) == len(g["model_probs"]) == tempnorm_config["gen_length"]
                                    and all(0 < p <= 1 for p in g["model_probs"]) for g in gens),
             f"record {i}: {n} completions of {tempnorm_config['gen_length']} tokens with probabilities")
        for L in lengths:
            need(all(f"{f}_{L}" in r for f in PER_L), f"record {i}: a field of L={L}")
            need(len(r.get(f"individual_tempnorms_{L}", [])) == len(r.get(f"log_individual_tempnorms_{L}", [])) == n,
                 f"record {i}: L={L} lists are not {n} long")
    criterion.artifact(tempnorm_data.path / "experiment_data.meta.json")
    gen = meta["generation"]
    criterion.record("generation", f"{gen['tokens_generated']} tokens in {gen['seconds']} s "
                                   f"({gen['tok_per_s']} tok/s, {meta.get('torch_threads')} threads, {meta['device']}, "
                                   f"{meta.get('model_dtype')})")
    criterion.record("sample", {"starting_point": records[0]["starting_point"][-160:],
                                "completion": records[0]["generations"][0]["generated_text"]})
    criterion.expect(f"{len(records)} records, hidden size {hidden_size}, eval lengths {lengths}: "
                     f"{'; '.join(problems) or 'all fields present'}",
                     "every field, every L, a float16 vector of the model's hidden size", not problems,
                     "; ".join(problems))


def test_recorded_probs_match_rescoring(scale, tempnorm_rescore, criterion):
    result = tempnorm_rescore.result
    criterion.artifact(tempnorm_rescore.path / "rescore.json")
    criterion.record("hidden vector vs teacher-forced", f"max |diff| = {result['max_abs_hidden_diff']:.3g} "
                                                        f"({result['hidden_diff_rel_to_max']:.2g} of its largest element)")
    diff, hidden = result["max_abs_prob_diff"], result["hidden_diff_rel_to_max"]
    # metrics max_prob_diff, max_hidden_diff (lower is better); a move of half the bar is a regression
    criterion.expect(f"max |p_recorded - p_teacher_forced|: max_prob_diff={diff:.3g} over {result['n_tokens']} "
                     f"tokens of {result['n_records']} records; max_hidden_diff={hidden:.3g} of its scale",
                     f"<= {MAX_PROB_DIFF} (hidden <= {MAX_HIDDEN_DIFF:.2g} of its scale)",
                     diff <= MAX_PROB_DIFF and hidden <= MAX_HIDDEN_DIFF,
                     f"probabilities differ by {diff:.3g} (hidden by {hidden:.2g})",
                     tolerances={"max_prob_diff": ("lower", MAX_PROB_DIFF / 2),
                                 "max_hidden_diff": ("lower", MAX_HIDDEN_DIFF / 2)})


def _exact_stats(log_probs, L, alpha):
    """log tempnorms, log mean, log variance, and the linear variance and largest weight squared
    (its float64 cancellation scale), in 50-digit decimals (no underflow, no shortcut)."""
    logs = [Decimal(alpha - 1) * sum(q[:L]) for q in log_probs]
    values = [x.exp() for x in logs]
    mean = sum(values) / len(values) if len(set(values)) > 1 else values[0]  # n * v / n can round
    var = sum((v - mean) ** 2 for v in values) / len(values)
    return ([float(x) for x in logs], float(mean.ln()), float(var.ln()) if var > 0 else -math.inf,
            float(var), float(max(values) ** 2))


def test_tempnorm_math(scale, tempnorm_data, tempnorm_config, criterion):
    alpha, lengths = tempnorm_config["alpha"], tempnorm_config["eval_lengths"]
    worst = {"log tempnorm": 0.0, "log mean": 0.0, "log variance": 0.0, "linear": 0.0, "linear variance": 0.0}
    increasing = 0
    getcontext().prec = 50
    for r in _raw_records(tempnorm_data):
        probs = [g["model_probs"] for g in r["generations"]]
        log_probs = [[Decimal(p).ln() for p in q[:max(lengths)]] for q in probs]
        for L in lengths:
            logs, log_mean, log_var, var, top_squared = _exact_stats(log_probs, L, alpha)
            stored = [_number(v) for v in r[f"log_individual_tempnorms_{L}"]]
            worst["log tempnorm"] = max(worst["log tempnorm"], max(abs(a - b) / max(1, abs(a)) for a, b in zip(logs, stored)))
            worst["log mean"] = max(worst["log mean"], abs(log_mean - _number(r[f"log_tempnorm_mean_{L}"])) / max(1, abs(log_mean)))
            stored_var = _number(r[f"log_tempnorm_variance_{L}"])
            if math.isinf(log_var) or math.isinf(stored_var):
                gap = 0.0 if log_var == stored_var else math.inf
            else:  # var is a difference of near-equal terms: float64 keeps ~1e-12 of the largest weight
                gap = abs(log_var - stored_var) / max(1, abs(log_var))
            worst["log variance"] = max(worst["log variance"], gap)
            linear = [math.exp(v) for v in logs]
            worst["linear"] = max(worst["linear"], max(abs(a - b) / max(a, 1e-300) for a, b in zip(
                linear + [math.exp(log_mean)], [_number(v) for v in r[f"individual_tempnorms_{L}"]]
                + [_number(r[f"tempnorm_mean_{L}"])])))
            # the variance's own error scale: relative, but float64 keeps only ~1e-12 of the
            # largest weight squared where near-equal weights cancel (both may underflow to 0)
            scale = max(var, 1e-12 * top_squared, 1e-300)
            worst["linear variance"] = max(worst["linear variance"],
                                           abs(_number(r[f"tempnorm_variance_{L}"]) - var) / scale)
        for j in range(len(probs)):  # alpha > 1: every factor p^(alpha-1) <= 1
            series = [_number(r[f"log_individual_tempnorms_{L}"][j]) for L in lengths]
            increasing += alpha > 1 and any(b > a for a, b in zip(series, series[1:]))
    criterion.record("largest relative error vs 50-digit recomputation", {k: f"{v:.2g}" for k, v in worst.items()})
    ok = worst["log tempnorm"] <= 1e-9 and worst["log mean"] <= 1e-9 and worst["log variance"] <= 1e-6 \
        and worst["linear"] <= 1e-8 and worst["linear variance"] <= 1e-6 and increasing == 0
    criterion.expect(f"errors {', '.join(f'{k} {v:.2g}' for k, v in worst.items())}; "
                     f"{increasing} completions whose log tempnorm rises with L",
                     "log tempnorm, mean <= 1e-9, log variance <= 1e-6, linear <= 1e-8, linear variance <= 1e-6 "
                     "(relative; of 1e-12 x the largest weight squared where smaller); "
                     "non-increasing in L for alpha > 1", ok, f"{worst}, {increasing} rising")


def _rows_of(records):
    """(record index, context text) of each phase 2 row: row r = completion r % n of record r // n."""
    return [(i, r["initial_context"]) for i, r in enumerate(records) for _ in r["generations"]]


def test_phase2_outputs(scale, tempnorm_models, tempnorm_data, criterion):
    from sklearn.metrics import r2_score

    metrics = read_json(tempnorm_models.path / "metrics.json")
    meta = read_json(tempnorm_data.path / "experiment_data.meta.json")
    records = _raw_records(tempnorm_data)
    n_rows = sum(len(r["generations"]) for r in records)
    problems, reproduced = [], []
    if metrics["provenance"].get("generation_config") != meta["config"]:
        problems.append("metrics.json's generation_config is not the data sidecar's config")
    if list(metrics["metrics"]) != [str(L) for L in sorted(metrics["eval_lengths"])]:
        problems.append(f"per-L metrics not in increasing L: {list(metrics['metrics'])}")
    for L in metrics["eval_lengths"]:
        m = metrics["metrics"].get(str(L), {})
        split = read_json(tempnorm_models.path / f"split_eval_{L}.json")
        with open(tempnorm_models.path / f"tempnorm_model_eval_{L}.pkl", "rb") as handle:
            model = pickle.load(handle)
        missing = [k for k in METRIC_FIELDS if k not in m]
        if missing or m["n_train"] + m["n_test"] != n_rows:
            problems.append(f"L={L}: missing {missing} or n_train + n_test != {n_rows}")
            continue
        test = split["test_idx"]
        x = np.asarray([records[i // len(records[0]['generations'])]["starting_hidden_vector"] for i in test], np.float32)
        y = [_number(records[i // len(records[0]['generations'])][f"log_individual_tempnorms_{L}"]
                     [i % len(records[0]['generations'])]) for i in test]
        r2 = float(r2_score(y, model.predict(x)))  # the pickled model, on the recorded test rows
        reproduced.append(abs(r2 - m["test_r2_log"]))
        if not math.isclose(r2, m["test_r2_log"], rel_tol=0, abs_tol=1e-6):  # float32 matmul order
            problems.append(f"L={L}: the pickled model scores R2={r2:.6f} on the test rows, metrics.json says "
                            f"{m['test_r2_log']:.6f}")
    criterion.artifact(tempnorm_models.path / "metrics.json")
    criterion.expect(f"{len(metrics['eval_lengths'])} lengths: model, split and metrics each; pickled models "
                     f"reproduce test R2 within {max(reproduced, default=math.inf):.1g}",
                     "tempnorm_model_eval_{L}.pkl, split_eval_{L}.json, metrics.json (train/test R2, MSE, MAE, "
                     "n, baseline, r2_ceiling) per L", not problems and len(reproduced) == len(metrics["eval_lengths"]),
                     "; ".join(problems))


def _rows(records, L):
    """(X float32, y, record of each row) of eval length L from the raw records: row r is
    completion r % n of record r // n, the layout split_eval_{L}.json indexes."""
    x, y, owner = [], [], []
    for i, r in enumerate(records):
        for value in r[f"log_individual_tempnorms_{L}"]:
            x.append(r["starting_hidden_vector"])
            y.append(_number(value))
            owner.append(i)
    return np.asarray(x, np.float32), np.asarray(y, np.float64), np.asarray(owner)


def _per_length(models_dir, records, metrics):
    """(L, its metrics, its split, X, y, record of each row) for every eval length."""
    for L in metrics["eval_lengths"]:
        yield (L, metrics["metrics"][str(L)], read_json(models_dir / f"split_eval_{L}.json"), *_rows(records, L))


def _r2(y, pred):
    return 1.0 - float(np.sum((y - pred) ** 2)) / float(np.sum((y - y.mean()) ** 2))


def test_baseline_and_ceiling_recomputed(scale, tempnorm_models, tempnorm_data, criterion):
    """metrics.json's reference points, recomputed here from the raw records and the stored
    split alone: the train mean (train_idx rows), the baseline's test R2/MSE/MAE when it
    predicts that mean, the ceiling (each test row predicted by the mean of its own starting
    point's test rows: grouped by record, as a start-state model sees them), n_train, n_test."""
    metrics = read_json(tempnorm_models.path / "metrics.json")
    records = _raw_records(tempnorm_data)
    worst, problems = 0.0, []
    for L, m, split, _, y, owner in _per_length(tempnorm_models.path, records, metrics):
        train, test = np.asarray(split["train_idx"]), np.asarray(split["test_idx"])
        mean = float(y[train].mean())
        yt = y[test]
        ceiling = np.asarray([yt[owner[test] == o].mean() for o in owner[test]])
        mine = {"train mean": mean, "baseline R2": _r2(yt, np.full(len(yt), mean)),
                "baseline MSE": float(np.mean((yt - mean) ** 2)), "baseline MAE": float(np.mean(np.abs(yt - mean))),
                "r2_ceiling": _r2(yt, ceiling), "n_train": len(train), "n_test": len(test)}
        stored = {"train mean": m["baseline"]["train_mean_log"], "baseline R2": m["baseline"]["test_r2_log"],
                  "baseline MSE": m["baseline"]["test_mse_log"], "baseline MAE": m["baseline"]["test_mae_log"],
                  "r2_ceiling": m["r2_ceiling"], "n_train": m["n_train"], "n_test": m["n_test"]}
        for k in mine:
            gap = abs(mine[k] - stored[k]) / max(1.0, abs(mine[k]))
            worst = max(worst, gap)
            if gap > 1e-9:
                problems.append(f"L={L} {k}: recomputed {mine[k]:.10g}, metrics.json {stored[k]:.10g}")
    criterion.expect(f"{len(metrics['eval_lengths'])} lengths: largest relative gap {worst:.2g}"
                     f"{'; ' + '; '.join(problems[:4]) if problems else ''}",
                     "train mean, baseline R2/MSE/MAE, r2_ceiling, n_train, n_test equal a recomputation "
                     "from the records and split_eval_{L}.json within 1e-9", not problems, "; ".join(problems[:4]))


def test_pickled_models_saw_only_training_rows(scale, tempnorm_models, tempnorm_data, criterion):
    """Refit StandardScaler + Ridge at the stored penalty on the train_idx rows alone: its
    test-row predictions equal the pickled model's, so no test row entered the fit."""
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    metrics = read_json(tempnorm_models.path / "metrics.json")
    records = _raw_records(tempnorm_data)
    worst, problems = 0.0, []
    for L, m, split, x, y, _ in _per_length(tempnorm_models.path, records, metrics):
        train, test = split["train_idx"], split["test_idx"]
        refit = make_pipeline(StandardScaler(), Ridge(alpha=m["ridge_alpha"])).fit(x[train], y[train])
        with open(tempnorm_models.path / f"tempnorm_model_eval_{L}.pkl", "rb") as handle:
            pickled = pickle.load(handle)
        gap = float(np.max(np.abs(refit.predict(x[test]) - pickled.predict(x[test])))) / max(1.0, float(y.std()))
        worst = max(worst, gap)
        if gap > MAX_REFIT_GAP:  # float32 features: rounding of one fit, not a different one
            problems.append(f"L={L}: predictions differ by {gap:.2g} of the target's scale")
    criterion.expect(f"largest gap between a train-only refit and the pickled model on the test rows: "
                     f"max_refit_gap={worst:.3g}",
                     f"<= {MAX_REFIT_GAP:g} of the target's scale at every L", not problems, "; ".join(problems),
                     tolerances={"max_refit_gap": ("lower", MAX_REFIT_GAP / 2)})


def test_split_grouped_by_context(scale, tempnorm_models, tempnorm_data, criterion):
    records = _raw_records(tempnorm_data)
    rows = _rows_of(records)
    metrics = read_json(tempnorm_models.path / "metrics.json")
    problems, splits = [], set()
    for L in metrics["eval_lengths"]:
        split = read_json(tempnorm_models.path / f"split_eval_{L}.json")
        train, test = split["train_idx"], split["test_idx"]
        splits.add((tuple(train), tuple(test)))
        shared = {rows[i][1] for i in train} & {rows[i][1] for i in test}
        if shared or sorted(train + test) != list(range(len(rows))) or not train or not test:
            problems.append(f"L={L}: {len(shared)} contexts on both sides, or the rows are not partitioned")
    train, test = next(iter(splits))
    n_train, n_test = len({rows[i][1] for i in train}), len({rows[i][1] for i in test})
    criterion.record("contexts (train | test)", f"{n_train} | {n_test}")
    criterion.expect(f"{len(splits)} split(s) over {len(metrics['eval_lengths'])} lengths: "
                     f"{'; '.join(problems) or f'{len(train)} train rows, {len(test)} test rows, no context shared'}",
                     "every row on exactly one side; no context on both sides", not problems, "; ".join(problems))


def test_r2_per_eval_length(scale, tempnorm_models, criterion):
    """The experiment's answer, recorded per L: test R2 of the ridge next to the predict-the-
    train-mean baseline and the ceiling no start-state predictor can pass. Two laws hold for
    any honest computation: baseline <= 0 and test R2 <= r2_ceiling."""
    metrics = read_json(tempnorm_models.path / "metrics.json")
    criterion.plot(tempnorm_models.plots / "r2_vs_eval_length.png")
    rows, broken = {}, []
    for L in metrics["eval_lengths"]:
        m = metrics["metrics"][str(L)]
        rows[L] = (round(m["test_r2_log"], 4), round(m["baseline"]["test_r2_log"], 4), round(m["r2_ceiling"], 4))
        if not (m["baseline"]["test_r2_log"] <= 1e-12 and m["test_r2_log"] <= m["r2_ceiling"] + 1e-9):
            broken.append(L)
        edge = " (grid edge)" if m["ridge_alpha_at_grid_edge"] else ""
        criterion.record(f"L={L}: test R2 | baseline | ceiling (by chance)",
                         f"{rows[L][0]} | {rows[L][1]} | {rows[L][2]} ({m['r2_ceiling_chance']:.3f}); "
                         f"train R2 {m['train_r2_log']:.3f}, ridge alpha {m['ridge_alpha']:g}{edge}")
    criterion.expect(f"test R2 per L {{{', '.join(f'{L}: {v[0]}' for L, v in rows.items())}}}",
                     "recorded per L, with baseline <= 0 and test R2 <= r2_ceiling at every L",
                     not broken, f"the laws fail at L={broken}: {rows}",
                     tolerances={"L_*: test R2": ("higher", 0.05)})
