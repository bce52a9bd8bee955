"""The shared sampler (kernels/models/sampler.py) on the real SmolLM2: its per-token
probabilities are the model's (a teacher-forced pass agrees within 1e-4, left padding in
the batch), a seed fixes the samples whatever the batching, EOS stops a sequence, and
greedy decoding is transformers' own."""

import math
import re

import pytest
import torch

from expspec.kernels.errors import ExpspecError
from expspec.kernels.models.pretrained import load_causal_lm
from expspec.kernels.models.sampler import (apply_chat_template, hidden_at_last_token, sample,
                                            teacher_forced_probs)

pytestmark = pytest.mark.slow

QUESTIONS = ["What is 7 + 5?", "Count the letters in the word banana. Reply with a number.",
             "What comes next: 3, 6, 9, 12, ?"]


@pytest.fixture(scope="module")
def lm():
    return load_causal_lm("smollm2-135m-instruct")


@pytest.fixture(scope="module")
def prompts(lm):
    _, tok = lm
    out = [apply_chat_template(tok, q) for q in QUESTIONS]
    assert len({len(p) for p in out}) > 1  # different lengths: the batch is left-padded
    return out


@pytest.fixture(scope="module")
def drawn(lm, prompts):
    model, tok = lm
    return sample(model, tok, prompts, n=4, max_new_tokens=8, temperature=0.8, top_p=0.95, seed=3, max_batch=12)


def test_shape_and_order(drawn, prompts):
    assert len(drawn) == len(prompts) * 4
    assert [s.prompt_index for s in drawn] == [p for p in range(len(prompts)) for _ in range(4)]
    for s in drawn:
        assert 1 <= len(s.token_ids) <= 8 and len(s.token_probs) == len(s.token_ids)
        assert all(0 < p <= 1 for p in s.token_probs)
        assert s.logprob == pytest.approx(sum(math.log(p) for p in s.token_probs), abs=1e-9)
        assert s.sampling_logprob <= 0 and s.latency_s > 0


def test_token_probs_equal_teacher_forcing(lm, prompts, drawn):
    """Untempered probabilities of the sampled tokens = one left-padded forward over prompt +
    continuation (a different padding than the sampler's batches had)."""
    model, tok = lm
    reference = teacher_forced_probs(model, tok, [prompts[s.prompt_index] for s in drawn],
                                     [s.token_ids for s in drawn])
    worst = max(abs(a - b) for s, ref in zip(drawn, reference) for a, b in zip(s.token_probs, ref))
    assert worst < 1e-4


def test_same_seed_same_samples_whatever_the_batching(lm, prompts, drawn):
    model, tok = lm
    again = sample(model, tok, prompts, n=4, max_new_tokens=8, temperature=0.8, top_p=0.95, seed=3, max_batch=5)
    assert [s.token_ids for s in again] == [s.token_ids for s in drawn]
    # prompt 1 in a batch of its own draws what it drew beside the others (streams keyed by (seed, i, j))
    alone = sample(model, tok, prompts[:2], n=4, max_new_tokens=8, temperature=0.8, top_p=0.95, seed=3,
                   max_batch=4)
    assert [s.token_ids for s in alone[4:]] == [s.token_ids for s in drawn[4:8]]
    other = sample(model, tok, prompts, n=4, max_new_tokens=8, temperature=0.8, top_p=0.95, seed=4, max_batch=12)
    assert [s.token_ids for s in other] != [s.token_ids for s in drawn]


def test_untempered_sampling_logprob_is_the_logprob(lm, prompts):
    model, tok = lm
    for s in sample(model, tok, prompts[:2], n=3, max_new_tokens=6, seed=1):
        assert s.sampling_logprob == pytest.approx(s.logprob, abs=1e-6)


def test_eos_stops_and_stop_at_eos_false_runs_on(lm, prompts):
    model, tok = lm
    short = sample(model, tok, prompts[:1], n=6, max_new_tokens=40, temperature=0.7, seed=0)
    stopped = [s for s in short if s.finished]
    assert stopped, "no sample reached EOS in 40 tokens"
    for s in stopped:
        assert s.token_ids[-1] == tok.eos_token_id and tok.eos_token_id not in s.token_ids[:-1]
    full = sample(model, tok, prompts[:1], n=2, max_new_tokens=40, temperature=0.7, seed=0, stop_at_eos=False)
    assert all(len(s.token_ids) == 40 for s in full)


def test_greedy_matches_transformers_generate(lm, prompts):
    model, tok = lm
    ours = sample(model, tok, prompts, n=1, max_new_tokens=8, temperature=0.0)
    top1 = sample(model, tok, prompts, n=1, max_new_tokens=8, temperature=0.9, top_k=1, seed=5)
    for p, s, t in zip(prompts, ours, top1):
        ref = model.generate(torch.tensor([p]), attention_mask=torch.ones(1, len(p), dtype=torch.long),
                             max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id)
        assert s.token_ids == ref[0, len(p):].tolist()[:len(s.token_ids)]
        assert t.token_ids == s.token_ids and s.sampling_logprob == 0.0
        assert t.sampling_logprob == pytest.approx(0.0, abs=1e-12)


def test_text_prompts_and_decoding(lm):
    model, tok = lm
    (s,) = sample(model, tok, ["The capital of France is"], n=1, max_new_tokens=4, temperature=0.0)
    assert s.text == tok.decode(s.token_ids, skip_special_tokens=True)


def test_hidden_at_last_token_is_the_final_normed_state(lm, prompts):
    model, tok = lm
    hidden = hidden_at_last_token(model, tok, prompts)
    assert hidden.shape == (len(prompts), model.config.hidden_size)
    for i, p in enumerate(prompts):
        with torch.no_grad():
            ref = model.model(input_ids=torch.tensor([p])).last_hidden_state[0, -1]
        assert torch.allclose(hidden[i], ref, atol=1e-4)


def test_chat_template_ends_with_the_generation_prompt(lm):
    _, tok = lm
    ids = apply_chat_template(tok, "Hi")
    assert tok.decode(ids).endswith("<|im_start|>assistant\n")


@pytest.mark.parametrize("kwargs, word", [
    ({"n": 0}, "n (samples"), ({"max_new_tokens": 0}, "max_new_tokens"), ({"temperature": -1.0}, "temperature"),
    ({"top_p": 0.0}, "top_p"), ({"top_k": -2}, "top_k"), ({"max_batch": 0}, "max_batch")])
def test_bad_arguments_are_one_line_errors(lm, kwargs, word):
    model, tok = lm
    args = {"n": 1, "max_new_tokens": 2} | kwargs
    with pytest.raises(ExpspecError, match=re.escape(word)):
        sample(model, tok, ["x"], **args)


def test_token_entropies_are_the_models(lm, prompts, drawn):
    """token_entropies[0] is the entropy of the next-token distribution after the prompt: the
    same for every sample of a prompt, and what one forward pass gives."""
    model, _ = lm
    for i, p in enumerate(prompts):
        mine = [s for s in drawn if s.prompt_index == i]
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=torch.tensor([p])).logits[0, -1].double(), -1)
        expected = float(-(logp.exp() * logp).sum())
        for s in mine:
            assert len(s.token_entropies) == len(s.token_ids)
            assert s.token_entropies[0] == pytest.approx(expected, abs=1e-3)
