"""Mean absolute difference (grey levels) between the OpenCV and PIL backends on real images.

    PYTHONPATH=src python benchmarks/opencv_vs_pil.py --data imagefolder:../shared/data/cifar10-sample

Prints a Markdown table: one row per method, one column per size, "mean (max)" of |opencv - pil|
over every pixel and channel of `--limit` class-balanced test images. A row "nearest (INTER_NEAREST)"
shows why the backend uses INTER_NEAREST_EXACT. Measures; asserts nothing.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from resizelab.training.data import balanced_subset, load_dataset
from resizelab.training.resize import cv2_module, resize

METHODS = ("nearest", "bilinear", "bicubic", "area", "lanczos")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="synthetic")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--sizes", default="8,16,24,48,64,128")
    parser.add_argument("--limit", type=int, default=500)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    dataset = load_dataset(args.data, args.data_dir)
    images = dataset.test_images[balanced_subset(dataset.test_labels, args.limit)]
    native = images.shape[-1]
    cv2 = cv2_module()

    def cell(a: torch.Tensor, b: torch.Tensor) -> str:
        diff = (a.int() - b.int()).abs().float()
        return f"{diff.mean().item():.3f} ({int(diff.max().item())})"

    header = ["method"] + [f"{s} px ({s / native:g}x)" for s in sizes]
    rows = []
    for method in METHODS:
        rows.append([method] + [cell(resize(images, s, method, True, "opencv"), resize(images, s, method, True, "pil"))
                                for s in sizes])
    legacy = []
    for s in sizes:
        src = images.permute(0, 2, 3, 1).contiguous().numpy()
        out = np.stack([cv2.resize(img, (s, s), interpolation=cv2.INTER_NEAREST) for img in src])
        legacy.append(cell(torch.from_numpy(out).permute(0, 3, 1, 2), resize(images, s, "nearest", True, "pil")))
    rows.append(["nearest (INTER_NEAREST)"] + legacy)
    print(f"{len(images)} test images of {args.data}, {native} px; mean (max) |opencv - pil| in grey levels\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
