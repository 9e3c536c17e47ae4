"""Whether a process of this machine is still alive: what a stale claim, a stale cache temporary and a stale
thread share are each judged by."""

from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    """True while process `pid` exists (another user's process counts: a signal to it is refused, not lost)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
