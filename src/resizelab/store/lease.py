"""Holding a claimed run: the lease protocol, and the only ways a claim ends.

A run is claimed (owner + expiry), the claim is renewed from a thread while the run trains, and the run
ends as completed, failed or released, each only by the owner that holds the claim. A dead owner's claim
lapses, so another sweep picks the run up; a live owner whose claim was taken over learns it at its next
renewal and stops.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from typing import Any

from ..core.errors import ResizelabError
from .database import DEFAULT_LEASE_SECONDS, LeaseLost, Store  # noqa: F401 - LeaseLost is what a lease raises
from .weights import complete_run


class Lease:
    """One claimed run and the only ways its claim ends: `complete`, `fail` or `release`, each by its owner.

    While it is held, a thread renews it every third of `lease_seconds` on a connection of its own. When a
    renewal finds the run held by someone else (the lease lapsed while this process stalled, or a process
    that thought this one dead took it over), `lost` is set and `check()`, which training calls between
    steps, raises LeaseLost: the run stops within one renewal period and nothing of it is stored here.
    `cli run`, the local executor and the Ray executor all claim through here.
    """

    def __init__(self, store: Store, config_hash: str, owner: str, lease_seconds: float = DEFAULT_LEASE_SECONDS):
        self.store, self.config_hash, self.owner, self.lease_seconds = store, config_hash, owner, lease_seconds
        self.lost = threading.Event()
        self.lost_to: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self, *, retry_failed: bool = False, force: bool = False) -> bool:
        """Claim the run and start renewing the claim; False when it is done, failed or held by a live owner.

        Call it inside the try whose handler calls release(): an interrupt that lands just after the claim
        committed then still gives it back (release is a no-op for a claim that never committed)."""
        if not self.store.claim(self.config_hash, self.owner, self.lease_seconds, retry_failed=retry_failed, force=force):
            return False
        self._thread = threading.Thread(target=self._renew, name=f"lease-{self.config_hash}", daemon=True)
        self._thread.start()
        return True

    def _renew(self) -> None:
        expires = time.time() + self.lease_seconds
        try:
            store = Store(self.store.path, timeout=max(0.5, self.lease_seconds / 3))
        except ResizelabError:
            store = None
        try:
            while not self._stop.wait(self.lease_seconds / 3):
                if store is None:
                    held = time.time() < expires
                else:
                    try:
                        held = store.heartbeat(self.config_hash, self.owner, self.lease_seconds)
                        if held:
                            expires = time.time() + self.lease_seconds
                    except ResizelabError:
                        # A busy or locked database: the claim stands until its expiry; past that, others may take it.
                        held = time.time() < expires
                if not held:
                    if store is not None:
                        try:
                            self.lost_to = store.holder(self.config_hash)
                        except (ResizelabError, sqlite3.Error):
                            pass
                    self.lost.set()
                    return
        finally:
            if store is not None:
                store.close()

    def check(self) -> None:
        """Raise LeaseLost once the claim is gone; cheap enough to call between training steps."""
        if self.lost.is_set():
            by = f"by {self.lost_to}" if self.lost_to else "after its lease lapsed"
            raise LeaseLost(f"run {self.config_hash} was taken over {by}; this process ({self.owner}) stopped training it "
                            "and stores nothing")

    def stop_renewing(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)

    def complete(self, result) -> None:
        self.stop_renewing()
        self.check()
        complete_run(self.store, result, self.owner)  # saves the trained weights first when --save-weights asked

    def fail(self, reason: str) -> None:
        self.stop_renewing()
        self.check()
        self.store.fail(self.config_hash, self.owner, reason)

    def release(self) -> bool:
        self.stop_renewing()
        return self.store.release(self.config_hash, self.owner)

    def __enter__(self) -> "Lease":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop_renewing()


def lost_reason(lease: Lease) -> str:
    """Why `lease` was lost, as LeaseLost would say it."""
    try:
        lease.check()
    except LeaseLost as e:
        return str(e)
    return "lease lost"
