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
    grid = np.geomspace(max(x.min(), 1e-12), x.max(), 200) if x.min() > 0 else np.linspace(x.min(), x.max(), 200)
    for i, (label, fit) in enumerate(fits):
        ax.plot(grid, fit.predict(grid), "-", color=f"C{i + 1}", label=label)
    for label, value in vlines:
        ax.axvline(value, color="C3", ls=":", label=label)
    for label, value in hlines:
        ax.axhline(value, color="C2", ls=":", label=label)
    ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
