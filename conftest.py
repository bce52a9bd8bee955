"""expspec's pytest entry: load the plugins in fixtures/ (scale, devices, run cache,
models, corpora, reports). Options: --set, --profile, --scale, --devices,
--reports-dir, --fresh (see `pytest --help`, group "expspec")."""

pytest_plugins = [
    "expspec.fixtures.scale",
    "expspec.fixtures.devices",
    "expspec.fixtures.run_cache",
    "expspec.fixtures.models",
    "expspec.fixtures.corpora",
    "expspec.fixtures.reports",
    "expspec.fixtures.lane_b",
    "pytester",  # tests/test_plugins.py runs small sessions through these plugins
]
