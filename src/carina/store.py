"""Clusters, runs and run events in SQLite under CARINA_HOME, safe for several processes at once."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from carina.errors import CarinaError

# The schema is the list of migrations: MIGRATIONS[i] takes a database from version i to i + 1
# (PRAGMA user_version). A database is migrated in place when a Store opens it, in one IMMEDIATE
# transaction, so that concurrent openers migrate it once. Never edit a migration that shipped;
# add one: a new column is one ALTER TABLE here and one field of Cluster or Run below.
# Version 0 is a database of the first release (no user_version): its tables are those of
# version 1, which therefore only creates what is missing.
MIGRATIONS: list[tuple[str, tuple[str, ...]]] = [
    ("clusters, runs and their events", (
        """CREATE TABLE IF NOT EXISTS clusters (
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
        )""",
        """CREATE TABLE IF NOT EXISTS runs (
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
        )""",
        "CREATE INDEX IF NOT EXISTS runs_cluster ON runs (cluster, started_at)",
        """CREATE TABLE IF NOT EXISTS events (
            run_id TEXT NOT NULL,
            counter INTEGER NOT NULL,
            event TEXT NOT NULL,
            task TEXT NOT NULL DEFAULT '',
            host TEXT NOT NULL DEFAULT '',
            stdout TEXT NOT NULL DEFAULT '',
            created_at REAL NOT NULL,
            PRIMARY KEY (run_id, counter)
        )""",
    )),
    ("clusters: the API URL and contract version of the record, and provider options (JSON)", (
        "ALTER TABLE clusters ADD COLUMN api_url TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE clusters ADD COLUMN contract_version INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE clusters ADD COLUMN options TEXT NOT NULL DEFAULT '{}'",
    )),
    ("clusters: the COE options the user gave (JSON)", (
        "ALTER TABLE clusters ADD COLUMN coe_options TEXT NOT NULL DEFAULT '{}'",
    )),
    ("clusters: the unique id, the owning project and the service's fields (JSON); cluster templates", (
        "ALTER TABLE clusters ADD COLUMN uuid TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE clusters ADD COLUMN project TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE clusters ADD COLUMN extra TEXT NOT NULL DEFAULT '{}'",
        """CREATE TABLE IF NOT EXISTS templates (
            uuid TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            project TEXT NOT NULL DEFAULT '',
            public INTEGER NOT NULL DEFAULT 0,
            body TEXT NOT NULL DEFAULT '{}',
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS templates_project ON templates (project, name)",
    )),
]
SCHEMA_VERSION = len(MIGRATIONS)


class StoreError(CarinaError):
    """The store cannot be used by this release of carina."""


def migrate(db: sqlite3.Connection) -> int:
    """Bring a database to SCHEMA_VERSION; returns the version it had. Safe with concurrent callers."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version == SCHEMA_VERSION:
        return version
    db.execute("BEGIN IMMEDIATE")  # one migrator at a time; the others wait, then find it done
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(f"the store has schema version {version}, newer than this carina reads "
                             f"({SCHEMA_VERSION}); upgrade carina")
        for number in range(version, SCHEMA_VERSION):
            for statement in MIGRATIONS[number][1]:
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {number + 1}")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return version


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
    api_url: str = ""  # from the cluster record (the COE's API URL template and the endpoint)
    contract_version: int = 0  # of the COE driver that last wrote the record; 0: not known yet
    options: dict = field(default_factory=dict)  # what later runs reuse, e.g. {"inventory": PATH}
    coe_options: dict = field(default_factory=dict)  # the COE's options as given (typed); a retried create reuses them
    uuid: str = ""  # the cluster's unique id (32 hex digits), carried on everything it leaves; '' if not known yet
    project: str = ""  # the project that owns it (the service's tenants); '' for the local user's
    extra: dict = field(default_factory=dict)  # the service's fields (template, keypair, labels, timeout)

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


@dataclass
class Template:
    """A cluster template of the service (Magnum's): what clusters made from it share."""
    uuid: str
    name: str
    project: str = ""
    public: bool = False
    body: dict = field(default_factory=dict)  # every other field, as the API shows it
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)


def template_of(row: sqlite3.Row) -> Template:
    data = dict(row)
    data["body"] = json.loads(data["body"] or "{}")
    data["public"] = bool(data["public"])
    return Template(**data)


JSON_COLUMNS = ("options", "coe_options", "extra")  # Cluster fields kept as JSON text


def _put(table: str, cls: type) -> str:
    """INSERT OR REPLACE of every field of a dataclass into its table, with named parameters."""
    names = [f.name for f in fields(cls)]
    return (f"INSERT OR REPLACE INTO {table} ({', '.join(names)}) "  # noqa: S608 - names of our own fields
            f"VALUES ({', '.join(':' + n for n in names)})")


PUT_CLUSTER = _put("clusters", Cluster)
PUT_RUN = _put("runs", Run)
PUT_TEMPLATE = _put("templates", Template)


def cluster_row(cluster: Cluster) -> dict:
    row = cluster.as_dict()
    for key in JSON_COLUMNS:
        row[key] = json.dumps(row[key], sort_keys=True)
    return row


