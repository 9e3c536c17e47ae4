"""Quickstart: train one configuration, run a two-run sweep into a results store, read it back as a DataFrame.

    python examples/quickstart.py                                       # the built-in synthetic task
    python examples/quickstart.py imagefolder:PATH --limit-train 2000   # any ImageFolder tree (PATH/train, PATH/val)

Needs `pip install 'resizelab[pandas]'` for the DataFrame. Trains from scratch on the CPU in seconds.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import resizelab


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", default="synthetic", help="cifar10, synthetic or imagefolder:PATH (default synthetic)")
    parser.add_argument("--limit-train", type=int, default=256, help="training images, class-balanced (default 256)")
    parser.add_argument("--limit-test", type=int, default=128, help="test images, class-balanced (default 128)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--db", help="results store to write (default: a temporary one, removed at the end)")
    args = parser.parse_args(argv)

    # From scratch (weights none) so nothing is downloaded; fp32 so the precision does not depend on the CPU.
    base = dict(data=args.data, weights="none", epochs=args.epochs, lr=0.01, limit_train=args.limit_train,
                limit_test=args.limit_test, precision="fp32")

    # 1. One run: a config (validated on construction) in, a RunResult out. Nothing is stored.
    config = resizelab.RunConfig(**base, size=24)
    result = resizelab.train(config, progress=False)
    print(f"one run   {config.label()}: {result.test_accuracy:.1f}% test accuracy, {result.train_seconds:.2f} s training")

    # 2. A sweep: every combination of the grid, each run stored under its config hash, so running
    #    the same sweep again skips what is done. size None is the native size (no resize).
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or os.path.join(tmp, "quickstart.db")
        outcome = resizelab.sweep(base, grid={"size": [16, None]}, name="quickstart", db=db)
        print(f"sweep     {len(outcome.ran)} runs trained, {outcome.already_done} already in {db if args.db else 'the store'}")

        # 3. The store as a DataFrame: one row per run, config fields and metrics as typed columns.
        runs = resizelab.load_runs(db, sweep="quickstart")
        columns = ["config_hash", "size", "size_px", "input_height_px", "interpolation", "test_accuracy", "train_seconds",
                   "images_per_second", "macs_per_image"]
        print(runs[columns].to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
