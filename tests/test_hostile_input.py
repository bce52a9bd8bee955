"""Hostile input (issue 14, Reliability): every reader, fed garbage, returns a valid result or
raises one ``ExpspecError`` line naming the file (and the field where there is one); the CLI
exits 2 with that one line on stderr and leaves its output folder exactly as it was.

The garbage comes from hypothesis, derandomized: random bytes and unicode, each reader's own
valid sample truncated, a line of it replaced, bytes of it flipped, one field of a record set
to a wrong type, a huge number, NaN/inf or removed, plus the classics (an empty file, a folder
where a file belongs, a 5000-digit number, 20000 open brackets, invalid UTF-8). Nothing here
loads a model.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from expspec.kernels.atomic_io import jsonl_objects, read_json
from expspec.kernels.cli import main
from expspec.kernels.config import builtin_profile, registry, resolve_config
from expspec.kernels.data.corpus import check_corpus_spec, load_corpus
from expspec.kernels.errors import ExpspecError
from expspec.kernels.hero.diagnostics import STEP_FIELDS, read_diagnostics, read_epoch_diagnostics
from expspec.kernels.hero.squad import read_predictions, read_squad
from expspec.kernels.lane_b.pipeline import (read_calibration_points, read_infer, read_n_scaling_params,
                                             read_stats_alpha)
from expspec.kernels.lane_b.runs import THRESHOLD_ENV, LaneB, read_env_value, read_run_summary
from expspec.kernels.lane_b.schema import COLUMNS, FLOAT_COLUMNS, INT_COLUMNS, append_rows, read_rows
from expspec.kernels.tempnorm.contexts import read_contexts
from expspec.kernels.tempnorm.records import meta_path, read_experiment_data, write_experiment_data
from expspec.kernels.train.training_log import parse_training_log

DATA = Path(__file__).parent / "data"
HOSTILE = dict(deadline=None, derandomize=True, database=None,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                      HealthCheck.large_base_example])


def hostile(examples: int):
    return settings(max_examples=examples, **HOSTILE)


# --- garbage -----------------------------------------------------------------------------------

CLASSICS = [b"", b"\n\n \n", b"\x00" * 16, b"\xff\xfe\xfa", b"\xed\xa0\x80", "\ufeff{}".encode(),
            b"1" * 5000, b"[" * 20000, b'{"a": ' + b"9" * 5000 + b"}", b"NaN\nInfinity\n-Infinity\n",
            "é∂😀\u2028\u0085\x1c".encode(), b"\r\r\n\r"]
HUGE = st.sampled_from([10**400, -(10**400), 2**63, -1, 0])
LEAF = (st.none() | st.booleans() | st.integers() | HUGE | st.floats() | st.text(max_size=10)
        | st.sampled_from(["nan", "inf", "-inf", "", "0"]))
JSON = st.recursive(LEAF, lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=5), kids,
                                                                                     max_size=3), max_leaves=8)
DROP = object()  # a field edit that removes the field


def _flip(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for at, value in edits:
        if out:
            out[at % len(out)] = value
    return bytes(out)


def _replace_line(data: bytes, at: int, line: bytes) -> bytes:
    lines = data.split(b"\n")
    lines[at % len(lines)] = line
    return b"\n".join(lines)


def garbage(valid: bytes, folder: bool = True) -> st.SearchStrategy[bytes | None]:
    """What a reader of ``valid``'s format may be handed: random bytes, unicode or JSON, the
    sample truncated, a line of it replaced, bytes of it flipped, a classic, or (None) a
    folder where the file belongs."""
    line = st.binary(max_size=40) | st.text(max_size=40).map(str.encode) | st.sampled_from(CLASSICS)
    return st.one_of(
        st.sampled_from(CLASSICS + [None] if folder else CLASSICS),
        JSON.map(lambda value: json.dumps(value).encode()),
        st.binary(max_size=200),
        st.text(max_size=80).map(str.encode),
        st.integers(0, len(valid)).map(lambda n: valid[:n]),
        st.tuples(st.integers(0, 1000), line).map(lambda t: _replace_line(valid, *t)),
        st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=4)
        .map(lambda edits: _flip(valid, edits)),
    )


def edited(records: list, fields: list[str], indices=None, drop: bool = True) -> st.SearchStrategy[tuple[list, str]]:
    """(records with one field of one record set to hostile JSON or removed, that field)."""
    def apply(choice):
        index, field, value = choice
        out = json.loads(json.dumps(records))
        if value is DROP:
            out[index].pop(field, None)
        else:
            out[index][field] = value
        return out, field

    return st.tuples(st.sampled_from(indices or range(len(records))), st.sampled_from(fields),
                     JSON | st.just(DROP) if drop else JSON).map(apply)


def jsonl(records: list) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


# --- the laws ----------------------------------------------------------------------------------

def tree_digest(folder: Path) -> dict[str, str]:
    """Every file and folder under ``folder``: relative path -> sha256 (folders: "/")."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "/"
            for p in sorted(folder.rglob("*"))}


