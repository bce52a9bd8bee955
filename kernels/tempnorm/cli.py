"""``expspec tempnorm ...``: the seed's two phases and the contexts generator.

    expspec tempnorm generate --contexts-file F --output-file data.jsonl [--model M] [--device D]
        phase 1: starting points, hidden vectors, completions, tempnorms -> data.jsonl and
        its sidecar data.meta.json (model, dtype, alpha, seeds, git commit, the knobs it read)
    expspec tempnorm train --data-file data.jsonl --output-dir models/
        phase 2: one ridge per eval length -> tempnorm_model_eval_{L}.pkl, split_eval_{L}.json,
        metrics.json (R^2/MSE/MAE, baseline, r2_ceiling; the data's generation config and
        phase 2's own knobs) and r2_vs_eval_length.png
    expspec tempnorm contexts --out F [--corpus C] [--n N] [--seed S]
        draw contexts (whole paragraphs) from a corpus; the defaults remake the shipped file

Knobs come from --scale/--profile/--set/env exactly as in pytest (``tempnorm.*``; the
sampling and split seed is ``common.seed``): ``--scale hero`` gives the seed's values
(facebook/opt-125m in float32, 8 x 100 tokens), the default smoke scale the shipped SmolLM2
at CPU size. Bad input (an unwritable output included, checked before the model loads):
one line on stderr, exit 2, nothing written.
"""

from __future__ import annotations

from expspec.kernels.cli import add_config_args, config_from_args, device_from_args


def cmd_generate(args) -> int:
    from expspec.kernels.tempnorm.contexts import contexts_path
    from expspec.kernels.tempnorm.generate import generate_data
    from expspec.kernels.tempnorm.records import meta_path

    sets = [f"tempnorm.model={args.model}"] if args.model else []
    if args.contexts_file:
        sets.append(f"tempnorm.contexts_file={args.contexts_file}")
    cfg = config_from_args(args, sets)
    tempnorm = cfg["tempnorm"]
    meta = generate_data(tempnorm, cfg["common"]["seed"], contexts_path(tempnorm["contexts_file"]), args.output_file,
                         device=device_from_args(args))
    gen = meta["generation"]
    print(f"wrote {args.output_file} ({gen['n_contexts']} records) and {meta_path(args.output_file)}: "
          f"{gen['tokens_generated']} tokens in {gen['seconds']:.1f} s ({gen['tok_per_s']:.1f} tok/s), "
          f"model {meta['model']} ({meta['model_dtype']}), alpha={meta['alpha']}")
    return 0


def cmd_train(args) -> int:
    from pathlib import Path

    from expspec.kernels.tempnorm.plots import R2_PLOT, plot_r2
    from expspec.kernels.tempnorm.predictor import train_data

    cfg = config_from_args(args)
    metrics = train_data(cfg["tempnorm"], cfg["common"]["seed"], args.data_file, args.output_dir)
    plot_r2(metrics, Path(args.output_dir) / R2_PLOT)
    print(f"wrote {args.output_dir}/metrics.json, {R2_PLOT} ({metrics['n_records']} contexts x {metrics['gen_number']})")
    print(f"{'L':>5} {'test R2':>9} {'baseline':>9} {'ceiling':>9} {'ridge a':>9}")
    for L, m in metrics["metrics"].items():
        print(f"{L:>5} {m['test_r2_log']:>9.4f} {m['baseline']['test_r2_log']:>9.4f} {m['r2_ceiling']:>9.4f} "
              f"{m['ridge_alpha']:>9.3g}")
    return 0


def cmd_contexts(args) -> int:
    from expspec.kernels.atomic_io import write_text_atomic
    from expspec.kernels.data.corpus import load_documents
    from expspec.kernels.cli import out_path
    from expspec.kernels.tempnorm.contexts import contexts_text, draw_contexts

    out = out_path(args.out)
    contexts = draw_contexts(load_documents(args.corpus), args.n, args.seed, args.min_chars, args.max_chars,
                             where=f"contexts from corpus {args.corpus}")
    write_text_atomic(out, contexts_text(contexts))
    print(f"wrote {out}: {len(contexts)} contexts from {args.corpus} (seed {args.seed})")
    return 0


def add_commands(sub) -> None:
    from expspec.kernels.tempnorm.contexts import SHIPPED_RECIPE as R

    tempnorm = sub.add_parser("tempnorm", help="TempNorm: does the start state predict the tempnorm?")
    steps = tempnorm.add_subparsers(dest="step", required=True)

    p = steps.add_parser("generate", help="phase 1: contexts -> experiment data (JSONL + sidecar)")
    p.add_argument("--contexts-file", default=None,
                   help="one context per line (default: tempnorm.contexts_file, else the shipped contexts)")
    p.add_argument("--output-file", required=True, help="the JSONL to write (sidecar: <stem>.meta.json)")
    p.add_argument("--model", default=None, help="tempnorm.model: HF id, local dir or smollm2-135m-instruct")
    add_config_args(p, device=True)
    p.set_defaults(func=cmd_generate)

    p = steps.add_parser("train", help="phase 2: experiment data -> one ridge per eval length + metrics.json")
    p.add_argument("--data-file", required=True, help="the JSONL of `expspec tempnorm generate`")
    p.add_argument("--output-dir", required=True)
    add_config_args(p)
    p.set_defaults(func=cmd_train)

    p = steps.add_parser("contexts", help="draw contexts (whole paragraphs) from a corpus, one per line")
    p.add_argument("--out", required=True)
    p.add_argument("--corpus", default=R["corpus"], help=f"corpus spec (default {R['corpus']})")
    p.add_argument("--n", type=int, default=R["n"])
    p.add_argument("--seed", type=int, default=R["seed"])
    p.add_argument("--min-chars", type=int, default=R["min_chars"])
    p.add_argument("--max-chars", type=int, default=R["max_chars"])
    p.set_defaults(func=cmd_contexts)

