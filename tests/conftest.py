"""Shared fixtures: an isolated cache, tiny ImageFolder trees and CIFAR-format folders written on the fly."""

from __future__ import annotations

import http.server
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch


# CI installs every optional dependency (make test) and Chromium (.ci/run), then sets this: a test skipped there
# means something it needs did not install, and a green run would hide that the test never ran.
REQUIRE_ALL = "RESIZELAB_REQUIRE_ALL_TESTS"


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    skipped = terminalreporter.stats.get("skipped", [])
    if os.environ.get(REQUIRE_ALL) and skipped:
        terminalreporter.write_line(f"{len(skipped)} skipped while {REQUIRE_ALL} is set: every test must run here", red=True)


def pytest_sessionfinish(session, exitstatus):
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if os.environ.get(REQUIRE_ALL) and exitstatus == 0 and reporter is not None and reporter.stats.get("skipped"):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(autouse=True, scope="session")
def ctrl_c_raises():
    """The interrupt tests simulate Ctrl-C with _thread.interrupt_main, which does nothing while SIGINT is
    ignored, as it is in a process a shell started in the background (`make test &`, nohup): there they would
    wait for a Ctrl-C that never comes. Python's own handler for the session, as in a terminal."""
    import signal

    before = signal.getsignal(signal.SIGINT)
    if before is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    if before is signal.SIG_IGN:
        signal.signal(signal.SIGINT, before)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """No test reads or writes the user's caches."""
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("RESIZELAB_CACHE_DIR", str(cache))
    monkeypatch.setenv("RESIZELAB_DATA_DIR", str(cache / "data"))
    monkeypatch.setenv("TORCH_HOME", str(cache / "torch"))
    torch.set_num_threads(2)
    return cache


def error_lines(stderr: str) -> list[str]:
    """The error lines of a command's stderr, without the progress lines that came before them."""
    return [line for line in stderr.splitlines() if line.startswith("resizelab: error: ")]


@pytest.fixture
def one_thread():
    """One intra-op thread for a test that trains tiny batches: on a busy shared machine a second thread's barrier
    waits made single steps take seconds (and timings meaningless)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_imagefolder(root: Path, n_train: int = 20, n_val: int = 6, size: int = 32, classes=("cat", "dog", "ship"), fmt: str = "png") -> Path:
    """Class k is an image dominated by colour channel k, so a model can tell them apart."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("val", n_val)):
        for k, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                img = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
                img[..., k % 3] += 150
                Image.fromarray(img).save(folder / f"{i}.{fmt}")
    return root


@pytest.fixture
def imagefolder(tmp_path) -> Path:
    return write_imagefolder(tmp_path / "images")


def write_cifar10(folder: Path, n_per_batch: int = 20) -> Path:
    """A CIFAR-10 folder in the original pickle format (small batches)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8),
                 b"labels": [int(x) for x in rng.integers(0, 10, n_per_batch)]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    meta = {b"label_names": [n.encode() for n in ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return folder


@pytest.fixture
def serve_files(tmp_path_factory, monkeypatch):
    """An HTTP server on 127.0.0.1 serving a temporary folder: where a download's bytes come from in a test.

    Yields (folder, base_url); the download code under test is the real one, only the address is local.
    """
    import functools
    import threading

    folder = tmp_path_factory.mktemp("served")
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - http.server's signature
        pass


def cifar10_archive(path: Path, n_per_batch: int = 20) -> tuple[Path, str]:
    """cifar-10-python.tar.gz as the original is laid out (cifar-10-batches-py/...); returns (path, md5)."""
    import hashlib
    import tarfile
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        folder = write_cifar10(Path(tmp) / "cifar-10-batches-py", n_per_batch)
        with tarfile.open(path, "w:gz") as tar:
            tar.add(folder, arcname="cifar-10-batches-py")
    return path, hashlib.md5(path.read_bytes()).hexdigest()
