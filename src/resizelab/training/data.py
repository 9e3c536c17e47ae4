"""Datasets held in memory as uint8 N x 3 x H x W tensors: CIFAR-10/100, ImageFolder trees, synthetic.

Every source is decoded once and cached as one file, so later runs reload in a fraction of a second.
Data directories are untrusted input: CIFAR's pickled batches go through a restricted unpickler.
"""

from __future__ import annotations

import functools
import json
import os
import pickle
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..core.choices import DATASETS
from ..core.config import synthetic_spec
from ..core.paths import cache_root, default_data_dir
from ..core.errors import ConfigError, DataUnavailable, ResizelabError, first_line
from ..core.log import logger
from .digests import content_key, remembered_key
from .tensorcache import load_tensors, save_tensors


class DataError(ResizelabError):
    """A data file exists but is corrupt, unsafe or inconsistent."""


@dataclass(frozen=True)
class Dataset:
    name: str
    classes: tuple[str, ...]
    train_images: torch.Tensor  # uint8, N x 3 x H x W
    train_labels: torch.Tensor  # int64, N
    test_images: torch.Tensor
    test_labels: torch.Tensor
    key: str  # identifies the decoded content; resized caches hang off it

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def native_size(self) -> tuple[int, int]:
        return tuple(self.train_images.shape[-2:])  # type: ignore[return-value]


# --- locations -------------------------------------------------------------------------------

# --- CIFAR -----------------------------------------------------------------------------------

CIFAR = {
    "cifar10": {
        "folder": "cifar-10-batches-py",
        "url": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "filename": "cifar-10-python.tar.gz",
        "md5": "c58f30108f718f92721af3b95e74349a",
        "train": [f"data_batch_{i}" for i in range(1, 6)],
        "test": ["test_batch"],
        "meta": ("batches.meta", b"label_names"),
        "label_key": b"labels",
    },
    "cifar100": {
        "folder": "cifar-100-python",
        "url": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "filename": "cifar-100-python.tar.gz",
        "md5": "eb9058c3a382ffc7106e4002c42a8d85",
        "train": ["train"],
        "test": ["test"],
        "meta": ("meta", b"fine_label_names"),
        "label_key": b"fine_labels",
    },
}

# The only globals a CIFAR batch needs: numpy's array reconstruction, and _codecs.encode, which
# Python 3's protocol-2 pickles use to rebuild bytes. Anything else (os.system, builtins.eval, ...)
# is how a malicious pickle runs code, so it is refused.
_SAFE_PICKLE_GLOBALS = {
    ("_codecs", "encode"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    # Pickle protocol 5 rebuilds an array from its bytes with this (frombuffer + reshape): data, no code.
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):  # noqa: D401 - pickle API
        if (module, name) in _SAFE_PICKLE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused global {module}.{name}")


def safe_unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            obj = _RestrictedUnpickler(f, encoding="latin1").load()
    except pickle.UnpicklingError as e:
        raise DataError(f"{path}: unsafe or corrupt pickle ({e}); replace it with the original CIFAR file") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError) as e:
        raise DataError(f"{path}: corrupt pickle ({type(e).__name__}: {e}); replace it with the original CIFAR file") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a CIFAR batch (a dict), got {type(obj).__name__}")
    return obj


def _cifar_files(name: str) -> list[str]:
    spec = CIFAR[name]
    return spec["train"] + spec["test"] + [spec["meta"][0]]


def _looks_like_pickle(path: Path) -> bool:
    """A regular, non-empty file that opens with a pickle protocol marker: cheap enough for `env`,
    and what tells a CIFAR batch from a folder or an image of the same name. Decoding checks the rest."""
    try:
        with open(path, "rb") as f:
            return path.is_file() and f.read(1) == b"\x80"
    except OSError:
        return False


def _find_cifar_folder(name: str, data_dir: Path) -> Path | None:
    """The folder holding `name`'s batches, found by content: the folder itself or its usual subfolder."""
    for candidate in (data_dir / CIFAR[name]["folder"], data_dir):
        if all(_looks_like_pickle(candidate / f) for f in _cifar_files(name)):
            return candidate
    return None


