"""Best-of-N's criteria state their numbers as metrics with clean names: the coverage-law
criterion of experiments/test_bon_emergence.py runs here on a small run file through a real
``criterion`` (see test_tempnorm_criteria.py), and its record is read back by the
tracker's rules (kernels/tracking/metrics.py)."""

from types import SimpleNamespace

import pytest
from test_bon_pipeline import RATES, write_run
from test_tempnorm_criteria import Recorder, load_criteria

from expspec.kernels.atomic_io import write_json_atomic
from expspec.kernels.bon.collector import read_run
from expspec.kernels.bon.predict import coverage_law
from expspec.kernels.tracking.metrics import criterion_metrics

BON = load_criteria("test_bon_emergence")


def test_coverage_law_records_A_b_and_R2_by_name(tmp_path):
    run = write_run(tmp_path / "bon_run_base.jsonl", RATES)
    law = coverage_law(read_run(run).prompts, 4, [8])
    analysis = tmp_path / "analysis"
    write_json_atomic(analysis / "predict.json", {"coverage_law": {"base": law}})
    (analysis / "coverage.png").write_bytes(b"a plot")
    recorder = Recorder(tmp_path / "run", "bon")
    BON.test_coverage_law_predicts("smoke", SimpleNamespace(path=run), SimpleNamespace(path=analysis, plots=analysis),
                                   {"coverage_fit_max_k": 4, "coverage_max_rel_error": 1.0}, recorder.criterion)
    metrics = criterion_metrics(recorder.record())
    laws = {name[len("base coverage law/"):]: value for name, value in metrics.items()
            if name.startswith("base coverage law/")}
    assert laws == pytest.approx({"A": law["A"], "b": law["b"], "R2": law["fit_r2"]}, abs=5e-4)
    assert set(metrics) == {"measured", "base coverage law/A", "base coverage law/b", "base coverage law/R2"}
    assert metrics["measured"] == pytest.approx(law["max_relative_error"])
