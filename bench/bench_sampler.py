"""Benchmark: the shared sampler (kernels/models/sampler.py) against transformers' ``generate``.

Why: best-of-N draws 16+ samples of every prompt and TempNorm needs every token's
probability, so the sampler's tokens/s sets the cost of both families. Three ratios,
each measured side by side in this process, alternating, median of ``--repeats``:

* batched_vs_one_at_a_time: our batched sampler (probabilities recorded) against
  ``generate`` one sequence at a time - what a loop over prompts would do. Target >= 3x.
* probs_vs_plain_batched_generate: ours against ``generate`` on the same batch recording
  nothing: the whole price of recording probabilities. Target >= 0.91 (<= 10% cost).
* manual_loop_vs_generate_output_logits: ours against the other way to get the
  probabilities, ``generate(output_logits=True)`` + a softmax of the chosen tokens.

Every method generates exactly max_new_tokens per sequence (ours with stop_at_eos=False,
``generate`` with min_new_tokens), so tokens/s counts the same work. Prompts are the
chat-templated arithmetic questions of best-of-N. Prints ``name: ratio (ours X, reference
Y)`` and merges the figures into ``reports/bench/<date>.json`` under "sampler" ("sampler_quick"
for --quick, which never overwrites a full run's figures).

    python bench/bench_sampler.py            # 8 prompts x 4 samples x 16 tokens, 5 repeats
    python bench/bench_sampler.py --quick    # 2 prompts x 2 samples x 4 tokens, seconds
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import alternating, arguments, ratio, setup_threads, write_record  # noqa: E402
from expspec.kernels.models.pretrained import load_causal_lm  # noqa: E402
from expspec.kernels.models.sampler import apply_chat_template, left_pad, sample  # noqa: E402

QUESTIONS = ["What is 7 + 5?", "What is 23 + 45?", "What is 81 - 36?", "What is 6 * 7?",
             "What is 12 * 13?", "What comes next: 2, 4, 6, 8, ?", "How many letters are in the word 'garden'?",
             "What is 345 + 278?"]
TEMPERATURE, TOP_P = 0.8, 0.95


def run_ours(model, tok, prompts, n, tokens, seed) -> int:
    out = sample(model, tok, prompts, n=n, max_new_tokens=tokens, temperature=TEMPERATURE, top_p=TOP_P, seed=seed,
                 max_batch=len(prompts) * n, stop_at_eos=False)
    return sum(len(s.token_ids) for s in out)


def run_generate(model, tok, prompts, n, tokens, seed, *, one_at_a_time=False, record=False) -> int:
    torch.manual_seed(seed)
    kwargs = dict(do_sample=True, temperature=TEMPERATURE, top_p=TOP_P, max_new_tokens=tokens, min_new_tokens=tokens,
                  pad_token_id=tok.pad_token_id)
    done = 0
    with torch.no_grad():
        if one_at_a_time:
            for p in prompts:
                for _ in range(n):
                    ids = torch.tensor([p])
                    out = model.generate(ids, attention_mask=torch.ones_like(ids), **kwargs)
                    done += out.shape[1] - ids.shape[1]
            return done
        ids, mask, _ = left_pad(prompts, tok.pad_token_id, model.device)
        out = model.generate(ids, attention_mask=mask, num_return_sequences=n, output_logits=record,
                             return_dict_in_generate=record, **kwargs)
        if record:  # what our sampler returns: each chosen token's untempered probability
            new = out.sequences[:, ids.shape[1]:]
            logits = torch.stack(out.logits, dim=1).double()
            probs = torch.log_softmax(logits, -1).gather(-1, new.unsqueeze(-1)).squeeze(-1).exp()
            probs.tolist()
            return int(new.numel())
        return int(out[:, ids.shape[1]:].numel())


def main() -> None:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--samples", type=int, default=4, help="samples per prompt")
    parser.add_argument("--tokens", type=int, default=16, help="new tokens per sequence")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.quick:
        args.prompts, args.samples, args.tokens, args.repeats = 2, 2, 4, 2
    threads = setup_threads(args)
    model, tok = load_causal_lm("smollm2-135m-instruct", device=args.device)
    prompts = [apply_chat_template(tok, QUESTIONS[i % len(QUESTIONS)]) for i in range(args.prompts)]
    n, t = args.samples, args.tokens
    print(f"== sampler: SmolLM2-135M-Instruct on {args.device}, {threads} threads, "
          f"{len(prompts)} prompts x {n} samples x {t} tokens, {args.repeats} repeats ==", flush=True)
    methods = {
        "ours": lambda r: run_ours(model, tok, prompts, n, t, seed=r),
        "generate_one_at_a_time": lambda r: run_generate(model, tok, prompts, n, t, r, one_at_a_time=True),
        "generate_batched_plain": lambda r: run_generate(model, tok, prompts, n, t, r),
        "generate_batched_output_logits": lambda r: run_generate(model, tok, prompts, n, t, r, record=True),
    }
    methods["ours"](0)  # warm-up (first-call allocations), not timed
    speed = alternating(methods, args.repeats)
    references = {
        "batched_vs_one_at_a_time": ("generate_one_at_a_time", 3.0),
        "probs_vs_plain_batched_generate": ("generate_batched_plain", 0.91),
        "manual_loop_vs_generate_output_logits": ("generate_batched_output_logits", None),
    }
    results = {name: ratio(name, speed["ours"], speed[reference], "tok/s", target_min=target, reference_name=reference)
               for name, (reference, target) in references.items()}
    write_record(args, "sampler", {"ratios": results, "tok_per_s": speed, "prompts": len(prompts), "samples": n,
                                   "tokens": t}, device=args.device)


if __name__ == "__main__":
    main()
