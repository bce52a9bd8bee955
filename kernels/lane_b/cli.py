"""``expspec lane-b ...``: the Lane B worksheet steps as subcommands.

    expspec lane-b stats --corpus PATH --tokenizer bpe:4096|model:NAME [--max-tokens N]
                         [--entropy model|ngram] --out stats.json
    expspec lane-b infer (--stats stats.json | --alpha A) --calibration calibration.json
                         --threshold T --n-scaling-params N [--direction lower_is_better]
                         [--alpha-range 0.2,0.8] --out infer.json
    expspec lane-b parse-log LOG                       a nanochat/builtin training log -> JSON
    expspec lane-b STEP --work-dir W                   one run-guide step on a work dir:
        baselines | scaling-params | calibrate | calibration-points | candidates | log |
        summary | run-all (steps 1-8; loads W/threshold.env)

Flags are shorthands for config keys; everything goes through --scale/--profile/--set/env
exactly as in pytest (``expspec.kernels.cli.config_from_args``). Every output records the resolved config, seed, git commit and
input fingerprints. Bad input: one line on stderr, exit 2, nothing written.
"""

from __future__ import annotations

import math
from pathlib import Path

from expspec.kernels.cli import add_config_args, config_from_args, device_from_args, out_path
from expspec.kernels.errors import ExpspecError
from expspec.kernels.atomic_io import write_json_atomic
from expspec.kernels.provenance import file_fingerprint, git_commit


def _provenance(cfg: dict, inputs: dict[str, str]) -> dict:
    return {"config": cfg, "seed": cfg["common"]["seed"], "git_commit": git_commit(), "inputs": inputs}


def cmd_stats(args) -> int:
    from expspec.kernels.data.corpus import load_corpus
    from expspec.kernels.lane_b.stats import corpus_stats

    sets = []
    if args.corpus:
        sets.append(f"common.corpus={args.corpus}")
    for flag, key in ((args.tokenizer, "tokenizer"), (args.max_tokens, "stats_max_tokens"),
                      (args.entropy, "entropy")):
        if flag is not None:
            sets.append(f"lane_b.{key}={flag}")
    cfg = config_from_args(args, sets)
    out = out_path(args.out)
    split = load_corpus(cfg["common"]["corpus"], cfg["common"]["val_fraction"])
    stats = corpus_stats(cfg["lane_b"], cfg["common"], split, device=device_from_args(args))
    stats["provenance"] = _provenance(cfg, {"corpus": split.fingerprint})
    write_json_atomic(out, stats)
    print(f"wrote {out}: alpha={stats['alpha']:.4f} (beta={stats['beta']:.4f}, gamma={stats['gamma']:.4f}), "
          f"plausible={stats['alpha_plausible']}")
    return 0


def cmd_infer(args) -> int:
    from expspec.kernels.lane_b.pipeline import infer_record, read_calibration_points, read_stats_alpha

    cfg = config_from_args(args)
    lane_b = cfg["lane_b"]
    out = out_path(args.out)
    points = read_calibration_points(args.calibration)
    inputs = {"calibration": file_fingerprint(args.calibration)}
    if args.stats:
        alpha, alpha_ci, stats = read_stats_alpha(args.stats)
        fingerprint = stats.get("fingerprint")
        inputs.update(stats=file_fingerprint(args.stats), stats_fingerprint=str(fingerprint or ""))
    else:  # a bare --alpha has no stats fingerprint: a review cannot cover it
        alpha, alpha_ci, fingerprint = args.alpha, None, None
    if args.alpha_range:
        try:
            lo, hi = (float(v) for v in args.alpha_range.split(","))
        except ValueError:
            lo = hi = math.nan
        if not lo < hi:
            raise ExpspecError(f"--alpha-range {args.alpha_range!r}: expected MIN,MAX with MIN < MAX")
        lane_b["alpha_min"], lane_b["alpha_max"] = lo, hi
    threshold = args.threshold if args.threshold is not None else lane_b["target_threshold"]
    if not math.isfinite(threshold):
        raise ExpspecError("infer: no threshold: pass --threshold or set lane_b.target_threshold "
                           "(LANE_B_TARGET_THRESHOLD from threshold.env)")
    if not (math.isfinite(args.n_scaling_params) and args.n_scaling_params > 0):
        raise ExpspecError(f"--n-scaling-params: expected a positive count, got {args.n_scaling_params}")
    record = infer_record(lane_b, alpha, alpha_ci, points, threshold, args.n_scaling_params, args.direction,
                          fingerprint)
    record["provenance"] = _provenance(cfg, inputs)
    write_json_atomic(out, record)
    print(f"wrote {out}: solve_status={record['solve_status']} "
          f"ratio={record['inferred_target_param_data_ratio']}")
    return 0


