"""The results store: one embedded SQLite database, one row per run, one per epoch, one per evaluation,
one per attempt.

Crash safety comes from SQLite transactions: a run's metrics, epochs, evaluations and its status
'done' are written in one transaction, so a kill -9 leaves either all of it or none. Claims are
rows here (owner + expiry), taken, renewed and ended only by their owner; `store.lease.Lease` is how
a process holds one.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from ..core.errors import ConfigError, ResizelabError
from ..core.processes import pid_alive

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    config_hash TEXT PRIMARY KEY,
    config_json TEXT NOT NULL,
    label TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'running', 'done', 'failed')),
    owner TEXT,
    lease_expires REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    test_accuracy REAL,
    train_seconds REAL,
    images_per_second REAL,
    macs_per_image INTEGER,
    params INTEGER,
    peak_memory_bytes INTEGER,
    result_json TEXT,
    provenance_json TEXT,
    execution_json TEXT,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL
);
CREATE TABLE IF NOT EXISTS epochs (
    config_hash TEXT NOT NULL REFERENCES runs(config_hash),
    epoch INTEGER NOT NULL,
    train_loss REAL,
    train_accuracy REAL,
    seconds REAL,
    images INTEGER,
    PRIMARY KEY (config_hash, epoch)
);
CREATE TABLE IF NOT EXISTS evals (
    config_hash TEXT NOT NULL REFERENCES runs(config_hash),
    test_size_px INTEGER NOT NULL,
    interpolation TEXT NOT NULL,
    accuracy REAL,
    per_class_json TEXT,
    PRIMARY KEY (config_hash, test_size_px, interpolation)
);
CREATE TABLE IF NOT EXISTS attempts (
    attempt_id INTEGER PRIMARY KEY AUTOINCREMENT,
    config_hash TEXT NOT NULL REFERENCES runs(config_hash),
    status TEXT NOT NULL CHECK (status IN ('done', 'failed')),
    owner TEXT,
    error TEXT,
    config_json TEXT,
    result_json TEXT,
    provenance_json TEXT,
    execution_json TEXT,
    started_at REAL,
    finished_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS attempts_by_run ON attempts(config_hash);
CREATE TABLE IF NOT EXISTS sweep_runs (
    sweep TEXT NOT NULL,
    config_hash TEXT NOT NULL REFERENCES runs(config_hash),
    position INTEGER NOT NULL,
    PRIMARY KEY (sweep, config_hash)
);
"""

# PRAGMA user_version of the layout above. 1: runs named by what ran (precision resolved, data and weights by
# content digest), execution settings per attempt. A store of another version is refused with one line.
SCHEMA_VERSION = 1
# Columns every resizelab store's runs table has had, whatever its layout version: what tells one from another
# program's table of the same name.
RESIZELAB_RUNS_COLUMNS = ("config_hash", "config_json")
DEFAULT_LEASE_SECONDS = 60.0
DEFAULT_DB = "resizelab.db"



def _filtered(query: str, alias: str, sweep: str | None, equal: dict[str, Any]) -> tuple[str, list]:
    """`query` over table `alias`, kept to one sweep's runs and to the columns in `equal` that are given."""
    clauses, args = [], []
    if sweep:
        query += f" JOIN sweep_runs s ON s.config_hash = {alias}.config_hash"
        clauses.append("s.sweep = ?")
        args.append(sweep)
    for column, value in equal.items():
        if value:
            clauses.append(f"{alias}.{column} = ?")
            args.append(value)
    return query + (" WHERE " + " AND ".join(clauses) if clauses else ""), args

class StoreError(ResizelabError):
    """The database cannot be opened or written (not a database, read-only, locked, full, older layout)."""


class StoreEmpty(ConfigError):
    """An SQLite file with no tables yet: a store another process is creating, or an empty file."""


class LeaseLost(ResizelabError):
    """This process no longer holds the run it was training: another took it over, so nothing is stored here."""



class ResultNotStored(ResizelabError):
    """A finished run could not be written to the store; its result was saved to a JSON file instead."""