def describe_folder(path: Path) -> str:
    """What a data directory holds, in words, for messages that say why a dataset was not found there."""
    if not path.exists():
        return "does not exist"
    if not path.is_dir():
        return "is not a folder"
    for other in CIFAR:
        if _find_cifar_folder(other, path):
            return f"holds {other}"
    if (path / "train").is_dir() and any((path / d).is_dir() for d in ("val", "test")):
        return f"holds an ImageFolder tree (use --data imagefolder:{path})"
    for name, spec in CIFAR.items():
        folder = path / spec["folder"]
        if folder.is_dir():
            bad = [f for f in _cifar_files(name) if not _looks_like_pickle(folder / f)]
            return f"holds an incomplete or corrupt {spec['folder']} ({', '.join(bad[:3])} missing or unreadable)"
    return "holds no CIFAR batches"


def _download_cifar(name: str, data_dir: Path) -> Path:
    """Download, verify (MD5), extract and check the archive in a scratch folder, then move the extracted
    folder into place: a failed, corrupt or truncated download leaves nothing that a later run would trust.

    An archive already at data_dir/<filename> with the right checksum (fetched on another machine) is
    used instead of downloading.
    """
    import contextlib
    import io
    import shutil
    import tarfile
    import tempfile
    import zlib

    from torchvision.datasets.utils import check_integrity, download_url, extract_archive

    spec = CIFAR[name]
    expected = data_dir / spec["folder"]
    archive = data_dir / spec["filename"]
    scratch = None
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".{name}-download-", dir=data_dir))
        if check_integrity(str(archive), spec["md5"]):
            source = archive
        else:
            # torchvision announces on stdout, which belongs to --json output; success is said below, so
            # that an offline failure stays the one line of the error.
            with contextlib.redirect_stdout(sys.stderr if sys.stderr.isatty() else io.StringIO()):
                download_url(spec["url"], str(scratch), filename=spec["filename"], md5=spec["md5"])
            source = scratch / spec["filename"]
            logger.info("downloaded %s (%.0f MiB, MD5 verified)", spec["url"], source.stat().st_size / 2**20)
        extract_archive(str(source), str(scratch))
        if _find_cifar_folder(name, scratch / spec["folder"]) is None:
            raise DataError(f"the archive {spec['filename']} holds no complete {spec['folder']} folder")
        os.replace(scratch / spec["folder"], expected)
    # What a failed download or a bad archive raises: no route or HTTP error (URLError is an OSError),
    # torchvision's RuntimeError for a checksum mismatch, and tar/gzip errors for a truncated file.
    except (OSError, RuntimeError, EOFError, tarfile.TarError, zlib.error, DataError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataUnavailable(
            f"{name} not found at {expected} ({data_dir} {describe_folder(data_dir)}) and the download from {spec['url']} "
            f"failed ({reason}); put the extracted '{spec['folder']}' folder or {spec['filename']} there, "
            f"or pass --data-dir DIR / set RESIZELAB_DATA_DIR to the folder that holds it"
        ) from None
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    return expected


def _decode_cifar_batches(folder: Path, files: list[str], label_key: bytes) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = [], []
    for fname in files:
        path = folder / fname
        if not path.exists():
            raise DataError(f"{path} is missing; the CIFAR folder {folder} is incomplete (re-extract the archive)")
        batch = safe_unpickle(path)
        data, lab = batch.get(b"data", batch.get("data")), batch.get(label_key, batch.get(label_key.decode()))
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
            got = (f"{data.dtype} of shape {' x '.join(map(str, data.shape))}" if isinstance(data, np.ndarray)
                   else type(data).__name__)
            raise DataError(f"{path}: expected uint8 'data' of shape N x 3072 (bytes 0-255), got {got}; "
                            "replace it with the original CIFAR file")
        if lab is None or len(lab) != data.shape[0]:
            raise DataError(f"{path}: labels missing or not one per image")
        lab = np.asarray(lab)
        if lab.dtype.kind not in "iu":
            raise DataError(f"{path}: labels must be integers, got {lab.dtype}; replace it with the original CIFAR file")
        images.append(torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()))
        labels.append(torch.as_tensor(lab.astype(np.int64)))
    return torch.cat(images), torch.cat(labels)


