"""Running a sweep: its plan registered in the store, the runs still to do trained by an executor, resumably.

Each config is named by the hash of what it runs (training.planning); a run already done is skipped, one
held by a live process is waited for (and claimed if that process gives it back), and one whose owner died
is taken over. Whatever the executor (this
process, packed worker processes, a Ray cluster), every run goes through the one claim loop
(`sweeps.claim.claim_loop`), so a failed, lost or interrupted run is named, counted and said the same way.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from ..core.choices import EXECUTORS
from ..core.config import Kind, RunConfig, boolean, choice, declared_options, option, parse_float, parse_int, text
from ..core.errors import ConfigError
from ..core.optional import require
from ..core.log import logger, plural
from ..store.database import DEFAULT_DB, DEFAULT_LEASE_SECONDS, Store, new_owner_id
from ..store.read import stored_weights
from ..training.inputs import ensure_inputs
from ..training.planning import many, plan as plan_config
from .claim import Executor, SweepOutcome, claim_loop, say
from .packed import DEFAULT_PACK, check_pack, machine_cores, on_cpu, resolve_executor, threads_per_worker
from .plan import SweepPlan, describe
from .ray import check_ray_address


def _check_pack(name: str, value: Any) -> None:
    if value is not None:
        check_pack(value)


def _check_lease(name: str, value: Any) -> None:
    # A lease shorter than a few heartbeats would lapse under a busy machine and let another sweep take
    # over a run that is still training (the heartbeat renews every third of it).
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not 3 <= value <= 86_400:
        raise ConfigError(f"lease seconds must be between 3 and 86400; got {value!r}")


def _check_ray_address(name: str, value: Any) -> None:
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise ConfigError(f"the Ray address must be host:port, ray://host:port or auto; got {value!r}")


@dataclass
class SweepOptions:
    """How a sweep executes: where it is stored, who trains its runs. Each option is declared here once; the
    sweep commands' flags and `resizelab.sweep()`'s keyword defaults are generated from it."""

    db: str = option(DEFAULT_DB, text("PATH"), "SQLite results store")
    executor: str = option("auto", choice(EXECUTORS), "local (one run at a time in this process), packed (--pack runs "
                           "at once on one device, one worker process each), ray (a Ray cluster); auto: packed on a CPU "
                           "for many small runs (sweeps.packed.cpu_auto_packs), on CUDA local until the GPU check says "
                           "otherwise (sweeps.packed.CUDA_AUTO_PACK)")
    pack: int | None = option(None, Kind(parse_int, _check_pack, "N"),
                              f"runs trained at once by --executor packed (default: one per core on a CPU, {DEFAULT_PACK} "
                              "on CUDA)")
    retry_failed: bool = option(False, boolean(), "run again the configs that failed before", switch=True)
    lease_seconds: float = option(DEFAULT_LEASE_SECONDS, Kind(parse_float, _check_lease, "S"), "how long a claimed run "
                                  f"stays reserved without a heartbeat (default {DEFAULT_LEASE_SECONDS:g})")
    progress: bool = True  # not a flag: the commands' --quiet turns it off
    ray_address: str | None = option(None, Kind(str, _check_ray_address, "ADDRESS"),
                                     "Ray cluster address (default: start or join a local one)")

    def __post_init__(self) -> None:
        for name, opt in declared_options(SweepOptions):
            opt.kind.check(name, getattr(self, name))
        if self.pack is not None and self.executor != "packed":
            raise ConfigError(f"pack applies to the packed executor, not {self.executor!r}; choose executor 'packed'")
        if self.ray_address is not None and self.executor != "ray":
            raise ConfigError(f"a Ray address applies to the ray executor, not {self.executor!r}; choose executor 'ray'")


def plan_and_register(plan: SweepPlan, store: Store, checked: set | None = None) -> list[RunConfig]:
    """Plan every config (its hash needs the inputs, so they are fetched first), register them, record the
    invalid combinations; the planned configs, one per hash, in plan order."""
    ensure_inputs(plan.configs, checked)
    with many(len(plan.configs)):
        planned = list({c.config_hash(): c for c in map(plan_config, plan.configs)}.values())
    store.register(planned, sweep=plan.name)
    for values, why in plan.invalid:
        store.record_invalid(values, why, sweep=plan.name)
    return planned


def make_executor(options: SweepOptions, todo: list[RunConfig], quiet: bool, cores: int | None = None,
                  ledger_cores: int | None = None) -> Executor:
    """The executor `options` asks for (auto: see packed.resolve_executor), ready to take runs; `cores`: the
    share of this machine it may compute with (default: all the cores this process may use); `ledger_cores`:
    the machine's cores when that share is held in the thread ledger, which then follows what the runs'
    thread policies adapt to (None: no ledger)."""
    name, pack = resolve_executor(options.executor, options.pack, todo, cores)
    if name == "ray":
        from .ray import RayExecutor

        return RayExecutor(options.ray_address, quiet=quiet)
    if name == "packed":
        from .packed import PackedExecutor

        executor = PackedExecutor(todo, pack, cores, ledger_cores=ledger_cores)
        say(executor.describe(), quiet)
        return executor
    from .local import LocalExecutor

    on_threads = None
    if ledger_cores is not None and cores is not None:
        from .ledger import SharedThreads

        on_threads = SharedThreads(cores, ledger_cores)
    return LocalExecutor(progress=options.progress and not quiet, on_threads=on_threads)


def threads_wanted(options: SweepOptions, todo: list[RunConfig], cores: int) -> tuple[int, int | None, str]:
    """(torch threads this sweep computes with at once, the --threads asked for or None, how they run in words):
    a run's --threads, times the runs a packed sweep trains at once; without --threads every core."""
    name, pack = resolve_executor(options.executor, options.pack, todo, cores)
    asked = next((c.threads for c in todo if c.threads is not None), None)
    if name != "packed":
        return (asked or cores), asked, f"{asked or cores} torch thread{'s' if (asked or cores) != 1 else ''}"
    slots = max(1, min(pack, len(todo)))
    each = asked or threads_per_worker(todo, pack, cores)
    return slots * each, asked, f"{slots} runs at once x {each} torch thread{'s' if each != 1 else ''}"


