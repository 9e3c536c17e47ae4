"""The Ray executor: each run a Ray task on a cluster, while this process holds its lease and stores its result."""

from __future__ import annotations

from typing import Any, Hashable

from ..core.config import RunConfig
from ..core.errors import ConfigError, reason
from ..core.optional import require
from ..store.lease import Lease
from .claim import train_outcome

# A Ray worker that dies (killed, out of memory, node lost) is a system failure: Ray runs the task again.
RAY_TASK_RETRIES = 2


def check_ray_address(address: str, timeout: float = 5.0) -> None:
    """Refuse a Ray address nothing answers at, at once: ray.init retries an unreachable one without end."""
    import socket

    target = address.removeprefix("ray://")
    if target in ("auto", "local") or ":" not in target:
        return  # Ray resolves these itself (a running local cluster, or a new one)
    host, _, port = target.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except (OSError, ValueError) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else str(e) or type(e).__name__
        raise ConfigError(f"no Ray cluster answers at {address} ({why}); start one with `ray start --head`, "
                          "or leave the address out to start a local one") from None


def train_remote(cfg_dict: dict):
    """Runs on a Ray worker: train one planned config and hand back how it ended."""
    from ..training.engine import train

    status, payload = train_outcome(train, RunConfig.from_dict(cfg_dict), progress=False)
    return status, (str(payload) if status == "unavailable" else payload)


class RayExecutor:
    """Runs as Ray tasks: as many at once as the cluster has GPUs, or nodes when it has none. A ticket is the
    task's ObjectRef."""

    name = "ray task"

    def __init__(self, address: str | None = None, quiet: bool = False):
        self.ray = ray = require("ray", "ray", "executor 'ray'")
        if not ray.is_initialized():
            ray.init(address=address, ignore_reinit_error=True, log_to_driver=not quiet)
        gpus = int(ray.cluster_resources().get("GPU", 0))
        nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
        # Without GPUs a run takes a whole node's cores (Ray sets its torch threads to match); asking
        # for the cluster's total would never schedule on a cluster of several nodes.
        node_cpus = max(1, int(min((r.get("CPU", 1) for r in nodes), default=1)))
        self._remote = ray.remote(num_gpus=1 if gpus else 0, num_cpus=1 if gpus else node_cpus,
                                  max_retries=RAY_TASK_RETRIES, retry_exceptions=False)(train_remote)
        self.slots = max(1, gpus or len(nodes))
        self._refs: set = set()

    def start(self, cfg: RunConfig, lease: Lease) -> Hashable:
        ref = self._remote.remote(cfg.to_dict())
        self._refs.add(ref)
        return ref

    def wait(self, timeout: float) -> list[tuple[Hashable, str, Any]]:
        if not self._refs:
            return []
        ready, _ = self.ray.wait(list(self._refs), num_returns=1, timeout=timeout)
        out = []
        for ref in ready:
            self._refs.discard(ref)
            try:
                status, payload = self.ray.get(ref)
            except self.ray.exceptions.RayError as e:  # the task failed past its retries
                status, payload = "failed", f"Ray task failed: {reason(e)}"
            out.append((ref, status, payload))
        return out

    def stop(self, ticket: Hashable) -> None:
        self._refs.discard(ticket)
        self.ray.cancel(ticket, force=True)

    def close(self) -> None:
        for ref in self._refs:
            self.ray.cancel(ref, force=True)
        self._refs.clear()