def cmd_parse_log(args) -> int:
    import json

    from expspec.kernels.atomic_io import jsonable
    from expspec.kernels.train.training_log import parse_training_log

    print(json.dumps(jsonable(parse_training_log(args.log).to_dict()), indent=2))
    return 0


def _pipeline_steps() -> dict:
    from expspec.kernels.lane_b import pipeline as p
    from expspec.kernels.lane_b import summary as s

    return {"baselines": p.step_baselines, "scaling-params": p.step_scaling_params,
            "calibrate": p.step_calibrate, "calibration-points": p.step_calibration_points,
            "candidates": p.step_candidates, "log": s.step_log, "summary": s.step_summary, "run-all": s.run_all}


def cmd_pipeline_step(args) -> int:
    import json

    from expspec.kernels.lane_b.runs import LaneB
    from expspec.kernels.atomic_io import jsonable

    cfg = config_from_args(args)
    work_dir = args.work_dir or cfg["lane_b"]["work_dir"]
    if not work_dir:
        raise ExpspecError("lane-b: no work dir: pass --work-dir or set lane_b.work_dir (LANE_B_WORK_DIR)")
    lb = LaneB(cfg["lane_b"], cfg["common"], Path(work_dir), device=device_from_args(args),
               log=lambda line: print(line, flush=True))
    result = _pipeline_steps()[args.step](lb)
    write_json_atomic(lb.path(f"config.{args.step}.json"), _provenance(cfg, {}))  # next to what it wrote
    print(json.dumps(jsonable(result), indent=2))
    return 0


def add_commands(sub) -> None:
    lane = sub.add_parser("lane-b", help="Lane B: token budget from corpus statistics")
    steps = lane.add_subparsers(dest="step", required=True)

    p = steps.add_parser("stats", help="beta, gamma, alpha of a corpus -> stats.json")
    p.add_argument("--corpus", default=None, help="corpus spec (default: common.corpus)")
    p.add_argument("--tokenizer", default=None, help="bpe:VOCAB or model:NAME (default: lane_b.tokenizer)")
    p.add_argument("--max-tokens", type=int, default=None, help="lane_b.stats_max_tokens")
    p.add_argument("--entropy", choices=("model", "ngram"), default=None, help="lane_b.entropy")
    p.add_argument("--out", required=True)
    add_config_args(p, device=True)
    p.set_defaults(func=cmd_stats)

    p = steps.add_parser("infer", help="gate alpha, calibrate L(D), solve the target -> infer.json")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--stats", help="stats.json from `lane-b stats`")
    src.add_argument("--alpha", type=float, help="use this alpha instead of a stats.json")
    p.add_argument("--calibration", required=True, help='{"points": [{"tokens": D, "value": L}, ...]}')
    p.add_argument("--threshold", type=float, default=None, help="target metric threshold")
    p.add_argument("--n-scaling-params", type=float, required=True)
    p.add_argument("--direction", choices=("lower_is_better",), default="lower_is_better",
                   help="the only direction a Lane B metric (val_bpb) has")
    p.add_argument("--alpha-range", default=None, help="MIN,MAX (default: lane_b.alpha_min,alpha_max)")
    p.add_argument("--out", required=True)
    add_config_args(p)
    p.set_defaults(func=cmd_infer)

    p = steps.add_parser("parse-log", help="parse a nanochat (or builtin) training log -> JSON")
    p.add_argument("log")
    add_config_args(p)
    p.set_defaults(func=cmd_parse_log)

    for name in ("baselines", "scaling-params", "calibrate", "calibration-points", "candidates", "log",
                 "summary", "run-all"):
        p = steps.add_parser(name, help=f"run-guide step '{name}' on a work dir")
        p.add_argument("--work-dir", default=None, help="the Lane B work dir (default: lane_b.work_dir)")
        add_config_args(p, device=True)
        p.set_defaults(func=cmd_pipeline_step, step=name)
