"""expspec's pytest entry: load the plugins in fixtures/ (scale, devices, run cache,
models, corpora, reports). Options: --set, --profile, --scale, --devices,
--reports-dir, --fresh (see `pytest --help`, group "expspec")."""

pytest_plugins = [
    "fixtures.scale",
    "fixtures.devices",
    "fixtures.run_cache",
    "fixtures.models",
    "fixtures.corpora",
    "fixtures.reports",
    "fixtures.lane_b",
    "pytester",  # tests/test_plugins.py runs small sessions through these plugins
]
