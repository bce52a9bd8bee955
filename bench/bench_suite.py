"""Suite wall time: `make smoke` and `make test` from a cold and a warm cache, -n 0 vs xdist.

Each run is a real pytest session in a subprocess with its own reports dir (the fixture
cache lives there): "cold" starts from an empty one, "warm" runs the same command again in
the same dir, so every cached fixture is reused. Tracking is off (no store grows). Printed:

* suite_<run>_<cold|warm>: wall seconds of each session, beside the issue's targets (warm
  `make test` <= 5 min, warm smoke <= 1 min, cold smoke of all four families <= 35 min);
* per family: the seconds its tests took (junit's per-test times, setup included, summed
  over experiments/test_<family>.py; under xdist these overlap, so they add up to more than
  the wall time);
* xdist_vs_n0_<target>_<mode>: -n 0's wall time / xdist's (> 1: xdist is faster);
* warm_vs_cold_<run>: cold / warm.

    python bench/bench_suite.py                          # every run below: ~2.5 h on 2 cores
    python bench/bench_suite.py --runs smoke-n0,smoke-xdist --families tempnorm,bon
    python bench/bench_suite.py --from-junit reports/<run>/junit.xml   # per family, from a session you ran

Runs: smoke-n0, smoke-xdist (`make smoke`), test-xdist (`make test`), test-n0. --quick
times a few seconds' unit module cold and warm with -n 0 (what `make test` exercises).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

from benchlib import ROOT, arguments, figure, ratio, write_record

XDIST = ["-n", "auto", "--dist", "loadgroup"]  # the Makefile's default
RUNS = {  # name -> (marker expression, paths, workers): what `make smoke` / `make test` run
    "smoke-n0": ("smoke", ["experiments"], ["-n", "0"]),
    "smoke-xdist": ("smoke", ["experiments"], XDIST),
    "test-xdist": ("not hero", [], XDIST),
    "test-n0": ("not hero", [], ["-n", "0"]),
}
TARGETS_S = {("smoke", "warm"): 60.0, ("test", "warm"): 300.0, ("smoke", "cold"): 35 * 60.0}
QUICK_MODULE = "tests/test_power_law.py"


def family_of(classname: str, file: str) -> str:
    """experiments/test_lane_b.py -> lane_b; a unit test -> "unit"."""
    name = (file or classname.replace(".", "/") + ".py").replace("\\", "/")
    if name.startswith("experiments/"):
        return Path(name).stem.removeprefix("test_")
    return "unit"


def junit_seconds(path: Path) -> tuple[dict[str, float], dict[str, int]]:
    """(seconds per family, counts of passed/failed/skipped/error) from a junit XML."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise SystemExit(f"bench_suite: {path}: not a readable junit XML ({exc})") from None
    seconds: dict[str, float] = defaultdict(float)
    outcomes = {"passed": 0, "failed": 0, "skipped": 0, "error": 0}
    for case in root.iter("testcase"):
        seconds[family_of(case.get("classname", ""), case.get("file", ""))] += float(case.get("time") or 0.0)
        tags = {child.tag for child in case}
        outcome = ("failed" if "failure" in tags else "error" if "error" in tags else
                   "skipped" if "skipped" in tags else "passed")
        outcomes[outcome] += 1
    return dict(sorted(seconds.items())), outcomes


