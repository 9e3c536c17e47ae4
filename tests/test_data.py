import os
import pickle

import numpy as np
import pytest
import torch

from resizelab.training.data import DataError, balanced_subset, load_cifar, load_dataset, load_imagefolder, make_synthetic
from resizelab.core.errors import DataUnavailable
from resizelab.store.database import Store

from conftest import write_cifar10, write_imagefolder


def test_synthetic_is_deterministic_balanced_uint8():
    a, b = make_synthetic(200, 50, seed=3), make_synthetic(200, 50, seed=3)
    assert a.train_images.dtype == torch.uint8 and a.train_images.shape == (200, 3, 32, 32)
    assert torch.equal(a.train_images, b.train_images) and torch.equal(a.test_labels, b.test_labels)
    assert not torch.equal(a.train_images, make_synthetic(200, 50, seed=4).train_images)
    counts = torch.bincount(a.train_labels, minlength=10)
    assert counts.min() >= 10 and a.num_classes == 10


def test_synthetic_at_any_size_is_generated_in_chunks_and_cached(monkeypatch, isolated_cache):
    import resizelab.training.data as data

    d = load_dataset("synthetic:300")  # 300 train, 300 / 5 test
    assert (len(d.train_labels), len(d.test_labels)) == (300, 60)
    assert torch.bincount(torch.cat([d.train_labels, d.test_labels])).tolist() == [36] * 10
    assert len(list((isolated_cache / "datasets").glob("synthetic-300-60-*.pt"))) == 1
    # Chunk boundaries inside the set change nothing: every random draw is made before the chunks.
    monkeypatch.setattr(data, "SYNTHETIC_CHUNK", 64)
    chunked = make_synthetic(300, 60)
    assert torch.equal(chunked.train_images, d.train_images) and torch.equal(chunked.test_images, d.test_images)
    again = load_dataset("synthetic:300")  # read back from the cache file, same tensors, same key
    assert torch.equal(again.train_images, d.train_images) and again.key == d.key
    other = load_dataset("synthetic:300:7")
    assert len(other.test_labels) == 7 and other.key != d.key
    assert torch.equal(load_dataset("synthetic").train_images, make_synthetic().train_images)


def test_balanced_subset_spreads_over_classes():
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 5)
    idx = balanced_subset(labels, 15, seed=0)
    assert torch.bincount(labels[idx], minlength=3).tolist() == [5, 5, 5]
    assert torch.equal(idx, balanced_subset(labels, 15, seed=0))
    assert len(balanced_subset(labels, 1000)) == len(labels)


def test_imagefolder_loads_and_caches(imagefolder, isolated_cache):
    ds = load_imagefolder(imagefolder)
    assert ds.classes == ("cat", "dog", "ship")
    assert ds.train_images.shape == (60, 3, 32, 32) and ds.test_images.shape == (18, 3, 32, 32)
    # class k is dominated by channel k: the decode kept channel order and labels
    assert ds.train_images[ds.train_labels == 2][:, 2].float().mean() > 150
    cached = list((isolated_cache / "datasets").glob("*.pt"))
    assert len(cached) == 1
    again = load_imagefolder(imagefolder)
    assert torch.equal(again.train_images, ds.train_images)


def test_imagefolder_other_formats_and_test_split(tmp_path):
    root = write_imagefolder(tmp_path / "jpg", fmt="jpg")
    os.rename(root / "val", root / "test")
    assert load_dataset(f"imagefolder:{root}").test_images.shape[0] == 18


