"""Run reports: one row per acceptance criterion, as summary.md and index.html.

A criterion record is plain data collected from pytest's reports (the properties a
test recorded with ``record_property``): its name, PASS/FAIL/SKIP, the measured value
and the requirement, an optional manual-review verdict, artifacts and PNG plots.
Both lead with one verdict line per family ("Lane B: PASS (alpha_plausibility FLAGGED →
ACCEPTED)"). index.html embeds the plots so the page can be mailed or archived as one
file; artifacts are linked relative to the run folder, which holds copies of them.
"""

from __future__ import annotations

import base64
import html
import os
from dataclasses import dataclass, field
from pathlib import Path

from expspec.kernels.atomic_io import write_text_atomic
from expspec.kernels.config import family_title


@dataclass
class CriterionRecord:
    nodeid: str
    outcome: str  # passed | failed | skipped | error
    duration: float = 0.0
    measured: str = ""
    required: str = ""
    review: str = ""
    message: str = ""
    values: dict = field(default_factory=dict)
    artifacts: list = field(default_factory=list)
    plots: list = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.nodeid.split("::")[-1]

    @property
    def family(self) -> str:
        return family_of(self.nodeid)

    @property
    def is_criterion(self) -> bool:
        """An acceptance test: it stated a criterion, or it lives in experiments/."""
        return bool(self.measured or self.required) or self.nodeid.startswith("experiments/")

    @property
    def review_verdict(self) -> str:
        """'FLAGGED → ACCEPTED by NAME' (the reason is shown in the details)."""
        return self.review.split(":", 1)[0]

    @property
    def verdict(self) -> str:
        return {"passed": "PASS", "failed": "FAIL", "skipped": "SKIP", "error": "ERROR"}.get(
            self.outcome, self.outcome.upper())


def family_of(nodeid: str) -> str:
    """experiments/test_lane_b.py::test_x[smoke] -> lane_b: the test file names the family,
    alone or followed by ``_<what it asks>`` (test_hero_readiness.py -> hero, when hero is a
    registered family); any other file is a family of its own name."""
    from expspec.kernels.config import registry

    stem = Path(nodeid.split("::")[0]).stem.removeprefix("test_")
    names = sorted(registry(), key=len, reverse=True)
    return next((n for n in names if stem == n or stem.startswith(n + "_")), stem)


def family_verdicts(records: list[CriterionRecord]) -> list[str]:
    """One line per family: FAIL if any criterion failed, PASS if all that ran passed,
    with the criteria that passed on a manual review named."""
    lines = []
    for family in dict.fromkeys(r.family for r in records if r.is_criterion):
        rows = [r for r in records if r.is_criterion and r.family == family]
        verdicts = {r.verdict for r in rows}
        overall = next((v for v in ("ERROR", "FAIL") if v in verdicts), None) or (
            "PASS" if "PASS" in verdicts else "SKIP")
        reviews = [f"{r.name.removeprefix('test_').split('[')[0]} {r.review_verdict}" for r in rows if r.review]
        lines.append(f"{family_title(family)}: {overall}" + (f" ({'; '.join(reviews)})" if reviews else ""))
    return lines


def record_from_properties(nodeid: str, outcome: str, duration: float, properties, message: str = ""):
    rec = CriterionRecord(nodeid, outcome, duration, message=message)
    for key, value in properties:
        if key == "measured":
            rec.measured = str(value)
        elif key == "required":
            rec.required = str(value)
        elif key == "review":
            rec.review = str(value)
        elif key == "artifact":
            rec.artifacts.append(str(value))
        elif key == "plot":
            rec.plots.append(str(value))
        else:
            rec.values[key] = value
    return rec


