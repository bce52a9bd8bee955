"""Phase 2: does the starting hidden state predict log tempnorm? One ridge per eval length.

Data: one row per completion, x = its starting point's hidden vector (float16 -> float32),
y = its log tempnorm at length L. The rows of a context share x, so the train/test split
is grouped by context (``GroupShuffleSplit``: no context on both sides); the same split
serves every L. The learner is the seed's: StandardScaler + Ridge on log tempnorm, the
penalty chosen by grouped K-fold cross-validation on the training part alone.

Two reference points make a test R^2 readable:

* baseline: predict the training mean for every test row. Its test R^2 is <= 0 (the
  best constant on the test set, the test mean, scores exactly 0).
* ceiling: a start-state predictor is a function of the starting point, i.e. constant
  over a starting point's completions; the best such function on the test rows is each
  starting point's own mean, so ``r2_ceiling`` = test R^2 of that prediction = the
  between-starting-point share of the test variance. No start-state model can pass it;
  a low ceiling says the target is unpredictable from the start, not that the model is weak.
  The ceiling groups rows by starting point (record), the split by context text: two
  records of one repeated context line wander to different starting points with different
  hidden vectors, so a start-state model may tell them apart (grouping them would set the
  ceiling too low), while they must still sit on one side of the split (their shared
  context would leak from train to test).
  Even with no between-start-point signal the ceiling is positive by chance: k means of N
  rows take (k - 1) / (N - 1) of the variance on average (``r2_ceiling_chance``).

``train_data`` is the step (data file -> models, splits, metrics.json) that the CLI and
the pytest fixture both run; the plot is drawn from its metrics.json (plots.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from expspec.kernels.atomic_io import jsonable, write_json_atomic, write_pickle_atomic, write_text_atomic
from expspec.kernels.errors import ExpspecError
from expspec.kernels.provenance import file_fingerprint, git_commit
from expspec.kernels.tempnorm.records import read_experiment_data

LEARNER = "standardized_ridge_log_target"
TRAIN_KNOBS = ("test_fraction", "cv_folds", "ridge_alphas")  # what phase 2 reads (its cache key)


def log_tempnorm_rows(records: Sequence[Mapping], eval_length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(X [rows, hidden] float32, y [rows] log tempnorm, record index of each row); row r is
    completion r % gen_number of record r // gen_number."""
    x, y, owner = [], [], []
    for i, record in enumerate(records):
        logs = record[f"log_individual_tempnorms_{eval_length}"]
        hidden = np.asarray(record["starting_hidden_vector"], dtype=np.float32)
        for value in logs:
            x.append(hidden)
            y.append(float(value))
            owner.append(i)
    return np.stack(x), np.asarray(y, dtype=np.float64), np.asarray(owner, dtype=np.int64)


def context_groups(records: Sequence[Mapping]) -> np.ndarray:
    """Group id per record: records of the same context text share one (a repeated context
    line must not sit on both sides of the split)."""
    ids: dict[str, int] = {}
    return np.asarray([ids.setdefault(r["initial_context"], len(ids)) for r in records], dtype=np.int64)


