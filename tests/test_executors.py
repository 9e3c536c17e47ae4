"""Every executor ends a failed, a lost and an interrupted run the same way, and says so in the same words
(the Ray executor goes through the same scenario in test_ray.py, beside its cluster)."""

from __future__ import annotations

import pytest

from executor_scenario import check_the_same_ends, run_scenario

# Worker processes, a takeover and a Ctrl-C: the fault tests of the full run, each done in about a minute.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.mark.parametrize("executor, options", [("local", {}), ("packed", {"pack": 2})])
def test_failed_lost_and_interrupted_runs_end_alike(tmp_path, caplog, executor, options):
    check_the_same_ends(*run_scenario(str(tmp_path / "r.db"), executor, caplog, **options))
