"""Results history in MLflow: every session's criteria as runs, compared across sessions.

Each report folder stands alone; nothing in it relates one session to the next. MLflow is
the open standard for that history: an embedded SQLite store needs nothing started, the
same code logs to a team's tracking server, and ``mlflow ui`` browses and compares runs.

- ``metrics``: a criterion's metrics, their declared direction and tolerance, a
  comparison with a reference run (pure, no MLflow import: xdist workers use it);
- ``curves``: step curves read back from the step logs a run left on disk;
- ``store``: where the store is, whether it is usable, and the one writer;
- ``history``: earlier sessions, ``--compare-to`` references, ``expspec history``.

The pytest side is ``fixtures/tracking.py``; the CLI side is ``kernels/cli.py``.
"""
