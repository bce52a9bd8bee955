"""``expspec qa ...`` and ``expspec hero ...``: hero's scorer and its readiness tools.

    expspec qa score --pred predictions.jsonl --gold dev.json [--out score.json]
        the official SQuAD v1.1 corpus scores, printed as {"exact_match": .., "f1": ..};
        predictions: {"id": .., "prediction": ..} per line, or the official {id: text} dict
    expspec qa priors --train train.json --gold dev.json
        EM/F1 of the most frequent training answer, overall and per question type
    expspec hero data --out-dir D            the generated QA set: D/train.json, D/dev.json
    expspec hero analyze diagnostics.jsonl [--out summary.json]
        per series: peak first_acc and its step, final, regression from the peak, max
        grad_norm, breakthrough steps, and the checklist rows (thresholds from the config)
    expspec hero ladder [--scale/--profile/--set] [--work-dir D]
        Stage A once, then the action plan's rungs (Phase 1, 2 A/B/C, 3) until one passes the
        checklist; prints a line per rung; exit 0 when a rung passed
    expspec hero run [--profile gpu.toml | --scale hero] [--gate-profile P]
        the smoke ladder first; the hero ladder only when the smoke checklist passed
    expspec hero monitor LOG [--once] [--idle-timeout S]
        follow a growing training log; print each line with an F1 > 0

``qa`` lives here because it is hero's scorer. Bad input: one line on stderr, exit 2,
nothing written. ``monitor`` exits 1 when it stops without having seen an F1 > 0.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from expspec.kernels.atomic_io import jsonable, write_json_atomic
from expspec.kernels.cli import add_config_args, config_from_args, out_path
from expspec.kernels.errors import ExpspecError


def _emit(result: dict, out: Path | None) -> None:
    if out is not None:
        write_json_atomic(out, result)
    print(json.dumps(jsonable(result)))


def cmd_qa_score(args) -> int:
    from expspec.kernels.hero.squad import read_predictions, read_squad, squad_scores

    out = out_path(args.out)
    questions = read_squad(args.gold)
    predictions = read_predictions(args.pred)
    unanswered = sum(q.id not in predictions for q in questions)
    if unanswered:  # the official script prints one line per question; one in all is enough
        print(f"expspec: {unanswered} of {len(questions)} questions unanswered in {args.pred}: "
              f"scored 0", file=sys.stderr)
    _emit(squad_scores(predictions, questions), out)
    return 0


def cmd_qa_priors(args) -> int:
    from expspec.kernels.hero.squad import prior_baselines, read_squad

    out = out_path(args.out)
    _emit(prior_baselines(read_squad(args.train), read_squad(args.gold)), out)
    return 0


def cmd_hero_data(args) -> int:
    from expspec.kernels.hero.qa_data import generate_qa, write_qa

    hero = config_from_args(args)["hero"]
    out_dir = Path(args.out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ExpspecError(f"--out-dir {out_dir}: exists and is not a directory")
    splits = generate_qa(max(hero["stage_a_samples"], hero["stage_b_samples"]), hero["eval_samples"],
                         hero["qa_seed"], multi_token_share=hero["qa_multi_token_share"],
                         max_facts=hero["qa_max_facts"])
    train, dev = write_qa(out_dir, splits)
    n_train = sum(len(p["qas"]) for a in splits.train["data"] for p in a["paragraphs"])
    n_eval = sum(len(p["qas"]) for a in splits.eval["data"] for p in a["paragraphs"])
    print(f"wrote {train} ({n_train} questions) and {dev} ({n_eval} questions), qa_seed={hero['qa_seed']}")
    return 0


def cmd_hero_analyze(args) -> int:
    from expspec.kernels.hero.diagnostics import analyze_diagnostics, diagnostics_checks

    hero = config_from_args(args)["hero"]
    out = out_path(args.out)
    summary = analyze_diagnostics(args.diagnostics)
    for series in summary["series"].values():
        series["checks"] = diagnostics_checks(series, hero["min_peak_first_acc"], hero["min_final_over_peak"],
                                              hero["max_grad_norm"])
    if out is not None:
        write_json_atomic(out, summary)
    print(json.dumps(jsonable(summary), indent=2))
    return 0


def cmd_hero_monitor(args) -> int:
    from expspec.kernels.hero.diagnostics import f1_in_line, follow_log

    if args.poll <= 0:
        raise ExpspecError(f"--poll: expected seconds > 0, got {args.poll}")
    if not Path(args.log).exists():
        print(f"expspec: waiting for {args.log} to appear", file=sys.stderr, flush=True)
    seen = False
    try:
        for number, line in follow_log(args.log, args.poll, args.idle_timeout):
            f1 = f1_in_line(line)
            if f1 is not None and f1 > 0:
                seen = True
                print(f"{args.log}:{number}: F1 {f1:g} > 0: {line.strip()}", flush=True)
                if args.once:
                    break
    except KeyboardInterrupt:
        pass
    if not seen:
        print(f"expspec: no F1 > 0 in {args.log}", file=sys.stderr)
    return 0 if seen else 1


def _ladder(args, cfg: dict, label: str) -> dict:
    from expspec.kernels.cli import device_from_args
    from expspec.kernels.devices import parse_devices
    from expspec.kernels.hero.ladder import HeroLadder

    hero, seed = cfg["hero"], cfg["common"]["seed"]
    root = Path(args.work_dir or hero["work_dir"] or Path("reports") / "work" / "hero")
    result = HeroLadder(hero, seed, root, device=device_from_args(args),
                        log=lambda line: print(line, file=sys.stderr, flush=True),
                        devices=parse_devices(args.device)).run()
    for rung in result["rungs"]:
        failed = ", ".join(rung["decision"]["failed"]) or "none"
        print(f"{label} rung {rung['index']} {rung['name']}: mean F1 {rung['mean_f1']:.3f}, peak first_acc "
              f"{rung['peak_first_acc']:.3f}, failed {failed} ({rung['wall_s']:.0f} s) -> "
              f"{rung['decision']['text']}")
    print(f"{label}: {'READY' if result['ready'] else 'NOT READY'} ({result['dir']}/ladder.json)")
    return result


def cmd_hero_ladder(args) -> int:
    return 0 if _ladder(args, config_from_args(args), "ladder")["ready"] else 1


def cmd_hero_run(args) -> int:
    """The plan's rule: the smoke checklist first; the hero run only when every item passed."""
    from expspec.kernels.config import resolve_scale

    gate = resolve_scale("smoke", args.gate_profile, [])
    if not _ladder(args, gate, "smoke gate")["ready"]:
        print("expspec: the smoke checklist did not pass; hero run not started", file=sys.stderr)
        return 1
    return 0 if _ladder(args, config_from_args(args), "hero")["ready"] else 1


