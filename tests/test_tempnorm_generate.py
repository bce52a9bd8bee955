"""Phase 1 on the hero model's architecture (OPT, learned positions) without its weights: a
tiny random-init OPT with SmolLM2's tokenizer runs through left-padded mixed batches, and a
teacher-forced pass reproduces every recorded probability and hidden vector; the step
(``generate_data``) loads in the configured dtype, records the knobs it read and checks its
outputs before it loads anything."""

import copy
import json

import numpy as np
import pytest
import torch

from expspec.kernels.config import resolve_scale
from expspec.kernels.errors import ExpspecError
from expspec.kernels.models.pretrained import model_fingerprint
from expspec.kernels.tempnorm.contexts import SHIPPED_CONTEXTS, read_contexts
from expspec.kernels.tempnorm.generate import (GENERATE_KNOBS, completion_seed, generate_data, generate_records,
                                               wander_seed)
from expspec.kernels.tempnorm.records import read_experiment_data
from expspec.kernels.tempnorm.rescore import rescore_records, teacher_forced


@pytest.fixture(scope="module")
def tiny_opt():
    from transformers import AutoTokenizer, OPTConfig, OPTForCausalLM

    from expspec.kernels.models.pretrained import resolve_model_path

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("smollm2-135m-instruct"))  # the tokenizer alone
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    torch.manual_seed(0)
    config = OPTConfig(vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, ffn_dim=128,
                       num_attention_heads=4, word_embed_proj_dim=64, max_position_embeddings=512,
                       pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                       eos_token_id=tokenizer.eos_token_id)
    return OPTForCausalLM(config).eval(), tokenizer


@pytest.mark.slow
def test_opt_records_are_reproduced_by_teacher_forcing(tiny_opt):
    model, tokenizer = tiny_opt
    contexts = read_contexts(SHIPPED_CONTEXTS, 6)  # contexts of different lengths: left padding
    records, stats = generate_records(model, tokenizer, contexts, initial_wander=3, gen_number=3, gen_length=6,
                                      eval_lengths=[1, 6], alpha=4.0, seed=1, max_batch=5, model_name="tiny-opt")
    assert stats["hidden_size"] == 64 and stats["tokens_generated"] == 6 * (3 + 3 * 6)
    for r, context in zip(records, contexts):
        ids = tokenizer(context)["input_ids"]
        assert r["starting_point_token_ids"][:len(ids)] == ids and len(r["starting_point_token_ids"]) == len(ids) + 3
        assert all(len(g["token_ids"]) == 6 for g in r["generations"])
    for full in (False, True):
        check = rescore_records(model, records, full_sequence=full)
        assert check["hidden_diff_rel_to_max"] < 2 ** -10
        for r in records:  # near-uniform probabilities (~1 / vocab): compare relatively
            probs, _ = teacher_forced(model, r["starting_point_token_ids"], [g["token_ids"] for g in r["generations"]],
                                      full)
            recorded = np.asarray([g["model_probs"] for g in r["generations"]])
            assert np.allclose(probs, recorded, rtol=1e-4, atol=0)


@pytest.mark.slow
def test_the_same_seed_draws_the_same_completions(tiny_opt):
    model, tokenizer = tiny_opt
    contexts = read_contexts(SHIPPED_CONTEXTS, 3)
    kw = dict(initial_wander=2, gen_number=2, gen_length=4, eval_lengths=[4], alpha=4.0, max_batch=32,
              model_name="tiny-opt")
    a, _ = generate_records(model, tokenizer, contexts, seed=3, **kw)
    b, _ = generate_records(model, tokenizer, contexts, seed=3, **kw)
    c, _ = generate_records(model, tokenizer, contexts, seed=4, **kw)
    tokens = [[[g["token_ids"] for g in r["generations"]] for r in x] for x in (a, b, c)]
    assert tokens[0] == tokens[1] and tokens[0] != tokens[2]
    assert [r["starting_hidden_vector"] for r in a] == [r["starting_hidden_vector"] for r in b]