@contextlib.contextmanager
def scratch():
    with tempfile.TemporaryDirectory(prefix="hostile-") as folder:
        yield Path(folder)


def put(folder: Path, name: str, data: bytes | None) -> Path:
    """``data`` at folder/name (replacing what is there); None puts a folder there instead."""
    path = folder / name
    path.unlink(missing_ok=True)
    if data is None:
        path.mkdir()
    else:
        path.write_bytes(data)
    return path


def survives(read, path: Path, *, names=(), field: str | None = None, writer: bool = False):
    """``read(path)``'s result, or None after an ExpspecError whose message is one line naming
    the file (or one of ``names``) and ``field``; any other exception fails the test. Nothing
    under the file's folder may be written or changed (by a ``writer``: when it refuses)."""
    before = tree_digest(path.parent)
    try:
        result = read(path)
    except ExpspecError as err:
        message = str(err)
        assert len(message.splitlines()) == 1, message
        assert any(str(n) in message for n in (path, *names)), f"no file named in: {message}"
        assert field is None or field in message, f"field {field!r} not named in: {message}"
        result = None
    if result is None or not writer:
        assert tree_digest(path.parent) == before, "a reader wrote or changed a file"
    return result


# --- training logs (nanochat's and the built-in trainer's) ------------------------------------

BUILTIN_LOG = b"""TrainConfig: {"depth": 2, "seed": 0}
Vocab size: 4,096
Parameter counts:
transformer_matrices    : 98,304
lm_head                 : 262,144
Using user-provided number of iterations: 4
Total batch size 4,096 => gradient accumulation steps: 2
Step 00000 | Validation bpb: 3.301234
step 00000/00004 (0.00%) | loss: 8.317000 | lrm: 1.00 | dt: 120.50ms | tok/sec: 33,991 | mfu: 0.00 | total time: 0.00m
step 00001/00004 (25.00%) | loss: 8.101000 | lrm: 1.00 | dt: 110.20ms | tok/sec: 37,168 | mfu: 0.00 | total time: 0.00m
Step 00002 | Validation bpb: 3.102345
step 00002/00004 (50.00%) | loss: 7.900000 | lrm: 1.00 | dt: 111.00ms | tok/sec: 36,900 | mfu: 0.00 | total time: 0.01m
step 00003/00004 (75.00%) | loss: nan | lrm: 1.00 | dt: 112.00ms | tok/sec: 36,571 | mfu: 0.00 | total time: 0.01m
Step 00004 | Validation bpb: 2.987654
Total training time: 0.01m
Minimum validation bpb: 2.987654
Time-to-target (val_bpb): inf | method: unreachable | threshold: 1.000000 | step: inf | within horizon: no
"""
LOGS = {"builtin": BUILTIN_LOG, "nanochat_2025": (DATA / "nanochat_2025_mfu.log").read_bytes(),
        "nanochat_2026": (DATA / "nanochat_2026_bf16_mfu.log").read_bytes()}


@pytest.mark.parametrize("vintage", list(LOGS))
def test_valid_samples_parse(vintage, tmp_path):
    log = parse_training_log(put(tmp_path, "train.log", LOGS[vintage]))
    assert log.evals and (log.steps or log.failed_at_step >= 0)


@pytest.mark.parametrize("vintage", list(LOGS))
@hostile(60)
@given(data=st.data())
@example(data=None)
def test_training_logs(vintage, data):
    content = data.draw(garbage(LOGS[vintage])) if data else b"Minimum validation bpb: abc\n"
    with scratch() as d:
        log = survives(parse_training_log, put(d, "train.log", content))
    if log is not None:
        assert log.evals and all(isinstance(s, int) for s, _ in log.evals)


def test_training_log_numbers_past_every_limit():
    for line in (b"step " + b"1" * 5000 + b" | loss: 1", b"Total batch size " + b"9" * 400 + b" => gradient "
                 b"accumulation steps: 1", b"lm_head : " + b"9" * 5000, b"Minimum validation bpb: nope"):
        with scratch() as d:
            survives(parse_training_log, put(d, "train.log", BUILTIN_LOG + line + b"\n" + BUILTIN_LOG))
    with scratch() as d:
        survives(parse_training_log, put(d, "train.log", None))


