"""Clusters, runs and run events in SQLite under CARINA_HOME, safe for several processes at once."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS clusters (
    name TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    status_reason TEXT NOT NULL DEFAULT '',
    coe TEXT NOT NULL,
    provider TEXT NOT NULL,
    masters INTEGER NOT NULL,
    nodes INTEGER NOT NULL,
    subnet TEXT NOT NULL DEFAULT '',
    endpoint TEXT NOT NULL DEFAULT '',
    current_run TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    cluster TEXT NOT NULL,
    action TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    params TEXT NOT NULL DEFAULT '{}',
    pid INTEGER NOT NULL DEFAULT 0,
    pid_start TEXT NOT NULL DEFAULT '',
    data_dir TEXT NOT NULL DEFAULT '',
    rc INTEGER,
    started_at REAL NOT NULL,
    finished_at REAL
);
CREATE INDEX IF NOT EXISTS runs_cluster ON runs (cluster, started_at);
CREATE TABLE IF NOT EXISTS events (
    run_id TEXT NOT NULL,
    counter INTEGER NOT NULL,
    event TEXT NOT NULL,
    task TEXT NOT NULL DEFAULT '',
    host TEXT NOT NULL DEFAULT '',
    stdout TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    PRIMARY KEY (run_id, counter)
);
"""

PUT_CLUSTER = """
INSERT OR REPLACE INTO clusters (name, status, status_reason, coe, provider, masters, nodes, subnet, endpoint,
                                 current_run, created_at, updated_at)
VALUES (:name, :status, :status_reason, :coe, :provider, :masters, :nodes, :subnet, :endpoint,
        :current_run, :created_at, :updated_at)
"""
PUT_RUN = """
INSERT OR REPLACE INTO runs (id, cluster, action, status, reason, params, pid, pid_start, data_dir, rc,
                             started_at, finished_at)
VALUES (:id, :cluster, :action, :status, :reason, :params, :pid, :pid_start, :data_dir, :rc,
        :started_at, :finished_at)
"""

# Statuses as Magnum names them.
IN_PROGRESS = ("CREATE_IN_PROGRESS", "UPDATE_IN_PROGRESS", "DELETE_IN_PROGRESS")
RUN_ACTIVE = ("pending", "running")


@dataclass
class Cluster:
    name: str
    status: str
    coe: str
    provider: str
    masters: int
    nodes: int
    status_reason: str = ""
    subnet: str = ""
    endpoint: str = ""
    current_run: str = ""
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Run:
    id: str
    cluster: str
    action: str
    status: str
    reason: str = ""
    params: str = "{}"
    pid: int = 0
    pid_start: str = ""
    data_dir: str = ""
    rc: int | None = None
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None

    def as_dict(self) -> dict:
        out = asdict(self)
        out["params"] = json.loads(self.params)
        return out


class Conflict(Exception):
    """The action cannot start: the name is taken, or another run is under way."""


class Store:
    def __init__(self, home: Path):
        self.home = Path(home)
        self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = self.home / "carina.db"
        with self.connect() as db:
            db.executescript(SCHEMA)

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.row_factory = sqlite3.Row
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA busy_timeout=30000")
            yield db
        finally:
            db.close()
        os.chmod(self.path, 0o600)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """An IMMEDIATE transaction: one writer at a time across processes."""
        with self.connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    # -- clusters ---------------------------------------------------------------------------
    def get_cluster(self, name: str, db: sqlite3.Connection | None = None) -> Cluster | None:
        if db is None:
            with self.connect() as conn:
                return self.get_cluster(name, conn)
        row = db.execute("SELECT * FROM clusters WHERE name = ?", (name,)).fetchone()
        return Cluster(**dict(row)) if row else None

    def list_clusters(self) -> list[Cluster]:
        with self.connect() as db:
            return [Cluster(**dict(r)) for r in db.execute("SELECT * FROM clusters ORDER BY name")]

    def put_cluster(self, db: sqlite3.Connection, cluster: Cluster) -> None:
        cluster.updated_at = time.time()
        db.execute(PUT_CLUSTER, cluster.as_dict())

    def update_cluster(self, name: str, **fields) -> None:
        with self.transaction() as db:
            cluster = self.get_cluster(name, db)
            if cluster is not None:
                self.put_cluster(db, replace(cluster, **fields))

    def delete_cluster(self, name: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM clusters WHERE name = ?", (name,))

    # -- runs -------------------------------------------------------------------------------
    def add_run(self, db: sqlite3.Connection, run: Run) -> None:
        db.execute(PUT_RUN, asdict(run))

    def get_run(self, run_id: str) -> Run | None:
        with self.connect() as db:
            row = db.execute("SELECT * FROM runs WHERE id = ? OR id LIKE ?", (run_id, run_id + "%")).fetchall()
        if len(row) != 1:
            return None
        return Run(**dict(row[0]))

    def list_runs(self, cluster: str | None = None) -> list[Run]:
        with self.connect() as db:
            if cluster:
                rows = db.execute("SELECT * FROM runs WHERE cluster = ? ORDER BY started_at", (cluster,))
            else:
                rows = db.execute("SELECT * FROM runs ORDER BY started_at")
            return [Run(**dict(r)) for r in rows]

    def update_run(self, run_id: str, **fields) -> None:
        with self.transaction() as db:
            row = db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is not None:
                db.execute(PUT_RUN, asdict(replace(Run(**dict(row)), **fields)))

    # -- events -----------------------------------------------------------------------------
    def add_event(self, run_id: str, *, counter: int, event: str, task: str, host: str, stdout: str) -> None:
        with self.connect() as db:
            db.execute(
                "INSERT OR IGNORE INTO events (run_id, counter, event, task, host, stdout, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (run_id, counter, event, task, host, stdout, time.time()),
            )

    def events(self, run_id: str, after: int = -1) -> list[sqlite3.Row]:
        with self.connect() as db:
            return db.execute(
                "SELECT * FROM events WHERE run_id = ? AND counter > ? ORDER BY counter", (run_id, after)
            ).fetchall()
