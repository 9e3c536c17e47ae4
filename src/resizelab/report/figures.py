"""Report figures, drawn from groups of finished runs (matplotlib, headless)."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.choices import LEARNED_INTERPOLATIONS
from ..core.plotting import fitted, log_axis, pyplot, save_figure
from ..core.stats import pareto_front
from ..store.runs import value_text, varying

if TYPE_CHECKING:
    from ..store.runs import Group

# Options whose values name themselves in a legend ("tensor", "imagenet"): their key is left out. Others are kept as
# short "key value" pairs ("epochs 1"), so a legend from a mixed store says what differs in few words.
SELF_NAMED = ("interpolation", "backend", "arch", "weights", "optimizer", "schedule", "augment", "precision", "stem",
              "test_interpolation")
SHORT_KEYS = {"limit_train": "train", "limit_test": "test", "batch_size": "batch", "weight_decay": "wd",
              "label_smoothing": "ls", "epochs": "epochs", "lr": "lr", "seed": "seed"}
LEGEND_WRAP = 34  # characters per legend line


def short_label(cfg: dict, columns: list[str]) -> str:
    """A figure series' name: only what differs within the figure (columns), without the keys that values name."""
    import os

    parts = []
    for k in columns:
        if k in ("size", "test_size", "antialias"):
            continue
        value = "all" if k.startswith("limit_") and cfg.get(k) is None else value_text(k, cfg.get(k))
        if k == "data" and isinstance(cfg.get(k), str) and cfg[k].startswith("imagefolder:"):
            value = os.path.basename(cfg[k].rstrip("/")) or value
        parts.append(value if k in SELF_NAMED or k == "data" else f"{SHORT_KEYS.get(k, k.replace('_', ' '))} {value}")
    return ", ".join(parts) or cfg["interpolation"]


def legend_below(fig, handles, labels, *, max_columns: int = 3, fontsize: float = 8, top: float = 1.0, **kwargs):
    """One legend under the plots, its labels wrapped, with as many columns as fit the figure's width, and the plots
    laid out above it: inside an axes a long legend covered the data, and a wide one was cut at both ends."""
    import textwrap

    labels = [textwrap.fill(label, LEGEND_WRAP) for label in labels]
    columns = max(1, min(max_columns, len(labels)))
    while True:
        legend = fig.legend(handles, labels, loc="lower center", ncol=columns, frameon=False, fontsize=fontsize, **kwargs)
        fig.canvas.draw()
        if legend.get_window_extent().width <= fig.bbox.width * 0.98 or columns == 1:
            break
        legend.remove()
        columns -= 1
    height = legend.get_window_extent().height / fig.bbox.height
    fig.tight_layout(rect=(0, min(height + 0.01, 0.6), 1, top))
    return legend


