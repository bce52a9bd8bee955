"""Predicting best-of-N emergence: per prompt, and in aggregate.

1. Per prompt. A prompt *emerges* under best-of-N when pass@k_max - pass@1 >= tau: one
   sample rarely solves it, k samples usually do. The label counts all n samples of the
   prompt; the features come ONLY from a small sample budget, the first m samples, reduced
   to label-free fields (``feature_budget``): their logprobs, lengths, parsed answers (no
   gold, no score) and token entropies. Never pass@k, c, or anything from samples beyond
   m: the seed used pass@1 and the pass@k delta as features, which is the label itself
   ("100% accuracy"). As a check that needs no shared samples, each run also reports the
   AUC against a label computed from samples m+1..n only.

   The predictor is fitted and scored per run: the rows of one model's samples, features
   and labels alike. Pooling a base run with an adapter run would let "which model is
   this" pass for emergence (a score that only says "base" reached AUC 0.62 on the pooled
   smoke rows while it is 0.5 within either run). Logistic regression, nested grouped
   cross-validation: the outer StratifiedGroupKFold (by prompt, seeded by common.seed)
   scores held-out prompts; inside each outer training fold an inner grouped CV picks C
   from ``predictor_c_grid`` by AUC, so the held-out prompts never choose it. Reported: the
   pooled out-of-fold AUC, the mean per-fold AUC (folds whose held-out prompts are all
   one class have none and are counted), accuracy at p >= 0.5 beside the majority
   baseline (each training fold's majority class). The saved model runs the same grid
   search on all of a run's rows.

2. Aggregate coverage law (Brown et al. 2024; Schaeffer et al. 2025): the mean pass@k over
   prompts follows -log pass@k = A k^-b. Fitted on small k (k <= fit_max_k, every integer,
   by the suite's one power-law fitter), it predicts pass@k = exp(-A k^-b) at the larger k,
   and the error against the measured values says whether the law extrapolates.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from expspec.kernels.atomic_io import jsonable, write_json_atomic, write_pickle_atomic
from expspec.kernels.bon.collector import Run
from expspec.kernels.bon.scoring import answer_entropy, pass_at_k
from expspec.kernels.errors import ExpspecError
from expspec.kernels.fit.power_law import fit_power_law


class Unfittable(ExpspecError):
    """A run's labels leave nothing to fit (one class, or too few of the rarer one)."""


# The only per-sample fields a feature may read (no "score", no "text" beyond the parse).
BUDGET_FIELDS = ("logprob", "tokens", "answer", "first_token_entropy", "mean_token_entropy")
FEATURES = ("mean_logprob", "max_logprob", "mean_logprob_per_token", "answer_entropy", "unique_fraction",
            "mean_length", "first_token_entropy", "mean_token_entropy")


def feature_budget(record: Mapping, m: int) -> list[dict]:
    """What the features may see of a prompt record: its first m samples, label-free fields only."""
    samples = record["samples"][:m]
    if len(samples) < m:
        raise ExpspecError(f"predict: prompt {record.get('id')!r} has {len(samples)} samples, the budget needs m={m}")
    return [{key: s[key] for key in BUDGET_FIELDS} for s in samples]


def emergence_features(budget: Sequence[Mapping]) -> dict[str, float]:
    """The feature vector of one prompt from its sample budget."""
    logprobs = np.array([s["logprob"] for s in budget], dtype=float)
    lengths = np.array([max(s["tokens"], 1) for s in budget], dtype=float)
    answers = [s["answer"] for s in budget]
    return {"mean_logprob": float(logprobs.mean()), "max_logprob": float(logprobs.max()),
            "mean_logprob_per_token": float((logprobs / lengths).mean()),
            "answer_entropy": answer_entropy(answers),
            "unique_fraction": len({"\0none" if a is None else a for a in answers}) / len(answers),
            "mean_length": float(lengths.mean()),
            "first_token_entropy": float(np.mean([s["first_token_entropy"] for s in budget])),
            "mean_token_entropy": float(np.mean([s["mean_token_entropy"] for s in budget]))}


def prompt_features(record: Mapping, m: int) -> dict[str, float]:
    return emergence_features(feature_budget(record, m))


def emergence_label(record: Mapping, tau: float, k_max: int) -> int:
    """1 when pass@k_max - pass@1 >= tau, both from all n samples of the prompt (its n, c)."""
    n, c = int(record["n"]), int(record["c"])
    return int(pass_at_k(n, c, k_max) - pass_at_k(n, c, 1) >= tau)


def unseen_label(record: Mapping, tau: float, k_max: int, m: int) -> int:
    """The same rule on samples m+1..n only (the ones no feature reads), k capped at n - m."""
    rest = record["samples"][m:]
    n, c = len(rest), int(sum(s["score"] > 0 for s in rest))
    return int(pass_at_k(n, c, min(k_max, n)) - pass_at_k(n, c, 1) >= tau)


