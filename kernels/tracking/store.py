"""The MLflow tracking store: where it is, whether it is usable, and the one writer.

Default store: ``sqlite:///<reports-dir>/mlflow.db``, embedded, nothing to start; its
artifacts go beside it (``<reports-dir>/mlartifacts/``). ``--tracking-uri`` or
``MLFLOW_TRACKING_URI`` name another one (a team's ``mlflow server``). ``check_store``
looks before anything is written: a file that is not an SQLite database, or an SQLite
database that is not MLflow's, is reported and left as it is; a server that does not
answer is named. ``open_client`` imports MLflow only when a run is about to be logged
(or read), so a session without criteria pays nothing.

Runs: one experiment per family (``expspec/<family>``); in it one parent run per session
(pytest session or CLI command) with its tags, and one child run per criterion
(``Tracker.log_criterion``). Only one process writes: the pytest controller (xdist
workers send their results to it as reports) or the CLI process itself.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path
from urllib.parse import unquote, urlparse

from expspec.kernels.errors import ExpspecError

MODES = ("required", "optional", "off")  # --tracking: fail on a bad store, warn and go on, none
ENV_MODE = "EXPSPEC_TRACKING"  # the environment's --tracking
EXPERIMENT_PREFIX = "expspec/"
SQLITE_HEADER = b"SQLite format 3\x00"
MAX_TAG = 8000  # MLflow's longest tag value
MAX_PARAM = 6000  # MLflow's longest param value


def experiment_name(family: str) -> str:
    return EXPERIMENT_PREFIX + family


def default_uri(reports_dir: str | Path) -> str:
    return f"sqlite:///{(Path(reports_dir) / 'mlflow.db').resolve()}"


def resolve_uri(option: str | None, reports_dir: str | Path, environ=None) -> str:
    """--tracking-uri, else MLFLOW_TRACKING_URI, else the reports dir's SQLite file."""
    environ = os.environ if environ is None else environ
    return option or environ.get("MLFLOW_TRACKING_URI") or default_uri(reports_dir)


def resolve_mode(option: str | None, no_tracking: bool = False, environ=None) -> str:
    environ = os.environ if environ is None else environ
    mode = "off" if no_tracking else (option or environ.get(ENV_MODE) or "required")
    if mode not in MODES:
        where = "--tracking" if option else ENV_MODE
        raise ExpspecError(f"{where} {mode!r}: expected one of {', '.join(MODES)}")
    return mode


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///...`` URI (None for other stores)."""
    if not uri.startswith("sqlite:"):
        return None
    return Path(unquote(urlparse(uri).path)[1:])  # sqlite:///rel.db -> rel.db, sqlite:////abs -> /abs


def check_store(uri: str, must_exist: bool = False) -> None:
    """Look at the store without writing to it; ExpspecError (one line, naming the URI) when
    it cannot be used. ``must_exist``: a missing SQLite file is an error (reading history)."""
    scheme = urlparse(uri).scheme
    if scheme == "sqlite":
        _check_sqlite(uri, sqlite_path(uri), must_exist)
    elif scheme in ("http", "https"):
        _check_server(uri)
    elif scheme not in ("", "file", "databricks", "databricks-uc"):
        raise ExpspecError(f"tracking store {uri}: unknown scheme {scheme!r} (expected sqlite:///FILE, "
                           f"http(s)://HOST:PORT of an MLflow server, or a folder)")


def _check_sqlite(uri: str, path: Path, must_exist: bool) -> None:
    if not path.exists():
        if must_exist:
            raise ExpspecError(f"tracking store {uri}: no such file (no session has been tracked there yet)")
        return
    if path.is_dir():
        raise ExpspecError(f"tracking store {uri}: {path} is a directory, expected an SQLite file")
    if path.stat().st_size == 0:
        return  # an empty file is an empty database: MLflow creates its tables there
    with open(path, "rb") as handle:
        header = handle.read(len(SQLITE_HEADER))
    if header != SQLITE_HEADER:
        raise ExpspecError(f"tracking store {uri}: {path} is not an SQLite database (left as it is; move it "
                           f"away or pass --tracking-uri)")
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            check = con.execute("PRAGMA quick_check").fetchone()[0]
            tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        raise ExpspecError(f"tracking store {uri}: corrupt SQLite database ({exc}); left as it is") from None
    if check != "ok":
        raise ExpspecError(f"tracking store {uri}: corrupt SQLite database ({check}); left as it is")
    if tables and not {"runs", "experiments", "alembic_version"} <= tables:
        raise ExpspecError(f"tracking store {uri}: an SQLite database but not an MLflow store (tables: "
                           f"{', '.join(sorted(tables)[:6])}); left as it is")


def _check_server(uri: str, timeout: float = 5.0) -> None:
    try:
        urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout).close()
    except urllib.error.HTTPError:
        return  # it answered (auth, an older server without /health): reachable
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ExpspecError(f"tracking server {uri}: unreachable ({reason})") from None


def open_client(uri: str):
    """An MlflowClient on ``uri``, its store opened (an SQLite file is created with MLflow's
    tables here, never before)."""
    check_store(uri)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # a test suite does not phone home
    path = sqlite_path(uri)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # SQLAlchemy's deprecation notes about MLflow's own code
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        from mlflow.tracking import MlflowClient

        for name in ("mlflow", "alembic"):  # "Creating initial MLflow database tables..." is not news
            logging.getLogger(name).setLevel(logging.WARNING)
        client = MlflowClient(tracking_uri=uri)
        try:
            client.search_experiments(max_results=1)
        except Exception as exc:  # MLflow, SQLAlchemy and requests errors come through as they are
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise ExpspecError(f"tracking store {uri}: cannot be opened ({type(exc).__name__}: {first})") from None
    return client


