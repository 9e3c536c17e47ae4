import os
import pickle

import pytest
import torch

from resizelab.data import DataError, balanced_subset, load_cifar, load_dataset, load_imagefolder, make_synthetic
from resizelab.errors import DataUnavailable

from conftest import write_cifar10, write_imagefolder


def test_synthetic_is_deterministic_balanced_uint8():
    a, b = make_synthetic(200, 50, seed=3), make_synthetic(200, 50, seed=3)
    assert a.train_images.dtype == torch.uint8 and a.train_images.shape == (200, 3, 32, 32)
    assert torch.equal(a.train_images, b.train_images) and torch.equal(a.test_labels, b.test_labels)
    assert not torch.equal(a.train_images, make_synthetic(200, 50, seed=4).train_images)
    counts = torch.bincount(a.train_labels, minlength=10)
    assert counts.min() >= 10 and a.num_classes == 10


def test_synthetic_at_any_size_is_generated_in_chunks_and_cached(monkeypatch, isolated_cache):
    import resizelab.data as data

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
    from resizelab.data import CIFAR

    # The real download code, pointed at a closed port: it fails the way an offline machine does.
    monkeypatch.setitem(CIFAR["cifar10"], "url", "http://127.0.0.1:9/cifar-10-python.tar.gz")
    with pytest.raises(DataUnavailable) as info:
        load_cifar("cifar10", tmp_path / "data")
    message = str(info.value)
    assert str(tmp_path / "data" / "cifar-10-batches-py") in message and "--data-dir" in message and "\n" not in message
