"""Run reports: one row per acceptance criterion, as summary.md and index.html.

A criterion record is plain data collected from pytest's reports (the properties a
test recorded with ``record_property``): its name, PASS/FAIL/SKIP, the measured value
and the requirement, an optional manual-review verdict, artifacts and PNG plots.
Both lead with one verdict line per family ("Lane B: PASS (alpha_plausibility FLAGGED →
ACCEPTED)"). index.html embeds the plots so the page can be mailed or archived as one
file; artifacts are linked relative to the run folder, which holds copies of them.
When the session compares with an earlier run (``--compare-to``), each record carries its
comparison and both files, like the terminal's summary table, add a "Δ vs REF" column.
"""

from __future__ import annotations

import base64
import html
import os
from dataclasses import dataclass, field
from pathlib import Path

from expspec.kernels.atomic_io import write_text_atomic
from expspec.kernels.config import family_title
from expspec.kernels.tracking.metrics import key_metric


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
    metrics: dict = field(default_factory=dict)  # numbers stated explicitly (metric:NAME properties)
    tolerances: dict = field(default_factory=dict)  # declared direction + tolerance (tolerance:NAME)
    comparison: object = None  # a tracking.metrics.Comparison when the session compares

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
        elif key.startswith("metric:"):
            rec.metrics[key[len("metric:"):]] = value
        elif key.startswith("tolerance:"):
            rec.tolerances[key[len("tolerance:"):]] = value
        else:
            rec.values[key] = value
    return rec


def compared_to(records: list[CriterionRecord]) -> str:
    """The reference's label when the session compared with one, else ''."""
    return next((r.comparison.label for r in records if r.comparison is not None), "")


def delta_cell(record: CriterionRecord) -> str:
    return record.comparison.key_delta() if record.comparison is not None else ""


def change_lines(record: CriterionRecord) -> list[str]:
    """'alpha: 0.31 -> 0.30 (-0.01)' per compared metric, regressions marked."""
    if record.comparison is None:
        return []
    return [f"{c.name}: {c.reference:.6g} -> {c.value:.6g} ({c.delta:+.4g})"
            + (f" REGRESSED ({c.tolerance})" if c.regressed else "") for c in record.comparison.changes]


def result_of(record: CriterionRecord) -> str:
    """PASS/FAIL/SKIP/ERROR, or 'FLAGGED → ACCEPTED' for a pass on a manual review."""
    if record.review.startswith("FLAGGED") and record.verdict == "PASS":
        return record.review_verdict.split(" by ")[0]
    return record.verdict


def terminal_table(records: list[CriterionRecord]) -> list[str]:
    """The terminal's summary: criterion, result, key metric, threshold (and Δ vs REF)."""
    ref = compared_to(records)
    rows = [("criterion", "result", "key metric", "threshold") + (("Δ vs REF",) if ref else ())]
    for r in records:
        key = key_metric(r)
        shown = f"{key[0]} = {key[1]:.4g}" if key and key[0] != "measured" else (f"{key[1]:.4g}" if key else r.measured)
        result = result_of(r)
        rows.append((r.name, result, shown, r.required) + ((delta_cell(r),) if ref else ()))
    rows = [tuple(" ".join(str(c).split())[:60] for c in row) for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    return lines + ([f"Δ vs REF = now - {ref}"] if ref else [])


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
    ref = compared_to(records)
    if ref:
        lines += [f"- compared to: {ref}"]
    lines += ["- result: " + ", ".join(f"{n} {v}" for v, n in counts.items() if n), ""]
    delta_head = " Δ vs REF |" if ref else ""
    lines += [f"| criterion | family | result | measured | required | review |{delta_head}",
              "|---|---|---|---|---|---|" + ("---|" if ref else "")]
    for r in records:
        delta = f" {_cell(delta_cell(r))} |" if ref else ""
        lines.append(f"| {_cell(r.name)} | {r.family} | {r.verdict} | {_cell(r.measured)} | "
                     f"{_cell(r.required)} | {_cell(r.review_verdict)} |{delta}")
    for r in records:
        changes = r.comparison.changes if r.comparison is not None else []
        if not (r.values or r.artifacts or r.plots or r.message or r.review or changes):
            continue
        lines += ["", f"## {r.name} — {r.verdict}", ""]
        if r.message:
            lines += [f"> {_cell(r.message)[:500]}", ""]
        if r.review:
            lines += [f"- review: {_cell(r.review)}"]
        lines += [f"- {k}: {v}" for k, v in r.values.items()]
        lines += [f"- Δ vs REF {_cell(line)}" for line in change_lines(r)]
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
    ref = compared_to(records)
    if ref:
        out.append(f"<li>compared to: {esc(ref)}</li>")
    out.append("</ul><table><tr><th>criterion</th><th>family</th><th>result</th><th>measured</th>"
               "<th>required</th><th>review</th>" + ("<th>Δ vs REF</th>" if ref else "") + "</tr>")
    for r in records:
        delta = f"<td>{esc(delta_cell(r))}</td>" if ref else ""
        out.append(f"<tr class='{r.verdict}'><td><a href='#{esc(r.nodeid)}'>{esc(r.name)}</a></td>"
                   f"<td>{esc(r.family)}</td><td>{r.verdict}</td><td>{esc(r.measured)}</td>"
                   f"<td>{esc(r.required)}</td><td>{esc(r.review_verdict)}</td>{delta}</tr>")
    out.append("</table>")
    for r in records:
        out.append(f"<h2 id='{esc(r.nodeid)}'>{esc(r.name)} — {r.verdict}</h2>")
        if r.message:
            out.append(f"<pre>{esc(r.message[:2000])}</pre>")
        if r.review:
            out.append(f"<p><b>review:</b> {esc(r.review)}</p>")
        out.append("<ul>" + "".join(f"<li>{esc(str(k))}: {esc(str(v))}</li>" for k, v in r.values.items()))
        out += [f"<li>Δ vs REF {esc(line)}</li>" for line in change_lines(r)]
        out += [f"<li>artifact: <a href='{esc(_rel(a, run_dir))}'>{esc(Path(a).name)}</a></li>"
                for a in r.artifacts]
        out.append("</ul>")
        for p in r.plots:
            if Path(p).is_file():
                data = base64.b64encode(Path(p).read_bytes()).decode()
                out.append(f"<img alt='{esc(Path(p).stem)}' src='data:image/png;base64,{data}'>")
    return write_text_atomic(run_dir / "index.html", "\n".join(out) + "\n")