# --- hero: diagnostics (ours and the original's), epoch log, SQuAD predictions and gold -------

OURS = [{"epoch": 0, "global_step": s, "stage": "B", "mode": "eval", "first_acc": a, "first_acc_top5": a,
         "first": 2.5, "kce": 3.0, "kd": None, "grad_norm": 10.0, "lr": 5e-5, "sec_per_step": 0.4,
         "answer_length_avg": 1.5, "token_diversity": 4} for s, a in ((0, 0.0), (10, 0.2), (20, 0.1))]
ORIGINAL = [{"epoch": 0, "global_step": s, "grad_norm": 7.0,
             "models": {"llama": {"first_acc": a, "grad_norm": 100.0}, "qwen": {"first_acc": a / 2}}}
            for s, a in ((0, 0.0), (10, 0.2))]
EPOCH = [{"epoch": 0, "stage": "B", "samples": [{"question": "q", "prediction": "p", "gold": ["g"]}],
          "first_token_histogram": {"the": 3}, "loss_breakdown": {"kce": 1.5, "kd": None}}]


@pytest.mark.parametrize("records, fields", [(OURS, list(STEP_FIELDS)), (ORIGINAL, ["global_step", "models"])],
                         ids=["ours", "original"])
@hostile(60)
@given(data=st.data())
def test_diagnostics_garbage(records, fields, data):
    with scratch() as d:
        points = survives(read_diagnostics, put(d, "diagnostics.jsonl", data.draw(garbage(jsonl(records)))))
    if points is not None:
        assert points[0] and all(0.0 <= p.first_acc <= 1.0 for p in points[0])


@pytest.mark.parametrize("records, fields", [(OURS, list(STEP_FIELDS)), (ORIGINAL, ["global_step", "models"]),
                                             (EPOCH, ["epoch", "stage", "samples", "first_token_histogram",
                                                      "loss_breakdown"])], ids=["ours", "original", "epoch"])
@hostile(60)
@given(data=st.data())
def test_diagnostics_fields(records, fields, data):
    # without its "models" an original line reads as one of ours (then "field stage: missing")
    bad, field = data.draw(edited(records, fields, drop=records is not ORIGINAL))
    read = read_epoch_diagnostics if records is EPOCH else read_diagnostics
    with scratch() as d:
        survives(read, put(d, "diagnostics.jsonl", jsonl(bad)), field=field)


SQUAD = {"version": "1.1", "data": [{"title": "t", "paragraphs": [{"context": "Paris is in France.", "qas": [
    {"id": "q1", "question": "Where is Paris?", "answers": [{"text": "France", "answer_start": 12}]}]}]}]}
PREDICTIONS = [{"id": "q1", "prediction": "France"}, {"id": "q2", "prediction": "x"}]


@hostile(60)
@given(data=st.data())
def test_squad_predictions_and_gold(data):
    with scratch() as d:
        predictions = survives(read_predictions, put(d, "pred.jsonl", data.draw(garbage(jsonl(PREDICTIONS)))))
        questions = survives(read_squad, put(d, "dev.json", data.draw(garbage(json.dumps(SQUAD).encode()))))
        bad, field = data.draw(edited(PREDICTIONS, ["id", "prediction"]))
        survives(read_predictions, put(d, "edited.jsonl", jsonl(bad)), field=field)
    assert predictions is None or all(isinstance(v, str) for v in predictions.values())
    assert questions is None or len(questions) > 0


# --- best-of-N: run files, collector config, prompts (kernels/bon: tests only) ----------------

def bon_run() -> list[dict]:
    from expspec.kernels.bon.collector import prompt_record

    samples = [{"text": t, "answer": t, "score": float(t == "4"), "logprob": -1.0, "sampling_logprob": -1.0,
                "tokens": 1, "token_ids": [7], "finished": True, "latency_s": 0.1, "first_token_entropy": 0.5,
                "mean_token_entropy": 0.5} for t in ("4", "5")]
    prompt = prompt_record(0, {"id": "p0", "prompt": "2+2=", "answer": "4"}, samples, [1, 2])
    header = {"record": "header", "config": {"k_values": [1, 2]}, "model": "m", "seed": 0, "adapter": None}
    summary = {"record": "summary", "batches": [], "seconds": 1.0, "tokens": 2, "tok_per_s": 2.0,
               "mean_pass_at_k": {"1": 0.5, "2": 1.0}}
    return [header, prompt, summary]


COLLECTOR = {"base_model": "smollm2-135m-instruct", "prompts_file": "missing-prompts.jsonl", "k_values": [1, 2],
             "samples_per_prompt": 2, "max_new_tokens": 4, "temperature": 0.8, "top_p": 0.95, "metadata": {}}