def label_rule(tau: float, k_max: int, n: int, m: int) -> str:
    return (f"pass@{k_max} - pass@1 >= {tau}, from all n={n} samples of the prompt; the features read only the "
            f"first m={m} samples' logprobs, lengths, parsed answers and entropies (never a score or the gold)")


def read_telemetry(path: str | Path) -> dict[str, dict[str, float]]:
    """A queue-wait (or any) CSV: an ``id`` column plus numeric columns, joined by prompt id."""
    path = Path(path)
    if not path.is_file():
        raise ExpspecError(f"telemetry file {path}: file not found")
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ExpspecError(f"telemetry file {path}: not a readable UTF-8 CSV ({exc})") from None
    if not rows or "id" not in rows[0]:
        raise ExpspecError(f"telemetry file {path}: expected a CSV with an 'id' column and numeric columns")
    out = {}
    for number, row in enumerate(rows, 2):
        values = {}
        for key, text in row.items():
            if key == "id":
                continue
            try:
                values[f"telemetry_{key}"] = float(text)
                if not math.isfinite(values[f"telemetry_{key}"]):
                    raise ValueError
            except (TypeError, ValueError):
                raise ExpspecError(f"telemetry file {path} line {number}: column {key!r} is not a number: "
                                   f"{text!r}") from None
        out[str(row["id"])] = values
    return out


def feature_table(records: Sequence[Mapping], *, m: int, tau: float, k_max: int,
                  telemetry: Mapping[str, Mapping[str, float]] | None = None) -> dict:
    """One run's prompts as rows: features X, labels y, groups (prompt ids), feature names."""
    names, rows, labels, groups = list(FEATURES), [], [], []
    names += sorted({k for v in (telemetry or {}).values() for k in v})
    for record in records:
        feats = prompt_features(record, m)
        if telemetry is not None:
            if record["id"] not in telemetry:
                raise ExpspecError(f"telemetry: no row for prompt id {record['id']!r}")
            feats.update(telemetry[record["id"]])
        rows.append([feats[k] for k in names])
        labels.append(emergence_label(record, tau, k_max))
        groups.append(record["id"])
    return {"X": np.array(rows, dtype=float), "y": np.array(labels, dtype=int), "groups": groups, "features": names}


# what a gate's review is bound to: the run's inputs, never where its files live
_NOT_INPUTS = ("output_dir", "prompts_file", "adapter_path")


def gate_fingerprint(run: Run, *, m: int, tau: float, folds: int, c_grid: Sequence[float]) -> str:
    """The inputs a run's predictor gate came from: the collector's knobs (seed included), the
    model files', prompts' and adapter's fingerprints and the predictor's knobs - so a review
    of the gate (bon.predictor_review) covers those inputs only."""
    header = run.header
    blob = json.dumps(jsonable({
        "config": {k: v for k, v in header["config"].items() if k not in _NOT_INPUTS},
        "model": header["model_fingerprint"], "prompts": header["prompts_fingerprint"],
        "adapter": (header["adapter"] or {}).get("fingerprint"),
        "predictor": {"m": m, "tau": tau, "folds": folds, "c_grid": list(c_grid)}}), sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _classifier(seed: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=seed))


def _grid_search(X: np.ndarray, y: np.ndarray, groups: np.ndarray, *, c_grid: Sequence[float], folds: int,
                 seed: int):
    """C chosen from ``c_grid`` by grouped, stratified CV (AUC) on these rows only, then refitted
    on them; None when the rarer class has under 2 rows (no inner split can hold both)."""
    from sklearn.model_selection import GridSearchCV, StratifiedGroupKFold

    splits = min(folds, len(set(groups.tolist())), int(np.bincount(y, minlength=2).min()))
    if splits < 2:
        return None
    search = GridSearchCV(_classifier(seed), {"logisticregression__C": [float(c) for c in c_grid]},
                          scoring="roc_auc", cv=StratifiedGroupKFold(n_splits=splits, shuffle=True, random_state=seed))
    return search.fit(X, y, groups=groups)


def fit_emergence_predictor(X: np.ndarray, y: np.ndarray, groups: Sequence[str], *, folds: int,
                            c_grid: Sequence[float], seed: int) -> dict:
    """Nested grouped CV of one run's rows (module docstring): out-of-fold probabilities,
    pooled and per-fold AUC, accuracy vs the majority baseline, and the model refitted (C
    chosen by the same inner search) on every row."""
    from threadpoolctl import threadpool_limits

    # hundreds of fits on tens of rows: BLAS threads only cost here (an lbfgs fit on 72 x 8
    # took 60 ms with them on two busy cores, 4 ms without)
    with threadpool_limits(limits=1):
        return _nested_cv(X, np.asarray(y, dtype=int), np.asarray(groups), folds=folds, c_grid=c_grid, seed=seed)