@contextlib.contextmanager
def machine_share(options: SweepOptions, todo: list[RunConfig], quiet: bool, sweep: str | None = None) -> Iterator[int | None]:
    """The cores this sweep computes with, held in the machine's thread ledger while it trains here on a CPU
    (None for a Ray cluster or GPU runs: nothing to share out): what it computes with (a run's --threads, times
    the pack of a packed sweep), or without --threads the cores other sweeps left. A local sweep's torch threads
    follow the share; more threads than the machine has cores are said in one line (allowed: the user may know)."""
    if options.executor == "ray" or not any(on_cpu(c) for c in todo):
        yield None
        return
    from ..training.threads import current_threads, set_threads
    from .ledger import thread_share

    cores = machine_cores()
    wanted, asked, runs_as = threads_wanted(options, todo, cores)
    if wanted > cores:
        logger.warning("this sweep computes with %s = %d threads on this machine's %s: threads beyond the cores "
                       "wait for each other (BENCHMARKS.md, \"CPU sweeps\"); fewer threads or a smaller --pack avoid it",
                       runs_as, wanted, plural(cores, "core"))
    with thread_share(wanted, cores, say=lambda message: say(message, quiet), sweep=sweep, exact=asked is not None) as granted:
        threads = current_threads()
        set_threads(min(threads, granted))
        try:
            yield granted
        finally:
            set_threads(threads)