@hostile(60)
@given(data=st.data())
def test_bon_run_files(data):
    from expspec.kernels.bon.collector import read_run

    with scratch() as d:
        survives(read_run, put(d, "bon_run.jsonl", data.draw(garbage(jsonl(bon_run())))))
        bad, field = data.draw(edited(bon_run(), ["id", "samples", "n", "c", "pass_at_k", "record"], indices=[1]))
        survives(read_run, put(d, "edited.jsonl", jsonl(bad)), field=field)


@hostile(60)
@given(data=st.data())
def test_bon_collector_config(data):
    from expspec.kernels.bon.collector import read_collector_config

    with scratch() as d:
        survives(read_collector_config, put(d, "collector.json", data.draw(garbage(json.dumps(COLLECTOR).encode()))))
        bad, field = data.draw(edited([COLLECTOR], list(COLLECTOR) + ["adapter_path", "n_prompts", "scorer"])
                               .filter(lambda t: not (isinstance(t[0][0].get(t[1]), int) and abs(t[0][0][t[1]]) > 2**1000)))
        survives(read_collector_config, put(d, "edited.json", json.dumps(bad[0]).encode()), field=field)


def test_bon_collector_config_huge_float_field():
    from expspec.kernels.bon.collector import read_collector_config

    with scratch() as d:
        survives(read_collector_config, put(d, "c.json", json.dumps(dict(COLLECTOR, temperature=10**400)).encode()),
                 field="temperature")


def _without(record: int, key: str):
    return lambda records: records[record].pop(key)


@pytest.mark.parametrize("edit", [
    _without(0, "config"), lambda r: r[0].update(adapter=[1]), lambda r: r[0]["config"].update(k_values=["a"]),
    _without(1, "diversity"), lambda r: r[1].update(latency_s="x")],
    ids=["no-config", "adapter-list", "k-text", "no-diversity", "latency-text"])
def test_bon_analyze_on_runs_read_run_accepts(edit, tmp_path):
    records = bon_run()
    edit(records)
    run = put(tmp_path, "run.jsonl", jsonl(records))
    assert cli(["bon", "analyze", str(run), "--out", str(tmp_path / "out" / "summary.json")], tmp_path, [run]) == 2


@hostile(40)
@given(data=st.data())
def test_bon_prompts_file(data):
    from expspec.kernels.bon.prompts import read_prompts

    rows = [{"id": "p0", "prompt": "2+2=", "answer": "4"}, {"id": "p1", "prompt": "3+3=", "answer": 6}]
    with scratch() as d:
        survives(lambda p: read_prompts(p, prompt_field="prompt", answer_field="answer", id_field="id"),
                 put(d, "prompts.jsonl", data.draw(garbage(jsonl(rows)))))


@hostile(40)
@given(data=st.data())
def test_bon_pairs_file(data):
    from expspec.kernels.bon.distill import read_pairs

    with scratch() as d:
        pairs = survives(read_pairs, put(d, "pairs.jsonl", data.draw(garbage(jsonl([{"prompt": "q", "target": "4"}])))))
    assert pairs is None or all(isinstance(p["prompt"], str) and isinstance(p["target"], str) for p in pairs)


TELEMETRY = b"id,wait_s,queue\np0,1.5,3\np1,0.25,1\n"


@hostile(40)
@given(content=garbage(TELEMETRY).map(lambda b: b if b is None else b.decode("utf-8", "replace").encode()))
def test_bon_telemetry_csv(content):
    """Valid UTF-8 only: invalid UTF-8 and huge fields are the test below."""
    from expspec.kernels.bon.predict import read_telemetry

    with scratch() as d:
        survives(read_telemetry, put(d, "telemetry.csv", content))


@pytest.mark.parametrize("content", [b"id,x\np0,\xff\n", b"id,x\np0," + b"9" * 200_000 + b"\n"],
                         ids=["bad-utf8", "huge-field"])
def test_bon_telemetry_bad_bytes(content):
    from expspec.kernels.bon.predict import read_telemetry

    with scratch() as d:
        survives(read_telemetry, put(d, "telemetry.csv", content))


# --- TempNorm: the phase 1 data file and its sidecar, the contexts file -----------------------

def tempnorm_records() -> list[dict]:
    from test_tempnorm_predictor import synthetic_records

    return synthetic_records(n_contexts=2, gen_number=2, hidden=4)