def session(marker: str, paths: list[str], workers: list[str], reports: Path, log) -> tuple[float, Path | None, int]:
    """One pytest session in ``reports``: (wall seconds, its junit XML, exit code)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "EXPSPEC_FRESH"))}
    env.pop("EXPSPEC_THREADS", None)  # the session picks threads per worker itself, as `make` does
    command = [sys.executable, "-m", "pytest", "-m", marker, *workers, *paths, "--reports-dir", str(reports),
               "--no-tracking", "-q", "-p", "no:cacheprovider"]
    before = set(reports.glob("*/junit.xml")) if reports.is_dir() else set()
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seconds = time.perf_counter() - start
    log.write(f"$ {' '.join(command)}\n{proc.stdout}\n")
    new = sorted(set(reports.glob("*/junit.xml")) - before)
    return seconds, (new[-1] if new else None), proc.returncode


def main() -> None:
    parser = arguments(__doc__.splitlines()[0], repeats=1)
    parser.add_argument("--runs", default="", help=f"comma list of {', '.join(RUNS)} (default: all; "
                        "with --families, the smoke ones)")
    parser.add_argument("--families", default="", help="comma list (lane_b, hero_readiness, bon_emergence, "
                        "tempnorm): only their experiment files (default: all)")
    parser.add_argument("--from-junit", default="", help="only summarise this junit XML per family")
    args = parser.parse_args()
    figures: dict = {}
    if args.from_junit:
        seconds, outcomes = junit_seconds(Path(args.from_junit))
        for family, s in seconds.items():
            figures[f"family_{family}"] = figure(f"family_{family}_seconds", s, "s", note=f"from {args.from_junit}")
        figures["outcomes"] = outcomes
        print(f"outcomes: {outcomes}")
        write_record(args, "suite_from_junit", figures)
        return
    if not args.runs:
        args.runs = ",".join(name for name in RUNS if not args.families or name.startswith("smoke"))
    unknown = set(args.runs.split(",")) - set(RUNS) - {""}
    if unknown:
        raise SystemExit(f"bench_suite: unknown run(s) {sorted(unknown)} (known: {', '.join(RUNS)})")
    runs = {name: RUNS[name] for name in args.runs.split(",") if name}
    if args.quick:
        runs = {"unit-n0": ("not hero", [QUICK_MODULE], ["-n", "0"])}  # seconds: xdist's start-up alone is ~20 s
    if args.families:
        if args.quick or any(marker != "smoke" for marker, _, _ in runs.values()):
            raise SystemExit("bench_suite: --families picks experiment files of smoke runs; "
                             "drop it with --quick or a test-* run (those time the whole suite)")
        files = [f"experiments/test_{name}.py" for name in args.families.split(",")]
        missing = [f for f in files if not (ROOT / f).is_file()]
        if missing:
            raise SystemExit(f"bench_suite: no such experiment file(s) {missing}")
        runs = {name: (marker, files, workers) for name, (marker, _, workers) in runs.items()}
    wall: dict[tuple[str, str], float] = {}
    with tempfile.TemporaryDirectory(prefix="expspec-suite-") as tmp:
        log_path = Path(args.out_dir) / "suite-sessions.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "w", encoding="utf-8") as log:
            for name, (marker, paths, workers) in runs.items():
                reports = Path(tmp) / name
                for mode in ("cold", "warm"):
                    seconds, junit, code = session(marker, paths, workers, reports, log)
                    target = "smoke" if marker == "smoke" else "test"
                    per_family, outcomes = junit_seconds(junit) if junit else ({}, {})
                    note = f"exit {code}, {outcomes}" + "".join(f", {f} {s:.0f} s" for f, s in per_family.items())
                    label = f"suite_{name}_{mode}".replace("-", "_")
                    target_max = None if args.quick else TARGETS_S.get((target, mode))
                    figures[label] = {
                        **figure(label, seconds, "s", target_max=target_max, note=note),
                        "exit_code": code, "outcomes": outcomes, "family_seconds": per_family}
                    wall[(name, mode)] = seconds
                label = f"warm_vs_cold_{name}".replace("-", "_")
                figures[label] = ratio(label, wall[(name, "warm")], wall[(name, "cold")], "s",
                                       reference_name="cold", higher_is_better=False)
        print(f"session logs: {log_path}")
    for n0, xd in (("smoke-n0", "smoke-xdist"), ("test-n0", "test-xdist")):
        for mode in ("cold", "warm"):
            if (n0, mode) in wall and (xd, mode) in wall:
                figures[f"xdist_vs_n0_{n0[:-3]}_{mode}"] = ratio(
                    f"xdist_vs_n0_{n0[:-3]}_{mode}", wall[(xd, mode)], wall[(n0, mode)], "s",
                    reference_name="-n 0", higher_is_better=False)
    failed = {k: v["exit_code"] for k, v in figures.items() if isinstance(v, dict) and v.get("exit_code", 0) != 0}
    write_record(args, "suite", figures)
    if failed:
        raise SystemExit(f"bench_suite: sessions failed: {failed} (see {log_path}); their times are not the suite's")


if __name__ == "__main__":
    main()