def figure_accuracy_vs_size(groups: list[Group], path: Path) -> bool:
    columns = varying([g.config for g in groups])
    series = defaultdict(list)
    for g in groups:
        series[(short_label(g.config, columns), g.config["antialias"])].append(g)
    if not any(len(v) > 1 for v in series.values()):
        return False
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5 + 0.3 * max(0, len(series) - 4)))
    colours, seed_values, sizes = {}, [], []
    for (name, aa), members in sorted(series.items(), key=lambda kv: (kv[0][0], not kv[0][1])):
        members.sort(key=lambda g: g.train_size)
        xs = [g.train_size for g in members]
        stats = [g.summary("test_accuracy") for g in members]
        ys = [s.mean for s in stats]
        hw = [0.0 if math.isnan(s.half_width) else s.half_width for s in stats]
        colour = colours.setdefault(name, f"C{len(colours) % 10}")
        ax.plot(xs, ys, marker="o", color=colour, linestyle="-" if aa else "--", label=f"{name}, antialias {'on' if aa else 'off'}")
        lo, hi = [max(0.0, y - h) for y, h in zip(ys, hw)], [min(100.0, y + h) for y, h in zip(ys, hw)]
        if min(len(g.runs) for g in members) >= 3:
            ax.fill_between(xs, lo, hi, color=colour, alpha=0.12, linewidth=0)
        else:
            # Two seeds give a t interval of +-9 standard deviations: overlapping bands would hide
            # everything, so show it as nudged error bars instead.
            nudge = 2 ** (0.03 * (len(colours) - 1) + (0.015 if not aa else 0))
            ax.errorbar([x * nudge for x in xs], ys, yerr=[[y - l for y, l in zip(ys, lo)], [h - y for y, h in zip(ys, hi)]],
                        fmt="none", ecolor=colour, elinewidth=1, capsize=3, alpha=0.5)
        # The seeds themselves: with few seeds the interval is wide, and the points show why.
        for g, x in zip(members, xs):
            accs = [r["test_accuracy"] for r in g.runs]
            seed_values += accs
            ax.scatter([x] * len(accs), accs, color=colour, s=10, alpha=0.5, zorder=3)
        sizes += xs
    log_axis(ax, "x", sizes, base=2)
    # Scale to the seeds, not to the bands: with n=2 a 95% band spans +-9 standard deviations.
    low, high = min(seed_values), max(seed_values)
    margin = max(2.0, 0.3 * (high - low))
    ax.set_ylim(max(0.0, low - margin), min(100.0, high + margin))
    n = sorted({len(g.runs) for g in groups})
    ax.set_xlabel("train/test input size (px, shorter edge; log scale)")
    ax.set_ylabel("test accuracy (%)")
    seeds = "seed" if n == [1] else "seeds"
    ax.set_title(fitted(fig, f"Test accuracy vs input size (n={'/'.join(map(str, n))} {seeds}; line: mean, dots: seeds, "
                 f"{'band' if min(n) >= 3 else 'bars'}: 95% CI)", 10), fontsize=10)
    handles, names = ax.get_legend_handles_labels()
    legend_below(fig, handles, names)
    fig.savefig(path)
    plt.close(fig)
    return True


def figure_cost_vs_size(groups: list[Group], path: Path) -> bool:
    if len({g.train_size for g in groups}) < 2:
        return False
    columns = varying([g.config for g in groups])
    series = defaultdict(list)
    for g in groups:
        series[short_label(g.config, columns) + ("" if g.config["antialias"] else ", no antialias")].append(g)
    plt = pyplot()
    # Taller with more series: the legend below takes its rows from the figure, not from the panels.
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4 + 0.3 * max(0, len(series) - 3)))
    for name, members in sorted(series.items()):
        members.sort(key=lambda g: g.train_size)
        xs = [g.train_size for g in members]
        ax1.plot(xs, [g.summary("train_seconds").mean for g in members], marker="o", label=name)
        ax2.plot(xs, [g.summary("images_per_second").mean for g in members], marker="o", label=name)
    sizes = [g.train_size for g in groups]
    for ax, label in ((ax1, "train time (s, all epochs)"), (ax2, "training throughput (images/s)")):
        log_axis(ax, "x", sizes, base=2)
        log_axis(ax, "y")
        ax.set_xlabel("input size (px, log scale)")
        ax.set_ylabel(label)
    ax1.set_title("Training time vs input size")
    ax2.set_title("Throughput vs input size")
    # One legend for both panels, below them: inside a panel it covered points.
    handles, names = ax2.get_legend_handles_labels()
    legend_below(fig, handles, names)
    fig.savefig(path)
    plt.close(fig)
    return True


