"""What a sweep runs: a grid of run configs (from flags, a TOML file or a preset), expanded and checked.

Nothing here trains or writes: `sweeps.runner.run_sweep` executes a plan against the store.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.config import CONFIG_FIELDS, GridSpec, RunConfig, options
from ..core.errors import ConfigError, DataUnavailable, WeightsError, reason
from ..store.database import Store, StoreEmpty
from ..training.planning import many, plan as plan_config

SWEEP_FILE_KEYS = ("name", "seeds", "base", "grid", "variants")
# A plan is built in memory and listed by --dry-run: beyond this many runs it is refused outright (a typo in
# --seeds, not a study), and beyond CONFIRM_RUNS it runs only with --yes.
MAX_RUNS = 100_000
CONFIRM_RUNS = 1_000


@dataclass(frozen=True)
class SweepPlan:
    """What a sweep will run: configs in order, plus combinations that were refused and why."""

    name: str
    configs: tuple[RunConfig, ...]
    invalid: tuple[tuple[dict, str], ...] = ()


def expand(base: dict[str, Any], grid: dict[str, list] | None = None, seeds: list[int] | None = None,
           variants: list[dict[str, Any]] | None = None, name: str = "sweep", *, max_runs: int | None = None) -> SweepPlan:
    """The product variants x grid x seeds over `base` (a variant's values beat the grid's); duplicates once."""
    check_sweep_name(name)
    grid = grid or {}
    for key in list(base) + list(grid) + [k for v in (variants or []) for k in v]:
        if key not in CONFIG_FIELDS:
            raise ConfigError(f"unknown run option {key!r}; valid options: {', '.join(CONFIG_FIELDS)}")
    for key, values in grid.items():
        check_axis(key, values)
    # A value wrong on its own (a number for device, a string for test_sizes) is wrong in every run: one error
    # now, not a grid of refused combinations. Only pairings (lanczos with the tensor backend) are per run.
    kinds = dict(options())
    for where, values in [("base", base.items()), *((f"grid {k}", [(k, v) for v in vs]) for k, vs in grid.items()),
                          *(("variant", v.items()) for v in (variants or []))]:
        for key, value in values:
            if key == "seed":
                _check_seed(value, f"{where} seed")
                continue
            if key == "channels_last" and value == "auto":
                continue
            try:
                kinds[key].kind.check(key, value)
            except ConfigError as e:
                raise ConfigError(f"{where}: {e}") from None
    seeds = list(seeds) if seeds else [base.get("seed", 0)]
    total = count_runs(grid, seeds, variants)
    if total > MAX_RUNS:
        raise ConfigError(f"this sweep would plan {total:,} runs; the most one sweep takes is {MAX_RUNS:,}: use fewer seeds or a "
                          "smaller grid")
    if max_runs is not None and total > max_runs:
        raise ConfigError(f"this sweep plans {total:,} runs (more than {max_runs:,}); pass --yes to run them all, --dry-run "
                          "to list them, or narrow the grid")
    configs, invalid, seen = [], [], set()
    keys = list(grid)
    for variant in variants or [{}]:
        for combo in itertools.product(*(grid[k] for k in keys)):
            for seed in seeds:
                values = {**base, **dict(zip(keys, combo)), **variant, "seed": seed}
                try:
                    cfg = RunConfig.from_dict(values)
                except ConfigError as e:
                    invalid.append((values, str(e)))
                    continue
                # Duplicates by the resolved config: hashing needs planning, which reads the data (not there yet offline).
                key = json.dumps(cfg.resolved().to_dict(), sort_keys=True, default=str)
                if key not in seen:
                    seen.add(key)
                    configs.append(cfg)
    return SweepPlan(name, tuple(configs), tuple(invalid))


def check_axis(key: str, values: Any) -> None:
    if not isinstance(values, (list, tuple)) or not values:
        raise ConfigError(f"grid entry {key!r} must be a non-empty list of values; got {values!r} (a single value goes in base)")


def count_runs(grid: dict[str, list] | None, seeds: list | None, variants: list | None) -> int:
    """How many runs a grid plans (before refusing invalid combinations and merging duplicates)."""
    return max(1, len(variants or [{}])) * math.prod(len(v) for v in (grid or {}).values()) * max(1, len(seeds or [0]))


def _check_seed(seed: Any, where: str) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**31:
        raise ConfigError(f"{where}: each seed must be a whole number from 0 to 2^31-1; got {seed!r}")


def expand_spec(spec: GridSpec, name: str, *, max_runs: int | None = None) -> SweepPlan:
    return expand(spec.base, spec.grid, spec.seeds, spec.variants or None, name=name, max_runs=max_runs)


def seed_list(value: Any, where: str) -> list[int]:
    """Seeds from a count (N: seeds 0..N-1) or an explicit list of distinct seeds."""
    if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, list) and value)):
        raise ConfigError(f"{where} must be a count of at least 1 or a non-empty list of seeds; got {value!r}")
    if isinstance(value, int):
        if value < 1:
            raise ConfigError(f"{where} must be at least 1; got {value}")
        if value > MAX_RUNS:
            raise ConfigError(f"{where}: {value:,} seeds is more runs than one sweep takes ({MAX_RUNS:,})")
        return list(range(value))
    for seed in value:
        _check_seed(seed, where)
    return list(dict.fromkeys(value))


def load_sweep_file(path: str | Path) -> tuple[GridSpec, str]:
    """Read a TOML sweep file: name, seeds, [base], [grid], [[variants]]. Unknown keys are errors."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]

    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"sweep file {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"sweep file {path} is a folder; give the path of a TOML file") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"sweep file {path} is not UTF-8 text (byte {e.start}: {e.reason}); TOML files are UTF-8") from None
    except OSError as e:
        raise ConfigError(f"sweep file {path} cannot be read ({e.strerror or e})") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"sweep file {path} is not valid TOML: {e}") from None
    unknown = sorted(set(doc) - set(SWEEP_FILE_KEYS))
    if unknown:
        raise ConfigError(f"sweep file {path}: unknown key(s) {', '.join(map(repr, unknown))}; valid keys: {', '.join(SWEEP_FILE_KEYS)}")
    seeds = seed_list(doc["seeds"], f"sweep file {path}: seeds") if "seeds" in doc else None
    base, grid = doc.get("base", {}), doc.get("grid", {})
    variants = doc.get("variants", [])
    if not isinstance(base, dict) or not isinstance(grid, dict) or not (isinstance(variants, list) and all(isinstance(v, dict) for v in variants)):
        raise ConfigError(f"sweep file {path}: [base] and [grid] must be tables and [[variants]] an array of tables")
    if not base and not grid and not variants:
        raise ConfigError(f"sweep file {path} defines no runs; give [base] options and/or a [grid], see the README")
    name = doc.get("name", path.stem)
    try:
        check_sweep_name(name)
    except ConfigError as e:
        raise ConfigError(f"sweep file {path}: {e}") from None
    return GridSpec(base, grid, variants, seeds), name


