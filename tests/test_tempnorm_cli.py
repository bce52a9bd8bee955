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
from expspec.kernels.tempnorm.generate import GENERATE_KNOBS


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


@pytest.mark.parametrize("override, message", [
    ("tempnorm.eval_lengths=1,50", "tempnorm.eval_lengths: expected a non-empty increasing list"),  # > gen_length
    ("tempnorm.test_fraction=1.0", "tempnorm.test_fraction: expected a fraction in (0, 1)"),
    ("tempnorm.alpha=0.5", "tempnorm.alpha: expected a finite number >= 1"),
    ("tempnorm.alpha=nan", "tempnorm.alpha: expected a finite number >= 1"),
    ("tempnorm.model=", "tempnorm.model: expected an HF id, a local directory or smollm2-135m-instruct, got ''"),
    ("tempnorm.model=  ", "tempnorm.model: expected an HF id"),
    ("tempnorm.dtype=float64", "tempnorm.dtype: expected one of float32, bfloat16, float16, got 'float64'"),
])
def test_config_checks_the_knobs(override, message):
    with pytest.raises(ExpspecError) as err:
        resolve_scale("smoke", overrides=[override])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_hero_config_is_the_seeds():
    assert resolve_scale("smoke", overrides=["tempnorm.alpha=1"])["tempnorm"]["alpha"] == 1.0  # 1 is allowed
    cfg = resolve_scale("hero")["tempnorm"]
    assert cfg["model"] == "facebook/opt-125m" and cfg["gen_length"] == 100 and cfg["gen_number"] == 8
    assert cfg["alpha"] == 4.0 and cfg["initial_wander"] == 30 and cfg["dtype"] == "float32"
    assert cfg["eval_lengths"] == [1, 2, 5, 10, 20, 30, 40, 50, 60, 80, 100]


@pytest.mark.parametrize("setup, args, message", [
    (lambda d: None, ["--contexts-file", "{d}/missing.txt"], "missing.txt: file not found"),
    (lambda d: (d / "empty.txt").write_text("\n \n"), ["--contexts-file", "{d}/empty.txt"], "empty.txt: empty"),
    (lambda d: (d / "c.txt").write_text("a context\n"), ["--contexts-file", "{d}/c.txt", "--set", "tempnorm.gen_len=3"],
     "unknown key tempnorm.gen_len"),
    (lambda d: ((d / "c.txt").write_text("a context\n"), (d / "out.jsonl").mkdir()),
     ["--contexts-file", "{d}/c.txt", "--output-file", "{d}/out.jsonl"], "out.jsonl: is a directory"),
    (lambda d: ((d / "c.txt").write_text("a context\n"), (d / "out.meta.json").mkdir()),
     ["--contexts-file", "{d}/c.txt", "--output-file", "{d}/out.jsonl"],
     "data sidecar {d}/out.meta.json: is a directory"),
    (lambda d: ((d / "c.txt").write_text("a context\n"), (d / "a_file").write_text("")),
     ["--contexts-file", "{d}/c.txt", "--output-file", "{d}/a_file/out.jsonl"], "a_file is not a directory"),
    (lambda d: (d / "c.txt").write_text("a context\n"), ["--contexts-file", "{d}/c.txt", "--set", "tempnorm.alpha=0.9"],
     "tempnorm.alpha: expected a finite number >= 1"),
])
def test_generate_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, monkeypatch, setup, args, message):
    import expspec.kernels.models.pretrained as pretrained

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the bad input was found")

    monkeypatch.setattr(pretrained, "load_causal_lm", no_model)
    setup(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    args = [a.format(d=tmp_path) for a in args]
    if "--output-file" not in args:
        args += ["--output-file", str(tmp_path / "data.jsonl")]
    assert main(["tempnorm", "generate", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("expspec: error: ") and message.format(d=tmp_path) in err and err.count("\n") == 1
    assert sorted(tmp_path.rglob("*")) == before


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
    seeds = meta["seeds"]
    assert lengths == [1, 5] and seeds["seed"] == 5 and len({seeds["wander"], seeds["completions"], 5, 6}) == 4
    assert meta["hidden_size"] == 576 and meta["git_commit"] and meta["inputs"]["contexts_fingerprint"]
    assert meta["dtype"] == "float32" and meta["model_dtype"] == "torch.float32"
    assert meta["inputs"]["model_fingerprint"].startswith("files:")
    # the sidecar holds the knobs phase 1 read, and only those
    assert meta["config"] == {"tempnorm": {k: resolve_scale("smoke", overrides=knobs)["tempnorm"][k]
                                           for k in GENERATE_KNOBS}, "common": {"seed": 5}}
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
