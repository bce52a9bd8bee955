"""The phase 1 data file: written and read back unchanged; every malformed record is one line
naming the file, the line and the field."""

import json
import math

import pytest
from test_tempnorm_predictor import LENGTHS, synthetic_records

from expspec.kernels.errors import ExpspecError
from expspec.kernels.tempnorm.records import meta_path, read_experiment_data, write_experiment_data
from expspec.kernels.tempnorm.tempnorms import tempnorm_summary


def _write(tmp_path, records, meta=None):
    path = tmp_path / "experiment_data.jsonl"
    write_experiment_data(path, records, {"eval_lengths": LENGTHS} if meta is None else meta)
    return path


def test_round_trip_keeps_every_number(tmp_path):
    records = synthetic_records(n_contexts=5)
    # equal completions: a zero variance, whose log (-inf) is written as the string "-inf"
    records[0]["generations"] = [dict(records[0]["generations"][0], generation_index=j) for j in range(4)]
    records[0].update(tempnorm_summary([g["model_probs"] for g in records[0]["generations"]], LENGTHS, 4.0))
    path = _write(tmp_path, records, {"eval_lengths": LENGTHS, "model": "synthetic", "alpha": 4.0})
    assert meta_path(path).name == "experiment_data.meta.json"
    back, meta, lengths = read_experiment_data(path)
    assert lengths == LENGTHS and meta["n_records"] == 5 and meta["model"] == "synthetic"
    assert json.loads(path.read_text().splitlines()[0]).keys() == records[0].keys()
    for a, b in zip(records, back):
        assert a["starting_hidden_vector"] == b["starting_hidden_vector"]
        assert [g["model_probs"] for g in a["generations"]] == [g["model_probs"] for g in b["generations"]]
        for L in LENGTHS:
            assert a[f"log_individual_tempnorms_{L}"] == b[f"log_individual_tempnorms_{L}"]
            assert a[f"log_tempnorm_variance_{L}"] == b[f"log_tempnorm_variance_{L}"]
    assert back[0]["log_tempnorm_variance_1"] == -math.inf


def test_eval_lengths_come_from_the_first_record_without_a_sidecar(tmp_path):
    path = _write(tmp_path, synthetic_records(n_contexts=3))
    meta_path(path).unlink()
    _, meta, lengths = read_experiment_data(path)
    assert meta == {} and lengths == LENGTHS


def _edit(record, key, value):
    record = json.loads(json.dumps(record))
    target = record
    *path, last = key.split(".")
    for part in path:
        target = target[int(part)] if part.isdigit() else target[part]
    last = int(last) if last.isdigit() else last
    if value is _DROP:
        del target[last]
    else:
        target[last] = value
    return record


_DROP = object()


@pytest.mark.parametrize("key, value, message", [
    ("generations", [], "field generations: expected a non-empty list"),
    ("starting_hidden_vector", ["a"], "field starting_hidden_vector: expected a list of some finite numbers"),
    ("starting_hidden_vector_dtype", "float32", 'field starting_hidden_vector_dtype: expected "float16"'),
    ("starting_point_token_ids", _DROP, "field starting_point_token_ids"),
    ("generations.0.model_probs.0", 0.0, "field generations[0].model_probs: expected probabilities in (0, 1]"),
    ("generations.0.model_probs.0", 1.5, "field generations[0].model_probs: expected probabilities in (0, 1]"),
    ("generations.0.token_ids", [1, 2], "field generations[0].token_ids: expected a list of >= 10 token ids"),
    ("individual_tempnorms_5", [1.0], "field individual_tempnorms_5: expected a list of 4 finite numbers"),
    ("log_tempnorm_mean_10", "-inf", "field log_tempnorm_mean_10: expected a finite number"),
    ("initial_context", 3, "field initial_context: expected a string"),
])
def test_malformed_record_is_one_line_naming_the_field(tmp_path, key, value, message):
    records = synthetic_records(n_contexts=3)
    records[1] = _edit(records[1], key, value)
    path = _write(tmp_path, records)
    with pytest.raises(ExpspecError) as err:
        read_experiment_data(path)
    assert f"{path}:2: {message}" in str(err.value) and "\n" not in str(err.value)


def test_inconsistent_records_and_empty_files(tmp_path):
    records = synthetic_records(n_contexts=3)
    records[2]["starting_hidden_vector"] = records[2]["starting_hidden_vector"][:-1]
    with pytest.raises(ExpspecError, match=r":3: field starting_hidden_vector: expected 16 numbers"):
        read_experiment_data(_write(tmp_path, records))
    path = tmp_path / "empty.jsonl"
    path.write_text("\n\n")
    with pytest.raises(ExpspecError, match="empty"):
        read_experiment_data(path)
    with pytest.raises(ExpspecError, match="file not found"):
        read_experiment_data(tmp_path / "missing.jsonl")


def test_missing_eval_lengths_and_bad_sidecar(tmp_path):
    records = synthetic_records(n_contexts=2)
    for r in records:
        del r["config"]
    path = _write(tmp_path, records, {})
    with pytest.raises(ExpspecError, match=":1: no eval_lengths"):
        read_experiment_data(path)
    meta_path(path).write_text("[1, 2]")
    with pytest.raises(ExpspecError, match="expected a JSON object"):
        read_experiment_data(path)
