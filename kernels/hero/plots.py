"""Hero's plots, drawn from a rung's stored diagnostics: first-token accuracy against the
step with the checklist's bar, and the losses against the step."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

from expspec.kernels.plots import plot_curves


def _series(diagnostics: Path) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for line in diagnostics.read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            out.setdefault(f"{record['stage']}/{record['mode']}", []).append(record)
    return out


def plot_rung(result: Mapping, out_dir: Path) -> dict[str, Path]:
    """first_acc.png and losses.png of a rung (its folder's diagnostics.jsonl)."""
    series = _series(Path(result["folder"]) / "diagnostics.jsonl")
    bar = result["config"]["min_peak_first_acc"]
    first = [(f"{name} first_acc", [r["global_step"] for r in rs], [float(r["first_acc"]) for r in rs])
             for name, rs in sorted(series.items())]
    loss_curves = []
    for name, rs in sorted(series.items()):
        for loss in ("first", "kce", "kd"):
            points = [(r["global_step"], float(r[loss])) for r in rs if r.get(loss) is not None]
            if points:
                loss_curves.append((f"{name} {loss}", [p[0] for p in points], [p[1] for p in points]))
    title = f"hero readiness: {result['name']}"
    return {"first_acc": plot_curves(out_dir / "first_acc.png", first, hlines=[(f"checklist bar {bar:.0%}", bar)],
                                     title=title, ylabel="first-token accuracy"),
            "losses": plot_curves(out_dir / "losses.png", loss_curves, title=title, ylabel="loss (nats)")}