def cluster_of(row: sqlite3.Row) -> Cluster:
    data = dict(row)
    for key in JSON_COLUMNS:
        data[key] = json.loads(data[key] or "{}")
    return Cluster(**data)


class Conflict(Exception):
    """The action cannot start: the name is taken, or another run is under way."""


def usable(home: Path) -> None:
    """CARINA_HOME exists (made 0700 when its parent does) and carina can write in it; else one clear CarinaError."""
    if home.exists() and not home.is_dir():
        raise CarinaError(f"CARINA_HOME {home} is not a folder")
    if not home.exists():
        if not home.parent.is_dir():
            raise CarinaError(f"CARINA_HOME {home}: its parent folder {home.parent} does not exist; make it first")
        try:
            home.mkdir(mode=0o700)
        except FileExistsError:
            pass
        except OSError as exc:
            raise CarinaError(f"CARINA_HOME {home} cannot be made: {exc.strerror}") from exc
    if not os.access(home, os.W_OK | os.X_OK):
        raise CarinaError(f"CARINA_HOME {home} is not writable by this user")


class Store:
    def __init__(self, home: Path):
        self.home = Path(home)
        usable(self.home)
        self.path = self.home / "carina.db"
        # Switching an old database to WAL while others open it can answer "database is locked"
        # without waiting (SQLite skips the busy handler there): try again a few times.
        for attempt in range(50):
            try:
                with self.connect() as db:
                    self.migrated_from = migrate(db)  # the schema version the database had
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == 49:
                    raise
                time.sleep(0.05 + 0.01 * attempt)

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        try:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        except sqlite3.Error as exc:
            raise CarinaError(f"cannot open {self.path}: {exc}") from exc
        db.row_factory = sqlite3.Row
        try:
            try:
                db.execute("PRAGMA journal_mode=WAL")
            except sqlite3.DatabaseError as exc:
                if "locked" in str(exc):
                    raise
                raise CarinaError(f"{self.path} is not a carina store ({exc}); move it away (carina then starts "
                                  f"a new one, without the clusters it knew) or put a backup back") from exc
            db.execute("PRAGMA busy_timeout=30000")
            yield db
        finally:
            db.close()
        os.chmod(self.path, 0o600)

    def generation(self) -> tuple:
        """Changes whenever a write commits, from any process (the database file and its WAL, as stat sees
        them): what a cache of answers read from the store is keyed on."""
        found = []
        for path in (self.path, self.path.with_name(self.path.name + "-wal")):
            try:
                info = path.stat()
                found.append((info.st_mtime_ns, info.st_size, info.st_ino))
            except OSError:
                found.append(None)
        return tuple(found)

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
        return cluster_of(row) if row else None

    def list_clusters(self) -> list[Cluster]:
        with self.connect() as db:
            return [cluster_of(r) for r in db.execute("SELECT * FROM clusters ORDER BY name")]

    def put_cluster(self, db: sqlite3.Connection, cluster: Cluster) -> None:
        cluster.updated_at = time.time()
        db.execute(PUT_CLUSTER, cluster_row(cluster))

    def update_cluster(self, name: str, **fields) -> None:
        with self.transaction() as db:
            cluster = self.get_cluster(name, db)
            if cluster is not None:
                self.put_cluster(db, replace(cluster, **fields))

    def find_cluster(self, uuid: str) -> Cluster | None:
        """The cluster with this unique id (32 hex digits)."""
        with self.connect() as db:
            row = db.execute("SELECT * FROM clusters WHERE uuid = ?", (uuid,)).fetchone()
        return cluster_of(row) if row else None

    # -- cluster templates ------------------------------------------------------------------
    def put_template(self, template: Template) -> None:
        template.updated_at = time.time()
        row = asdict(template)
        row["body"] = json.dumps(row["body"], sort_keys=True)
        row["public"] = int(template.public)
        with self.connect() as db:
            db.execute(PUT_TEMPLATE, row)

    def list_templates(self) -> list[Template]:
        with self.connect() as db:
            return [template_of(r) for r in db.execute("SELECT * FROM templates ORDER BY created_at, uuid")]

    def delete_template(self, uuid: str) -> None:
        with self.connect() as db:
            db.execute("DELETE FROM templates WHERE uuid = ?", (uuid,))

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
            self._update_run(db, run_id, fields)

    def _update_run(self, db: sqlite3.Connection, run_id: str, fields: dict) -> None:
        row = db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is not None:
            db.execute(PUT_RUN, asdict(replace(Run(**dict(row)), **fields)))

    def end_run(self, run_id: str, fields: dict, cluster: str, cluster_fields: dict | None) -> None:
        """A run's outcome and its cluster's move in one transaction, so that whoever sees the run ended sees
        the cluster as the run left it: updated with cluster_fields, or gone when they are None (a delete
        that succeeded). The cluster moves only while this run is still its current one."""
        with self.transaction() as db:
            self._update_run(db, run_id, fields)
            current = self.get_cluster(cluster, db)
            if current is None or current.current_run != run_id:
                return
            if cluster_fields is None:
                db.execute("DELETE FROM clusters WHERE name = ?", (cluster,))
            else:
                self.put_cluster(db, replace(current, **cluster_fields))

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
