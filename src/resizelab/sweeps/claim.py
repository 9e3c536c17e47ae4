"""The claim protocol every executor shares: claim a run, hand it out, end its claim with what came back.

A run is trained only under a `store.lease.Lease` held by this process, the only writer to the store. An
executor (local, packed, Ray) only trains what it is handed and says how each run ended, as a status and a
payload (`train_outcome`); `claim_loop` does everything else the same way for all of them: which runs
are claimed, what a lost lease, a failure or an interruption means, what is stored and what is said.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Hashable, Protocol

from ..core.config import RunConfig
from ..core.errors import ConfigError, DataUnavailable, ResizelabError, WeightsError, reason
from ..core.log import logger
from ..store.database import DEFAULT_LEASE_SECONDS, ResultNotStored, Store
from ..store.lease import Lease, LeaseLost, lost_reason
from ..training.planning import run_hash
from .progress import SweepProgress, run_work

# How a handed-out run ended, as an executor reports it: done (payload: the RunResult), failed (the reason),
# lost (the lease was taken over while training; the reason), unavailable (its data or weights are missing:
# every run would fail alike, so the sweep stops; the exception, or its message from another process).
OUTCOMES = ("done", "failed", "lost", "unavailable")


@dataclass
class Attempt:
    """How one claimed run ended: done (result), failed (reason), lost (taken over), or not claimed (held/done)."""

    status: str  # done | failed | lost | held | finished-before | failed-before
    result: Any = None
    reason: str = ""


@dataclass
class SweepOutcome:
    name: str
    planned: int
    already_done: int = 0
    ran: list = field(default_factory=list)  # RunResult
    failed: list[tuple[str, str, str]] = field(default_factory=list)  # (hash, label, reason)
    held_elsewhere: list[str] = field(default_factory=list)
    skipped_failed: list[str] = field(default_factory=list)
    invalid: int = 0
    invalid_reasons: list[str] = field(default_factory=list)  # why each refused grid combination was refused
    interrupted: BaseException | bool = False  # the KeyboardInterrupt (or SIGTERM) that stopped it
    rows: list[dict] = field(default_factory=list)  # the store rows of the plan, in plan order
    db: str | None = None  # the store it ran against: resizelab.load_runs(outcome.db, sweep=outcome.name)
    report: Path | None = None  # the report folder, when one was written


def train_outcome(train_fn: Callable, cfg: RunConfig, *, raise_config_errors: bool = False, **kwargs) -> tuple[str, Any]:
    """Train `cfg` and say how it ended, (status, payload) as in OUTCOMES; wherever the run trains."""
    try:
        return "done", train_fn(cfg, **kwargs)
    except LeaseLost as e:
        return "lost", str(e)
    except (DataUnavailable, WeightsError) as e:
        return "unavailable", e
    except ConfigError as e:
        if raise_config_errors:
            raise
        return "failed", reason(e)
    except Exception as e:  # a failing run is recorded, and whoever called goes on
        return "failed", reason(e)


def end_claim(lease: Lease, status: str, payload: Any) -> Attempt:
    """End a claim with what its run came back with: stored as done or failed, or given back. A lease taken over
    meanwhile stores nothing (the new holder's outcome stands); missing inputs propagate after the claim is
    given back; a result the disk refused is saved beside the store (ResultNotStored) and the claim given back."""
    if status == "unavailable":
        lease.release()
        raise payload if isinstance(payload, BaseException) else DataUnavailable(str(payload))
    if status == "lost":
        lease.stop_renewing()
        return Attempt("lost", reason=payload)
    try:
        if status == "done":
            lease.complete(payload)
            return Attempt("done", payload)
        lease.fail(payload)
        return Attempt("failed", reason=payload)
    except LeaseLost as e:
        return Attempt("lost", payload if status == "done" else None, str(e))
    except ResultNotStored:
        try:  # the disk may refuse this too; then the dead-owner rule frees the run later
            lease.release()
        except ResizelabError:
            pass
        raise


def not_claimed(store: Store, config_hash: str) -> Attempt:
    """Why a claim was refused: the run is done, failed before, or held by a live process."""
    row = store.get(config_hash)
    if row["status"] == "done":
        return Attempt("finished-before")
    if row["status"] == "failed":
        return Attempt("failed-before", reason=row["error"] or "")
    return Attempt("held", reason=row["owner"] or "")


def run_claimed(store: Store, cfg: RunConfig, owner: str, lease_seconds: float = DEFAULT_LEASE_SECONDS, *,
                force: bool = False, retry_failed: bool = False, record_config_errors: bool = True,
                train_fn: Callable | None = None, **train_kwargs) -> Attempt:
    """Claim `cfg`'s run, train it in this process while the lease is renewed, and end the claim (`resizelab run`).

    A run that fails (diverged, out of memory, a bug) is recorded as failed with its reason; a bad option
    found only now (ConfigError) likewise, unless record_config_errors is False (`resizelab run`: the input
    was wrong, nothing is stored). Missing inputs and Ctrl-C/SIGTERM give the claim back and propagate.
    """
    from ..training.engine import train

    lease = Lease(store, run_hash(cfg), owner, lease_seconds)
    try:
        if not lease.acquire(retry_failed=retry_failed, force=force):
            return not_claimed(store, lease.config_hash)
        with lease:
            try:
                status, payload = train_outcome(train_fn or train, cfg, raise_config_errors=not record_config_errors,
                                                check=lease.check, **train_kwargs)
            except ConfigError:
                lease.release()
                raise
            return end_claim(lease, status, payload)
    except KeyboardInterrupt:
        # Ctrl-C or SIGTERM wherever it lands (just claimed, mid-step, mid-commit): the claim goes back unless
        # it was completed (release is guarded by the owner and the 'running' status).
        lease.release()
        raise


class Executor(Protocol):
    """Where claimed runs train. `claim_loop` hands out at most `slots` runs at a time."""

    name: str
    slots: int

    def start(self, cfg: RunConfig, lease: Lease) -> Hashable:
        """Begin training a claimed run; a ticket that names it in `wait`'s answers."""

    def wait(self, timeout: float) -> list[tuple[Hashable, str, Any]]:
        """The runs that ended within `timeout` seconds, as (ticket, status, payload) (OUTCOMES)."""

    def stop(self, ticket: Hashable) -> None:
        """Abandon a run whose lease was lost: its training is stopped and nothing of it comes back."""

    def close(self) -> None:
        """Stop whatever still trains (its claims are given back by the loop) and free the executor's resources."""


def say(message: str, quiet: bool) -> None:
    if not quiet:
        logger.info(message)


def record(attempt: Attempt, cfg: RunConfig, config_hash: str, outcome: SweepOutcome, quiet: bool, on_result,
           progress: SweepProgress) -> None:
    """What the sweep learns from one attempt, and what it says about it: the same words for every executor."""
    prefix = "    "
    if attempt.status == "done":
        result = attempt.result
        outcome.ran.append(result)
        say(f"{prefix}{cfg.label()}: {result.test_accuracy:.2f}% test accuracy, {result.train_seconds:.1f} s, "
            f"{result.images_per_second:.0f} img/s", quiet)
        if on_result is not None:
            on_result(result)
    elif attempt.status == "failed":
        outcome.failed.append((config_hash, cfg.label(), attempt.reason))
        say(f"{prefix}{cfg.label()}: failed: {attempt.reason}", quiet)
    elif attempt.status == "finished-before":
        outcome.already_done += 1
    elif attempt.status == "failed-before":
        outcome.skipped_failed.append(config_hash)
    else:  # held by a live process, or taken over while training: the other process's result will stand
        outcome.held_elsewhere.append(config_hash)
        say(f"{prefix}{cfg.label()}: " + (f"held by {attempt.reason}, left to it" if attempt.status == "held" else attempt.reason), quiet)
    # After the run's own line: the sweep's count includes it.
    if attempt.status in ("done", "failed"):
        progress.finished(ok=attempt.status == "done", work=run_work(cfg))
    else:
        progress.left_to_another(run_work(cfg))


class Feed(Protocol):
    """Where the claim loop takes its next run from, asked each time a slot frees: a fixed list (a sweep) or a
    search that decides the next run from the results so far (advise)."""

    total: int  # how many runs it expects to hand out, for the progress line

    def next(self) -> RunConfig | None:
        """The next run to train, or None: nothing to hand out now (the loop ends once nothing is in flight)."""


class ListFeed:
    def __init__(self, configs: list[RunConfig]):
        self.waiting, self.total = list(configs), len(configs)

    def next(self) -> RunConfig | None:
        return self.waiting.pop(0) if self.waiting else None


def claim_loop(todo: list[RunConfig] | Feed, store: Store, owner: str, executor: Executor, outcome: SweepOutcome, *,
               lease_seconds: float = DEFAULT_LEASE_SECONDS, retry_failed: bool = False, quiet: bool = False,
               on_result: Callable[[Any], None] | None = None, poll_seconds: float = 1.0, close: bool = True) -> None:
    """Train the runs of `todo` (a list, or a Feed asked whenever a slot frees) on `executor`: claim each run,
    hand it out, and end its claim with what comes back. `close`: close the executor at the end (False: its
    owner trains more on it, as advise does between its batches).

    Ctrl-C (or SIGTERM) ends the loop with `outcome.interrupted` set; every claim this process holds is given
    back, so the next sweep runs those runs straight away.
    """
    feed = ListFeed(todo) if isinstance(todo, list) else todo
    # A fixed list's ETA weighs each run by its work; a search's runs are not known in advance.
    total_work = sum(run_work(cfg) for cfg in todo) if isinstance(todo, list) else None
    progress = SweepProgress(outcome.name, feed.total, quiet, total_work=total_work)
    in_flight: dict[Hashable, tuple[RunConfig, Lease]] = {}
    claiming: Lease | None = None  # between its claim and its hand-out, given back if interrupted there
    handed = 0
    try:
        while True:
            while len(in_flight) < executor.slots:
                cfg = feed.next()
                if cfg is None:
                    break
                h = cfg.config_hash()
                handed += 1
                claiming = Lease(store, h, owner, lease_seconds)
                if not claiming.acquire(retry_failed=retry_failed):
                    claiming = None
                    record(not_claimed(store, h), cfg, h, outcome, quiet, on_result, progress)
                    continue
                where = f" ({executor.name} {len(in_flight) + 1}/{executor.slots})" if executor.slots > 1 else ""
                say(f"[{handed}/{feed.total}] {cfg.label()} ...{where}", quiet)
                ticket = executor.start(cfg, claiming)
                in_flight[ticket], claiming = (cfg, claiming), None
            if not in_flight:
                break
            for ticket, status, payload in executor.wait(poll_seconds):
                if ticket not in in_flight:  # the answer of a run stopped below: already accounted for
                    continue
                cfg, lease = in_flight.pop(ticket)
                record(end_claim(lease, status, payload), cfg, lease.config_hash, outcome, quiet, on_result, progress)
            for ticket, (cfg, lease) in list(in_flight.items()):
                if lease.lost.is_set():
                    # Taken over while it trains: that training is stopped and nothing of it stored.
                    executor.stop(ticket)
                    in_flight.pop(ticket)
                    lease.stop_renewing()
                    record(Attempt("lost", reason=lost_reason(lease)), cfg, lease.config_hash, outcome, quiet, on_result, progress)
    except KeyboardInterrupt as e:
        outcome.interrupted = e
    finally:
        if claiming is not None:
            claiming.release()
        for _, lease in in_flight.values():
            lease.release()
        if close or in_flight:
            executor.close()