def load_cifar(name: str, data_dir: Path | None = None, *, download: bool = True) -> Dataset:
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    spec = CIFAR[name]
    folder = _find_cifar_folder(name, data_dir)
    partial = data_dir / spec["folder"]
    if folder is None and partial.is_dir():
        # Downloading over a damaged folder would hide what happened to it: say so instead.
        bad = [f for f in _cifar_files(name) if not _looks_like_pickle(partial / f)]
        raise DataError(f"{partial} is incomplete or corrupt ({', '.join(bad[:3])} missing or unreadable); "
                        "delete it to download again, or re-extract the archive there")
    if folder is None:
        if not download:
            raise DataUnavailable(f"{name} not found at {data_dir / spec['folder']}; put the extracted folder there or pass --data-dir")
        folder = _download_cifar(name, data_dir)
    key = _cifar_key(name, folder)

    def decode() -> dict:
        tr_x, tr_y = _decode_cifar_batches(folder, spec["train"], spec["label_key"])
        te_x, te_y = _decode_cifar_batches(folder, spec["test"], spec["label_key"])
        meta_file, meta_key = spec["meta"]
        meta = safe_unpickle(folder / meta_file)
        names = meta.get(meta_key, meta.get(meta_key.decode()))
        if not isinstance(names, list) or not names:
            raise DataError(f"{folder / meta_file}: no class names under {meta_key.decode()!r}; replace it with the original CIFAR file")
        classes = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
        # A label outside the class list would be stored as a 0% class or crash mid-run: refuse it here.
        for split, labels in (("train", tr_y), ("test", te_y)):
            if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= len(classes)):
                raise DataError(f"{folder}: {split} labels run from {int(labels.min())} to {int(labels.max())} but there are "
                                f"{len(classes)} classes; replace the batches with the original CIFAR files")
        return {"train_images": tr_x, "train_labels": tr_y, "test_images": te_x, "test_labels": te_y, "classes": classes}

    return _from_cache(name, key, decode)


def _cifar_key(name: str, folder: Path) -> str:
    files = [folder / f for f in _cifar_files(name) if (folder / f).exists()]
    return remembered_key((name, str(folder.resolve())), [str(f) for f in files], lambda: content_key(name, folder, files))


def cifar_digest(name: str, data_dir: Path | None = None) -> str:
    """The content digest of the CIFAR batches that `load_cifar` would read (what names a CIFAR run's data)."""
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    folder = _find_cifar_folder(name, data_dir)
    if folder is None:
        raise DataUnavailable(f"{name} not found at {data_dir / CIFAR[name]['folder']} ({data_dir} {describe_folder(data_dir)}); "
                              "put the extracted folder there or pass --data-dir")
    return _cifar_key(name, folder)


# --- ImageFolder -----------------------------------------------------------------------------

# torchvision.datasets.folder.IMG_EXTENSIONS (a test keeps them equal): importing torchvision to read them
# would cost a planning process 1-3 s of imports (torchvision pulls in torch._dynamo) for one tuple.
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def _image_paths(root: Path) -> tuple[list[str], list[tuple[str, int]]]:
    """torchvision's ImageFolder listing (classes from folder names, files by extension, sorted), walked here so
    that a folder reached twice (a symlink loop, or a link to another class) is an error, not copies relabelled."""
    try:
        classes = sorted(entry.name for entry in os.scandir(root) if entry.is_dir())
        if not classes:  # torchvision's find_classes, worded as it does
            raise FileNotFoundError(f"Couldn't find any class folder in {root}.")
    except OSError as e:
        raise DataError(f"{root}: {e}; expected {root}/<class>/<image files>") from None
    class_to_idx = {name: i for i, name in enumerate(classes)}
    samples: list[tuple[str, int]] = []
    seen: dict[str, str] = {}
    for name in sorted(class_to_idx):
        for folder, _, files in sorted(os.walk(root / name, followlinks=True)):
            real = os.path.realpath(folder)
            if real in seen:
                raise DataError(f"{folder} is the folder {seen[real]} again (a symbolic link loop or a link to another class); "
                                "every image must be reachable once: remove the link")
            seen[real] = folder
            for fname in sorted(files):
                if fname.lower().endswith(IMG_EXTENSIONS):
                    samples.append((os.path.join(folder, fname), class_to_idx[name]))
    return classes, samples