def add_commands(sub) -> None:
    qa = sub.add_parser("qa", help="SQuAD v1.1 scoring (hero's scorer)")
    qa_steps = qa.add_subparsers(dest="step", required=True)
    p = qa_steps.add_parser("score", help="official SQuAD v1.1 EM/F1 of a predictions file")
    p.add_argument("--pred", required=True, help='JSONL {"id": .., "prediction": ..} or JSON {id: text}')
    p.add_argument("--gold", required=True, help="SQuAD v1.1 JSON (e.g. dev-v1.1.json or hero's dev.json)")
    p.add_argument("--out", default=None, help="also write the scores to this JSON file")
    p.set_defaults(func=cmd_qa_score)
    p = qa_steps.add_parser("priors", help="EM/F1 of the most frequent training answer (overall, per type)")
    p.add_argument("--train", required=True, help="SQuAD v1.1 JSON the priors are counted on")
    p.add_argument("--gold", required=True, help="SQuAD v1.1 JSON they are scored on")
    p.add_argument("--out", default=None)
    p.set_defaults(func=cmd_qa_priors)

    hero = sub.add_parser("hero", help="Hero readiness: QA data, diagnostics analysis, log monitor")
    steps = hero.add_subparsers(dest="step", required=True)
    p = steps.add_parser("data", help="generate the QA set (SQuAD v1.1) -> OUT_DIR/train.json, dev.json")
    p.add_argument("--out-dir", required=True)
    add_config_args(p)
    p.set_defaults(func=cmd_hero_data)
    p = steps.add_parser("analyze", help="summarise a diagnostics.jsonl (ours or the original's)")
    p.add_argument("diagnostics")
    p.add_argument("--out", default=None, help="also write the summary to this JSON file")
    add_config_args(p)
    p.set_defaults(func=cmd_hero_analyze)
    p = steps.add_parser("ladder", help="Stage A once, then the plan's rungs until the checklist passes")
    p.add_argument("--work-dir", default=None, help="default: hero.work_dir, else reports/work/hero")
    add_config_args(p, device=True)
    p.set_defaults(func=cmd_hero_ladder)
    p = steps.add_parser("run", help="the smoke ladder as a gate, then (only if it passed) the --scale/--profile one")
    p.add_argument("--work-dir", default=None, help="default: hero.work_dir, else reports/work/hero")
    p.add_argument("--gate-profile", default=None, metavar="PATH", help="the gate's profile (default: smoke)")
    add_config_args(p, device=True)
    p.set_defaults(func=cmd_hero_run, scale="hero")
    p = steps.add_parser("monitor", help="follow a training log, print lines with F1 > 0")
    p.add_argument("log")
    p.add_argument("--once", action="store_true", help="stop at the first F1 > 0")
    p.add_argument("--poll", type=float, default=1.0, help="seconds between looks (default 1)")
    p.add_argument("--idle-timeout", type=float, default=None,
                   help="stop after this many seconds without a new line (default: follow until Ctrl-C)")
    p.set_defaults(func=cmd_hero_monitor)
