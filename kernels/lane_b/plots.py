"""Lane B's figures: the two exponent fits, the calibration with D_target, val_bpb curves.

Drawn from stored results (stats.json, the work dir's files), never refitted, so a
report shows exactly the numbers the criteria were judged on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from expspec.kernels.atomic_io import read_json
from expspec.kernels.fit.power_law import PowerLawFit
from expspec.kernels.lane_b.pipeline import CANDIDATE_COLUMNS, RESULTS_COLUMNS
from expspec.kernels.lane_b.scaling import Calibration
from expspec.kernels.plots import plot_curves, plot_power_law
from expspec.kernels.tables import read_csv_rows
from expspec.kernels.train.training_log import parse_training_log


def stored_curve(exponent, prefactor, offset=0.0) -> PowerLawFit:
    """A fitted curve rebuilt from stored parameters (for plotting; no refit)."""
    return PowerLawFit(float(exponent), float(prefactor), float(offset), float("nan"), 0, None, None)


def _ci_text(ci) -> str:
    return f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""


def _correlation_fits(corr: dict) -> list:
    """The fitted curve of each window rule that has one; the rule feeding alpha is marked."""
    fits = []
    rules = [r for r in ("floor", "debiased") if isinstance(corr.get(r), dict)]
    for rule in rules:
        fit = corr[rule]
        if fit["window"]:
            what = "op norm" if fit["norm"] == "op" else "debiased Frobenius"
            mark = " -> alpha" if rule == corr.get("beta_window") else ""
            fits.append((f"{rule} lags {fit['window'][0]}-{fit['window'][1]} ({what}): beta={fit['beta']:.3f}"
                         f"{_ci_text(fit['ci'])}, R2={fit['r2']:.3f}{mark}",
                         stored_curve(fit["beta"], fit["prefactor"])))
    if not rules and corr["window"]:  # a stats.json from before the two rules
        fits.append((f"fit: beta={corr['beta']:.3f}, R2={corr['r2']:.3f}", stored_curve(corr["beta"], corr["prefactor"])))
    return fits


def plot_stats(stats: dict, out: Path) -> list[Path]:
    """correlation_fit.png and entropy_fit.png of a stats.json, drawn into ``out``.

    The correlation figure: operator norms (filled: the floor window), the floor, the
    debiased Frobenius norms and the noise level they were cleared of, and both fits.
    """
    corr = stats["correlation"]
    rows = corr["rows"]
    lags = np.array([r["lag"] for r in rows], float)
    op = np.array([r["op_norm"] for r in rows])
    usable = np.array([r.get("usable_floor", r["usable"]) for r in rows])
    reference = [("noise floor (shuffled stream, op norm)", lags, [r["floor_op"] for r in rows])]
    if "frob_debiased" in rows[0]:
        debiased = np.array([r["frob_debiased"] for r in rows])
        shown = debiased > 0
        reference.append((f"Frobenius norm, noise removed ({corr.get('noise_shuffles', '?')} shuffles)",
                          lags[shown], debiased[shown]))
        reference.append(("noise level sqrt(E||N||_F^2)", lags, np.sqrt([r["noise_frob2"] for r in rows])))
    corr_png = plot_power_law(out / "correlation_fit.png", lags, np.maximum(op, 1e-12), fits=_correlation_fits(corr),
                              mask=usable, reference=reference,
                              title=f"Token correlation decay ({stats['tokenizer_id']}, P={corr['n_pairs']:,})",
                              xlabel="lag n", ylabel="||C(n)|| (points: operator norm)")
    curve = stats["entropy"]["loss_by_position"]
    keys = sorted(curve, key=float)  # a stats.json read back has its keys sorted as text: "1", "10", "100", ...
    positions = [float(k) for k in keys]
    fit = stats["entropy"]["fit"]
    n, loss = np.array(fit["fit_n"]), np.array(fit["fit_loss"])
    fits = [(f"offset-free: gamma={fit['gamma_offset_free']:.3f}{_ci_text(fit['ci_offset_free'])}, "
             f"R2={fit['r2_offset_free']:.3f}",
             stored_curve(fit["gamma_offset_free"], fit["prefactor_offset_free"]))]
    if np.isfinite(fit["gamma_offset"]):
        fits.append((f"offset: gamma={fit['gamma_offset']:.3f}{_ci_text(fit['ci_offset'])}, H_inf={fit['h_inf']:.2f}",
                     stored_curve(fit["gamma_offset"], fit["prefactor_offset"], fit["h_inf"])))
    what = f"fit on {fit['bins']} log bins" if fit["bins"] else "fit on every n"
    if fit.get("n_bootstrap"):
        what += f"; CIs: {fit['n_bootstrap']} resamples of {fit['n_windows']} windows"
    entropy_png = plot_power_law(out / "entropy_fit.png", n, loss, fits=fits,
                   reference=[("L_n per position", positions, [curve[k] for k in keys])],
                   title=f"Entropy decay ({stats['entropy']['model']})\n{what}",
                   xlabel="context length n", ylabel="L_n (nats)")
    return [corr_png, entropy_png]


def plot_pipeline(work: Path, out: Path) -> list[Path]:
    """calibration.png and val_bpb_curves.png of a finished work dir, drawn into ``out``."""
    infer = read_json(work / "infer.json")
    threshold = float(read_json(work / "threshold.json")["threshold"])
    points = read_json(work / "calibration.json")["points"]
    tokens = [p["tokens"] for p in points]
    values = [p["value"] for p in points]
    fits, vlines = [], []
    if infer.get("calib_A") is not None:
        alpha, r2 = float(infer["alpha"]), float(infer["calib_fit_r2"] if infer["calib_fit_r2"] is not None else "nan")
        fits.append((f"inferred alpha: L(D) = {infer['calib_L_inf']:.3f} + {infer['calib_A']:.3g} D^-{alpha:.3f} "
                     f"(R2={r2:.3f})",
                     Calibration(infer["calib_A"], infer["calib_L_inf"], r2, len(points), alpha, infer["direction"])))
    empirical = infer.get("empirical_alpha") or {}
    if empirical.get("alpha") is not None:
        fits.append((f"empirical alpha (L_inf >= 0): {empirical['L_inf']:.3f} + {empirical['A']:.3g} "
                     f"D^-{empirical['alpha']:.3f}", stored_curve(empirical["alpha"], empirical["A"], empirical["L_inf"])))
    if infer.get("inferred_target_tokens"):
        vlines.append((f"D_target = {infer['inferred_target_tokens']:.3g} ({infer['solve_status']})",
                       infer["inferred_target_tokens"]))
    calibration_png = plot_power_law(out / "calibration.png", tokens, values, fits=fits, vlines=vlines,
                   hlines=[(f"threshold {threshold:.4f}", threshold)], logy=False,
                   title=f"Lane B calibration (solve_status={infer['solve_status']})", xlabel="training tokens D",
                   ylabel="val_bpb")
    summary = read_json(work / "summary.json")
    current = set(summary["baseline_run_ids"]) | set(summary["candidate_run_ids"])  # this plan's runs only
    curves = []
    for name, columns, label in (("results.csv", RESULTS_COLUMNS, "baseline"),
                                 ("candidate_runs.csv", CANDIDATE_COLUMNS, None)):
        for row in (r for r in read_csv_rows(work / name, columns) if r["run_id"] in current):
            evals = parse_training_log(work / row["log"]).evals
            tag = label or row["lane_b_decision"]
            curves.append((f"{tag} s{row['seed']}", [e[0] for e in evals], [e[1] for e in evals]))
    curves_png = plot_curves(out / "val_bpb_curves.png", curves, hlines=[("threshold", threshold)],
                title="val_bpb of baselines and candidates")
    return [calibration_png, curves_png]