def test_imagefolder_errors_are_one_clear_line(tmp_path):
    with pytest.raises(DataError, match="expected .*/train/<class>"):
        load_imagefolder(tmp_path)
    root = write_imagefolder(tmp_path / "bad")
    (root / "train" / "cat" / "0.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match="not a readable image"):
        load_imagefolder(root)


def test_cifar_folder_is_read_as_is(tmp_path):
    write_cifar10(tmp_path / "cifar-10-batches-py")
    ds = load_cifar("cifar10", tmp_path)
    assert ds.train_images.shape == (100, 3, 32, 32) and ds.test_images.shape == (20, 3, 32, 32)
    assert ds.classes[0] == "airplane"


@pytest.mark.parametrize("batch, labels, message", [
    ("test_batch", [99] * 20, "test labels run from .* to 99 but there are 10 classes"),
    ("data_batch_2", [-1] + [0] * 19, "train labels run from -1"),
    ("data_batch_1", [0.5] * 20, "labels must be integers, got float64"),
])
def test_cifar_labels_outside_the_class_list_are_refused(tmp_path, batch, labels, message):
    folder = write_cifar10(tmp_path / "cifar-10-batches-py")
    data = pickle.loads((folder / batch).read_bytes())
    data[b"labels"] = labels
    (folder / batch).write_bytes(pickle.dumps(data, protocol=2))
    with pytest.raises(DataError, match=message) as info:
        load_cifar("cifar10", tmp_path)
    assert "\n" not in str(info.value)


def test_a_cifar_batch_repickled_with_protocol_5_is_read_like_the_original(tmp_path):
    folder = write_cifar10(tmp_path / "cifar-10-batches-py")
    original = load_cifar("cifar10", tmp_path)
    for name in ["data_batch_1", "test_batch", "batches.meta"]:
        (folder / name).write_bytes(pickle.dumps(pickle.loads((folder / name).read_bytes()), protocol=5))
    again = load_cifar("cifar10", tmp_path)  # new bytes, a new digest: decoded again, not read from the cache
    assert again.key != original.key
    assert torch.equal(again.train_images, original.train_images) and torch.equal(again.test_labels, original.test_labels)


def test_a_float32_cifar_batch_is_described_by_its_dtype(tmp_path):
    folder = write_cifar10(tmp_path / "cifar-10-batches-py")
    data = pickle.loads((folder / "data_batch_1").read_bytes())
    data[b"data"] = data[b"data"].astype(np.float32) / 255
    (folder / "data_batch_1").write_bytes(pickle.dumps(data, protocol=2))
    with pytest.raises(DataError, match=r"expected uint8 'data' of shape N x 3072 \(bytes 0-255\), got float32 of shape 20 x 3072"):
        load_cifar("cifar10", tmp_path)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned-marker",))


def test_malicious_pickle_is_refused_and_not_run(tmp_path, monkeypatch):
    folder = write_cifar10(tmp_path / "cifar-10-batches-py")
    (folder / "data_batch_3").write_bytes(pickle.dumps({b"data": _Exploit(), b"labels": []}, protocol=2))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match="unsafe or corrupt pickle .*refused global (posix|os).system"):
        load_cifar("cifar10", tmp_path)
    assert not (tmp_path / "pwned-marker").exists()


def test_corrupt_cifar_batch_is_a_clear_error(tmp_path):
    folder = write_cifar10(tmp_path / "cifar-10-batches-py")
    (folder / "test_batch").write_bytes(b"\x80\x02garbage")
    with pytest.raises(DataError, match="test_batch"):
        load_cifar("cifar10", tmp_path)


def test_offline_cifar_names_the_expected_path(tmp_path, monkeypatch):
    from resizelab.training.data import CIFAR

    # The real download code, pointed at a closed port: it fails the way an offline machine does.
    monkeypatch.setitem(CIFAR["cifar10"], "url", "http://127.0.0.1:9/cifar-10-python.tar.gz")
    with pytest.raises(DataUnavailable) as info:
        load_cifar("cifar10", tmp_path / "data")
    message = str(info.value)
    assert str(tmp_path / "data" / "cifar-10-batches-py") in message and "--data-dir" in message and "\n" not in message


def test_a_symlink_loop_in_an_imagefolder_is_refused(tmp_path):
    root = write_imagefolder(tmp_path / "loop", n_train=4, n_val=2)
    # Followed blindly, this link repeats the whole train tree under cat/ again and again, relabelled cat.
    os.symlink(root / "train", root / "train" / "cat" / "again")
    with pytest.raises(DataError, match="symbolic link loop") as info:
        load_imagefolder(root)
    assert "\n" not in str(info.value)
    os.unlink(root / "train" / "cat" / "again")
    os.symlink(root / "train" / "dog", root / "train" / "cat" / "dogs")  # another class's images, relabelled cat
    with pytest.raises(DataError, match="link to another class"):
        load_imagefolder(root)


def test_a_16_bit_png_keeps_its_grey_levels(tmp_path):
    import numpy as np
    from PIL import Image

    root = write_imagefolder(tmp_path / "deep", n_train=2, n_val=1)
    grey = np.full((32, 32), 32768, dtype=np.uint16)  # mid-grey in 16 bits
    Image.fromarray(grey).save(root / "train" / "cat" / "0.png")
    assert Image.open(root / "train" / "cat" / "0.png").mode.startswith("I")
    ds = load_imagefolder(root)
    first = ds.train_images[0]  # train/cat/0.png sorts first
    assert first.unique().tolist() == [128]  # not clipped to 255


def test_a_decompression_bomb_is_one_line(tmp_path):
    import struct
    import zlib

    root = write_imagefolder(tmp_path / "bomb", n_train=2, n_val=1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    # A 20000 x 20000 RGB PNG header: 400 M pixels, over twice PIL's limit, refused before any decoding.
    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
    (root / "train" / "cat" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))
    with pytest.raises(DataError, match="decompression bomb") as info:
        load_imagefolder(root)
    assert "\n" not in str(info.value) and "1.png" in str(info.value)


