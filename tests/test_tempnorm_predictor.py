"""Phase 2 on planted data: the ridge finds a planted signal, the split is grouped by context,
the baseline and ceiling obey their laws, and ``expspec tempnorm train`` writes the seed's files."""

import json
import math
import pickle

import numpy as np
import pytest

from expspec.kernels.cli import main
from expspec.kernels.errors import ExpspecError
from expspec.kernels.tempnorm.predictor import context_groups, grouped_split, r2_ceiling, train_predictors
from expspec.kernels.tempnorm.records import write_experiment_data
from expspec.kernels.tempnorm.tempnorms import tempnorm_summary

LENGTHS = [1, 5, 10]


def synthetic_records(n_contexts=40, gen_number=4, gen_length=10, hidden=16, alpha=4.0, seed=0, signal=1.0,
                      contexts=None):
    """Records of the phase 1 schema whose log token probabilities sit at a level linear in the
    hidden vector (``signal`` = 0: the same level for every context, so nothing is predictable)."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=hidden)
    records = []
    for i in range(n_contexts):
        h = rng.normal(size=hidden).astype(np.float16)
        log_level = min(-1.5 + signal * 0.4 * float(w @ h.astype(float)) / math.sqrt(hidden), -0.05)
        probs = np.clip(np.exp(log_level + rng.normal(0, 0.2, (gen_number, gen_length))), 1e-6, 1.0)
        record = {
            "context_index": i, "initial_context": contexts[i] if contexts else f"context {i}",
            "starting_point": f"context {i} and more", "starting_point_token_ids": [1, 2, 3 + i],
            "starting_hidden_vector_dtype": "float16", "starting_hidden_vector": h.tolist(),
            "generations": [{"generation_index": j, "token_ids": rng.integers(0, 100, gen_length).tolist(),
                             "generated_text": "x", "model_probs": probs[j].tolist()} for j in range(gen_number)],
            "config": {"model": "synthetic", "gen_length": gen_length, "eval_lengths": LENGTHS,
                       "gen_number": gen_number, "alpha": alpha, "initial_wander": 0, "seed": seed},
        }
        record.update(tempnorm_summary(probs.tolist(), LENGTHS, alpha))
        records.append(record)
    return records


def _fit(records, tmp_path, **kw):
    args = dict(test_fraction=0.25, cv_folds=4, ridge_alphas=[0.1, 1.0, 10.0, 100.0], seed=0) | kw
    return train_predictors(records, LENGTHS, tmp_path, **args)


def test_planted_signal_is_found_below_the_ceiling(tmp_path):
    metrics = _fit(synthetic_records(signal=1.0), tmp_path)
    for L in LENGTHS:
        m = metrics[str(L)]
        assert m["baseline"]["test_r2_log"] <= 0.0  # a constant never beats the test mean
        assert m["test_r2_log"] <= m["r2_ceiling"] + 1e-12
        assert m["n_train"] + m["n_test"] == 40 * 4 and m["n_test_contexts"] == 10
    assert metrics["10"]["r2_ceiling"] > 0.8 and metrics["10"]["test_r2_log"] > 0.5
    model = pickle.loads((tmp_path / "tempnorm_model_eval_10.pkl").read_bytes())
    assert model.predict(np.zeros((1, 16), np.float32)).shape == (1,)


def test_no_signal_means_a_low_ceiling(tmp_path):
    metrics = _fit(synthetic_records(n_contexts=200, signal=0.0), tmp_path)
    for L in LENGTHS:
        m = metrics[str(L)]
        # only chance separates the contexts: k groups of N rows share (k - 1) / (N - 1) = 49 / 199
        # of the variance on average
        assert m["r2_ceiling"] < 0.4
        assert m["test_r2_log"] <= m["r2_ceiling"] + 1e-12


def test_split_keeps_a_context_on_one_side():
    texts = [f"c{i // 2}" for i in range(30)]  # every context line appears twice
    groups = context_groups([{"initial_context": t} for t in texts])
    train, test = grouped_split(groups, 0.2, seed=3)
    assert {texts[i] for i in train}.isdisjoint(texts[i] for i in test)
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(30))
    again = grouped_split(groups, 0.2, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip((train, test), again))


def test_repeated_contexts_stay_together_through_training(tmp_path):
    records = synthetic_records(n_contexts=24, contexts=[f"c{i // 3}" for i in range(24)])
    _fit(records, tmp_path)
    split = json.loads((tmp_path / "split_eval_5.json").read_text())
    train = {records[i]["initial_context"] for i in split["train_records"]}
    test = {records[i]["initial_context"] for i in split["test_records"]}
    assert train.isdisjoint(test) and len(train | test) == 8


def test_ceiling_is_the_between_group_share():
    y = np.array([1.0, 3.0, 10.0, 12.0])
    owner = np.array([0, 0, 1, 1])
    # mean 6.5: total SS = 5.5^2 + 3.5^2 + 3.5^2 + 5.5^2 = 85; within the groups 4 x 1^2 = 4
    assert r2_ceiling(y, owner) == pytest.approx(1 - 4 / 85)


def test_too_few_contexts_is_an_error(tmp_path):
    with pytest.raises(ExpspecError, match="too few for a grouped split"):
        _fit(synthetic_records(n_contexts=2), tmp_path)


GENERATION_CONFIG = {"tempnorm": {"model": "synthetic", "gen_length": 10, "gen_number": 4}, "common": {"seed": 0}}


def _data_file(tmp_path, records=None):
    path = tmp_path / "data.jsonl"
    write_experiment_data(path, records or synthetic_records(), {"eval_lengths": LENGTHS, "alpha": 4.0,
                                                                "model": "synthetic", "git_commit": "abc",
                                                                "config": GENERATION_CONFIG})
    return path


def test_train_cli_writes_the_seed_files(tmp_path, capsys):
    data = _data_file(tmp_path)
    out = tmp_path / "models"
    rc = main(["tempnorm", "train", "--data-file", str(data), "--output-dir", str(out),
               "--set", "tempnorm.cv_folds=3", "--set", "common.seed=7"])
    assert rc == 0
    names = {p.name for p in out.iterdir()}
    assert names == {"metrics.json", "r2_vs_eval_length.png"} | {f"tempnorm_model_eval_{L}.pkl" for L in LENGTHS} \
        | {f"split_eval_{L}.json" for L in LENGTHS}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["eval_lengths"] == LENGTHS and metrics["alpha"] == 4.0 and metrics["split"]["seed"] == 7
    prov = metrics["provenance"]
    assert prov["seed"] == 7 and prov["git_commit"] and prov["inputs"]["data_file"]
    assert prov["inputs"]["data_git_commit"] == "abc"
    # the generation config is the data's (from its sidecar), phase 2's knobs apart and only those
    assert prov["generation_config"] == GENERATION_CONFIG
    assert prov["training_config"] == {"tempnorm": {"test_fraction": 0.2, "cv_folds": 3,
                                                    "ridge_alphas": metrics["split"]["ridge_alphas"]},
                                       "common": {"seed": 7}}
    assert list(metrics["metrics"]) == ["1", "5", "10"]  # numeric order in the file, not "1", "10", "5"
    for L in LENGTHS:
        m = metrics["metrics"][str(L)]
        assert {"train_r2_log", "test_r2_log", "train_mse_log", "test_mse_log", "train_mae_log", "test_mae_log",
                "n_train", "n_test", "r2_ceiling", "ridge_alpha"} <= set(m)
        assert m["baseline"]["name"] == "predict the train mean"
    assert "test R2" in capsys.readouterr().out


def test_without_a_sidecar_the_generation_config_is_the_records_echo(tmp_path):
    from expspec.kernels.tempnorm.predictor import train_data
    from expspec.kernels.tempnorm.records import meta_path

    data = _data_file(tmp_path)
    meta_path(data).unlink()
    knobs = {"test_fraction": 0.25, "cv_folds": 3, "ridge_alphas": [1.0, 10.0]}
    metrics = train_data(knobs, 0, data, tmp_path / "models")
    assert metrics["provenance"]["generation_config"] == {"record_config_echo": synthetic_records()[0]["config"]}


@pytest.mark.parametrize("break_it, message", [
    (lambda lines: lines[:1] + ["{not json"] + lines[2:], ":2: not a JSON object"),
    (lambda lines: lines[:2] + [json.dumps({k: v for k, v in json.loads(lines[2]).items() if k != "generations"})]
     + lines[3:], ":3: field generations: expected a non-empty list"),
    (lambda lines: [lines[0].replace('"log_tempnorm_mean_5":', '"renamed":')] + lines[1:],
     ":1: field log_tempnorm_mean_5: expected a finite number"),
    (lambda lines: [], "empty"),
])
def test_train_cli_bad_data_is_one_line_and_writes_nothing(tmp_path, capsys, break_it, message):
    data = _data_file(tmp_path)
    data.write_text("\n".join(break_it(data.read_text().splitlines())) + "\n")
    out = tmp_path / "models"
    assert main(["tempnorm", "train", "--data-file", str(data), "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("expspec: error: ") and message in err and err.count("\n") == 1
    assert not out.exists()


def test_train_cli_missing_file_and_unknown_key(tmp_path, capsys):
    out = tmp_path / "models"
    assert main(["tempnorm", "train", "--data-file", str(tmp_path / "nope.jsonl"), "--output-dir", str(out)]) == 2
    assert "nope.jsonl: file not found" in capsys.readouterr().err
    data = _data_file(tmp_path)
    assert main(["tempnorm", "train", "--data-file", str(data), "--output-dir", str(out),
                 "--set", "tempnorm.ridge_alpha=1"]) == 2
    err = capsys.readouterr().err
    assert "unknown key tempnorm.ridge_alpha" in err and "did you mean tempnorm.ridge_alphas" in err
    assert not out.exists()