def run_sweep(plan: SweepPlan, options: SweepOptions, *, quiet: bool = False,
              on_result: Callable[[Any], None] | None = None) -> SweepOutcome:
    """Run every config of `plan` that the store does not already hold as done; a run another live process
    holds is waited for (polled every HELD_POLL_SECONDS) until it ends there or can be claimed here, so the
    sweep ends with none of its runs running, unless Ctrl-C stops the wait."""
    outcome = SweepOutcome(plan.name, len(plan.configs), invalid=len(plan.invalid), db=str(options.db))
    if options.executor == "ray":
        require("ray", "ray", "executor 'ray'")
        if options.ray_address:
            check_ray_address(options.ray_address)
    # Inputs are checked before the store is touched: offline, a new sweep leaves no database behind.
    ready = {"done"} if options.retry_failed else {"done", "failed"}
    unfinished = [cfg for cfg, (_, status, _) in zip(plan.configs, describe(plan, options.db)) if status not in ready]
    checked: set = set()  # inputs found, so that each is looked for once
    if unfinished:
        ensure_inputs(unfinished, checked)
    with Store(options.db) as store:
        planned = plan_and_register(plan, store, checked)
        outcome.planned = len(planned)
        for values, why in plan.invalid:
            outcome.invalid_reasons.append(why)
            say(f"invalid combination, recorded as failed: {why}", quiet)
        owner = new_owner_id()
        todo = []
        unsaved = []  # done before without the weights --save-weights asks for now (it is not part of a run's identity)
        for cfg in planned:
            row = store.get(cfg.config_hash())
            if row["status"] == "done":
                outcome.already_done += 1
                if cfg.save_weights and not stored_weights(row):
                    unsaved.append(cfg.config_hash())
            elif row["status"] == "failed" and not options.retry_failed:
                outcome.skipped_failed.append(cfg.config_hash())
            else:
                todo.append(cfg)
        say(f"sweep {plan.name}: {plural(len(planned), 'run')}, {outcome.already_done} already done, {len(todo)} to run"
             + (f", {len(outcome.skipped_failed)} failed before (--retry-failed to run them again)" if outcome.skipped_failed else ""), quiet)
        if unsaved:
            say(f"{plural(len(unsaved), 'run')} already done {'was' if len(unsaved) == 1 else 'were'} stored without "
                f"weights ({', '.join(h[:8] for h in unsaved[:5])}{', ...' if len(unsaved) > 5 else ''}): serve and probe "
                "need them; `resizelab run` with the same options, --save-weights and --force trains one again and saves "
                "them", quiet)
        ensure_inputs(todo, checked)  # another process may have given runs back since the check above
        try:
            while todo:
                with contextlib.ExitStack() as held:
                    try:
                        cores = held.enter_context(machine_share(options, todo, quiet, plan.name))
                    except KeyboardInterrupt as e:  # while waiting for cores: nothing claimed, nothing held
                        outcome.interrupted = e
                        break
                    executor = make_executor(options, todo, quiet, cores, ledger_cores=machine_cores() if cores else None)
                    claim_loop(todo, store, owner, executor, outcome, lease_seconds=options.lease_seconds,
                               retry_failed=options.retry_failed, quiet=quiet, on_result=on_result)
                # A run another process trains is part of this sweep: wait for it, so that the sweep never ends
                # with a run still running. One given back, left by a dead process or past its lease goes back
                # through the claim loop above; one that finished there is counted as done before.
                todo = _wait_for_held(planned, store, owner, outcome)
        finally:
            rows = {r["config_hash"]: r for r in store.runs(sweep=plan.name)}
            outcome.rows = [rows[c.config_hash()] for c in planned if c.config_hash() in rows]
    return outcome


HELD_POLL_SECONDS = 2.0  # how often a sweep looks again at the runs another process holds


def _wait_for_held(planned: list[RunConfig], store: Store, owner: str, outcome: SweepOutcome) -> list[RunConfig]:
    """The runs held elsewhere that may be claimed again, once there are any; [] when none is held (or Ctrl-C
    ended the wait, with `outcome.interrupted` set and the runs still held left in `outcome.held_elsewhere`).
    Held runs are polled in the store, so no executor is started for a run that is still held."""
    if outcome.interrupted or not outcome.held_elsewhere:
        return []
    held = list(dict.fromkeys(outcome.held_elsewhere))
    logger.warning("waiting for %s held by another process (%s); Ctrl-C stops waiting, and the same command resumes",
                   plural(len(held), "run"), ", ".join(held[:3]) + (", ..." if len(held) > 3 else ""))
    try:
        while True:
            time.sleep(HELD_POLL_SECONDS)
            free = [h for h in held if not store.held_by_another(h, owner)]
            if free:
                break
    except KeyboardInterrupt as e:
        outcome.interrupted = e
        return []
    outcome.held_elsewhere = [h for h in outcome.held_elsewhere if h not in free]
    return [cfg for cfg in planned if cfg.config_hash() in free]
