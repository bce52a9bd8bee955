"""The ``expspec`` command: each experiment step as a subcommand, for people who run
steps by hand. Bad input prints one line (``expspec: error: ...``), writes nothing
and exits 2.

    expspec config [--profile P] [--set family.key=value ...]   print the resolved config
    expspec models                                              prepare the shipped models
    expspec lane-b ...                                          Lane B steps (see --help)
"""

from __future__ import annotations

import argparse
import json
import sys

from kernels.errors import ExpspecError
from kernels.lane_b_cli import add_lane_b_commands


def _add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default=None, help="profile TOML (default: built-in defaults)")
    parser.add_argument("--set", action="append", default=[], metavar="FAMILY.KEY=VALUE",
                        help="override a knob (repeatable)")


def cmd_config(args) -> int:
    from kernels.config import resolve_config
    from kernels.run_cache import jsonable

    print(json.dumps(jsonable(resolve_config(args.profile, args.set)), indent=2))
    return 0


def cmd_models(args) -> int:
    """Dequantise/cache SmolLM2 and check MiniLM, so the first test does not pay for it."""
    import time

    from kernels.lm import load_causal_lm, load_sentence_encoder, resolve_model_path

    t0 = time.time()
    model, _ = load_causal_lm(args.causal_lm)
    print(f"causal LM {args.causal_lm}: {sum(p.numel() for p in model.parameters()):,} params "
          f"from {resolve_model_path(args.causal_lm)} ({time.time() - t0:.1f} s)")
    t0 = time.time()
    enc, _ = load_sentence_encoder(args.sentence_encoder)
    print(f"sentence encoder {args.sentence_encoder}: {sum(p.numel() for p in enc.parameters()):,} params "
          f"({time.time() - t0:.1f} s)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="expspec", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("config", help="print the resolved config as JSON")
    _add_config_args(p)
    p.set_defaults(func=cmd_config)
    p = sub.add_parser("models", help="load (and cache) the shipped pretrained models")
    p.add_argument("--causal-lm", default="smollm2-135m-instruct")
    p.add_argument("--sentence-encoder", default="all-minilm-l6-v2")
    p.set_defaults(func=cmd_models)
    add_lane_b_commands(sub, _add_config_args)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ExpspecError as err:
        print(f"expspec: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