# --- execution -------------------------------------------------------------------------------

def default_name(prefix: str, values: Any) -> str:
    """`prefix-<digest>`: a sweep named after what it runs, so two different unnamed sweeps never share a report."""
    tag = json.dumps(values, sort_keys=True, default=str)
    return f"{prefix}-{hashlib.sha256(tag.encode()).hexdigest()[:8]}"


def check_sweep_name(name: Any) -> str:
    """A sweep's name is also its report folder (reports/<name>): one printable path component."""
    if not isinstance(name, str) or not name.strip() or name != name.strip() or name in (".", "..") \
            or "/" in name or "\\" in name or not name.isprintable():
        raise ConfigError(f"a sweep name must be non-empty text without '/', '\\', surrounding spaces or control characters "
                          f"(it names the folder reports/<name>); got {name!r}")
    return name


def describe(plan: SweepPlan, db: str, problems: list[str] | None = None) -> list[tuple[str, str, str]]:
    """(hash, status in the store or 'new', label) for each planned run: what --dry-run prints. A run whose
    inputs are not here yet cannot be named (its hash is its data's digest): '-' * 16 and 'new', with the
    reason added to `problems`."""
    statuses = {}
    if os.path.exists(db):
        try:
            with Store(db, readonly=True) as store:
                statuses = {r["config_hash"]: r["status"] for r in store.runs()}
        except StoreEmpty:  # another process is creating it this moment
            pass
    out = []
    with many(len(plan.configs)):
        for c in plan.configs:
            try:
                planned = plan_config(c)
            except (DataUnavailable, WeightsError, ConfigError) as e:
                if problems is not None and reason(e) not in problems:
                    problems.append(reason(e))
                out.append(("-" * 16, "new", c.label()))
                continue
            h = planned.config_hash()
            out.append((h, statuses.get(h, "new"), planned.label()))
    return out