def _nested_cv(X: np.ndarray, y: np.ndarray, groups: np.ndarray, *, folds: int, c_grid: Sequence[float],
               seed: int) -> dict:
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedGroupKFold

    counts = np.bincount(y, minlength=2)
    if counts.min() == 0:
        raise Unfittable(f"predict: every prompt has emergence label {int(y[0])}: no predictor can be fitted "
                         f"(change the prompt mix, tau or k_values)")
    splits = min(folds, len(set(groups.tolist())), int(counts.min()))
    if splits < 2:
        raise Unfittable(f"predict: too few prompts of the rarer class ({int(counts.min())}) for "
                         f"cross-validation")
    outer = StratifiedGroupKFold(n_splits=splits, shuffle=True, random_state=seed)
    oof, majority_hits, per_fold = np.zeros(len(y)), np.zeros(len(y)), []
    for train, test in outer.split(X, y, groups):
        search = _grid_search(X[train], y[train], groups[train], c_grid=c_grid, folds=folds, seed=seed)
        if search is None:  # no inner CV possible: the fold predicts its training rate
            oof[test] = y[train].mean()
        else:
            oof[test] = search.predict_proba(X[test])[:, 1]
        majority_hits[test] = y[test] == int(y[train].mean() >= 0.5)
        one_class = len(set(y[test].tolist())) < 2
        per_fold.append({"rows": int(len(test)), "positives": int(y[test].sum()),
                         "c": None if search is None else float(search.best_params_["logisticregression__C"]),
                         "auc": None if one_class else float(roc_auc_score(y[test], oof[test]))})
    fold_aucs = [f["auc"] for f in per_fold if f["auc"] is not None]
    final = _grid_search(X, y, groups, c_grid=c_grid, folds=folds, seed=seed)
    return {"auc": float(roc_auc_score(y, oof)), "mean_fold_auc": float(np.mean(fold_aucs)) if fold_aucs else None,
            "fold_auc_sd": float(np.std(fold_aucs)) if fold_aucs else None,
            "one_class_test_folds": sum(f["auc"] is None for f in per_fold),
            "no_inner_cv_folds": sum(f["c"] is None for f in per_fold), "per_fold": per_fold,
            "accuracy": float(np.mean((oof >= 0.5) == y)), "majority_accuracy": float(majority_hits.mean()),
            "folds": splits, "seed": seed, "c_grid": [float(c) for c in c_grid],
            "c": float(final.best_params_["logisticregression__C"]), "rows": int(len(y)),
            "prompts": len(set(groups.tolist())), "positives": int(y.sum()), "oof_probability": oof.tolist(),
            "model": final.best_estimator_}


# --- aggregate coverage law ---------------------------------------------------------------

def mean_pass_at_k(records: Sequence[Mapping], k: int) -> float:
    return float(np.mean([pass_at_k(int(r["n"]), int(r["c"]), k) for r in records]))


def coverage_law(records: Sequence[Mapping], fit_max_k: int, eval_ks: Sequence[int]) -> dict:
    """Fit -log(mean pass@k) = A k^-b on k = 1..fit_max_k; predict and score at ``eval_ks``."""
    n = min(int(r["n"]) for r in records)
    if max(eval_ks) > n:
        raise ExpspecError(f"coverage law: k={max(eval_ks)} > the {n} samples per prompt")
    fit_ks = list(range(1, fit_max_k + 1))
    fit_y = [mean_pass_at_k(records, k) for k in fit_ks]
    if min(fit_y) <= 0 or max(fit_y) >= 1:
        raise ExpspecError(f"coverage law: mean pass@k on k <= {fit_max_k} is {fit_y[0]:.3g}..{fit_y[-1]:.3g}; "
                           f"-log pass@k needs values strictly between 0 and 1")
    fit = fit_power_law(fit_ks, [-math.log(v) for v in fit_y])
    measured = {k: mean_pass_at_k(records, k) for k in eval_ks}
    predicted = {k: math.exp(-fit.prefactor * k ** -fit.exponent) for k in eval_ks}
    errors = {k: abs(predicted[k] - measured[k]) / measured[k] if measured[k] > 0 else math.inf for k in eval_ks}
    return {"A": fit.prefactor, "b": fit.exponent, "fit_r2": fit.r2, "fit_ks": fit_ks, "fit_pass_at_k": fit_y,
            "eval_ks": list(eval_ks), "measured": {str(k): v for k, v in measured.items()},
            "predicted": {str(k): v for k, v in predicted.items()},
            "relative_error": {str(k): v for k, v in errors.items()},
            "max_relative_error": max(errors.values()),
            "curve": {str(k): mean_pass_at_k(records, k) for k in range(1, n + 1)}}