def test_a_damaged_cache_file_fails_its_checksum_and_is_rebuilt(imagefolder, isolated_cache, capsys):
    ds = load_imagefolder(imagefolder)
    (cached,) = (isolated_cache / "datasets").glob("*.pt")
    blob = bytearray(cached.read_bytes())
    # Flip bits inside the stored pixels: the zip container still opens, only the checksum can tell.
    import zipfile

    with zipfile.ZipFile(cached) as z:
        info = max(z.infolist(), key=lambda i: i.file_size)  # the train images
        offset = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra) + info.file_size // 2
    blob[offset] ^= 0xFF
    cached.write_bytes(bytes(blob))
    from resizelab.training.tensorcache import load_tensors

    assert load_tensors(cached) is None and not cached.exists()
    assert "checksum mismatch" in capsys.readouterr().err
    again = load_imagefolder(imagefolder)
    assert torch.equal(again.train_images, ds.train_images)


@pytest.mark.slow
def test_a_cache_that_cannot_be_written_leaves_no_temporary_file_and_the_run_goes_on(tmp_path):
    import resource
    import subprocess
    import sys

    cache = tmp_path / "cache"
    db = tmp_path / "r.db"
    # A file-size limit makes every write past 1 MiB fail as a full disk does (Python ignores SIGXFSZ, so the
    # write returns EFBIG): the resized split (2 MiB) cannot be cached, the store (small) can still be written.
    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    env = dict(os.environ, RESIZELAB_CACHE_DIR=str(cache))
    proc = subprocess.run([sys.executable, "-m", "resizelab.cli", "run", "--data", "synthetic", "--size", "12", "--epochs", "1",
                           "--limit-test", "20", "--batch-size", "1000", "--weights", "none", "--precision", "fp32", "--db", str(db), "--quiet"],
                          env=env, preexec_fn=limit, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "not written" in proc.stderr and "the run goes on" in proc.stderr
    assert not list(cache.rglob("*.tmp*"))
    with Store(db) as store:
        assert [r["status"] for r in store.runs()] == ["done"]


def test_a_cache_folder_that_is_a_file_is_one_warning_and_the_data_still_loads(tmp_path, monkeypatch, capsys):
    import resizelab.training.data as data_module
    import resizelab.training.tensorcache as tensorcache

    (tmp_path / "cache").write_text("not a folder")
    monkeypatch.setenv("RESIZELAB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(tensorcache, "_warned", set())
    dataset = data_module.load_dataset("synthetic:40:20")
    assert len(dataset.train_labels) == 40
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"{tmp_path / 'cache'} is a file, not a folder: point RESIZELAB_CACHE_DIR" in err


def test_the_imagefolder_listing_is_torchvisions(tmp_path):
    """Listed without importing torchvision (seconds of a planning process), yet as its ImageFolder lists."""
    from torchvision.datasets import ImageFolder
    from torchvision.datasets.folder import IMG_EXTENSIONS as TORCHVISION_EXTENSIONS

    from resizelab.training.data import IMG_EXTENSIONS, _image_paths

    assert IMG_EXTENSIONS == TORCHVISION_EXTENSIONS
    root = write_imagefolder(tmp_path / "images", n_train=3, n_val=1, classes=("b", "a", "c"))
    (root / "train" / "a" / "notes.txt").write_text("not an image")
    (root / "train" / "a" / "x.JPEG").write_bytes((root / "train" / "a" / "0.png").read_bytes())
    reference = ImageFolder(str(root / "train"))
    assert _image_paths(root / "train") == (reference.classes, reference.samples)
    with pytest.raises(DataError, match="Couldn't find any class folder"):
        _image_paths(root / "train" / "a")


def test_an_imagefolder_file_name_that_is_not_utf8_is_read_and_named_by_its_bytes(tmp_path, isolated_cache):
    """A name with a byte that is not UTF-8 (a Latin-1 'é') reaches Python as a surrogate escape; the data's digests
    take the name's own bytes instead of failing to encode it."""
    root = write_imagefolder(tmp_path / "imgs", n_train=4, n_val=2, size=16)
    folder = os.fsencode(root / "train" / "cat")
    os.rename(folder + b"/0.png", folder + b"/caf\xe9.png")
    first = load_imagefolder(str(root))
    assert len(first.train_labels) == 12 and load_imagefolder(str(root)).key == first.key
    # The key follows the name: the same bytes under another name are another dataset.
    os.rename(folder + b"/caf\xe9.png", folder + b"/caf\xe8.png")
    assert load_imagefolder(str(root)).key != first.key
