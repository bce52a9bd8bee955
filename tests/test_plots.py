"""The report plots render to real PNG files."""

import numpy as np

from expspec.kernels.plots import plot_curves, plot_power_law
from expspec.kernels.fit.power_law import fit_power_law

PNG = b"\x89PNG\r\n\x1a\n"


def test_power_law_and_curve_plots_write_png(tmp_path):
    x = np.array([1, 2, 4, 8, 16.0])
    y = 3 * x ** -0.7
    path = plot_power_law(tmp_path / "a" / "fit.png", x, y, fits=[("fit", fit_power_law(x, y))],
                          mask=x < 10, reference=[("floor", x, np.full(5, 0.1))], vlines=[("D", 40.0)],
                          hlines=[("T", 0.5)], title="t")
    assert path.read_bytes()[:8] == PNG
    curves = plot_curves(tmp_path / "curves.png", [("run", [0, 1, 2], [3.0, 2.0, 1.5])], hlines=[("T", 2.0)])
    assert curves.read_bytes()[:8] == PNG and curves.stat().st_size > 5000
