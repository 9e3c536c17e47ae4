"""The local executor: one run at a time, trained in this process, with one resize cache for the sweep."""

from __future__ import annotations

from typing import Any, Callable, Hashable

from ..core.config import RunConfig
from ..store.lease import Lease
from .claim import train_outcome


class DatasetMemo:
    """Each config's dataset, loaded once and kept while the runs that read it follow (a sweep, a packed worker)."""

    def __init__(self) -> None:
        self._held: dict = {}

    def get(self, cfg: RunConfig):
        from ..training.data import load_dataset

        key = (cfg.data, cfg.data_dir, cfg.data_digest)
        if key not in self._held:
            self._held.clear()  # one dataset at a time: a sweep over several would otherwise hold them all
            self._held[key] = load_dataset(cfg.data, cfg.data_dir)
        return self._held[key]

    def train_fn(self) -> Callable:
        """train(), given the dataset this memo holds for the config's data."""
        from ..training.engine import train

        def train_with_dataset(cfg: RunConfig, **kwargs):
            return train(cfg, dataset=self.get(cfg), **kwargs)
        return train_with_dataset


class LocalExecutor:
    """Trains each run it is handed in this process, when `wait` is called; a lost lease stops it between steps."""

    name = "local"
    slots = 1

    def __init__(self, progress: bool = True, on_threads: Callable[[int], int] | None = None):
        from ..training.resize import ResizeCache

        self.cache = ResizeCache()
        self.datasets = DatasetMemo()
        self.progress = progress
        self.on_threads = on_threads  # the sweep's share in the machine's thread ledger, following each run's threads
        self._pending: dict[Hashable, tuple[RunConfig, Lease]] = {}

    def start(self, cfg: RunConfig, lease: Lease) -> Hashable:
        self._pending[lease.config_hash] = (cfg, lease)
        return lease.config_hash

    def wait(self, timeout: float) -> list[tuple[Hashable, str, Any]]:
        out = []
        while self._pending:
            ticket, (cfg, lease) = next(iter(self._pending.items()))
            status, payload = train_outcome(self.datasets.train_fn(), cfg, check=lease.check, cache=self.cache,
                                            progress=self.progress, on_threads=self.on_threads)
            del self._pending[ticket]
            out.append((ticket, status, payload))
        return out

    def stop(self, ticket: Hashable) -> None:
        self._pending.pop(ticket, None)

    def close(self) -> None:
        self._pending.clear()