TEMPNORM_FIELDS = ["initial_context", "starting_point", "context_index", "starting_point_token_ids",
                   "starting_hidden_vector_dtype", "starting_hidden_vector", "generations", "config",
                   "individual_tempnorms_5", "tempnorm_mean_1", "log_tempnorm_variance_10", "log_tempnorm_mean_5"]


@hostile(60)
@given(data=st.data())
def test_tempnorm_data_file(data):
    with scratch() as d:
        path = d / "data.jsonl"
        write_experiment_data(path, tempnorm_records(), {"eval_lengths": [1, 5, 10]})
        target = data.draw(st.sampled_from([path, meta_path(path)]))
        put(d, target.name, data.draw(garbage(target.read_bytes())))
        survives(read_experiment_data, path, names=[meta_path(path)])


@hostile(60)
@given(data=st.data())
def test_tempnorm_data_fields(data):
    bad, field = data.draw(edited(tempnorm_records(), TEMPNORM_FIELDS))
    with scratch() as d:
        path = d / "data.jsonl"
        write_experiment_data(path, bad, {"eval_lengths": [1, 5, 10]})  # the sidecar agrees with the edit
        survives(read_experiment_data, path, field=field)


@hostile(30)
@given(content=garbage(b"It was a truth universally acknowledged.\nA second context.\n"))
def test_tempnorm_contexts_file(content):
    with scratch() as d:
        contexts = survives(read_contexts, put(d, "contexts.txt", content))
    assert contexts is None or all(c.strip() for c in contexts)


# --- Lane B: calibration, stats, infer, run.json, n_scaling_params.txt, threshold.env, CSV ---

CALIBRATION = {"metric": "val_bpb", "points": [{"tokens": 40960, "value": 2.1}, {"tokens": 81920, "value": 1.9}]}
STATS = {"alpha": 0.31, "alpha_ci": [0.25, 0.37], "fingerprint": "abc:bpe:4096"}
INFER = {"solve_status": "ok", "alpha": 0.31, "inferred_target_param_data_ratio": 12.5, "confirmation_ratio": 18.0,
         "empirical_alpha": {"alpha": 0.3, "ci": [0.2, 0.4]}}
RUN = {"run_id": "laneb-x-s41", "status": "ok", "log": "runs/x/train.log", "evals": [[0, 3.3], [20, 2.1]],
       "eval_train_times": [0.0, 4.2], "horizon": 20, "dt_median_ms": 210.0, "min_val_bpb": 2.1}
LANE_B_JSON = {
    "calibration": (read_calibration_points, CALIBRATION, ["points"]),
    "stats": (read_stats_alpha, STATS, ["alpha", "alpha_ci"]),
    "infer": (read_infer, INFER, ["solve_status", "inferred_target_param_data_ratio", "confirmation_ratio",
                                  "empirical_alpha"]),
    "run": (read_run_summary, RUN, ["run_id", "status", "log", "evals", "eval_train_times", "horizon",
                                    "dt_median_ms"]),
}


@pytest.mark.parametrize("name", list(LANE_B_JSON))
def test_lane_b_valid_samples_read(name):
    read, record, _ = LANE_B_JSON[name]
    with scratch() as d:
        assert read(put(d, f"{name}.json", json.dumps(record).encode())) is not None


@pytest.mark.parametrize("name", list(LANE_B_JSON))
@hostile(50)
@given(data=st.data())
def test_lane_b_json(name, data):
    read, record, fields = LANE_B_JSON[name]
    bad, field = data.draw(edited([record], fields))
    with scratch() as d:
        survives(read, put(d, f"{name}.json", data.draw(garbage(json.dumps(record).encode()))))
        survives(read, put(d, f"edited-{name}.json", json.dumps(bad[0]).encode()), field=field)


@hostile(40)
@given(data=st.data())
def test_lane_b_text_files(data):
    with scratch() as d:
        lb = LaneB({}, {}, d)
        count = survives(lambda p: read_n_scaling_params(lb), put(d, "n_scaling_params.txt",
                                                                  data.draw(garbage(b"360448\n"))))
        threshold = survives(lambda p: read_env_value(p, THRESHOLD_ENV),
                             put(d, "threshold.env", data.draw(garbage(f"{THRESHOLD_ENV}=1.234567\n".encode()))))
    assert count is None or isinstance(count, int)
    assert threshold is None or isinstance(threshold, float)


def _schema_csv(folder: Path) -> Path:
    row = {"timestamp_utc": "2026-01-01T00:00:00Z", "git_commit": "abc", "run_id": "r1", "seed": 41,
           "dataset_id": "austen", "target_metric_name": "val_bpb", "target_metric_threshold": 1.5,
           "n_scaling_params": 360448, "chosen_ratio": 10.5, "lane_b_decision": "inferred", "status": "ok",
           "min_val_bpb": float("nan"), "notes": "a=1; b=2"}
    append_rows(folder / "lane_b_inference_schema.csv", [row, dict(row, run_id="r2", seed=42)])
    return folder / "lane_b_inference_schema.csv"


