"""TempNorm's figure: test R^2 of log tempnorm against eval length, with baseline and ceiling.

Drawn from a stored metrics.json, never refitted, so the report shows the numbers the
criteria were judged on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from expspec.kernels.plots import plot_curves

R2_PLOT = "r2_vs_eval_length.png"


def plot_r2(metrics: Mapping, path: str | Path) -> Path:
    per_length = metrics["metrics"]
    lengths = sorted(per_length, key=int)
    x = [int(L) for L in lengths]
    curves = [
        ("ridge on the start state: test R2", x, [per_length[L]["test_r2_log"] for L in lengths]),
        ("ridge: train R2", x, [per_length[L]["train_r2_log"] for L in lengths]),
        ("baseline (predict the train mean): test R2", x, [per_length[L]["baseline"]["test_r2_log"] for L in lengths]),
        ("ceiling (each start point's own mean): test R2", x, [per_length[L]["r2_ceiling"] for L in lengths]),
        ("ceiling expected by chance alone", x, [per_length[L]["r2_ceiling_chance"] for L in lengths]),
    ]
    return plot_curves(path, curves, hlines=[("R2 = 0", 0.0)],
                       title=f"Predicting log tempnorm (alpha={metrics.get('alpha', '?')}) from the start state",
                       xlabel="eval length L (tokens)", ylabel="R2 of log tempnorm")
