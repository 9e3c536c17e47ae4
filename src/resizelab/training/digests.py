"""Naming data by content: SHA-256 of files, a dataset's content key, and their memo (for this process, by each
file's size, times and inode, and in the cache folder for the next process)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ..core.paths import cache_root


_digest_memo: dict[tuple, str] = {}


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes; remembered for this process while the file's size, times and inode stay the same."""
    path = Path(path)
    st = path.stat()
    signature = (str(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    digest = _digest_memo.get(signature)
    if digest is None:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        digest = _digest_memo[signature] = h.hexdigest()
    return digest


_key_memo: dict[tuple, str] = {}


def name_bytes(text: str) -> bytes:
    """UTF-8 of text holding file names: a name's byte that is not UTF-8 comes from the OS as a surrogate escape,
    which plain .encode() refuses; surrogateescape gives back the name's own bytes (and UTF-8 names as before)."""
    return text.encode("utf-8", "surrogateescape")


def listing_signature(files: list[str]) -> str:
    """Each file's name, size, times and inode: what changes when a file is added, removed, renamed or
    written, read from the directory entries without opening a file (the same test as file_sha256's)."""
    h = hashlib.sha256()
    for f in files:
        st = os.stat(f)
        h.update(name_bytes(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\0{st.st_ino}\n"))
    return h.hexdigest()


def remembered_key(where: tuple, files: list[str], compute) -> str:
    """`compute()` (a dataset's content key), remembered by `where` and the listing's signature, for this
    process and in the cache folder for the next one: listing and stat-ing a tree is a fraction of reading
    and hashing it (a `--dry-run` of the 6,000-image sample is 1.8 s of CPU less per command)."""
    signature = listing_signature(files)
    memo_key = (*where, signature)
    key = _key_memo.get(memo_key)
    if key is None:
        name = hashlib.sha256(repr(memo_key).encode()).hexdigest()[:32]
        path = cache_root() / "digests" / name
        try:
            key = path.read_text().strip()
        except OSError:
            key = ""
        if len(key) != 16 or not all(c in "0123456789abcdef" for c in key):
            key = compute()
            write_small(path, key)
        _key_memo[memo_key] = key
    return key


def write_small(path: Path, text: str) -> None:
    """Write a few bytes atomically; a cache folder that cannot be written only costs a recomputation next time."""
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:  # no folder to hold it (a cache "folder" that is a file): nothing was written
            pass


def content_key(kind: str, root: Path, files: list[Path], extra: str = "") -> str:
    """What a dataset holds: every file's place below `root` and its bytes (and `extra`, what the files do not
    show), so the key follows the content (an edited image changes it) and not the location (a moved or
    copied folder keeps it)."""
    h = hashlib.sha256(kind.encode())
    for f in sorted(files):
        h.update(name_bytes(f"{f.relative_to(root).as_posix()}\0{file_sha256(f)}\n"))
    if extra:
        h.update(name_bytes(extra))
    return h.hexdigest()[:16]
