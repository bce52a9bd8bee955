"""Best-of-N emergence: when does sampling k times make a small model solve what one sample
cannot, can that jump be predicted, and does an adapter distilled from best-of-N move it?

Source: the "BoN Emergence Predictor" seed (collector, distill, adapters, analyze,
predictor), with its two flaws fixed: pass@k is the unbiased estimator (not "any of the
first k samples"), and the emergence predictor's features come from a small sample budget
only (the seed fed it pass@1 and the pass@k delta, i.e. the label).

Read top-down, in the order the seed's steps run:

    config.py     the knobs ([bon] in the profiles)
    prompts.py    the deterministic prompt set (fixtures/data/prompts.jsonl)
    scoring.py    scorers (exact / numeric / contains, pluggable), pass_at_k, diversity
    collector.py  the validated collector config, batched sampling -> bon_run_<ts>.jsonl
    distill.py    best-of-N imitation pairs
    sft.py        LoRA SFT (peft) -> adapters/<name>/
    analyze.py    summary.json: runs compared (pass@k, diversity, cost)
    predict.py    per-prompt emergence predictor; aggregate coverage law
    pipeline.py   the steps the fixtures and the CLI run;  plots.py;  cli.py (`expspec bon`)

Sampling itself is the shared sampler, kernels/models/sampler.py.
"""