def _decode_image(path: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
                # 16-bit grey: convert("RGB") would clip every value above 255 to white. Scale to 8 bits.
                wide = np.asarray(img, dtype=np.int64)
                if wide.min() < 0 or wide.max() > 65535:
                    raise DataError(f"{path}: a 32-bit integer image with values from {wide.min()} to {wide.max()}; "
                                    "save it as 8- or 16-bit PNG/JPEG")
                grey = np.round(wide / 257.0).astype(np.uint8)
                return np.repeat(grey[..., None], 3, axis=2)
            if img.mode == "F":
                raise DataError(f"{path}: a floating-point image has no fixed grey range; save it as an 8- or 16-bit image")
            return np.asarray(img.convert("RGB"))
    except Image.DecompressionBombError as e:
        raise DataError(f"{path}: refused as a decompression bomb ({e}); resize it below "
                        f"{Image.MAX_IMAGE_PIXELS} pixels first") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path}: not a readable image ({first_line(e)}); remove or replace it") from None


def _decode_images(samples: list[tuple[str, int]], root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    # PIL releases the GIL while decoding, so threads help without extra processes.
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) + 2)) as pool:
        arrays = list(pool.map(_decode_image, [p for p, _ in samples]))
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        examples = sorted(shapes)[:2]
        raise DataError(
            f"{root}: images have differing sizes ({examples[0][1]}x{examples[0][0]} and {examples[1][1]}x{examples[1][0]}); "
            "resizelab holds a dataset as one N x 3 x H x W tensor, so resize or crop them to one size first"
        )
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    labels = torch.tensor([c for _, c in samples], dtype=torch.int64)
    return images, labels


def _imagefolder_listing(path: str | Path) -> tuple[Path, Path, Path, list[str], list, list]:
    """(root, train dir, test dir, classes, train samples, test samples), checked; what load and digest share."""
    root = Path(path).resolve()
    train_dir = root / "train"
    test_dir = next((root / d for d in ("val", "test") if (root / d).is_dir()), None)
    if not train_dir.is_dir() or test_dir is None:
        raise DataError(f"{root}: expected {root}/train/<class>/* and {root}/val/<class>/* (or test/)")
    classes, train_samples = _image_paths(train_dir)
    test_classes, test_samples = _image_paths(test_dir)
    if test_classes != classes:
        raise DataError(f"{root}: class folders differ between train ({', '.join(classes)}) and {test_dir.name} ({', '.join(test_classes)})")
    if not train_samples or not test_samples:
        raise DataError(f"{root}: no images found under train/ or {test_dir.name}/")
    return root, train_dir, test_dir, classes, train_samples, test_samples


def imagefolder_digest(path: str | Path) -> str:
    """The content digest of an ImageFolder tree: each image's place (split/class/name) and bytes, and the class list."""
    root, _, _, classes, train_samples, test_samples = _imagefolder_listing(path)
    return _imagefolder_key(root, classes, train_samples + test_samples)


def _imagefolder_key(root: Path, classes: list[str], samples: list[tuple[str, int]]) -> str:
    # An empty class folder is still a class (one more output of the head, a row of the confusion matrix),
    # but it holds no file for the content key to see: name the classes no image names. Only those, so
    # the key of a tree without empty classes is what it always was (stored runs keep their names).
    used = {label for _, label in samples}
    empty = [c for i, c in enumerate(classes) if i not in used]
    extra = f"empty classes\0{json.dumps(empty)}" if empty else ""
    files = [p for p, _ in samples]
    # The listing's signature sees files only: the empty classes are part of where the key is remembered.
    where = ("imagefolder", str(root)) + ((extra,) if extra else ())
    return remembered_key(where, files, lambda: content_key("imagefolder", root, [Path(p) for p in files], extra))


