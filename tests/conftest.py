"""Unit tests call the CLI in-process; its commands would log into the repository's own
tracking store (reports/mlflow.db) and fill the history with test runs. Tests of tracking
itself ask for it explicitly (--tracking=required against a temporary store)."""

import pytest


@pytest.fixture(autouse=True)
def _no_tracking_from_unit_tests(monkeypatch):
    monkeypatch.setenv("EXPSPEC_TRACKING", "off")