@hostile(60)
@given(data=st.data())
def test_lane_b_csv(data):
    with scratch() as d:
        path = _schema_csv(d)
        put(d, path.name, data.draw(garbage(path.read_bytes())))
        rows = survives(read_rows, path)
        # appending to that file: appended, or refused with nothing written (no lock file either)
        survives(lambda p: append_rows(p, [{"run_id": "r3", "seed": 7}]), path, writer=True)
        survives(lambda p: append_rows(p, [{"run_id": "r3", "seed": 7}]), put(d, "folder.csv", None), writer=True)
    assert rows is None or all(set(r) == set(COLUMNS) for r in rows)


@hostile(60)
@given(data=st.data())
def test_lane_b_csv_cells(data):
    column = data.draw(st.sampled_from(sorted(INT_COLUMNS | FLOAT_COLUMNS)))
    value = data.draw(st.text(max_size=12) | st.sampled_from(["1" * 5000, "9" * 400, "nan", "-inf", "1e999", "0x1f"]))
    with scratch() as d:
        path = _schema_csv(d)
        rows = list(csv.reader(io.StringIO(path.read_text())))
        rows[1][list(COLUMNS).index(column)] = value
        out = io.StringIO()  # as a person's editor would save it
        csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_ALL).writerows(rows)
        path.write_text(out.getvalue())
        survives(read_rows, path, field=column)


@hostile(40)
@given(notes=st.text(max_size=30), dataset=st.text(max_size=10))
@example(notes="a\rb", dataset="\r\n")  # the csv module writes a lone "\r" unquoted; its reader splits there
def test_lane_b_csv_text_cells_round_trip(notes, dataset):
    with scratch() as d:
        path = _schema_csv(d)
        append_rows(path, [{"run_id": "r3", "seed": 7, "notes": notes, "dataset_id": dataset}])
        append_rows(path, [{"run_id": "r4", "seed": 8}])
        rows = read_rows(path)
    assert [r["run_id"] for r in rows] == ["r1", "r2", "r3", "r4"]
    assert (rows[2]["notes"], rows[2]["dataset_id"]) == (notes, dataset)


# --- profiles, --set, the core JSON readers ---------------------------------------------------

SMOKE = builtin_profile("smoke").read_bytes()
TOML_VALUES = (st.integers().map(str) | HUGE.map(str) | st.text(max_size=10).map(json.dumps)
               | st.sampled_from(["nan", "-inf", "true", "1979-05-27", "[]", "[1, \"a\"]", "{a = 1}", "[[1]]",
                                  "''", "\"\"\"x\"\"\"", "[" * 3000 + "]" * 3000, "1" * 5000, "{}"]))


def _knobs() -> list[tuple[str, str]]:
    return [(name, key) for name, family in registry().items() for key in family.knobs]


@hostile(60)
@given(data=st.data())
def test_profile_toml(data):
    with scratch() as d:
        survives(lambda p: resolve_config(p, environ={}), put(d, "profile.toml", data.draw(garbage(SMOKE))))
        family, key = data.draw(st.sampled_from(_knobs()))
        text = f"[{family}]\n{key} = {data.draw(TOML_VALUES)}\n"
        config = survives(lambda p: resolve_config(p, environ={}), put(d, "edited.toml", text.encode()))
    if config is not None:
        default = registry()[family].knobs[key]
        assert isinstance(config[family][key], type(default)) or isinstance(default, float)


@hostile(80)
@given(data=st.data())
@example(data=None)
def test_set_overrides(data):
    if data is None:
        family, key, value = "lane_b", "alpha_review", "[" * 20000
    else:
        family, key = data.draw(st.sampled_from(_knobs()))
        value = data.draw(TOML_VALUES | st.text(max_size=20))
    try:
        config = resolve_config(None, [f"{family}.{key}={value}"], environ={})
    except ExpspecError as err:
        message = str(err)
        assert len(message.splitlines()) == 1 and f"{family}." in message, message
    else:
        assert type(config[family][key]) is type(registry()[family].knobs[key])


@hostile(40)
@given(item=st.text(max_size=30))
def test_set_free_text(item):
    try:
        resolve_config(None, [item], environ={})
    except ExpspecError as err:
        assert len(str(err).splitlines()) == 1 and ("--set" in str(err) or "." in str(err)), str(err)