def load_imagefolder(path: str | Path) -> Dataset:
    root, train_dir, test_dir, classes, train_samples, test_samples = _imagefolder_listing(path)
    key = _imagefolder_key(root, classes, train_samples + test_samples)

    def decode() -> dict:
        tr_x, tr_y = _decode_images(train_samples, train_dir)
        te_x, te_y = _decode_images(test_samples, test_dir)
        if tr_x.shape[1:] != te_x.shape[1:]:
            raise DataError(f"{root}: train images are {tuple(tr_x.shape[2:])} but {test_dir.name} images are {tuple(te_x.shape[2:])}")
        return {"train_images": tr_x, "train_labels": tr_y, "test_images": te_x, "test_labels": te_y, "classes": classes}

    return _from_cache("imagefolder", key, decode)


# --- synthetic -------------------------------------------------------------------------------

# Images generated at a time: the float intermediates of 50,000 images at once would take ~3.5 GB.
SYNTHETIC_CHUNK = 8192
# Part of the cache key: a change to the generator must not be answered by an old cached copy.
SYNTHETIC_VERSION = 1


@functools.lru_cache(maxsize=2)  # generated, not read: remembered so a sweep (or a forked one) makes it once
def make_synthetic(n_train: int = 5000, n_test: int = 1000, size: int = 32, seed: int = 0) -> Dataset:
    """Ten classes whose cues live at two spatial scales, so input resolution matters.

    Class c = (coarse, fine) with coarse = c // 2 and fine = c % 2. The coarse cue is where a large
    soft blob sits (five places); the fine cue is the orientation of a faint grating with a period of
    about 3 px. A 2x downsample with antialiasing blurs the grating away and leaves the coarse cue,
    so accuracy falls towards 50% (coarse right, fine guessed) as the input shrinks.
    """
    gen = torch.Generator().manual_seed(seed)
    n = n_train + n_test
    labels = torch.arange(n) % 10
    labels = labels[torch.randperm(n, generator=gen)]
    coarse, fine = labels // 2, labels % 2
    q = size / 4
    centres = torch.tensor([[q, q], [q, 3 * q], [3 * q, q], [3 * q, 3 * q], [2 * q, 2 * q]])
    # Every random draw is made for all images first, in one order, so a dataset does not depend on the chunking.
    centre = centres[coarse] + (torch.rand(n, 2, generator=gen) - 0.5) * (size / 8)
    # About 3 px at 32 px, scaled with the native size: the same task at every resolution, so synthetic@256 resized
    # to 32 px is the 32 px task seen through an 8x downscale (x1.0 at 32 px keeps the 32 px data bit for bit).
    period = (3.0 + 0.3 * torch.rand(n, generator=gen)) * (size / 32)
    phase = 2 * torch.pi * torch.rand(n, generator=gen)
    background = 0.2 + 0.3 * torch.rand(n, 3, 1, 1, generator=gen)
    blob_colour = 0.3 + 0.4 * torch.rand(n, 3, 1, 1, generator=gen)
    noise = torch.randn(n, 3, size, size, generator=gen)
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij")
    img = torch.empty((n, 3, size, size), dtype=torch.uint8)
    for a in range(0, n, SYNTHETIC_CHUNK):
        s = slice(a, min(a + SYNTHETIC_CHUNK, n))
        dist2 = (yy[None] - centre[s, 0, None, None]) ** 2 + (xx[None] - centre[s, 1, None, None]) ** 2
        blob = torch.exp(-dist2 / (2 * (size / 7) ** 2))
        coord = torch.where(fine[s, None, None] == 0, yy[None], xx[None])
        grating = torch.sin(2 * torch.pi * coord / period[s, None, None] + phase[s, None, None])
        chunk = background[s] + blob_colour[s] * blob[:, None] + 0.12 * grating[:, None]
        chunk = chunk + 0.05 * noise[s]
        img[s] = (chunk.clamp(0, 1) * 255).round().to(torch.uint8)
    classes = tuple(f"pos{c // 2}-{'horizontal' if c % 2 == 0 else 'vertical'}" for c in range(10))
    key = f"synthetic-{n_train}-{n_test}-{size}-{seed}"
    return Dataset("synthetic", classes, img[:n_train].contiguous(), labels[:n_train].clone(),
                   img[n_train:].contiguous(), labels[n_train:].clone(), key)