def _describe_sqlite_error(path: str, error: sqlite3.Error, timeout: float) -> str:
    text = str(error)
    if "locked" in text or "busy" in text:
        return (f"db {path} is locked by another process (waited {timeout:g} s); wait for it to finish "
                "or pass --db to another file")
    if "readonly" in text or "read-only" in text:
        return f"db {path} is read-only here ({text}); copy it somewhere writable or pass --db elsewhere"
    if "full" in text or "disk I/O" in text:
        return f"db {path}: the disk is full or failing ({text}); free space or pass --db to another disk"
    if "not a database" in text or "malformed" in text or "encrypted" in text:
        return f"db {path} is not a resizelab results store ({text}); pass --db to a new file or to the store you meant"
    if "unable to open" in text:
        return f"db {path} cannot be opened ({text}); check the path and its folder's permissions, or pass --db elsewhere"
    return f"db {path}: {text}"


def check_db_path(path: str) -> None:
    """What a path must be before SQLite sees it: a file (existing or to be created) in an existing folder."""
    if path in ("", ":memory:") or path.startswith("file:"):
        raise ConfigError(f"--db {path or repr(path)} would keep nothing once this process ends (or is not a plain path); "
                          "give a file path such as ./resizelab.db")
    if os.path.isdir(path):
        raise ConfigError(f"db {path} is a folder; give a file path, e.g. {os.path.join(path, DEFAULT_DB)}")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise ConfigError(f"db {path!r}: folder {parent} does not exist; create it or pass --db elsewhere")


def check_schema_version(conn: sqlite3.Connection, path: str) -> None:
    """Refuse a store whose layout is not this version's: its run names would not mean what they mean here; and
    another program's database that happens to have a `runs` table, which is no resizelab store of any age."""
    columns = {r[1] for r in conn.execute("PRAGMA table_info(runs)")}
    if not set(RESIZELAB_RUNS_COLUMNS) <= columns:
        raise StoreError(f"db {path} is not a resizelab store: its runs table is another program's (columns "
                         f"{', '.join(sorted(columns)) or 'none'}; a resizelab store's has {', '.join(RESIZELAB_RUNS_COLUMNS)}); "
                         "pass --db to a new file or to a resizelab store")
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version == SCHEMA_VERSION:
        return
    if version > SCHEMA_VERSION:
        raise StoreError(f"db {path} was written by a newer resizelab (store layout {version}, this one reads {SCHEMA_VERSION}); "
                         "upgrade resizelab or pass --db to another file")
    raise StoreError(f"db {path} was written by an older resizelab (store layout {version}, before runs were named by the "
                     f"precision that ran and the content of their data); its runs cannot be resumed or compared with "
                     f"new ones: pass --db to a new file (the old one is left untouched and can still be read by that version)")


