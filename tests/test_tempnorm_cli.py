"""``expspec tempnorm contexts|generate``: the shipped contexts are reproducible; bad input is one
line and writes nothing; a tiny real generation with SmolLM2 writes a data file whose numbers a
teacher-forced pass reproduces."""

import json

import numpy as np
import pytest

from expspec.kernels.cli import main
from expspec.kernels.config import resolve_scale
from expspec.kernels.errors import ExpspecError
from expspec.kernels.tempnorm.contexts import SHIPPED_CONTEXTS, SHIPPED_RECIPE, read_contexts


def test_shipped_contexts_are_the_generators_output(tmp_path, capsys):
    out = tmp_path / "contexts.txt"
    assert main(["tempnorm", "contexts", "--out", str(out)]) == 0  # the defaults are the shipped recipe
    assert out.read_bytes() == SHIPPED_CONTEXTS.read_bytes()
    lines = read_contexts(out)
    assert len(lines) == len(set(lines)) == SHIPPED_RECIPE["n"]
    assert all(SHIPPED_RECIPE["min_chars"] <= len(line) <= SHIPPED_RECIPE["max_chars"] for line in lines)


def test_read_contexts(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("  first context \n\n\nsecond\n   \nthird\n")
    assert read_contexts(path) == ["first context", "second", "third"]
    assert read_contexts(path, max_contexts=2) == ["first context", "second"]
    path.write_text(" \n\n")
    with pytest.raises(ExpspecError, match="empty"):
        read_contexts(path)
    path.write_bytes(b"\xff\xfe bad")
    with pytest.raises(ExpspecError, match="not UTF-8"):
        read_contexts(path)


def test_config_checks_the_knobs():
    with pytest.raises(ExpspecError, match="tempnorm.eval_lengths"):
        resolve_scale("smoke", overrides=["tempnorm.eval_lengths=1,50"])  # gen_length is 20 at smoke
    with pytest.raises(ExpspecError, match="tempnorm.test_fraction"):
        resolve_scale("smoke", overrides=["tempnorm.test_fraction=1.0"])
    cfg = resolve_scale("hero")["tempnorm"]
    assert cfg["model"] == "facebook/opt-125m" and cfg["gen_length"] == 100 and cfg["gen_number"] == 8
    assert cfg["alpha"] == 4.0 and cfg["initial_wander"] == 30
    assert cfg["eval_lengths"] == [1, 2, 5, 10, 20, 30, 40, 50, 60, 80, 100]


@pytest.mark.parametrize("setup, args, message", [
    (lambda d: None, ["--contexts-file", "{d}/missing.txt"], "missing.txt: file not found"),
    (lambda d: (d / "empty.txt").write_text("\n \n"), ["--contexts-file", "{d}/empty.txt"], "empty.txt: empty"),
    (lambda d: (d / "c.txt").write_text("a context\n"), ["--contexts-file", "{d}/c.txt", "--set", "tempnorm.gen_len=3"],
     "unknown key tempnorm.gen_len"),
    (lambda d: ((d / "c.txt").write_text("a context\n"), (d / "out.jsonl").mkdir()),
     ["--contexts-file", "{d}/c.txt", "--output-file", "{d}/out.jsonl"], "is a directory"),
])
def test_generate_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, setup, args, message):
    setup(tmp_path)
    args = [a.format(d=tmp_path) for a in args]
    if "--output-file" not in args:
        args += ["--output-file", str(tmp_path / "data.jsonl")]
    assert main(["tempnorm", "generate", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("expspec: error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "data.jsonl").exists() and not (tmp_path / "data.meta.json").exists()


@pytest.mark.slow
def test_generate_with_the_real_model_is_reproduced_by_teacher_forcing(tmp_path, capsys):
    from expspec.kernels.models.pretrained import load_causal_lm
    from expspec.kernels.tempnorm.records import read_experiment_data
    from expspec.kernels.tempnorm.rescore import rescore_records

    contexts = tmp_path / "contexts.txt"
    contexts.write_text("\n".join(read_contexts(SHIPPED_CONTEXTS, 2)) + "\n")
    out = tmp_path / "data.jsonl"
    knobs = ["tempnorm.model=smollm2-135m-instruct", "tempnorm.initial_wander=3", "tempnorm.gen_number=3",
             "tempnorm.gen_length=5", "tempnorm.eval_lengths=1,5", "common.seed=5"]
    argv = ["tempnorm", "generate", "--contexts-file", str(contexts), "--output-file", str(out), "--device", "cpu"]
    assert main([*argv, *sum((["--set", k] for k in knobs), [])]) == 0
    assert "2 records" in capsys.readouterr().out
    records, meta, lengths = read_experiment_data(out)
    assert lengths == [1, 5] and meta["seeds"] == {"seed": 5, "wander": 5, "completions": 6}
    assert meta["hidden_size"] == 576 and meta["git_commit"] and meta["inputs"]["contexts_fingerprint"]
    assert meta["config"]["tempnorm"]["gen_number"] == 3
    assert all(len(r["generations"]) == 3 and len(r["starting_hidden_vector"]) == 576 for r in records)
    model, _ = load_causal_lm("smollm2-135m-instruct")
    by_prefix, by_full = rescore_records(model, records), rescore_records(model, records, full_sequence=True)
    for check in (by_prefix, by_full):
        assert check["max_abs_prob_diff"] < 1e-4 and check["hidden_diff_rel_to_max"] < 2 ** -10
    # the same seed draws the same tokens again
    again = tmp_path / "again.jsonl"
    assert main([*argv[:-4], "--output-file", str(again), "--device", "cpu", *sum((["--set", k] for k in knobs), [])]) == 0
    first = [json.loads(line) for line in out.read_text().splitlines()]
    second = [json.loads(line) for line in again.read_text().splitlines()]
    assert [[g["token_ids"] for g in r["generations"]] for r in first] == \
        [[g["token_ids"] for g in r["generations"]] for r in second]
    assert np.allclose(first[0]["starting_hidden_vector"], second[0]["starting_hidden_vector"])
