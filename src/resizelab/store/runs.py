"""Finished runs read back from the store and grouped into configurations (all seeds of one setting).

A configuration is every option that names the experiment except the seed; what varies among the
configurations reported becomes a table column and a figure series, what does not is stated once.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass

from ..core.config import identity_payload
from ..core.stats import Summary, mean_ci

# Shown first, in this order, whenever they are among the columns.
LEADING = ("size", "interpolation", "antialias", "backend")
SIZE_FIELDS = ("size", "test_size")


@dataclass
class Group:
    config: dict  # the configuration's options (identity fields, seed left out)
    runs: list[dict]  # store rows with "config" and "result" parsed
    evals: dict[int, list[float]]  # test size -> accuracy per seed

    def summary(self, metric: str) -> Summary:
        return mean_ci([r[metric] for r in self.runs])

    @property
    def train_size(self) -> int:
        """The trained input size in px (the native size when not resized)."""
        return self.config["size"] or (self.runs[0]["result"].get("input_shape") or [0])[0]


def load_groups(db: str, sweep: str | None, split_on: tuple[str, ...] = ()) -> tuple[list[Group], list[dict]]:
    """Done runs grouped by every identity option but the seed; and the failed runs, with their reasons.

    With `split_on` (execution settings, results.EXECUTION_KEYS), the units are the finished attempts rather
    than the runs' latest results, grouped also by those settings: a run trained again with --channels-last
    false under --force becomes a second configuration beside the first, not a replacement of it.
    """
    from ..core.errors import ConfigError
    from ..core.results import EXECUTION_KEYS
    from .database import Store, check_rows

    unknown = [k for k in split_on if k not in EXECUTION_KEYS]
    if unknown:
        raise ConfigError(f"--split-on {', '.join(map(repr, unknown))}: not an execution setting; choose from {', '.join(EXECUTION_KEYS)}")
    with Store(db, readonly=True) as store:
        rows = check_rows(store.runs(sweep=sweep), db)
        evals = defaultdict(list)
        for ev in store.evals():
            evals[ev["config_hash"]].append(ev)
        names = [name for name, _ in store.sweeps()]
        attempts = store.attempts(sweep=sweep, status="done") if split_on else []
    if sweep and not rows:
        raise ConfigError(f"no sweep named {sweep!r} in {db}; sweeps there: {', '.join(names) or 'none'}")
    units = rows if not split_on else [_attempt_row(a) for a in attempts]
    failed = [r for r in rows if r["status"] == "failed"]
    return group_runs(units, None if split_on else evals, split_on), failed


def group_runs(rows: list[dict], evals: dict[str, list[dict]] | None = None, split_on: tuple[str, ...] = ()) -> list[Group]:
    """The done rows among store rows (or finished attempts shaped like them) grouped by every identity option but
    the seed (and by the `split_on` execution settings). `evals`: each run's stored eval rows by config hash;
    None: the evals in each run's own result JSON."""
    groups: dict[str, Group] = {}
    for row in rows:
        if row["status"] != "done":
            continue
        cfg = json.loads(row["config_json"])
        shared = {k: v for k, v in identity_payload(cfg).items() if k != "seed"}
        execution = json.loads(row.get("execution_json") or "{}")
        for k in split_on:
            shared[k] = execution.get(k)
        # Grouped by the digests (a moved folder is the same data); shown with the first run's paths.
        key = json.dumps(shared, sort_keys=True, default=str)
        shown = {**shared, "data": cfg.get("data"), "weights": cfg.get("weights")}
        for k in ("data_digest", "weights_digest"):
            if shown[k] is None:  # synthetic data, built-in weights: nothing to name
                del shown[k]
        group = groups.setdefault(key, Group(shown, [], defaultdict(list)))
        result = json.loads(row["result_json"]) if row["result_json"] else {}
        row = dict(row, config=cfg, result=result)
        group.runs.append(row)
        run_evals = evals.get(row["config_hash"], []) if evals is not None else [
            {"test_size_px": ev["size_px"], "accuracy": ev["accuracy"]} for ev in result.get("evals", [])]
        for ev in run_evals:
            group.evals[ev["test_size_px"]].append(ev["accuracy"])
    return list(groups.values())


def _attempt_row(attempt: dict) -> dict:
    """A finished attempt shaped like a runs row (its metrics from its own result)."""
    result = json.loads(attempt["result_json"])
    return {**{k: result.get(k) for k in ("test_accuracy", "train_seconds", "images_per_second", "macs_per_image", "params",
                                           "peak_memory_bytes")},
            "config_hash": attempt["config_hash"], "status": "done", "config_json": attempt["config_json"],
            "result_json": attempt["result_json"], "provenance_json": attempt["provenance_json"],
            "execution_json": attempt["execution_json"], "label": "", "error": None}


def _value_key(value) -> str:
    return json.dumps(value, sort_keys=True)


def varying(configs: list[dict], always: tuple[str, ...] = ()) -> list[str]:
    """The options that differ between configurations: `always` (when present) and LEADING first, then by name."""
    if not configs:
        return []
    differs = {k for k in configs[0] if len({_value_key(c.get(k)) for c in configs}) > 1}
    # A test size or method that only mirrors the train one says nothing new.
    for derived, source in (("test_size", "size"), ("test_interpolation", "interpolation")):
        if derived in differs and all(c.get(derived) == c.get(source) for c in configs):
            differs.discard(derived)
    first = [k for k in dict.fromkeys(always + LEADING) if k in configs[0] and (k in always or k in differs)]
    return first + sorted(differs - set(first))


def fixed(configs: list[dict]) -> dict[str, object]:
    """The options every configuration shares (stated once, in the report's header)."""
    if not configs:
        return {}
    return {k: configs[0][k] for k in sorted(configs[0]) if len({_value_key(c.get(k)) for c in configs}) == 1}


def value_text(key: str, value) -> str:
    if key in SIZE_FIELDS:
        return "native" if value is None else str(value)
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value)) or "none"
    if value is None:
        return "none"
    return str(value).lower() if isinstance(value, bool) else str(value)


def sort_key(value):
    """Sizes and other numbers sort as numbers (8 before 16), native first, text as text."""
    if value is None:
        return (0, 0, "")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (1, value, "")
    return (2, 0, _value_key(value))


def series_key(cfg: dict, columns: list[str]) -> str:
    """A figure series: every varying option but the x axis (size) and antialias (drawn as line style)."""
    parts = [f"{k}={value_text(k, cfg[k])}" for k in columns if k not in ("size", "test_size", "antialias")]
    return ", ".join(parts) or cfg["interpolation"]