def new_owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _owner_is_dead(owner: str | None) -> bool:
    """True when the owner ran on this host and its process is gone (no need to wait for the lease)."""
    if not owner:
        return True
    host, _, rest = owner.partition(":")
    pid_text = rest.split(":", 1)[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    return not pid_alive(int(pid_text))


def _held_live(row, now: float) -> bool:
    """A running row's claim still stands: its lease has not lapsed and its owner is not known to be dead."""
    return (row["lease_expires"] or 0) >= now and not _owner_is_dead(row["owner"])


JSON_COLUMNS = ("config_json", "result_json", "provenance_json", "execution_json")


def check_rows(rows: list[dict], db: str | os.PathLike, columns: tuple[str, ...] = JSON_COLUMNS) -> list[dict]:
    """`rows`, once each JSON column of each has been read as a JSON object: a row edited by hand (or cut short)
    is named, with its run and column, instead of surfacing as a JSONDecodeError from whatever reads it next."""
    for row in rows:
        for column in columns:
            text = row.get(column)
            if text is None:
                continue
            try:
                value = json.loads(text)
            except (TypeError, ValueError) as e:
                raise ConfigError(f"run {row.get('config_hash')} in {db} has a corrupt {column} ({e}); restore the store "
                                  f"from a copy, or delete that run's row and run it again") from None
            if not isinstance(value, dict):
                raise ConfigError(f"run {row.get('config_hash')} in {db} has a corrupt {column} (a JSON "
                                  f"{type(value).__name__}, not an object); restore the store from a copy, or delete that "
                                  "run's row and run it again")
    return rows


def connect_for_reading(path: str | os.PathLike, timeout: float = 5.0) -> sqlite3.Connection:
    """A connection that reads a store and never writes it (PRAGMA query_only), and leaves nothing beside it.

    A `mode=ro` connection to a WAL database creates its -wal and -shm files but, being read-only, cannot
    remove them when it closes: they stayed beside the store after every report. Where the store and its
    folder are writable, the connection is opened read-write with query_only set, so closing as the last
    connection removes them as any SQLite connection does; where they are not, `mode=ro` (nothing can be
    created there anyway)."""
    target = Path(path).absolute()
    writable = os.access(target, os.W_OK) and os.access(target.parent, os.W_OK | os.X_OK)
    # as_uri() percent-encodes the path, so a '?' or '#' in a folder name cannot turn into URI syntax;
    # mode=rw never creates a missing file.
    uri = f"{target.as_uri()}?mode={'rw' if writable else 'ro'}"
    conn = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA query_only=ON")
    return conn


def require_store(db: str | os.PathLike, hint: str = "run a study or sweep first, or pass --db PATH") -> None:
    """A store to read must be there: one line that says what is at the path instead."""
    if os.path.isdir(db):
        raise ConfigError(f"{db} is a folder, not a results store; pass --db the database file (e.g. {os.path.join(db, DEFAULT_DB)})")
    if not os.path.isfile(db):
        raise ConfigError(f"no results store at {db}; {hint}")


class Store:
    def __init__(self, path: str | os.PathLike = DEFAULT_DB, timeout: float = 60.0, *, readonly: bool = False):
        self.path = str(path)
        self.timeout = timeout
        check_db_path(self.path)
        if readonly:
            require_store(self.path)
        try:
            self._open(readonly)
        except BaseException as e:
            conn = getattr(self, "conn", None)
            if conn is not None:
                conn.close()
            if isinstance(e, sqlite3.Error):
                raise StoreError(_describe_sqlite_error(self.path, e, timeout)) from None
            raise

    def _open(self, readonly: bool) -> None:
        timeout = self.timeout
        if readonly:
            self.conn = connect_for_reading(self.path, timeout)
        else:
            # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE), never implicit.
            self.conn = sqlite3.connect(self.path, timeout=timeout, isolation_level=None, check_same_thread=False)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
        # Reading the schema is what tells a database from random bytes ("file is not a database").
        tables = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if readonly:
            if not tables:
                raise StoreEmpty(f"{self.path} holds no results yet (an empty database); run a study or sweep first")
            if "runs" not in tables:
                raise ConfigError(f"{self.path} is not a resizelab results store (it has no runs table)")
            check_schema_version(self.conn, self.path)
            return
        if tables and "runs" not in tables:
            raise ConfigError(f"db {self.path} is an SQLite database of something else (tables: {', '.join(sorted(tables))}); "
                              "pass --db to a new file or to a resizelab store")
        if "runs" in tables:
            check_schema_version(self.conn, self.path)
        # Switching a new file to WAL needs an exclusive lock and SQLite does not wait on the busy
        # timeout for it: two sweeps starting together on a fresh database would see "locked".
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.conn.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA foreign_keys=ON")
        if "runs" not in tables:
            with self.transaction():
                # Another process may have created it between the look above and this write lock.
                if self.conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'runs'").fetchone() is None:
                    for statement in SCHEMA.split(";"):
                        if statement.strip():
                            self.conn.execute(statement)
                    self.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            check_schema_version(self.conn, self.path)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; a locked, read-only or full database is a StoreError with one line."""
        try:
            # IMMEDIATE takes the write lock up front, so a read-then-write claim cannot race.
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            raise StoreError(_describe_sqlite_error(self.path, e, self.timeout)) from None
        try:
            yield self.conn
            self.conn.execute("COMMIT")
        except BaseException as e:
            if self.conn.in_transaction:
                try:
                    self.conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass  # SQLite may have rolled back already (a full disk does)
            if isinstance(e, sqlite3.OperationalError):
                raise StoreError(_describe_sqlite_error(self.path, e, self.timeout)) from None
            raise

    # --- registering and claiming ------------------------------------------------------------

    def register(self, configs: list, sweep: str | None = None) -> None:
        """Add planned configs as pending and tie them to a sweep. A row not being trained and holding no result
        takes the config as given now (its execution settings may differ); a running or finished row keeps the
        config that ran, which `complete` wrote."""
        now = time.time()
        # Planned before the write lock is taken: planning may read every file of a dataset.
        from ..training.planning import many, plan

        with many(len(configs)):
            configs = [plan(cfg) for cfg in configs]
        with self.transaction() as c:
            for position, planned in enumerate(configs):
                h = planned.config_hash()
                c.execute("INSERT INTO runs (config_hash, config_json, label, status, created_at) VALUES (?, ?, ?, 'pending', ?) "
                          "ON CONFLICT(config_hash) DO UPDATE SET config_json = excluded.config_json, label = excluded.label "
                          "WHERE runs.status IN ('pending', 'failed') AND runs.result_json IS NULL",
                          (h, json.dumps(planned.to_dict(), sort_keys=True), planned.label(), now))
                if sweep:
                    c.execute("INSERT OR IGNORE INTO sweep_runs (sweep, config_hash, position) VALUES (?, ?, ?)", (sweep, h, position))

    def claim(self, config_hash: str, owner: str, lease_seconds: float = DEFAULT_LEASE_SECONDS,
              *, retry_failed: bool = False, force: bool = False) -> bool:
        """Take the run for `owner` if nobody alive holds it and it is not finished. Atomic."""
        now = time.time()
        with self.transaction() as c:
            row = c.execute("SELECT status, owner, lease_expires FROM runs WHERE config_hash = ?", (config_hash,)).fetchone()
            if row is None:
                raise KeyError(f"run {config_hash} is not registered")
            status = row["status"]
            if status == "running" and row["owner"] != owner:
                if _held_live(row, now):
                    return False
            elif status == "done" and not force:
                return False
            elif status == "failed" and not (retry_failed or force):
                return False
            c.execute("UPDATE runs SET status = 'running', owner = ?, lease_expires = ?, attempts = attempts + 1, "
                      "started_at = ?, error = NULL WHERE config_hash = ?", (owner, now + lease_seconds, now, config_hash))
            return True

    def heartbeat(self, config_hash: str, owner: str, lease_seconds: float = DEFAULT_LEASE_SECONDS) -> bool:
        """Renew `owner`'s lease; False when `owner` no longer holds the run (it was taken over)."""
        with self.transaction() as c:
            cur = c.execute("UPDATE runs SET lease_expires = ? WHERE config_hash = ? AND owner = ? AND status = 'running'",
                            (time.time() + lease_seconds, config_hash, owner))
            return cur.rowcount == 1

    def held_by_another(self, config_hash: str, owner: str) -> bool:
        """True while a live process other than `owner` holds the run: its lease not lapsed and its owner not
        known dead (what `claim` would refuse it for). False once it is given back, finished, or claimable."""
        row = self.conn.execute("SELECT status, owner, lease_expires FROM runs WHERE config_hash = ?", (config_hash,)).fetchone()
        return row is not None and row["status"] == "running" and row["owner"] != owner and _held_live(row, time.time())

    def holder(self, config_hash: str) -> str | None:
        row = self.conn.execute("SELECT owner FROM runs WHERE config_hash = ? AND status = 'running'", (config_hash,)).fetchone()
        return row["owner"] if row else None

    def _require_owner(self, c: sqlite3.Connection, config_hash: str, owner: str) -> None:
        row = c.execute("SELECT status, owner FROM runs WHERE config_hash = ?", (config_hash,)).fetchone()
        if row is None or row["status"] != "running" or row["owner"] != owner:
            now = f"held by {row['owner']}" if row is not None and row["status"] == "running" else f"{row['status'] if row else 'not registered'}"
            raise LeaseLost(f"run {config_hash}: this process ({owner}) no longer holds its lease (the run is {now}); "
                            "its result was not stored, the current holder's stands")

    def release(self, config_hash: str, owner: str) -> bool:
        """Give an unfinished claim back (Ctrl-C), so the next sweep runs it straight away; a forced rerun
        of a finished run goes back to 'done' with the result it had, never to a pending row that hides it.
        Only the holder can: False (nothing changed) for anyone else."""
        with self.transaction() as c:
            cur = c.execute("UPDATE runs SET status = CASE WHEN result_json IS NOT NULL THEN 'done' ELSE 'pending' END, "
                            "owner = NULL, lease_expires = NULL WHERE config_hash = ? AND owner = ? AND status = 'running'",
                            (config_hash, owner))
            return cur.rowcount == 1

    # --- writing outcomes --------------------------------------------------------------------

    def complete(self, result, owner: str) -> None:
        """Write a finished run, its epochs and evaluations, and mark it done: all or nothing, and only by the
        owner that holds the run (LeaseLost otherwise: a stale owner never overwrites the new owner's work).
        A write that fails for want of space keeps the result in a JSON file beside the store (ResultNotStored)."""
        data = result.to_json_dict()
        h = result.config_hash
        now = time.time()
        config_json = json.dumps(data["config"], sort_keys=True)
        execution_json = json.dumps(data.get("execution") or {}, sort_keys=True)
        try:
            with self.transaction() as c:
                self._require_owner(c, h, owner)
                # Every finished attempt is kept: the runs row shows the latest, a forced rerun never erases the earlier one.
                c.execute("INSERT INTO attempts (config_hash, status, owner, config_json, result_json, provenance_json, execution_json, "
                          "started_at, finished_at) SELECT ?, 'done', ?, ?, ?, ?, ?, started_at, ? FROM runs WHERE config_hash = ?",
                          (h, owner, config_json, json.dumps(data), json.dumps(result.provenance), execution_json, now, h))
                c.execute("DELETE FROM epochs WHERE config_hash = ?", (h,))
                c.execute("DELETE FROM evals WHERE config_hash = ?", (h,))
                for e in result.epochs:
                    c.execute("INSERT INTO epochs VALUES (?, ?, ?, ?, ?, ?)", (h, e.epoch, e.train_loss, e.train_accuracy, e.seconds, e.images))
                for ev in result.evals:
                    c.execute("INSERT OR REPLACE INTO evals VALUES (?, ?, ?, ?, ?)",
                              (h, ev.size_px, ev.interpolation, ev.accuracy, json.dumps(ev.per_class_accuracy)))
                # The config that ran replaces the registered text: execution settings of this attempt, not the first one's.
                c.execute(
                    "UPDATE runs SET status = 'done', owner = NULL, lease_expires = NULL, error = NULL, test_accuracy = ?, "
                    "train_seconds = ?, images_per_second = ?, macs_per_image = ?, params = ?, peak_memory_bytes = ?, "
                    "result_json = ?, provenance_json = ?, execution_json = ?, config_json = ?, label = ?, finished_at = ? "
                    "WHERE config_hash = ?",
                    (result.test_accuracy, result.train_seconds, result.images_per_second, result.macs_per_image, result.params,
                     result.peak_memory_bytes, json.dumps(data), json.dumps(result.provenance), execution_json, config_json,
                     result.config.label(), now, h),
                )
        except StoreError as e:
            saved = self._save_unstored(data)
            where = f"saved to {saved}" if saved else "could not be saved anywhere either; it is lost"
            raise ResultNotStored(f"run {h} finished but was not stored ({e}); its result is {where}") from None

    def _save_unstored(self, data: dict) -> str | None:
        """The result as JSON beside the store (else in the temporary folder): minutes of training are not lost to a full disk."""
        name = f"{os.path.basename(self.path)}.unstored-{data['config_hash']}-{int(time.time())}.json"
        for folder in (os.path.dirname(os.path.abspath(self.path)), tempfile.gettempdir()):
            path = os.path.join(folder, name)
            try:
                with open(path, "w") as f:
                    json.dump(data, f)
                return path
            except OSError:
                try:
                    os.unlink(path)
                except OSError:
                    pass
        return None

    def record_invalid(self, values: dict, reason: str, sweep: str | None = None) -> str:
        """A grid combination that cannot run (bad value, impossible pairing): kept as failed, with why."""
        import hashlib

        blob = json.dumps(values, sort_keys=True, default=str)
        h = "invalid-" + hashlib.sha256(blob.encode()).hexdigest()[:16]
        now = time.time()
        with self.transaction() as c:
            c.execute("INSERT OR REPLACE INTO runs (config_hash, config_json, label, status, error, created_at, finished_at) "
                      "VALUES (?, ?, 'invalid combination', 'failed', ?, ?, ?)", (h, blob, reason[:2000], now, now))
            if sweep:
                c.execute("INSERT OR IGNORE INTO sweep_runs (sweep, config_hash, position) VALUES (?, ?, -1)", (sweep, h))
        return h

    def fail(self, config_hash: str, owner: str, reason: str) -> None:
        """Record the holder's attempt as failed, with why (LeaseLost for anyone but the holder)."""
        now = time.time()
        with self.transaction() as c:
            self._require_owner(c, config_hash, owner)
            c.execute("INSERT INTO attempts (config_hash, status, owner, error, config_json, started_at, finished_at) "
                      "SELECT ?, 'failed', ?, ?, config_json, started_at, ? FROM runs WHERE config_hash = ?",
                      (config_hash, owner, reason[:2000], now, config_hash))
            # A forced rerun that fails leaves the earlier result standing (the failure is an attempt of its own).
            c.execute("UPDATE runs SET status = CASE WHEN result_json IS NOT NULL THEN 'done' ELSE 'failed' END, owner = NULL, "
                      "lease_expires = NULL, error = ?, finished_at = ? WHERE config_hash = ?",
                      (reason[:2000], now, config_hash))

    # --- reading -----------------------------------------------------------------------------

    def runs(self, *, sweep: str | None = None, status: str | None = None) -> list[dict]:
        query, args = _filtered("SELECT r.* FROM runs r", "r", sweep, {"status": status})
        query += " ORDER BY s.position" if sweep else " ORDER BY r.created_at, r.config_hash"
        return [dict(row) for row in self.conn.execute(query, args)]

    def get(self, config_hash: str) -> dict | None:
        row = self.conn.execute("SELECT * FROM runs WHERE config_hash = ?", (config_hash,)).fetchone()
        return dict(row) if row else None

    def evals(self, config_hash: str | None = None) -> list[dict]:
        if config_hash is None:
            return [dict(r) for r in self.conn.execute("SELECT * FROM evals ORDER BY config_hash, test_size_px")]
        return [dict(r) for r in self.conn.execute("SELECT * FROM evals WHERE config_hash = ? ORDER BY test_size_px", (config_hash,))]

    def attempts(self, config_hash: str | None = None, *, sweep: str | None = None, status: str | None = None) -> list[dict]:
        """Finished or failed attempts (of one run, or of a sweep's runs), oldest first."""
        query, args = _filtered("SELECT a.* FROM attempts a", "a", sweep, {"config_hash": config_hash, "status": status})
        return [dict(r) for r in self.conn.execute(query + " ORDER BY a.attempt_id", args)]

    def sweeps(self) -> list[tuple[str, int]]:
        return [(r[0], r[1]) for r in self.conn.execute("SELECT sweep, COUNT(*) FROM sweep_runs GROUP BY sweep ORDER BY sweep")]