@hostile(60)
@given(data=st.data())
def test_core_json_readers(data):
    with scratch() as d:
        survives(read_json, put(d, "a.json", data.draw(garbage(b'{"a": [1, 2.5, "x", null]}'))))
        survives(lambda p: jsonl_objects(p, "records"), put(d, "b.jsonl", data.draw(garbage(b'{"a": 1}\n{"b": 2}\n'))))
        survives(read_json, put(d, "folder.json", None))


# --- corpora ----------------------------------------------------------------------------------

CORPUS_TEXT = "First paragraph of a story.\n\nSecond paragraph, longer than the first one.\n\nThe end.\n"
CORPUS_FILES = {"doc.txt": CORPUS_TEXT.encode(), "doc.jsonl": jsonl([{"text": CORPUS_TEXT}] * 3),
                "doc.txt.gz": gzip.compress(CORPUS_TEXT.encode(), mtime=0),
                "doc.jsonl.gz": gzip.compress(jsonl([{"text": CORPUS_TEXT}] * 3), mtime=0)}


def _corpus(spec: Path):
    check_corpus_spec(str(spec))
    return load_corpus(str(spec), 0.3)


@hostile(80)
@given(data=st.data())
def test_corpus_files(data):
    name = data.draw(st.sampled_from(sorted(CORPUS_FILES) + ["doc.parquet"]))
    valid = CORPUS_FILES.get(name, b"PAR1")
    with scratch() as d:
        (d / "c").mkdir()
        file = put(d / "c", name, data.draw(garbage(valid)))
        split = survives(_corpus, file)
        if data.draw(st.booleans()):
            put(d / "c", "sub.txt", None)  # a folder named like a corpus file
        survives(_corpus, d / "c")
    assert split is None or (split.train and all(doc.text.strip() for doc in split.train))


def test_empty_corpora():
    with scratch() as d:
        for spec in (put(d, "empty", None), put(d, "empty.txt", b""), put(d, "blank.jsonl", b"\n\n"),
                     put(d, "nulls.txt.gz", gzip.compress(b"")), put(d, "junk.txt.gz", b"\x1f\x8b\x08junk")):
            assert survives(_corpus, spec) is None


# --- the CLI: exit 2, one line on stderr, the output folder unchanged --------------------------

def cli(argv: list[str], folder: Path, names=()) -> int:
    """``expspec argv`` in process: 0 (the garbage was valid) or 2 with one stderr line naming a
    file of ``names``; on 2, nothing under ``folder`` was written or changed."""
    before = tree_digest(folder)
    stderr = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(stderr):
        rc = main(argv)
    err = stderr.getvalue()
    assert "Traceback" not in err
    if rc == 0:
        return rc
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("expspec: error: "), err
    assert not names or any(str(n) in lines[0] for n in names), err
    assert tree_digest(folder) == before, f"`expspec {' '.join(argv[:2])}` wrote on bad input"
    return rc


@hostile(25)
@given(data=st.data())
def test_cli_readers(data):
    with scratch() as d:
        out, store = d / "out", f"sqlite:///{d / 'out' / 'mlflow.db'}"
        (d / "out").mkdir()
        tracking = ["--tracking-uri", store]
        log = put(d, "train.log", (data.draw(garbage(LOGS["nanochat_2025"], folder=False))
                                   .replace(b"Validation", b"Valid")))  # no eval line: always refused
        assert cli(["lane-b", "parse-log", str(log), *tracking], d, [log]) == 2
        diag = put(d, "diagnostics.jsonl", data.draw(garbage(jsonl(OURS))))
        cli(["hero", "analyze", str(diag), "--out", str(out / "summary.json"), "--no-tracking"], d, [diag])
        stats = put(d, "stats.json", data.draw(garbage(json.dumps(STATS).encode())))
        calibration = put(d, "calibration.json", json.dumps(CALIBRATION).encode())
        cli(["lane-b", "infer", "--stats", str(stats), "--calibration", str(calibration), "--threshold", "1.0",
             "--n-scaling-params", "1e6", "--out", str(out / "infer.json"), "--no-tracking"], d, [stats])
        gold, pred = put(d, "dev.json", json.dumps(SQUAD).encode()), put(d, "pred.jsonl", data.draw(garbage(b"")))
        cli(["qa", "score", "--pred", str(pred), "--gold", str(gold), "--out", str(out / "score.json")], d,
            [pred])
        run = put(d, "run.jsonl", data.draw(garbage(jsonl(bon_run()))))
        cli(["bon", "analyze", str(run), "--out", str(out / "bon.json")], d, [run])
        collector = put(d, "collector.json", data.draw(garbage(json.dumps(COLLECTOR).encode())))
        cli(["bon", "collect", "--config", str(collector), "--output-dir", str(out / "runs"), "--no-tracking"], d,
            [collector, "missing-prompts.jsonl"])