def experiment_id(client, uri: str, family: str, create: bool = True) -> str | None:
    name = experiment_name(family)
    found = client.get_experiment_by_name(name)
    if found is not None or not create:
        return found.experiment_id if found is not None else None
    path = sqlite_path(uri)
    location = (path.parent / "mlartifacts").resolve().as_uri() if path is not None else None
    from mlflow.exceptions import MlflowException

    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException:  # another session created it a moment ago
        return client.get_experiment_by_name(name).experiment_id


def expspec_experiments(client, family: str | None = None) -> dict[str, str]:
    """{experiment id: family} of every expspec experiment (or of one family)."""
    found = client.search_experiments(filter_string=f"name LIKE '{EXPERIMENT_PREFIX}%'")
    out = {e.experiment_id: e.name[len(EXPERIMENT_PREFIX):] for e in found}
    return {k: v for k, v in out.items() if family is None or v == family}


def knob_params(resolved: dict, family: str) -> dict[str, str]:
    """The resolved knobs of ``common`` and ``family`` as MLflow params (``lane_b.calib_iters``)."""
    return {f"{table}.{key}": value if isinstance(value, str) else json.dumps(value)
            for table in ("common", family) for key, value in resolved.get(table, {}).items()}


def _clip(value, limit: int) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _now_ms() -> int:
    return int(time.time() * 1000)


class Tracker:
    """Logs one session: a parent run per family it touched, a child run per criterion.
    Used by exactly one process (see the module docstring)."""

    def __init__(self, uri: str, run_name: str, tags: dict[str, str], kind: str = "session"):
        self.uri, self.run_name, self.kind = uri, run_name, kind
        self.tags = {k: _clip(v, MAX_TAG) for k, v in tags.items() if v is not None}
        self.parents: dict[str, str] = {}  # family -> parent run id
        self.experiments: dict[str, str] = {}  # family -> experiment id
        self._client = None

    @property
    def client(self):
        if self._client is None:
            self._client = open_client(self.uri)
        return self._client

    def parent(self, family: str, params: dict | None = None) -> str:
        """The family's parent run, started on first use."""
        if family not in self.parents:
            exp = self.experiments[family] = experiment_id(self.client, self.uri, family)
            tags = dict(self.tags, **{"expspec.kind": self.kind, "expspec.family": family})
            run = self.client.create_run(exp, run_name=self.run_name, tags=tags)
            self.parents[family] = run.info.run_id
            if params:
                self.log_params(run.info.run_id, params)
        return self.parents[family]

    def log_params(self, run_id: str, params: dict) -> None:
        from mlflow.entities import Param

        items = [Param(k[:250], _clip(v, MAX_PARAM)) for k, v in params.items()]
        for i in range(0, len(items), 100):  # MLflow's batch limit
            self.client.log_batch(run_id, params=items[i:i + 100])

    def log_metrics(self, run_id: str, values: dict[str, float], curves: dict | None = None) -> None:
        from mlflow.entities import Metric

        stamp = _now_ms()
        items = [Metric(k, float(v), stamp, 0) for k, v in values.items()]
        for name, points in (curves or {}).items():
            items += [Metric(name, float(v), stamp, int(step)) for step, v in points]
        for i in range(0, len(items), 1000):  # MLflow's batch limit
            self.client.log_batch(run_id, metrics=items[i:i + 1000])

    def log_child(self, family: str, name: str, tags: dict, params: dict, metrics: dict, curves: dict,
                  artifacts: dict[str, list], status: str, duration_s: float = 0.0) -> str:
        """One child run under the family's parent; returns its id."""
        parent = self.parent(family)
        tags = {k: _clip(v, MAX_TAG) for k, v in tags.items() if v is not None}
        tags.update({"mlflow.parentRunId": parent, "expspec.kind": tags.get("expspec.kind", "criterion"),
                     "expspec.family": family, "expspec.session": self.tags.get("expspec.session", "")})
        end = _now_ms()
        run = self.client.create_run(self.experiments[family], run_name=name, tags=tags,
                                     start_time=end - int(duration_s * 1000))
        run_id = run.info.run_id
        self.log_params(run_id, params)
        self.log_metrics(run_id, metrics, curves)
        for folder, paths in artifacts.items():
            for path in paths:
                if Path(path).is_file():
                    self.client.log_artifact(run_id, str(path), folder)
        self.client.set_terminated(run_id, status, end_time=end)
        return run_id

    def finish(self, status: str, tags: dict | None = None, artifacts: list | None = None,
               family_tags: dict | None = None) -> None:
        """End every parent run with the session's status, tags (and each family's) and files."""
        for family, run_id in self.parents.items():
            for key, value in dict(tags or {}, **(family_tags or {}).get(family, {})).items():
                self.client.set_tag(run_id, key, _clip(value, MAX_TAG))
            for path in artifacts or []:
                if Path(path).is_file():
                    self.client.log_artifact(run_id, str(path))
            self.client.set_terminated(run_id, status)