def grouped_split(groups: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) row indices, no group on both sides; >= 2 training groups (for CV)
    and >= 1 test group, else an ExpspecError naming the count."""
    from sklearn.model_selection import GroupShuffleSplit

    n_groups = len(np.unique(groups))
    n_test = int(np.ceil(test_fraction * n_groups))
    if n_groups - n_test < 2 or n_test < 1:
        raise ExpspecError(f"phase 2: {n_groups} distinct contexts are too few for a grouped split at "
                           f"test_fraction={test_fraction} (need >= 2 training contexts and >= 1 test context)")
    split = GroupShuffleSplit(n_splits=1, test_size=test_fraction, random_state=seed)
    train, test = next(split.split(np.zeros(len(groups)), groups=groups))
    return np.sort(train), np.sort(test)


def fit_ridge(x: np.ndarray, y: np.ndarray, groups: np.ndarray, ridge_alphas: Sequence[float], cv_folds: int):
    """StandardScaler + Ridge, the penalty chosen by grouped K-fold (mean squared error).
    Returns (fitted pipeline, chosen penalty, its mean CV MSE)."""
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import GridSearchCV, GroupKFold
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    folds = min(cv_folds, len(np.unique(groups)))
    search = GridSearchCV(Pipeline([("scaler", StandardScaler()), ("ridge", Ridge())]),
                          {"ridge__alpha": [float(a) for a in ridge_alphas]}, cv=GroupKFold(n_splits=folds),
                          scoring="neg_mean_squared_error", refit=True)
    search.fit(x, y, groups=groups)
    return search.best_estimator_, float(search.best_params_["ridge__alpha"]), float(-search.best_score_)


def r2_ceiling(y: np.ndarray, owner: np.ndarray) -> float:
    """R^2 of predicting each row by the mean of its own starting point's rows (``owner``:
    the record index, not the context text; see the module docstring)."""
    from sklearn.metrics import r2_score

    means = {o: y[owner == o].mean() for o in np.unique(owner)}
    return float(r2_score(y, np.asarray([means[o] for o in owner])))


def _scores(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    return {"r2_log": float(r2_score(y, pred)), "mse_log": float(mean_squared_error(y, pred)),
            "mae_log": float(mean_absolute_error(y, pred))}


def fit_eval_length(records: Sequence[Mapping], eval_length: int, train_records: np.ndarray,
                    ridge_alphas: Sequence[float], cv_folds: int):
    """(pipeline, metrics, split) of one eval length, trained on the rows of ``train_records``."""
    x, y, owner = log_tempnorm_rows(records, eval_length)
    groups = context_groups(records)[owner]
    is_train = np.isin(owner, train_records)
    train, test = np.flatnonzero(is_train), np.flatnonzero(~is_train)
    model, penalty, cv_mse = fit_ridge(x[train], y[train], groups[train], ridge_alphas, cv_folds)
    fit_train, fit_test = _scores(y[train], model.predict(x[train])), _scores(y[test], model.predict(x[test]))
    baseline = _scores(y[test], np.full(len(test), y[train].mean()))
    metrics = {
        **{f"train_{k}": v for k, v in fit_train.items()}, **{f"test_{k}": v for k, v in fit_test.items()},
        "n_train": int(len(train)), "n_test": int(len(test)),
        "n_train_contexts": int(len(np.unique(groups[train]))), "n_test_contexts": int(len(np.unique(groups[test]))),
        "ridge_alpha": penalty, "cv_mse_log": cv_mse,
        "baseline": {"name": "predict the train mean", "train_mean_log": float(y[train].mean()),
                     **{f"test_{k}": v for k, v in baseline.items()}},
        "r2_ceiling": r2_ceiling(y[test], owner[test]),
        "r2_ceiling_chance": (len(np.unique(owner[test])) - 1) / max(len(test) - 1, 1),
        "ridge_alpha_at_grid_edge": penalty in (min(ridge_alphas), max(ridge_alphas)),
        "test_variance_log": float(y[test].var()),
    }
    split = {"train_idx": train.tolist(), "test_idx": test.tolist(),
             "train_records": sorted({int(o) for o in owner[train]}),
             "test_records": sorted({int(o) for o in owner[test]}),
             "row": "row r = completion r % gen_number of record r // gen_number (line order)"}
    return model, metrics, split


def split_records(records: Sequence[Mapping], test_fraction: float, seed: int) -> np.ndarray:
    """The training records: one grouped split of the contexts, shared by every eval length."""
    groups = context_groups(records)
    train, _ = grouped_split(groups, test_fraction, seed)
    return np.unique(train)


def train_predictors(records: Sequence[Mapping], eval_lengths: Sequence[int], out_dir: str | Path, *,
                     test_fraction: float, cv_folds: int, ridge_alphas: Sequence[float], seed: int) -> dict:
    """Fit every eval length; write tempnorm_model_eval_{L}.pkl and split_eval_{L}.json into
    ``out_dir``; return {str(L): metrics} in increasing L."""
    train_records = split_records(records, test_fraction, seed)
    fitted = {L: fit_eval_length(records, L, train_records, ridge_alphas, cv_folds) for L in sorted(eval_lengths)}
    out = Path(out_dir)
    for L, (model, _, split) in fitted.items():  # written only once every length has fitted
        write_pickle_atomic(out / f"tempnorm_model_eval_{L}.pkl", model)
        write_json_atomic(out / f"split_eval_{L}.json", split)
    return {str(L): metrics for L, (_, metrics, _) in fitted.items()}


def train_data(tempnorm: Mapping, seed: int, data_file: str | Path, output_dir: str | Path) -> dict:
    """Phase 2 end to end: read and check the data file, fit every eval length, write the
    models, splits and metrics.json. Its provenance holds the generation config copied from
    the data's sidecar (else the records' config echo) and, apart, the knobs phase 2 read.
    Returns metrics.json's content."""
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise ExpspecError(f"--output-dir {output_dir}: exists and is not a directory")
    records, meta, lengths = read_experiment_data(data_file)
    try:
        per_length = train_predictors(records, lengths, output_dir, test_fraction=tempnorm["test_fraction"],
                                      cv_folds=tempnorm["cv_folds"], ridge_alphas=tempnorm["ridge_alphas"],
                                      seed=seed)
    except ExpspecError as err:  # too few contexts: say which file
        raise ExpspecError(f"data file {data_file}: {err}") from None
    echo = records[0].get("config") if isinstance(records[0].get("config"), dict) else {}
    generation = meta["config"] if isinstance(meta.get("config"), dict) else {"record_config_echo": echo}
    metrics = {
        "data_file": str(data_file), "eval_lengths": sorted(lengths), "model": LEARNER,
        "alpha": meta.get("alpha", echo.get("alpha")), "generator_model": meta.get("model", echo.get("model")),
        "generator_dtype": meta.get("model_dtype", echo.get("dtype")),
        "n_records": len(records), "gen_number": len(records[0]["generations"]),
        "hidden_size": len(records[0]["starting_hidden_vector"]),
        "split": {"grouped_by": "initial_context", "test_fraction": tempnorm["test_fraction"], "seed": seed,
                  "cv_folds": tempnorm["cv_folds"], "ridge_alphas": list(tempnorm["ridge_alphas"])},
        "metrics": per_length,
        "provenance": {"generation_config": generation,
                       "training_config": {"tempnorm": {k: tempnorm[k] for k in TRAIN_KNOBS}, "common": {"seed": seed}},
                       "seed": seed, "git_commit": git_commit(),
                       "inputs": {"data_file": file_fingerprint(data_file),
                                  "data_git_commit": meta.get("git_commit", "unknown")}},
    }
    # not write_json_atomic: its sorted keys would order the lengths "1", "10", "100", "2"
    write_text_atomic(output_dir / "metrics.json", json.dumps(jsonable(metrics), indent=2) + "\n")
    return metrics
