"""PNG plots for the reports (matplotlib, Agg backend: no display needed).

One log-log "measured points + fitted power law" figure serves every fit in the suite
(correlation decay, entropy decay, calibration); extra reference lines (noise floor,
threshold, D_target) are passed in, not special-cased.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_power_law(path: str | Path, x, y, *, fits: Sequence[tuple[str, object]] = (),
                   mask=None, reference: Sequence[tuple[str, object, object]] = (),
                   vlines: Sequence[tuple[str, float]] = (), hlines: Sequence[tuple[str, float]] = (),
                   title: str = "", xlabel: str = "x", ylabel: str = "y", logy: bool = True) -> Path:
    """Points (hollow where ``mask`` is False), fitted curves ``(label, fit)`` where
    ``fit.predict(x)`` exists, reference curves ``(label, x, y)``, and marker lines."""
    plt = _pyplot()
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    mask = np.ones(x.shape, bool) if mask is None else np.asarray(mask, bool)
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    ax.plot(x[mask], y[mask], "o", color="C0", label="measured (fitted)")
    if (~mask).any():
        ax.plot(x[~mask], y[~mask], "o", mfc="none", color="C0", label="measured (not fitted)")
    for i, (label, rx, ry) in enumerate(reference):
        ax.plot(rx, ry, "--", color="gray" if i == 0 else f"C{i + 4}", label=label)
    span = np.concatenate([x, [v for _, v in vlines if np.isfinite(v) and v > 0]])  # fits reach the markers
    grid = np.geomspace(max(span.min(), 1e-12), span.max(), 200)
    for i, (label, fit) in enumerate(fits):
        ax.plot(grid, fit.predict(grid), "-", color=f"C{i + 1}", label=label)
    for label, value in vlines:
        ax.axvline(value, color="C3", ls=":", label=label)
    for label, value in hlines:
        ax.axhline(value, color="C2", ls=":", label=label)
    ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    return _finish(plt, fig, ax, path, title, xlabel, ylabel, fontsize=8)


def _finish(plt, fig, ax, path, title: str, xlabel: str, ylabel: str, fontsize: int) -> Path:
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.legend(fontsize=fontsize)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_curves(path: str | Path, curves: Sequence[tuple[str, Sequence[float], Sequence[float]]], *,
                hlines: Sequence[tuple[str, float]] = (), title: str = "", xlabel: str = "step",
                ylabel: str = "val_bpb") -> Path:
    """One line per run (``(label, x, y)``), e.g. val_bpb against step, with a threshold line."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    for i, (label, x, y) in enumerate(curves):
        ax.plot(x, y, "-o", ms=2.5, lw=1.2, color=f"C{i % 10}", label=label)
    for label, value in hlines:
        ax.axhline(value, color="k", ls=":", label=label)
    ax.grid(True, alpha=0.3)
    return _finish(plt, fig, ax, path, title, xlabel, ylabel, fontsize=7)