def _rel(path: str, run_dir: Path) -> str:
    try:
        return os.path.relpath(Path(path).resolve(), run_dir.resolve())
    except ValueError:
        return path


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def write_summary_md(records: list[CriterionRecord], run_dir: Path, header: dict) -> Path:
    counts = {v: sum(r.verdict == v for r in records) for v in ("PASS", "FAIL", "ERROR", "SKIP")}
    lines = [f"# expspec run {run_dir.name}", ""]
    lines += [f"**{v}**  " for v in family_verdicts(records)] + [""]
    lines += [f"- {k}: {v}" for k, v in header.items()]
    lines += ["- result: " + ", ".join(f"{n} {v}" for v, n in counts.items() if n), ""]
    lines += ["| criterion | family | result | measured | required | review |",
              "|---|---|---|---|---|---|"]
    for r in records:
        lines.append(f"| {_cell(r.name)} | {r.family} | {r.verdict} | {_cell(r.measured)} | "
                     f"{_cell(r.required)} | {_cell(r.review_verdict)} |")
    for r in records:
        if not (r.values or r.artifacts or r.plots or r.message or r.review):
            continue
        lines += ["", f"## {r.name} — {r.verdict}", ""]
        if r.message:
            lines += [f"> {_cell(r.message)[:500]}", ""]
        if r.review:
            lines += [f"- review: {_cell(r.review)}"]
        lines += [f"- {k}: {v}" for k, v in r.values.items()]
        lines += [f"- artifact: [{Path(a).name}]({_rel(a, run_dir)})" for a in r.artifacts]
        lines += [f"![{Path(p).stem}]({_rel(p, run_dir)})" for p in r.plots]
    return write_text_atomic(run_dir / "summary.md", "\n".join(lines) + "\n")


_CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
.PASS{background:#dfd}.FAIL,.ERROR{background:#fdd}.SKIP{background:#eee}img{max-width:640px}"""


def write_index_html(records: list[CriterionRecord], run_dir: Path, header: dict) -> Path:
    esc = html.escape
    out = [f"<!doctype html><meta charset='utf-8'><title>expspec {esc(run_dir.name)}</title>",
           f"<style>{_CSS}</style><h1>expspec run {esc(run_dir.name)}</h1>"]
    out += [f"<p class='{esc(v.split(': ', 1)[1].split()[0])}'><b>{esc(v)}</b></p>" for v in family_verdicts(records)]
    out.append("<ul>")
    out += [f"<li>{esc(str(k))}: {esc(str(v))}</li>" for k, v in header.items()]
    out.append("</ul><table><tr><th>criterion</th><th>family</th><th>result</th><th>measured</th>"
               "<th>required</th><th>review</th></tr>")
    for r in records:
        out.append(f"<tr class='{r.verdict}'><td><a href='#{esc(r.nodeid)}'>{esc(r.name)}</a></td>"
                   f"<td>{esc(r.family)}</td><td>{r.verdict}</td><td>{esc(r.measured)}</td>"
                   f"<td>{esc(r.required)}</td><td>{esc(r.review_verdict)}</td></tr>")
    out.append("</table>")
    for r in records:
        out.append(f"<h2 id='{esc(r.nodeid)}'>{esc(r.name)} — {r.verdict}</h2>")
        if r.message:
            out.append(f"<pre>{esc(r.message[:2000])}</pre>")
        if r.review:
            out.append(f"<p><b>review:</b> {esc(r.review)}</p>")
        out.append("<ul>" + "".join(f"<li>{esc(str(k))}: {esc(str(v))}</li>" for k, v in r.values.items()))
        out += [f"<li>artifact: <a href='{esc(_rel(a, run_dir))}'>{esc(Path(a).name)}</a></li>"
                for a in r.artifacts]
        out.append("</ul>")
        for p in r.plots:
            if Path(p).is_file():
                data = base64.b64encode(Path(p).read_bytes()).decode()
                out.append(f"<img alt='{esc(Path(p).stem)}' src='data:image/png;base64,{data}'>")
    return write_text_atomic(run_dir / "index.html", "\n".join(out) + "\n")