@hostile(15)
@given(data=st.data())
def test_cli_tempnorm_and_corpus(data):
    with scratch() as d:
        (d / "out").mkdir()
        path = d / "data.jsonl"
        write_experiment_data(path, tempnorm_records(), {"eval_lengths": [1, 5, 10]})
        put(d, path.name, data.draw(garbage(path.read_bytes())))
        assert cli(["tempnorm", "train", "--data-file", str(path), "--output-dir", str(d / "out" / "models"),
                    "--no-tracking"], d, [path, meta_path(path)]) == 2
        corpus = put(d, "corpus.txt", data.draw(garbage(CORPUS_TEXT.encode())))
        cli(["tempnorm", "contexts", "--corpus", str(corpus), "--out", str(d / "out" / "contexts.txt")], d,
            [corpus])


@pytest.mark.parametrize("corpus", [b"\xff\xfe garbage", b"", None])
def test_cli_stats_on_a_bad_corpus(corpus, tmp_path):
    spec = put(tmp_path, "corpus.txt", corpus)
    assert cli(["lane-b", "stats", "--corpus", str(spec), "--out", str(tmp_path / "out" / "stats.json"),
                "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"], tmp_path, [spec]) == 2


def test_cli_lane_b_step_on_a_garbage_work_dir(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    for infer in (b"[]", b'{"solve_status": "ok", "confirmation_ratio": "x"}', b"\xff", b"9" * 5000):
        (work / "infer.json").write_bytes(infer)
        assert cli(["lane-b", "log", "--work-dir", str(work), "--no-tracking"], tmp_path,
                   [work / "infer.json"]) == 2


@hostile(20)
@given(data=st.data())
def test_cli_config_profile_and_set(data):
    with scratch() as d:
        profile = put(d, "p.toml", data.draw(garbage(SMOKE)))
        cli(["config", "--profile", str(profile)], d, [profile])
        family, key = data.draw(st.sampled_from(_knobs()))
        cli(["config", "--set", f"{family}.{key}={data.draw(TOML_VALUES)}"], d, ["--set", family])


def test_cli_train_on_garbage_config_and_data(tmp_path):
    """``expspec train`` (torchrun's entry): a bad config or token file never starts a run."""
    from test_train import tiny_cfg

    good = put(tmp_path, "cfg.json", json.dumps(tiny_cfg(num_iterations=1).to_dict()).encode())
    np.save(tmp_path / "tokens.npy", np.arange(10))
    cases = [(put(tmp_path, "bad.json", b'{"depth": "two"}'), good), (put(tmp_path, "huge.json", json.dumps(
        dict(tiny_cfg().to_dict(), learning_rate=10**400)).encode()), good)]
    floats = io.BytesIO()
    np.savez(floats, train=np.zeros((4, 2)), val=np.zeros(4), token_bytes=np.ones(4, dtype=np.int64))
    for data in (b"", b"PK\x03\x04junk", b"\x93NUMPY junk", None, (tmp_path / "tokens.npy").read_bytes(),
                 floats.getvalue()):
        cases.append((good, put(tmp_path, f"data{len(cases)}.npz", data)))
    for config, data in cases:
        assert cli(["train", "--config", str(config), "--data", str(data), "--out-dir", str(tmp_path / "out")],
                   tmp_path, [data if config is good else config]) == 2


def test_cli_path_too_long(tmp_path):
    cli(["lane-b", "parse-log", str(tmp_path / ("x" * 300)), "--no-tracking"], tmp_path, ["x" * 300])


@pytest.mark.parametrize("argv, content", [
    (["lane-b", "parse-log", "{f}"], b"\x00\xff" * 20),
    (["config", "--profile", "{f}"], b"[lane_b]\ndepth = 1e999999\n"),
])
def test_cli_subprocess(argv, content, tmp_path):
    """The installed ``expspec`` script: exit 2, one stderr line, no traceback, nothing written
    (not even the default tracking store under reports/)."""
    bad = put(tmp_path, "bad.input", content)
    exe = Path(sys.executable).with_name("expspec")
    before = tree_digest(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXPSPEC_", "LANE_B_", "MLFLOW_"))}
    proc = subprocess.run([str(exe), *[a.format(f=bad) for a in argv]], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env=dict(env, EXPSPEC_THREADS="1"))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("expspec: error: ") and str(bad) in lines[0], proc.stderr
    assert tree_digest(tmp_path) == before
