"""Reports from the store: tables with 95% confidence intervals over seeds, figures, md/html/csv.

Everything here reads the store; nothing trains. matplotlib is imported only when figures are drawn.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

# Two-sided 95% Student-t critical values by degrees of freedom (standard tables); beyond 30
# the value is interpolated towards the normal 1.960.
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
        11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093, 20: 2.086,
        21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064, 25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048, 29: 2.045, 30: 2.042,
        40: 2.021, 60: 2.000, 120: 1.980}


def t_critical_95(df: int) -> float:
    if df < 1:
        return float("nan")
    if df in _T95:
        return _T95[df]
    known = sorted(_T95)
    for lo, hi in zip(known, known[1:]):
        if lo < df < hi:
            # Linear in 1/df, which is how t quantiles approach the normal.
            w = (1 / df - 1 / hi) / (1 / lo - 1 / hi)
            return _T95[hi] + w * (_T95[lo] - _T95[hi])
    w = 120 / df
    return 1.960 + w * (1.980 - 1.960)


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    half_width: float  # 95% CI half-width; nan for n = 1

    def __str__(self) -> str:
        if self.n == 0:
            return "-"
        if self.n == 1 or math.isnan(self.half_width):
            return f"{self.mean:.2f}"
        return f"{self.mean:.2f} ± {self.half_width:.2f}"


def mean_ci(values: list[float]) -> Summary:
    """Mean and the half-width of its two-sided 95% t confidence interval."""
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return Summary(0, float("nan"), float("nan"))
    mean = statistics.fmean(values)
    if len(values) < 2:
        return Summary(1, mean, float("nan"))
    sem = statistics.stdev(values) / math.sqrt(len(values))
    return Summary(len(values), mean, t_critical_95(len(values) - 1) * sem)


# --- one-run and sweep tables (stdout) -------------------------------------------------------

def format_run(result: dict, label: str) -> str:
    """A finished run as a few readable lines, from its JSON form (fresh or read back from the store)."""
    shape = result["input_shape"]
    lines = [
        f"config       {result['config_hash']}  {label}",
        f"input        {shape[0]}x{shape[1]} px, precision {result['effective_precision']}, weights {result['weights_tag']}",
        f"train        {result['train_seconds']:.2f} s ({result['images_per_second']:.0f} img/s) over {_plural(result['epochs'], 'epoch')}; "
        f"first step after {result['time_to_first_step_seconds']:.2f} s",
    ]
    for e in result["epoch_history"]:
        lines.append(f"  epoch {e['epoch']}    loss {e['train_loss']:.4f}  train accuracy {e['train_accuracy']:.2f}%  {e['seconds']:.2f} s")
    for ev in result["evals"]:
        lines.append(f"test         {ev['accuracy']:.2f}% at {ev['size_px']} px ({ev['interpolation']}, {ev['images']} images)")
    lines.append(f"cost         {result['macs_per_image'] / 1e6:.1f} M MACs/image, {result['params'] / 1e6:.2f} M params, "
                 f"peak memory {result['peak_memory_bytes'] / 2**20:.0f} MiB ({result['peak_memory_kind']})")
    return "\n".join(lines)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _varying(configs: list[dict], always: tuple[str, ...] = ()) -> list[str]:
    """The config fields that differ between configs, `always` first and in that order."""
    keys = sorted(k for k in configs[0] if k not in ("seed", "data_dir", "test_sizes")) if configs else []
    varying = [k for k in keys if k not in always and len({json.dumps(c.get(k), sort_keys=True) for c in configs}) > 1]
    # A test size or method that only mirrors the train one says nothing new.
    for derived, source in (("test_size", "size"), ("test_interpolation", "interpolation")):
        if derived in varying and all(c.get(derived) == c.get(source) for c in configs):
            varying.remove(derived)
    return [k for k in always if not configs or k in configs[0]] + varying


def _size_text(value) -> str:
    return "native" if value is None else str(value)


def results_table(rows: list[dict]) -> str:
    """One line per run: size, interpolation, what else varies, train seconds, images/s, test accuracy."""
    configs = [json.loads(r["config_json"]) for r in rows]
    columns = _varying(configs, always=("size", "interpolation"))
    if len({c.get("seed") for c in configs}) > 1:
        columns.append("seed")
    header = columns + ["train s", "img/s", "test acc %", "status"]
    body = []
    for row, cfg in zip(rows, configs):
        cells = [_size_text(cfg.get(c)) if c in ("size", "test_size") else str(cfg.get(c)) for c in columns]
        if row["status"] == "done":
            cells += [f"{row['train_seconds']:.1f}", f"{row['images_per_second']:.0f}", f"{row['test_accuracy']:.2f}", "done"]
        else:
            cells += ["-", "-", "-", row["status"] + (f": {row['error']}" if row.get("error") else "")]
        body.append(cells)
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(header)]
    fmt = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
    return "\n".join([fmt(header), fmt(["-" * w for w in widths])] + [fmt(r) for r in body])


# --- the report folder -----------------------------------------------------------------------

@dataclass(frozen=True)
class ReportConfig:
    db: str = "resizelab.db"
    sweep: str | None = None
    out: str = "reports/all"
    example_images: int = 4


@dataclass
class Group:
    config: dict  # the shared config, seed left out
    runs: list[dict]
    evals: dict[int, list[float]]  # test size -> accuracy per seed

    def summary(self, metric: str) -> Summary:
        return mean_ci([r[metric] for r in self.runs])


def load_groups(db: str, sweep: str | None) -> tuple[list[Group], list[dict]]:
    """Done runs grouped by everything but the seed; and the failed runs, with their reasons."""
    from .store import Store

    with Store(db) as store:
        rows = store.runs(sweep=sweep)
        evals = defaultdict(list)
        for ev in store.evals():
            evals[ev["config_hash"]].append(ev)
    if sweep and not rows:
        raise_unknown_sweep(db, sweep)
    groups: dict[str, Group] = {}
    for row in rows:
        if row["status"] != "done":
            continue
        cfg = json.loads(row["config_json"])
        key = json.dumps({k: v for k, v in cfg.items() if k not in ("seed", "data_dir", "device")}, sort_keys=True)
        group = groups.setdefault(key, Group({k: v for k, v in cfg.items() if k != "seed"}, [], defaultdict(list)))
        row = dict(row, config=cfg, result=json.loads(row["result_json"]) if row["result_json"] else {})
        group.runs.append(row)
        for ev in evals[row["config_hash"]]:
            group.evals[ev["test_size_px"]].append(ev["accuracy"])
    failed = [r for r in rows if r["status"] == "failed"]
    return list(groups.values()), failed


def raise_unknown_sweep(db: str, sweep: str) -> None:
    from .errors import ConfigError
    from .store import Store

    with Store(db) as store:
        names = [name for name, _ in store.sweeps()]
    raise ConfigError(f"no sweep named {sweep!r} in {db}; sweeps there: {', '.join(names) or 'none'}")


def _train_size(group: Group) -> int:
    result = group.runs[0]["result"]
    return group.config["size"] or (result.get("input_shape") or [0])[0]


def _series_key(cfg: dict, varying: list[str]) -> str:
    parts = [f"{k}={cfg[k]}" for k in varying if k not in ("size", "test_size", "antialias")]
    return ", ".join(parts) or cfg["interpolation"]


def summary_table(groups: list[Group]) -> tuple[list[str], list[list[str]]]:
    configs = [g.config for g in groups]
    columns = _varying(configs, always=("size", "interpolation", "antialias"))
    header = columns + ["n", "test acc % (95% CI)", "train s", "img/s", "M MACs", "params M"]
    body = []
    for g in sorted(groups, key=lambda g: tuple(json.dumps(g.config.get(c), sort_keys=True) for c in columns)):
        cells = [_size_text(g.config.get(c)) if c in ("size", "test_size") else str(g.config.get(c)) for c in columns]
        cells += [str(len(g.runs)), str(g.summary("test_accuracy")), str(g.summary("train_seconds")),
                  f"{g.summary('images_per_second').mean:.0f}", f"{g.runs[0]['macs_per_image'] / 1e6:.1f}",
                  f"{g.runs[0]['params'] / 1e6:.2f}"]
        body.append(cells)
    return header, body


def _md_table(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in body]
    return "\n".join(lines)


def _html_table(header: list[str], body: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in body)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


# --- figures ---------------------------------------------------------------------------------

def _plt():
    import matplotlib

    matplotlib.use("Agg")  # headless: reports are written on servers and in CI
    import matplotlib.pyplot as plt

    plt.rcParams.update({"figure.dpi": 110, "axes.grid": True, "grid.alpha": 0.3, "legend.fontsize": 8})
    return plt


def _log_axis(ax, axis: str, ticks: list[float] | None = None, base: float = 10) -> None:
    """Log scale labelled with plain numbers (16, 32, 64), not 2^4 or 6x10^0."""
    from matplotlib.ticker import FixedLocator, LogLocator, NullFormatter, ScalarFormatter

    getattr(ax, f"set_{axis}scale")("log", base=base)
    target = ax.xaxis if axis == "x" else ax.yaxis
    if ticks:
        target.set_major_locator(FixedLocator(sorted(set(ticks))))
    else:
        target.set_major_locator(LogLocator(base=base, subs=(1.0, 2.0, 5.0)))
    formatter = ScalarFormatter()
    formatter.set_scientific(False)
    target.set_major_formatter(formatter)
    target.set_minor_formatter(NullFormatter())


def figure_accuracy_vs_size(groups: list[Group], path: Path) -> bool:
    varying = _varying([g.config for g in groups])
    series = defaultdict(list)
    for g in groups:
        series[(_series_key(g.config, varying), g.config["antialias"])].append(g)
    if not any(len(v) > 1 for v in series.values()):
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colours, seed_values, sizes = {}, [], []
    for (name, aa), members in sorted(series.items(), key=lambda kv: (kv[0][0], not kv[0][1])):
        members.sort(key=_train_size)
        xs = [_train_size(g) for g in members]
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
    _log_axis(ax, "x", sizes, base=2)
    # Scale to the seeds, not to the bands: with n=2 a 95% band spans +-9 standard deviations.
    low, high = min(seed_values), max(seed_values)
    margin = max(2.0, 0.3 * (high - low))
    ax.set_ylim(max(0.0, low - margin), min(100.0, high + margin))
    n = sorted({len(g.runs) for g in groups})
    ax.set_xlabel("train/test input size (px, shorter edge; log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"Test accuracy vs input size (n={'/'.join(map(str, n))} seeds; line: mean, dots: seeds, "
                 f"{'band' if min(n) >= 3 else 'bars'}: 95% CI)", fontsize=10)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def figure_cost_vs_size(groups: list[Group], path: Path) -> bool:
    if len({_train_size(g) for g in groups}) < 2:
        return False
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    varying = _varying([g.config for g in groups])
    series = defaultdict(list)
    for g in groups:
        series[_series_key(g.config, varying) + ("" if g.config["antialias"] else ", no antialias")].append(g)
    for name, members in sorted(series.items()):
        members.sort(key=_train_size)
        xs = [_train_size(g) for g in members]
        ax1.plot(xs, [g.summary("train_seconds").mean for g in members], marker="o", label=name)
        ax2.plot(xs, [g.summary("images_per_second").mean for g in members], marker="o", label=name)
    sizes = [_train_size(g) for g in groups]
    for ax, label in ((ax1, "train time (s, all epochs)"), (ax2, "training throughput (images/s)")):
        _log_axis(ax, "x", sizes, base=2)
        _log_axis(ax, "y")
        ax.set_xlabel("input size (px, log scale)")
        ax.set_ylabel(label)
    ax1.set_title("Training time vs input size")
    ax2.set_title("Throughput vs input size")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both lower cost (x) and higher accuracy (y)."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def figure_accuracy_vs_cost(groups: list[Group], path: Path) -> bool:
    if len(groups) < 2:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    points = [(g.runs[0]["macs_per_image"] / 1e6, g.summary("test_accuracy").mean) for g in groups]
    varying = _varying([g.config for g in groups])
    labels = [f"{_size_text(g.config['size'])}px {_series_key(g.config, varying)}" for g in groups]
    ax.scatter([p[0] for p in points], [p[1] for p in points], color="C0", alpha=0.6, label="configuration (mean over seeds)")
    front = pareto_front(points)
    ax.plot([points[i][0] for i in front], [points[i][1] for i in front], color="C3", marker="o", label="Pareto front")
    for i in front:
        ax.annotate(labels[i], points[i], textcoords="offset points", xytext=(4, -10), fontsize=7)
    _log_axis(ax, "x")
    ax.set_xlabel("cost: multiply-accumulates per image (millions of MACs, log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Accuracy vs cost")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def figure_train_test_heatmap(groups: list[Group], path: Path) -> bool:
    cells: dict[tuple[int, int], list[float]] = defaultdict(list)
    for g in groups:
        for test_size, accs in g.evals.items():
            cells[(_train_size(g), test_size)].extend(accs)
    train_sizes = sorted({a for a, _ in cells})
    test_sizes = sorted({b for _, b in cells})
    if not any(len(g.evals) > 1 for g in groups):
        return False  # only the diagonal: nothing a heatmap would add to the table
    import numpy as np

    plt = _plt()
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
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def figure_examples(groups: list[Group], path: Path, n_images: int) -> bool:
    """What the network saw: the same test images through each method at each size of the sweep."""
    from .data import load_dataset
    from .resize import resize

    cfg = groups[0].config
    try:
        dataset = load_dataset(cfg["data"], cfg.get("data_dir"))
    except Exception:
        return False  # the data is not on this machine: the report goes on without this figure
    sizes = sorted({_train_size(g) for g in groups})
    methods = sorted({(g.config["interpolation"], g.config["antialias"], g.config["backend"]) for g in groups})
    # One image per class for the first few classes, so the strip is varied.
    labels = dataset.test_labels
    picks = [int((labels == c).nonzero()[0]) for c in range(min(n_images, dataset.num_classes))]
    images = dataset.test_images[picks]
    plt = _plt()
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
    fig.suptitle("What the network saw: test images after each resize (pixels shown as blocks)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


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
)


def write_report(config: ReportConfig) -> Path:
    """Write report.md, report.html (images embedded), the PNG figures and runs.csv (+ Parquet)."""
    groups, failed = load_groups(config.db, config.sweep)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    title = f"resizelab report: {config.sweep or 'all runs'}"
    header, body = summary_table(groups)
    figures = []
    if groups:
        for filename, heading, draw, caption in FIGURES:
            if draw(groups, out / filename):
                figures.append((filename, heading, caption))
        if figure_examples(groups, out / "examples.png", config.example_images):
            figures.append(("examples.png", "What the network saw", "The same test images after each method at each size, drawn pixel for pixel."))
    _write_csv(groups, out)
    n_runs = sum(len(g.runs) for g in groups)
    intro = (f"{n_runs} finished runs in {len(groups)} configurations from `{config.db}`. "
             "Accuracy is top-1 on the test split, mean ± half-width of the two-sided 95% Student-t confidence interval over seeds (n runs). "
             "Train seconds time the training loop only (batches, forward, backward, optimizer steps), not data loading or evaluation.")
    md = [f"# {title}", "", intro, "", _md_table(header, body), ""]
    for filename, heading, caption in figures:
        md += [f"## {heading}", "", f"![{heading}]({filename})", "", caption, ""]
    if failed:
        md += ["## Failed runs", "", _md_table(["config", "reason"], [[r["label"], r["error"] or ""] for r in failed]), ""]
    md += ["Per-run data: `runs.csv` (one row per run, resolved config and provenance)."]
    (out / "report.md").write_text("\n".join(md) + "\n")
    parts = [f"<h1>{html.escape(title)}</h1>", f"<p>{html.escape(intro)}</p>", _html_table(header, body)]
    for filename, heading, caption in figures:
        data = base64.b64encode((out / filename).read_bytes()).decode()
        parts += [f"<h2>{html.escape(heading)}</h2>", f'<img alt="{html.escape(heading)}" src="data:image/png;base64,{data}">',
                  f"<p>{html.escape(caption)}</p>"]
    if failed:
        parts += ["<h2>Failed runs</h2>", _html_table(["config", "reason"], [[r["label"], r["error"] or ""] for r in failed])]
    style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
             "table{border-collapse:collapse;font-size:0.9em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
             "th{background:#f3f3f3}img{max-width:100%}")
    (out / "report.html").write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
                                     f"<style>{style}</style></head><body>{''.join(parts)}</body></html>\n")
    return out


def _write_csv(groups: list[Group], out: Path) -> None:
    rows = []
    for g in groups:
        for run in g.runs:
            flat = {f"config.{k}": (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in run["config"].items()}
            result = run["result"]
            flat.update({
                "config_hash": run["config_hash"], "test_accuracy": run["test_accuracy"], "train_seconds": run["train_seconds"],
                "images_per_second": run["images_per_second"], "macs_per_image": run["macs_per_image"], "params": run["params"],
                "peak_memory_bytes": run["peak_memory_bytes"], "effective_precision": result.get("effective_precision"),
                "weights_tag": result.get("weights_tag"), "time_to_first_step_seconds": result.get("time_to_first_step_seconds"),
            })
            for ev in result.get("evals", []):
                flat[f"test_accuracy_at_{ev['size_px']}px"] = ev["accuracy"]
            prov = json.loads(run["provenance_json"] or "{}")
            for k in ("torch", "torchvision", "device_name", "git_revision", "antialias_effective", "backend"):
                flat[f"provenance.{k}"] = prov.get(k)
            rows.append(flat)
    fieldnames = sorted({k for r in rows for k in r}, key=lambda k: (k.startswith("config."), k.startswith("provenance."), k))
    with open(out / "runs.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(rows)
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return
    if rows:
        pq.write_table(pa.Table.from_pylist([{k: r.get(k) for k in fieldnames} for r in rows]), out / "runs.parquet")
