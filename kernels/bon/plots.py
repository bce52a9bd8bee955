"""Best-of-N plots: pass@k curves (base vs adapter) and the coverage law, measured vs predicted."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, ax, path: Path, title: str, xlabel: str, ylabel: str) -> Path:
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.set_xscale("log", base=2)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_pass_at_k(path: str | Path, summaries: Sequence[Mapping], title: str = "pass@k, base vs adapter") -> Path:
    """One curve per run summary (analyze.run_summary): mean pass@k for k = 1..n."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    for i, s in enumerate(summaries):
        curve = s.get("pass_at_k_curve") or {}
        ks = sorted(int(k) for k in curve)
        ax.plot(ks, [curve[str(k)] for k in ks], "-o", ms=3, color=f"C{i}",
                label=f"{s['label']} ({s['prompts']} prompts)")
    return _save(plt, fig, ax, Path(path), title, "k (samples)", "mean pass@k")


def plot_coverage(path: str | Path, coverage: Mapping[str, Mapping], title: str = "coverage law") -> Path:
    """Per run: measured mean pass@k (filled where fitted), exp(-A k^-b) over the whole range."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    for i, (label, law) in enumerate(coverage.items()):
        curve = law["curve"]
        ks = np.array(sorted(int(k) for k in curve))
        measured = np.array([curve[str(k)] for k in ks])
        fitted = ks <= max(law["fit_ks"])
        ax.plot(ks[fitted], measured[fitted], "o", color=f"C{i}", label=f"{label}: measured (fitted)")
        ax.plot(ks[~fitted], measured[~fitted], "o", mfc="none", color=f"C{i}", label=f"{label}: measured (held out)")
        grid = np.geomspace(1, ks.max(), 100)
        ax.plot(grid, np.exp(-law["A"] * grid ** -law["b"]), "-", color=f"C{i}", alpha=0.7,
                label=f"{label}: exp(-{law['A']:.2f} k^-{law['b']:.2f}), max rel err "
                      f"{law['max_relative_error']:.1%}" if math.isfinite(law["max_relative_error"]) else label)
    ax.axvline(max(next(iter(coverage.values()))["fit_ks"]), color="gray", ls=":", label="fit range ends")
    return _save(plt, fig, ax, Path(path), title, "k (samples)", "mean pass@k")
