"""Phase 1 on the hero model's architecture (OPT, learned positions) without its weights: a
tiny random-init OPT with SmolLM2's tokenizer runs through left-padded mixed batches, and a
teacher-forced pass reproduces every recorded probability and hidden vector."""

import numpy as np
import pytest

from expspec.kernels.tempnorm.contexts import SHIPPED_CONTEXTS, read_contexts
from expspec.kernels.tempnorm.generate import generate_records
from expspec.kernels.tempnorm.rescore import rescore_records, teacher_forced


@pytest.fixture(scope="module")
def tiny_opt():
    import torch
    from transformers import OPTConfig, OPTForCausalLM

    from expspec.kernels.models.pretrained import load_causal_lm

    _, tokenizer = load_causal_lm("smollm2-135m-instruct")
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