def _k_values(run: Run) -> list[int]:
    ks = (run.header.get("config") or {}).get("k_values")
    if not isinstance(ks, list) or not ks:
        raise ExpspecError(f"run file {run.path}: its header has no config.k_values")
    return [int(k) for k in ks]


def check_predict_knobs(runs: Sequence[Run], *, m: int, fit_max_k: int) -> None:
    """The predictor's knobs against each run, before anything is fitted or written."""
    for run in runs:
        n, ks = min(int(r["n"]) for r in run.prompts), _k_values(run)
        if m >= n:
            raise ExpspecError(f"bon.predictor_m={m}: run {run.path.name} has {n} samples per prompt; the features "
                               f"need m < {n} (with m >= n they would read every sample the label counts)")
        if not any(k > fit_max_k for k in ks):
            raise ExpspecError(f"bon.coverage_fit_max_k={fit_max_k}: run {run.path.name} has k_values {ks}, none "
                               f"above it to check the coverage law on")


def run_names(runs: Sequence[Run]) -> list[str]:
    """Each run's label ("base", the adapter's name), numbered when two share one."""
    labels = [r.label for r in runs]
    return labels if len(set(labels)) == len(labels) else [f"{i}:{x}" for i, x in enumerate(labels)]


def emergence_for_run(run: Run, *, m: int, tau: float, folds: int, c_grid: Sequence[float], seed: int,
                      telemetry: Mapping[str, Mapping[str, float]] | None = None) -> tuple[dict, dict]:
    """(the run's predictor record for predict.json, its fitted model) - one model's rows only."""
    from sklearn.metrics import roc_auc_score

    k_max, n = _k_values(run)[-1], min(int(r["n"]) for r in run.prompts)
    table = feature_table(run.prompts, m=m, tau=tau, k_max=k_max, telemetry=telemetry)
    fit = fit_emergence_predictor(table["X"], table["y"], table["groups"], folds=folds, c_grid=c_grid, seed=seed)
    model = fit.pop("model")
    unseen = np.array([unseen_label(r, tau, k_max, m) for r in run.prompts])
    fit["unseen_label"] = {"rule": f"the label's rule on samples {m + 1}..{n} only (k capped at {n - m})",
                           "positives": int(unseen.sum()),
                           "auc": float(roc_auc_score(unseen, fit["oof_probability"]))
                           if 0 < unseen.sum() < len(unseen) else None}
    record = {**fit, "k_max": k_max, "n": n, "label_rule": label_rule(tau, k_max, n, m),
              "features": table["features"], "groups": table["groups"], "labels": table["y"].tolist()}
    return record, {"model": model, "c": fit["c"], "k_max": k_max, "features": table["features"]}


def write_predictions(runs: Sequence[Run], out_dir: str | Path, *, m: int, tau: float, folds: int,
                      c_grid: Sequence[float], fit_max_k: int, seed: int,
                      telemetry: Mapping[str, Mapping[str, float]] | None = None) -> dict:
    """Both predictions from run files, written to out_dir/predict.json (returned) and
    out_dir/bon_predictor.pkl: per run, its own emergence predictor and its coverage law.
    The gate run is the first run without an adapter (else the first run): a run other than
    it whose labels cannot be fitted (one class) is recorded as skipped, with the reason."""
    check_predict_knobs(runs, m=m, fit_max_k=fit_max_k)
    names = run_names(runs)
    gate = next((name for name, run in zip(names, runs) if not run.header.get("adapter")), names[0])
    emergence, models, coverage = {}, {}, {}
    for name, run in zip(names, runs):
        try:
            emergence[name], models[name] = emergence_for_run(run, m=m, tau=tau, folds=folds, c_grid=c_grid,
                                                              seed=seed, telemetry=telemetry)
        except Unfittable as err:
            if name == gate:
                raise
            emergence[name] = {"skipped": str(err)}
        coverage[name] = coverage_law(run.prompts, fit_max_k, [k for k in _k_values(run) if k > fit_max_k])
    result = {"emergence": {"gate_run": gate, "m": m, "tau": tau, "folds": folds, "c_grid": list(c_grid),
                            "seed": seed, "runs": emergence},
              "coverage_law": coverage}
    out_dir = Path(out_dir)
    write_pickle_atomic(out_dir / "bon_predictor.pkl", {"gate_run": gate, "m": m, "tau": tau, "runs": models})
    write_json_atomic(out_dir / "predict.json", result)
    return result
