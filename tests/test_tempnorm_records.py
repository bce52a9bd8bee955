"""The phase 1 data file: written and read back unchanged; every malformed record, every
disagreement between records or with the sidecar, is one line naming the file, the line and
the field; a failed write leaves no new data file beside a stale sidecar."""

import json
import math
import os

import pytest
from test_tempnorm_predictor import LENGTHS, synthetic_records

from expspec.kernels.errors import ExpspecError
from expspec.kernels.tempnorm.records import check_output_paths, meta_path, read_experiment_data, write_experiment_data
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
    ("individual_tempnorms_5", [1.0], "field individual_tempnorms_5: expected a list of 4 numbers >= 0"),
    ("individual_tempnorms_5", ["nan"] * 4, "field individual_tempnorms_5: expected a list of 4 numbers >= 0"),
    ("tempnorm_mean_1", -0.5, "field tempnorm_mean_1: expected a number >= 0"),
    ("log_tempnorm_variance_1", "inf", "field log_tempnorm_variance_1: expected a finite number (or \"-inf\""),
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


def test_alpha_below_one_overflows_to_inf_and_reads_back(tmp_path):
    """The kernel never raises on the alpha the config forbids: a linear value past float64 is
    inf, written "inf", and the reader takes it (its log stays finite)."""
    records = synthetic_records(n_contexts=3, alpha=-80.0)
    for r in records:
        probs = [[1e-4] * 10 for _ in r["generations"]]  # weight (1e-4)^(-81 x 10) = e^7460 at L = 10
        for g, p in zip(r["generations"], probs):
            g["model_probs"] = p
        r.update(tempnorm_summary(probs, LENGTHS, -80.0))
    assert records[0]["tempnorm_mean_10"] == math.inf and math.isfinite(records[0]["log_tempnorm_mean_10"])
    path = _write(tmp_path, records)
    assert '"tempnorm_mean_10":"inf"' in path.read_text().splitlines()[0]
    back, _, _ = read_experiment_data(path)
    assert back[0]["individual_tempnorms_10"] == [math.inf] * 4 and back[0]["tempnorm_variance_1"] == 0.0


def test_records_must_share_one_config_echo(tmp_path):
    records = synthetic_records(n_contexts=3)
    records[2]["config"] = dict(records[2]["config"], seed=99)
    with pytest.raises(ExpspecError, match=r":3: field config: expected the same config echo as line 1's"):
        read_experiment_data(_write(tmp_path, records))


def test_echo_must_agree_with_the_sidecar_and_the_record(tmp_path):
    records = synthetic_records(n_contexts=3)
    path = _write(tmp_path, records, {"eval_lengths": LENGTHS, "alpha": 2.0})
    with pytest.raises(ExpspecError, match=r":1: field config.alpha: expected 2.0, as the sidecar experiment_data"):
        read_experiment_data(path)
    path = _write(tmp_path, records, {"eval_lengths": LENGTHS, "seeds": {"seed": 1}})
    with pytest.raises(ExpspecError, match=r":1: field config.seed: expected 1"):
        read_experiment_data(path)
    for r in records:
        r["config"]["gen_number"] = 5
    with pytest.raises(ExpspecError, match=r":1: field generations: expected 5 completions, as its config.gen_number"):
        read_experiment_data(_write(tmp_path, records))


def test_record_count_and_fingerprint_must_match_the_sidecar(tmp_path):
    path = _write(tmp_path, synthetic_records(n_contexts=3))
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:2]))
    with pytest.raises(ExpspecError, match=r"2 records, but its sidecar experiment_data.meta.json says n_records = 3"):
        read_experiment_data(path)
    path.write_text("".join(lines).replace('"generated_text":"x"', '"generated_text":"y"', 1))
    with pytest.raises(ExpspecError, match=r"its fingerprint \w+ is not the one its sidecar .* records"):
        read_experiment_data(path)


def test_output_paths_are_checked_before_any_work(tmp_path):
    check_output_paths(tmp_path / "new" / "deeper" / "data.jsonl")  # folders that can be made: fine
    assert not (tmp_path / "new").exists()  # and nothing made by the check
    (tmp_path / "data.meta.json").mkdir()
    with pytest.raises(ExpspecError, match=r"data sidecar .*data.meta.json: is a directory"):
        check_output_paths(tmp_path / "data.jsonl")
    (tmp_path / "a_file").write_text("")
    with pytest.raises(ExpspecError, match=r"a_file is not a directory"):
        check_output_paths(tmp_path / "a_file" / "sub" / "data.jsonl")


def test_a_failed_write_leaves_no_new_data_beside_a_stale_sidecar(tmp_path, monkeypatch):
    old = synthetic_records(n_contexts=3)
    path = _write(tmp_path, old)
    replace = os.replace
    calls = []

    def fail_on_the_sidecar(src, dst):
        calls.append(dst)
        if str(dst).endswith(".meta.json"):
            raise OSError(28, "No space left on device")
        replace(src, dst)

    monkeypatch.setattr(os, "replace", fail_on_the_sidecar)
    with pytest.raises(ExpspecError) as err:
        _write(tmp_path, synthetic_records(n_contexts=4, seed=1))
    assert "cannot write it or its sidecar (No space left on device)" in str(err.value)
    assert "\n" not in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["experiment_data.jsonl"]  # no temp files, no old sidecar
    back, meta, _ = read_experiment_data(path)  # the new data, read from its own config echo
    assert len(back) == 4 and meta == {}