def load_synthetic(n_train: int = 5000, n_test: int = 1000, size: int = 32) -> Dataset:
    """make_synthetic through the dataset cache: 60,000 images take seconds to generate, a fraction to reload."""
    def generate() -> dict:
        d = make_synthetic(n_train, n_test, size)
        return {"train_images": d.train_images, "train_labels": d.train_labels, "test_images": d.test_images,
                "test_labels": d.test_labels, "classes": list(d.classes)}

    return _from_cache("synthetic", f"{n_train}-{n_test}-{size}-0-v{SYNTHETIC_VERSION}", generate)


# --- caching and selection -------------------------------------------------------------------

def _from_cache(name: str, key: str, decode) -> Dataset:
    path = cache_root() / "datasets" / f"{name}-{key}.pt"
    payload = load_tensors(path)
    if payload is None:
        payload = decode()
        save_tensors(path, payload)
    return Dataset(name, tuple(payload["classes"]), payload["train_images"], payload["train_labels"],
                   payload["test_images"], payload["test_labels"], key)


def load_dataset(spec: str, data_dir: str | Path | None = None, *, download: bool = True) -> Dataset:
    """Load a dataset named as on the command line: cifar10, cifar100, synthetic[:N[:M]], imagefolder:PATH."""
    if spec in CIFAR:
        return load_cifar(spec, Path(data_dir) if data_dir else None, download=download)
    synthetic = synthetic_spec(spec)
    if synthetic is not None:
        return load_synthetic(*synthetic)
    if spec.startswith("imagefolder:"):
        return load_imagefolder(spec.split(":", 1)[1])
    raise ConfigError(f"data must be one of {', '.join(DATASETS)}; got {spec!r}")


def balanced_subset(labels: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """Indices of n samples spread as evenly over the classes as the data allows (seeded, sorted)."""
    if n >= len(labels):
        return torch.arange(len(labels))
    gen = torch.Generator().manual_seed(seed)
    per_class = []
    for c in torch.unique(labels):
        idx = torch.nonzero(labels == c).flatten()
        per_class.append(idx[torch.randperm(len(idx), generator=gen)])
    # Round-robin over classes: the k-th pick of every class comes before any (k+1)-th pick.
    rank = torch.cat([torch.arange(len(idx)) for idx in per_class])
    order = torch.cat(per_class)
    chosen = order[torch.argsort(rank, stable=True)[:n]]
    return torch.sort(chosen).values


def subset(dataset: Dataset, limit_train: int | None, limit_test: int | None, seed: int = 0) -> Dataset:
    if limit_train is None and limit_test is None:
        return dataset
    tr = balanced_subset(dataset.train_labels, limit_train or len(dataset.train_labels), seed)
    te = balanced_subset(dataset.test_labels, limit_test or len(dataset.test_labels), seed)
    return Dataset(dataset.name, dataset.classes, dataset.train_images[tr], dataset.train_labels[tr],
                   dataset.test_images[te], dataset.test_labels[te], f"{dataset.key}-{limit_train}-{limit_test}-{seed}")


def hold_out(dataset: Dataset, fraction: float, seed: int = 0) -> tuple[Dataset, torch.Tensor, torch.Tensor]:
    """The training split less a class-balanced `fraction` of it, and the held-out images and labels (the
    validation split); seeded apart from the run's seed, so every run of a study holds out the same images."""
    n_val = max(1, round(fraction * len(dataset.train_labels)))
    val = balanced_subset(dataset.train_labels, n_val, seed)
    keep = torch.ones(len(dataset.train_labels), dtype=torch.bool)
    keep[val] = False
    train = Dataset(dataset.name, dataset.classes, dataset.train_images[keep], dataset.train_labels[keep],
                    dataset.test_images, dataset.test_labels, f"{dataset.key}-val{fraction:g}-{seed}")
    return train, dataset.train_images[val], dataset.train_labels[val]


def data_status(data_dir: str | Path | None = None) -> dict[str, str]:
    """Where each downloadable dataset is expected and whether it is there (for `resizelab env`)."""
    root = Path(data_dir) if data_dir else default_data_dir()
    out = {}
    for name, spec in CIFAR.items():
        folder = _find_cifar_folder(name, root)
        out[name] = f"present at {folder}" if folder else f"missing (expected {root / spec['folder']}; {root} {describe_folder(root)})"
    return out
