"""TempNorm's criteria state the numbers they check as metrics the results history reads:
the criterion functions of experiments/test_tempnorm.py run here on small files, through a
real ``criterion``, and their records are read back by the tracker's own rules
(kernels/tracking/metrics.py), declared direction and tolerance included."""

import importlib.util
import pickle
from pathlib import Path
from types import SimpleNamespace

import pytest
from test_tempnorm_predictor import _data_file

from expspec.fixtures.reports import Criterion
from expspec.kernels.atomic_io import write_json_atomic
from expspec.kernels.reports import record_from_properties
from expspec.kernels.tempnorm.predictor import train_data
from expspec.kernels.tracking.metrics import Tolerance, criterion_metrics, declared_tolerances, key_metric

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def load_criteria(name: str):
    """experiments/<name>.py as a module of its own name (its tests are collected there, not here)."""
    spec = importlib.util.spec_from_file_location(f"criteria_{name}", EXPERIMENTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Recorder:
    """A real ``criterion`` whose properties land in a list; ``record()`` is the record the
    controller builds from them, which the tracker reads."""

    def __init__(self, run_dir: Path, family: str):
        self.properties = []
        self.criterion = Criterion(lambda name, value: self.properties.append((name, value)), run_dir, family)

    def record(self):
        return record_from_properties("criterion", "passed", 0.0, self.properties)


TEMPNORM = load_criteria("test_tempnorm")
RESCORE = {"max_abs_prob_diff": 3.16e-05, "hidden_diff_rel_to_max": 4.41e-04, "max_abs_hidden_diff": 0.0144,
           "n_tokens": 640, "n_records": 4}


def _rescore(tmp_path, **changes):
    result = RESCORE | changes
    write_json_atomic(tmp_path / "rescore.json", result)
    return SimpleNamespace(path=tmp_path, result=result)


def test_rescoring_criterion_records_both_diffs_as_metrics(tmp_path):
    recorder = Recorder(tmp_path / "run", "tempnorm")
    TEMPNORM.test_recorded_probs_match_rescoring("smoke", _rescore(tmp_path), recorder.criterion)
    record = recorder.record()
    metrics = criterion_metrics(record)
    assert metrics["max_prob_diff"] == pytest.approx(3.16e-05) and metrics["max_hidden_diff"] == pytest.approx(4.41e-04)
    assert key_metric(record) == ("max_prob_diff", metrics["max_prob_diff"])
    assert declared_tolerances(record) == {"max_prob_diff": Tolerance("lower", TEMPNORM.MAX_PROB_DIFF / 2),
                                           "max_hidden_diff": Tolerance("lower", TEMPNORM.MAX_HIDDEN_DIFF / 2)}


@pytest.mark.parametrize("field, bar", [("max_abs_prob_diff", 1e-4), ("hidden_diff_rel_to_max", 2.0 ** -10)])
def test_rescoring_bars_are_unchanged(tmp_path, field, bar):
    TEMPNORM.test_recorded_probs_match_rescoring("smoke", _rescore(tmp_path, **{field: bar}),
                                                 Recorder(tmp_path / "run", "tempnorm").criterion)
    with pytest.raises(AssertionError, match="probabilities differ by"):
        TEMPNORM.test_recorded_probs_match_rescoring("smoke", _rescore(tmp_path, **{field: bar * 1.01}),
                                                     Recorder(tmp_path / "run", "tempnorm").criterion)


def _phase2(tmp_path):
    """(models step, data step) of phase 2 run on planted records, as the fixtures hand them over."""
    data = _data_file(tmp_path)
    train_data({"test_fraction": 0.25, "cv_folds": 3, "ridge_alphas": [1.0, 10.0]}, 0, data, tmp_path / "models")
    return SimpleNamespace(path=tmp_path / "models"), SimpleNamespace(path=tmp_path, result={"data_file": data.name})


def test_refit_criterion_records_its_gap_as_a_metric(tmp_path):
    models, data = _phase2(tmp_path)
    recorder = Recorder(tmp_path / "run", "tempnorm")
    TEMPNORM.test_pickled_models_saw_only_training_rows("smoke", models, data, recorder.criterion)
    record = recorder.record()
    gap = criterion_metrics(record)["max_refit_gap"]
    assert 0 <= gap <= 1e-6 and key_metric(record) == ("max_refit_gap", gap)
    assert declared_tolerances(record) == {"max_refit_gap": Tolerance("lower", 1e-6 / 2)}


def test_refit_criterion_fails_a_model_that_saw_test_rows(tmp_path):
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    models, data = _phase2(tmp_path)
    x, y, _ = TEMPNORM._rows(TEMPNORM._raw_records(data), 5)
    alpha = pickle.loads((models.path / "tempnorm_model_eval_5.pkl").read_bytes())[-1].alpha
    leaky = make_pipeline(StandardScaler(), Ridge(alpha=alpha)).fit(x, y)  # every row, test rows too
    (models.path / "tempnorm_model_eval_5.pkl").write_bytes(pickle.dumps(leaky))
    recorder = Recorder(tmp_path / "run", "tempnorm")
    with pytest.raises(AssertionError, match="L=5: predictions differ"):
        TEMPNORM.test_pickled_models_saw_only_training_rows("smoke", models, data, recorder.criterion)
    assert criterion_metrics(recorder.record())["max_refit_gap"] > 1e-6