def figure_accuracy_vs_cost(groups: list[Group], path: Path) -> bool:
    if len(groups) < 2:
        return False
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    points = [(g.runs[0]["macs_per_image"] / 1e6, g.summary("test_accuracy").mean) for g in groups]
    columns = varying([g.config for g in groups])
    labels = [f"{value_text('size', g.config['size'])}px {short_label(g.config, columns)}" for g in groups]
    # Learned resizers on the same axes, their resizer's MACs counted in the run's, drawn apart so the reader sees which is which.
    learned = [i for i, g in enumerate(groups) if g.config["interpolation"] in LEARNED_INTERPOLATIONS]
    fixed_ = [i for i in range(len(groups)) if i not in learned]
    ax.scatter([points[i][0] for i in fixed_], [points[i][1] for i in fixed_], color="C0", alpha=0.6,
               label="configuration (mean over seeds)" if not learned else "fixed resize (mean over seeds)")
    if learned:
        ax.scatter([points[i][0] for i in learned], [points[i][1] for i in learned], color="C2", marker="^", s=50, alpha=0.8,
                   label="learned resizer (its MACs included)")
    front = pareto_front(points)
    ax.plot([points[i][0] for i in front], [points[i][1] for i in front], color="C3", marker="o", label="Pareto front")
    x_low, x_high = min(p[0] for p in points), max(p[0] for p in points)
    log_axis(ax, "x")
    ax.autoscale_view()
    placed: list[tuple[float, float, bool]] = []  # display position of each label drawn, and its side
    for i in sorted(set(front) | set(learned), key=lambda i: -points[i][1]):
        # Labels of points in the right part of the axes go to their left, so they stay inside the frame.
        right = x_high > x_low and (math.log(points[i][0]) - math.log(x_low)) / (math.log(x_high) - math.log(x_low)) > 0.6
        # Points at one cost and nearly one accuracy (a learned resizer beside the resize it wraps) get their labels
        # stacked downwards instead of printed over each other.
        x, y = ax.transData.transform(points[i])
        dy = -10.0
        while any(side == right and abs(px - x) < 60 and abs(py - (y + dy * fig.dpi / 72)) < 8 * fig.dpi / 72
                  for px, py, side in placed):
            dy -= 9.0
        placed.append((x, y + dy * fig.dpi / 72, right))
        ax.annotate(labels[i], points[i], textcoords="offset points", xytext=(-4 if right else 4, dy), fontsize=7,
                    ha="right" if right else "left")
    ax.set_xlabel("cost: multiply-accumulates per image (millions of MACs, log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Accuracy vs cost")
    ax.legend()
    return save_figure(plt, fig, path)


def figure_train_test_heatmap(groups: list[Group], path: Path) -> bool:
    cells: dict[tuple[int, int], list[float]] = defaultdict(list)
    for g in groups:
        for test_size, accs in g.evals.items():
            cells[(g.train_size, test_size)].extend(accs)
    train_sizes = sorted({a for a, _ in cells})
    test_sizes = sorted({b for _, b in cells})
    if not any(len(g.evals) > 1 for g in groups):
        return False  # only the diagonal: nothing a heatmap would add to the table
    import numpy as np

    plt = pyplot()
    grid = np.full((len(train_sizes), len(test_sizes)), np.nan)
    for (a, b), accs in cells.items():
        grid[train_sizes.index(a), test_sizes.index(b)] = statistics.fmean(accs)
    fig, ax = plt.subplots(figsize=(1.2 * len(test_sizes) + 2.5, 0.8 * len(train_sizes) + 2))
    im = ax.imshow(grid, cmap="viridis", origin="lower", aspect="auto")
    for i in range(len(train_sizes)):
        for j in range(len(test_sizes)):
            if not np.isnan(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.1f}", ha="center", va="center", color="white" if grid[i, j] < np.nanmean(grid) else "black", fontsize=8)
    ax.set_xticks(range(len(test_sizes)), [str(s) for s in test_sizes])
    ax.set_yticks(range(len(train_sizes)), [str(s) for s in train_sizes])
    ax.set_xlabel("test input size (px)")
    ax.set_ylabel("train input size (px)")
    ax.set_title("Test accuracy (%) by train and test size")
    ax.grid(False)
    fig.colorbar(im, ax=ax, label="test accuracy (%)")
    return save_figure(plt, fig, path)


