"""Unit tests call the CLI in-process; its commands would log into the repository's own
tracking store (reports/mlflow.db) and fill the history with test runs. Tests of tracking
itself ask for it explicitly (--tracking=required against a temporary store)."""

import pytest


@pytest.fixture(autouse=True)
def _no_tracking_from_unit_tests(monkeypatch):
    monkeypatch.setenv("EXPSPEC_TRACKING", "off")


@pytest.fixture
def pytester(pytester, monkeypatch):
    """pytester's inner sessions without hypothesis's plugin: none of them uses hypothesis,
    and loading it costs each session 1.1 s here (2.7 s with the suite's other worker busy;
    about 30 inner sessions in `make test`). pytester clears PYTEST_ADDOPTS when it starts,
    so this is set after it."""
    monkeypatch.setenv("PYTEST_ADDOPTS", "-p no:hypothesispytest")
    return pytester
