"""The "Beyond ResNet" study's table and figure (docs/beyond-resnet.md): test accuracy against train size, one line
per family, mean and 95% interval over seeds, from the study's results store. Measures, never asserts.

    python benchmarks/beyond_resnet.py STUDY_DB docs/beyond_resnet.png
"""

from __future__ import annotations

import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

import resizelab  # noqa: E402


def main(db: str, figure: str) -> None:
    runs = resizelab.load_runs(db)
    runs = runs[runs["status"] == "done"]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    print("| family (arch) | params | train = test size px | seeds | test accuracy % (mean [95% CI]) |")
    print("|---|---|---|---|---|")
    markers = iter("osD^v<>")
    for arch, per_arch in runs.groupby("arch", sort=False):
        sizes, means, lows, highs = [], [], [], []
        for size, group in per_arch.groupby("size_px"):
            acc = group["test_accuracy"].to_numpy(float)
            mean = acc.mean()
            half = stats.t.ppf(0.975, len(acc) - 1) * acc.std(ddof=1) / np.sqrt(len(acc)) if len(acc) > 1 else float("nan")
            sizes.append(size), means.append(mean), lows.append(mean - half), highs.append(mean + half)
            print(f"| {arch} | {group['params'].iloc[0] / 1e6:.2f} M | {int(size)} | {len(acc)} | {mean:.1f} [{mean - half:.1f}, {mean + half:.1f}] |")
        # Two families at chance lie on one line: said in the legend, and told apart by their markers.
        at_chance = all(abs(m - 10) < 0.5 for m in means)
        ax.plot(sizes, means, marker=next(markers), fillstyle="none", label=arch + (" (at chance)" if at_chance else ""))
        ax.fill_between(sizes, lows, highs, alpha=0.2)
    ax.axhline(10, color="grey", lw=0.8, ls="--")
    ax.axvline(32, color="grey", lw=0.8, ls=":")
    ax.text(32, ax.get_ylim()[0], " native 32 px", color="grey", va="bottom", fontsize=8)
    ax.set_xscale("log", base=2)
    ax.set_xticks([16, 32, 64], ["16", "32", "64"])
    ax.set_xlabel("train and test size, px (bilinear, antialiased, from the 32 px images)")
    ax.set_ylabel("test accuracy, %\n(mean and 95% CI over seeds)")
    trained = runs["limit_train"].dropna()
    ax.set_title("CIFAR-10 sample" + (f", {int(trained.iloc[0]):,} train images" if len(trained) else "")
                 + ", from scratch:\naccuracy against input size by family", fontsize=10)
    # Below the plot, as the report's figures have it: inside, it hid the bands.
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    fig.tight_layout()
    fig.savefig(figure, dpi=120, bbox_inches="tight")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