def figure_examples(groups: list[Group], path: Path, n_images: int) -> bool:
    """What the network saw: the same test images through each method at each size of the sweep."""
    from ..training.data import load_dataset
    from ..core.errors import ResizelabError
    from ..training.resize import resize

    cfg = groups[0].config
    try:
        # Never a download from a report: data not on this machine means no figure, not a fetch.
        dataset = load_dataset(cfg["data"], groups[0].runs[0]["config"].get("data_dir"), download=False)
    except ResizelabError:
        return False
    sizes = sorted({g.train_size for g in groups})
    # A learned resizer's output depends on its trained weights, one set per run: `resizelab spectrum --run HASH` shows it.
    methods = sorted({(g.config["interpolation"], g.config["antialias"], g.config["backend"]) for g in groups
                      if g.config["interpolation"] not in LEARNED_INTERPOLATIONS})
    if not methods:
        return False
    # One image per class for the first few classes the test split holds (a class may have no test image: a small
    # synthetic split, an empty class folder), so the strip is varied.
    labels = dataset.test_labels
    present = [c for c in range(dataset.num_classes) if bool((labels == c).any())][:n_images]
    if not present:
        return False
    picks = [int((labels == c).nonzero()[0, 0]) for c in present]
    images = dataset.test_images[picks]
    plt = pyplot()
    fig, axes = plt.subplots(len(methods), len(sizes), figsize=(0.8 * len(picks) * len(sizes) + 1, 1.25 * len(methods) + 0.7), squeeze=False)
    for i, (method, aa, backend) in enumerate(methods):
        for j, size in enumerate(sizes):
            small = resize(images, size, method, aa, backend)
            strip = small.permute(2, 0, 3, 1).reshape(small.shape[2], -1, 3)  # side by side
            ax = axes[i][j]
            ax.imshow(strip.numpy(), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            if i == 0:
                ax.set_title(f"{size} px", fontsize=9)
            if j == 0:
                ax.set_ylabel(f"{method}\n{'aa' if aa else 'no aa'} {backend}", fontsize=8)
    fig.suptitle(fitted(fig, "What the network saw: test images after each resize (pixels shown as blocks)", 10), fontsize=10)
    return save_figure(plt, fig, path)


# Beyond this many classes a per-class panel or a confusion matrix per cell is no longer readable.
MAX_CLASSES_DRAWN = 20


def _class_series(groups: list[Group]) -> dict[tuple[str, bool], list[Group]]:
    """Groups with per-class results, by figure series (as accuracy_vs_size draws them), each sorted by size."""
    columns = varying([g.config for g in groups])
    series: dict[tuple[str, bool], list[Group]] = defaultdict(list)
    for g in groups:
        if all(r["result"].get("per_class_accuracy") for r in g.runs):
            series[(short_label(g.config, columns), g.config["antialias"])].append(g)
    for members in series.values():
        members.sort(key=lambda g: g.train_size)
    return dict(sorted(series.items(), key=lambda kv: (kv[0][0], not kv[0][1])))


def _classes(groups: list[Group]) -> list[str]:
    return list(groups[0].runs[0]["result"].get("per_class_accuracy") or {})


def _class_mean(group, name: str) -> float:
    """Mean per-class accuracy over a configuration's runs; NaN (a gap in the line) for a class none of them
    tested (no test image of it: an empty class folder, or a --limit-test subset without it)."""
    values = [v for r in group.runs if (v := r["result"].get("per_class_accuracy", {}).get(name)) is not None]
    return statistics.fmean(values) if values else math.nan


def figure_per_class_vs_size(groups: list[Group], path: Path) -> bool:
    """One panel per class: its test accuracy against the input size, one line per series (mean over seeds)."""
    series = _class_series(groups)
    classes = _classes(groups)
    if not any(len(v) > 1 for v in series.values()) or not 1 < len(classes) <= MAX_CLASSES_DRAWN:
        return False
    plt = pyplot()
    cols = min(5, len(classes))
    rows = math.ceil(len(classes) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.7 * cols + 0.4, 2.3 * rows + 1.1), sharex=True, sharey=True, squeeze=False)
    sizes = sorted({g.train_size for g in groups})
    values = []
    for k, name in enumerate(classes):
        ax = axes[k // cols][k % cols]
        for i, ((label, aa), members) in enumerate(series.items()):
            xs = [g.train_size for g in members]
            ys = [_class_mean(g, name) for g in members]
            values += ys
            ax.plot(xs, ys, marker="o", ms=3, color=f"C{i % 10}", linestyle="-" if aa else "--",
                    label=f"{label}, antialias {'on' if aa else 'off'}")
        ax.set_title(name, fontsize=9, parse_math=False)  # class names are folder names: "$" is not mathtext
        if all(math.isnan(_class_mean(g, name)) for g in groups):
            ax.text(0.5, 0.5, "no test images\nof this class", transform=ax.transAxes, ha="center", va="center",
                    fontsize=8, color="0.4")
        log_axis(ax, "x", sizes, base=2)
    finite = [v for v in values if not math.isnan(v)]
    if finite:  # scaled to the data (shared by every panel), not to 0-100: a weak model's classes sit low
        margin = max(3.0, 0.08 * (max(finite) - min(finite)))
        axes[0][0].set_ylim(max(0.0, min(finite) - margin), min(100.0, max(finite) + margin))
    for k in range(len(classes), rows * cols):
        axes[k // cols][k % cols].set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("input size (px)", fontsize=8)
    for row in axes:
        row[0].set_ylabel("class accuracy (%)", fontsize=8)
    handles, labels = axes[0][0].get_legend_handles_labels()
    n = sorted({len(g.runs) for g in groups})
    fig.suptitle(fitted(fig, f"Test accuracy per class vs input size (mean over n={'/'.join(map(str, n))} seeds): which classes a resize hurts", 10),
                 fontsize=10)
    legend_below(fig, handles, labels, max_columns=4, fontsize=7, top=0.97, handlelength=3.5)
    fig.savefig(path)
    plt.close(fig)
    return True


def figure_confusion_per_size(groups: list[Group], path: Path) -> bool:
    """Columns: input sizes; rows: series. Each cell: the confusion matrix summed over seeds, each true
    class's row in percent of that class's test images (the diagonal is the class accuracy)."""
    import numpy as np

    series = _class_series(groups)
    classes = _classes(groups)
    with_confusion = {key: [g for g in members if all(r["result"]["evals"] and r["result"]["evals"][0].get("confusion")
                                                      for r in g.runs)] for key, members in series.items()}
    with_confusion = {k: v for k, v in with_confusion.items() if v}
    if not with_confusion or not 1 < len(classes) <= MAX_CLASSES_DRAWN:
        return False
    sizes = sorted({g.train_size for members in with_confusion.values() for g in members})
    if len(sizes) < 2:
        return False
    plt = pyplot()
    side = 0.16 * len(classes) + 1.0
    fig, axes = plt.subplots(len(with_confusion), len(sizes), figsize=(side * len(sizes) + 2.2, side * len(with_confusion) + 1.0),
                             squeeze=False, layout="constrained")
    matrices = {}
    for key, members in with_confusion.items():
        for g in members:
            counts = np.sum([np.asarray(r["result"]["evals"][0]["confusion"], dtype=float) for r in g.runs], axis=0)
            matrices[(key, g.train_size)] = (counts, 100 * counts / np.maximum(counts.sum(1, keepdims=True), 1))
    # One colour scale for every cell, up to the largest share drawn: a weak model's diagonal stays visible.
    top = max(10.0, math.ceil(max(p.max() for _, p in matrices.values()) / 10) * 10)
    image = None
    for i, ((label, aa), members) in enumerate(with_confusion.items()):
        by_size = {g.train_size: g for g in members}
        for j, size in enumerate(sizes):
            ax = axes[i][j]
            ax.grid(False)
            ax.set_xticks([])
            ax.set_yticks([])
            if size not in by_size:
                ax.text(0.5, 0.5, "no run", ha="center", va="center", transform=ax.transAxes, fontsize=8, color="grey")
                # The matrices' extent, so tick labels on an empty cell still sit under their columns.
                ax.set_xlim(-0.5, len(classes) - 0.5)
                ax.set_ylim(len(classes) - 0.5, -0.5)
            else:
                counts, percent = matrices[((label, aa), size)]
                image = ax.imshow(percent, cmap="Blues", vmin=0, vmax=top, interpolation="nearest")
                accuracy = 100 * np.trace(counts) / max(counts.sum(), 1)
                ax.set_title(f"{size} px: {accuracy:.1f}%", fontsize=8)
            if i == len(with_confusion) - 1:
                ax.set_xticks(range(len(classes)), classes, rotation=90, fontsize=6, parse_math=False)
                ax.set_xlabel("predicted", fontsize=7)
            if j == 0:
                ax.set_yticks(range(len(classes)), classes, fontsize=6, parse_math=False)
                ax.set_ylabel(f"{label.replace('interpolation=', '')}\nantialias {'on' if aa else 'off'}\n\ntrue class", fontsize=7)
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.6).set_label("% of the true class's test images", fontsize=8)
    n = sorted({len(g.runs) for members in with_confusion.values() for g in members})
    fig.suptitle(fitted(fig, f"Confusion matrix per input size (summed over n={'/'.join(map(str, n))} seeds; rows: true class)", 10), fontsize=10)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return True


def figure_serving_matrix(groups: list[Group], path: Path) -> bool:
    """Train recipe x serve recipe, one panel per size: the accuracy change against serving with the training recipe."""
    from ..analysis.serve import serving_matrix

    cells = serving_matrix(groups)
    if not cells:
        return False
    sizes = sorted({c.size_px for c in cells})
    trains = sorted({c.train_recipe for c in cells})
    served = [r for r in dict.fromkeys(c.serve_recipe for c in cells)]
    columns = sorted(set(served) | set(trains), key=lambda r: (r not in trains, trains.index(r) if r in trains else 0, r))
    limit = max(1.0, max(abs(c.change.value) for c in cells if c.change.value == c.change.value))
    plt = pyplot()
    fig, axes = plt.subplots(len(sizes), 1, figsize=(1.0 + 0.75 * len(columns), 0.9 + 0.55 * len(trains) * len(sizes) + 0.6 * len(sizes)),
                             squeeze=False)
    by_key = {(c.size_px, c.train_recipe, c.serve_recipe): c for c in cells}
    for ax, size in zip(axes[:, 0], sizes):
        grid = [[math.nan] * len(columns) for _ in trains]
        for i, t in enumerate(trains):
            for j, r in enumerate(columns):
                c = by_key.get((size, t, r))
                if r == t and any(k[:2] == (size, t) for k in by_key):  # a recipe with no run at this size trained nothing
                    grid[i][j] = 0.0
                    ax.text(j, i, "train", ha="center", va="center", fontsize=7, color="0.3")
                elif c is not None:
                    grid[i][j] = c.change.value
                    mark = "*" if c.verdict == "supported" else ""
                    dark = abs(c.change.value) > 0.6 * limit  # white on the deep ends of the colour map, black elsewhere
                    ax.text(j, i, f"{c.change.value:+.1f}{mark}", ha="center", va="center", fontsize=7, color="white" if dark else "black")
        image = ax.imshow(grid, cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
        ax.set_xticks(range(len(columns)), columns, rotation=40, ha="right", fontsize=7)
        ax.set_yticks(range(len(trains)), trains, fontsize=7)
        ax.grid(False)
        n = sorted({c.change.n for c in cells if c.size_px == size})
        ax.set_title(f"trained and served at {size} px (n = {'/'.join(map(str, n))} seed{'' if n == [1] else 's'})", fontsize=9)
        ax.set_ylabel("trained with")
        # One short word along the bar (the caption says what the cells are): along a panel of one or two rows a
        # longer name ran past the figure's edge, and above the bar it met the panel's title.
        fig.colorbar(image, ax=ax, shrink=0.9).set_label("points", fontsize=7)
    axes[-1, 0].set_xlabel("served with")
    return save_figure(plt, fig, path)


FIGURES = (
    ("accuracy_vs_size.png", "Test accuracy vs input size", figure_accuracy_vs_size,
     "One line per interpolation method through the mean over seeds (solid: antialias on, dashed: off); dots are the "
     "single seeds; the band (error bars when there are fewer than 3 seeds) is the 95% t confidence interval of the mean."),
    ("cost_vs_size.png", "Training time and throughput vs input size", figure_cost_vs_size,
     "Training time covers all epochs of the training loop (not data loading or evaluation); throughput is training images per second."),
    ("accuracy_vs_cost.png", "Accuracy vs cost", figure_accuracy_vs_cost,
     "Each point is a configuration (mean over seeds); the red line joins those no other configuration beats on both cost and accuracy."),
    ("train_test_heatmap.png", "Train size x test size", figure_train_test_heatmap,
     "Each cell: mean test accuracy of models trained at the row's size and evaluated at the column's size."),
    ("serving_matrix.png", "Train with one resize, serve with another: the matrix", figure_serving_matrix,
     "Each cell: test accuracy when the model trained with the row's recipe is served with the column's, minus when it "
     "is served with its own (points, mean over seeds; blue: better, red: worse); * marks a mismatch that matters (its 95% "
     "interval lies beyond +-1 point, the Findings' threshold). The section above gives every cell's interval and verdict."),
    ("per_class_vs_size.png", "Accuracy per class vs input size", figure_per_class_vs_size,
     "One panel per class: its test accuracy (at the train size) against the input size, mean over seeds, one line per "
     "method as in the accuracy figure (dashed: antialias off). A class whose line falls further at small sizes is one "
     "a downsample hurts more."),
    ("confusion_per_size.png", "Confusion matrix per input size", figure_confusion_per_size,
     "Rows of each matrix: the true class; columns: the predicted class; each row in percent of that class's test "
     "images, summed over seeds (the diagonal is the per-class accuracy). Where the off-diagonal mass goes at small "
     "sizes says which classes a downsample confuses."),
)


