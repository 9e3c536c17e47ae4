"""A real results store filled by tiny real trainings, built once per test session and shared by the
DataFrame and MLflow tests (a module, not a conftest fixture, so those tests stay self-contained)."""

from __future__ import annotations

from pathlib import Path

import pytest

_BUILT: tuple | None = None


def build_tiny_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, dict]:
    """Sweep 'tiny': a 16 px run (2 epochs, also tested at 32 px) and a native-size run, both done.
    Sweep 'other': the 16 px run again, a failed run and a pending one.
    Returns (db path, {name: RunResult}, {name: config hash}); tests must not write to the db (copy it).
    """
    global _BUILT
    if _BUILT is not None:
        return _BUILT
    import torch

    from resizelab.core.config import RunConfig
    from resizelab.store.database import Store, new_owner_id
    from resizelab.training.engine import train
    from resizelab.training.planning import run_hash

    root = tmp_path_factory.mktemp("tiny_store")
    tiny = dict(data="synthetic", weights="none", limit_train=64, limit_test=32, precision="fp32")
    configs = {"16px": RunConfig(**tiny, epochs=2, size=16, test_sizes=(32,)), "native": RunConfig(**tiny, epochs=1),
               "failed": RunConfig(**tiny, epochs=1, size=24), "pending": RunConfig(**tiny, epochs=1, size=8)}
    hashes = {name: run_hash(cfg) for name, cfg in configs.items()}
    db = root / "runs.db"
    results = {}
    # Built once for the session, outside any one test's isolated_cache: isolate the caches here too.
    # One thread: 64 images gain nothing from a second one, and on a shared 2-core machine a contended
    # second OpenMP thread made these runs 5-20x slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("RESIZELAB_CACHE_DIR", str(root / "cache"))
            mp.setenv("RESIZELAB_DATA_DIR", str(root / "cache" / "data"))
            mp.setenv("TORCH_HOME", str(root / "cache" / "torch"))
            with Store(db) as store:
                store.register([configs["16px"], configs["native"]], sweep="tiny")
                store.register([configs["16px"], configs["failed"], configs["pending"]], sweep="other")
                owner = new_owner_id()
                for name in ("16px", "native"):
                    assert store.claim(hashes[name], owner)
                    results[name] = train(configs[name], progress=False)
                    store.complete(results[name], owner)
                assert store.claim(hashes["failed"], owner)
                store.fail(hashes["failed"], owner, "RunFailed: diverged: training loss 1e+09 after epoch 1")
    finally:
        torch.set_num_threads(threads)
    _BUILT = (db, results, hashes)
    return _BUILT
