"""The results store: one embedded SQLite database, one row per run, one per epoch, one per evaluation.

Crash safety comes from SQLite transactions: a run's metrics, epochs, evaluations and its status
'done' are written in one transaction, so a kill -9 leaves either all of it or none. A run being
trained is claimed with a lease (owner + expiry) that its owner renews; a dead owner's claim
lapses, so another sweep picks the run up, and two live sweeps never train the same config.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
import uuid
from contextlib import contextmanager
from typing import Iterator

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
    result_json TEXT,
    provenance_json TEXT,
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

DEFAULT_LEASE_SECONDS = 60.0
DEFAULT_DB = "resizelab.db"


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
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class Store:
    def __init__(self, path: str | os.PathLike = DEFAULT_DB, timeout: float = 60.0):
        self.path = str(path)
        parent = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(parent):
            from .errors import ConfigError

            raise ConfigError(f"db {self.path!r}: folder {parent} does not exist; create it or pass --db elsewhere")
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE), never implicit.
        self.conn = sqlite3.connect(self.path, timeout=timeout, isolation_level=None, check_same_thread=False)
        self.conn.row_factory = sqlite3.Row
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
        self.conn.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
        self.conn.execute("PRAGMA foreign_keys=ON")
        with self.transaction():
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    self.conn.execute(statement)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        # IMMEDIATE takes the write lock up front, so a read-then-write claim cannot race.
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # --- registering and claiming ------------------------------------------------------------

    def register(self, configs: list, sweep: str | None = None) -> None:
        """Add configs as pending (existing rows are kept as they are) and tie them to a sweep."""
        now = time.time()
        with self.transaction() as c:
            for position, cfg in enumerate(configs):
                resolved = cfg.resolved()
                h = resolved.config_hash()
                c.execute("INSERT OR IGNORE INTO runs (config_hash, config_json, label, status, created_at) VALUES (?, ?, ?, 'pending', ?)",
                          (h, json.dumps(resolved.to_dict(), sort_keys=True), resolved.label(), now))
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
                lapsed = (row["lease_expires"] or 0) < now or _owner_is_dead(row["owner"])
                if not lapsed:
                    return False
            elif status == "done" and not force:
                return False
            elif status == "failed" and not (retry_failed or force):
                return False
            c.execute("UPDATE runs SET status = 'running', owner = ?, lease_expires = ?, attempts = attempts + 1, "
                      "started_at = ?, error = NULL WHERE config_hash = ?", (owner, now + lease_seconds, now, config_hash))
            return True

    def heartbeat(self, config_hash: str, owner: str, lease_seconds: float = DEFAULT_LEASE_SECONDS) -> bool:
        with self.transaction() as c:
            cur = c.execute("UPDATE runs SET lease_expires = ? WHERE config_hash = ? AND owner = ? AND status = 'running'",
                            (time.time() + lease_seconds, config_hash, owner))
            return cur.rowcount == 1

    def release(self, config_hash: str, owner: str) -> None:
        """Give an unfinished claim back (Ctrl-C), so the next sweep runs it straight away; a forced rerun
        of a finished run goes back to 'done' with the result it had, never to a pending row that hides it."""
        with self.transaction() as c:
            c.execute("UPDATE runs SET status = CASE WHEN result_json IS NOT NULL THEN 'done' ELSE 'pending' END, "
                      "owner = NULL, lease_expires = NULL WHERE config_hash = ? AND owner = ? AND status = 'running'",
                      (config_hash, owner))

    # --- writing outcomes --------------------------------------------------------------------

    def complete(self, result, owner: str) -> None:
        """Write a finished run, its epochs and evaluations, and mark it done: all or nothing."""
        data = result.to_json_dict()
        h = result.config_hash
        now = time.time()
        with self.transaction() as c:
            # Every finished attempt is kept: the runs row shows the latest, a forced rerun never erases the earlier one.
            c.execute("INSERT INTO attempts (config_hash, status, owner, result_json, provenance_json, started_at, finished_at) "
                      "SELECT ?, 'done', ?, ?, ?, started_at, ? FROM runs WHERE config_hash = ?",
                      (h, owner, json.dumps(data), json.dumps(result.provenance), now, h))
            c.execute("DELETE FROM epochs WHERE config_hash = ?", (h,))
            c.execute("DELETE FROM evals WHERE config_hash = ?", (h,))
            for e in result.epochs:
                c.execute("INSERT INTO epochs VALUES (?, ?, ?, ?, ?, ?)", (h, e.epoch, e.train_loss, e.train_accuracy, e.seconds, e.images))
            for ev in result.evals:
                c.execute("INSERT OR REPLACE INTO evals VALUES (?, ?, ?, ?, ?)",
                          (h, ev.size_px, ev.interpolation, ev.accuracy, json.dumps(ev.per_class_accuracy)))
            c.execute(
                "UPDATE runs SET status = 'done', owner = NULL, lease_expires = NULL, error = NULL, test_accuracy = ?, "
                "train_seconds = ?, images_per_second = ?, macs_per_image = ?, params = ?, peak_memory_bytes = ?, "
                "result_json = ?, provenance_json = ?, finished_at = ? WHERE config_hash = ?",
                (result.test_accuracy, result.train_seconds, result.images_per_second, result.macs_per_image, result.params,
                 result.peak_memory_bytes, json.dumps(data), json.dumps(result.provenance), now, h),
            )

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
        now = time.time()
        with self.transaction() as c:
            c.execute("INSERT INTO attempts (config_hash, status, owner, error, started_at, finished_at) "
                      "SELECT ?, 'failed', ?, ?, started_at, ? FROM runs WHERE config_hash = ? AND (owner = ? OR owner IS NULL)",
                      (config_hash, owner, reason[:2000], now, config_hash, owner))
            # A forced rerun that fails leaves the earlier result standing (the failure is an attempt of its own).
            c.execute("UPDATE runs SET status = CASE WHEN result_json IS NOT NULL THEN 'done' ELSE 'failed' END, owner = NULL, "
                      "lease_expires = NULL, error = ?, finished_at = ? WHERE config_hash = ? AND (owner = ? OR owner IS NULL)",
                      (reason[:2000], now, config_hash, owner))

    # --- reading -----------------------------------------------------------------------------

    def runs(self, *, sweep: str | None = None, status: str | None = None) -> list[dict]:
        query = "SELECT r.* FROM runs r"
        args: list = []
        clauses = []
        if sweep:
            query += " JOIN sweep_runs s ON s.config_hash = r.config_hash"
            clauses.append("s.sweep = ?")
            args.append(sweep)
        if status:
            clauses.append("r.status = ?")
            args.append(status)
        if clauses:
            query += " WHERE " + " AND ".join(clauses)
        query += " ORDER BY s.position" if sweep else " ORDER BY r.created_at, r.config_hash"
        return [dict(row) for row in self.conn.execute(query, args)]

    def get(self, config_hash: str) -> dict | None:
        row = self.conn.execute("SELECT * FROM runs WHERE config_hash = ?", (config_hash,)).fetchone()
        return dict(row) if row else None

    def evals(self, config_hash: str | None = None) -> list[dict]:
        if config_hash is None:
            return [dict(r) for r in self.conn.execute("SELECT * FROM evals ORDER BY config_hash, test_size_px")]
        return [dict(r) for r in self.conn.execute("SELECT * FROM evals WHERE config_hash = ? ORDER BY test_size_px", (config_hash,))]

    def attempts(self, config_hash: str) -> list[dict]:
        """Every finished or failed attempt at a run, oldest first."""
        return [dict(r) for r in self.conn.execute("SELECT * FROM attempts WHERE config_hash = ? ORDER BY attempt_id", (config_hash,))]

    def sweeps(self) -> list[tuple[str, int]]:
        return [(r[0], r[1]) for r in self.conn.execute("SELECT sweep, COUNT(*) FROM sweep_runs GROUP BY sweep ORDER BY sweep")]