def test_stream_seeds_are_tagged():
    seeds = [f(s) for s in range(50) for f in (wander_seed, completion_seed)]
    assert len(set(seeds)) == len(seeds) and all(0 <= v < 2 ** 63 for v in seeds)  # no seed replays another's
    assert wander_seed(7) == wander_seed(7)


def _knobs(**kw):
    return dict(resolve_scale("smoke")["tempnorm"], initial_wander=2, gen_number=2, gen_length=3,
                eval_lengths=[1, 3], max_contexts=3, model="tiny-opt") | kw


def _loader(model, tokenizer, calls):
    def load(name, device, dtype):
        calls.append((name, device, dtype))
        return copy.deepcopy(model).to(dtype), tokenizer
    return load


@pytest.mark.slow
def test_generate_data_loads_in_the_dtype_and_records_what_it_read(tiny_opt, tmp_path):
    model, tokenizer = tiny_opt
    calls = []
    out = tmp_path / "out" / "data.jsonl"
    meta = generate_data(_knobs(), 3, SHIPPED_CONTEXTS, out, device="cpu", load_model=_loader(model, tokenizer, calls))
    assert calls == [("tiny-opt", "cpu", torch.float32)]
    assert meta["dtype"] == "float32" and meta["model_dtype"] == "torch.float32"
    assert meta["config"] == {"tempnorm": {k: _knobs()[k] for k in GENERATE_KNOBS}, "common": {"seed": 3}}
    assert meta["inputs"]["model_fingerprint"] == "id:tiny-opt"
    records, back, _ = read_experiment_data(out)
    assert back == json.loads(out.with_suffix(".meta.json").read_text()) and len(records) == 3
    assert records[0]["config"]["dtype"] == "float32"
    calls.clear()
    meta = generate_data(_knobs(dtype="bfloat16"), 3, SHIPPED_CONTEXTS, tmp_path / "bf16.jsonl", device="cpu",
                         load_model=_loader(model, tokenizer, calls))
    assert calls[0][2] == torch.bfloat16 and meta["model_dtype"] == "torch.bfloat16"


@pytest.mark.slow
def test_generate_data_refuses_a_model_in_another_dtype(tiny_opt, tmp_path):
    model, tokenizer = tiny_opt

    def wrong(name, device, dtype):
        return copy.deepcopy(model).to(torch.bfloat16), tokenizer

    with pytest.raises(ExpspecError, match="tempnorm.dtype: asked for float32, the model loaded as torch.bfloat16"):
        generate_data(_knobs(), 3, SHIPPED_CONTEXTS, tmp_path / "data.jsonl", device="cpu", load_model=wrong)
    assert list(tmp_path.iterdir()) == []


def test_generate_data_checks_its_outputs_before_loading(tmp_path):
    def no_model(*args, **kwargs):
        raise AssertionError("loaded the model before checking the outputs")

    (tmp_path / "data.meta.json").mkdir()
    with pytest.raises(ExpspecError, match="data sidecar .* is a directory"):
        generate_data(_knobs(), 3, SHIPPED_CONTEXTS, tmp_path / "data.jsonl", device="cpu", load_model=no_model)


def test_model_fingerprint_follows_a_local_directorys_files(tmp_path):
    (tmp_path / "config.json").write_text('{"hidden_size": 8}')
    (tmp_path / "model.safetensors").write_bytes(b"0" * 100)
    first = model_fingerprint(str(tmp_path))
    assert first.startswith("files:") and model_fingerprint(str(tmp_path)) == first
    (tmp_path / "model.safetensors").write_bytes(b"0" * 101)  # other weights, same name
    second = model_fingerprint(str(tmp_path))
    (tmp_path / "config.json").write_text('{"hidden_size": 9}')
    assert len({first, second, model_fingerprint(str(tmp_path))}) == 3
    assert model_fingerprint("some-org/not-downloaded-model") == "id:some-org/not-downloaded-model"
