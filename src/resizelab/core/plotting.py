"""The plotting leaf every figure shares (the report's, spectrum's): matplotlib set up headless, log axes
labelled with plain numbers, a figure laid out, written and closed. matplotlib is imported on first use."""

from __future__ import annotations

import math
from pathlib import Path


def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # headless: reports are written on servers and in CI
    import matplotlib.pyplot as plt

    plt.rcParams.update({"figure.dpi": 110, "axes.grid": True, "grid.alpha": 0.3, "legend.fontsize": 8})
    return plt


def save_figure(plt, fig, path: Path) -> bool:
    """Lay out, write and close a figure; True: it was drawn."""
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def log_axis(ax, axis: str, ticks: list[float] | None = None, base: float = 10) -> None:
    """Log scale labelled with plain numbers (16, 32, 64), not 2^4 or 6x10^0."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter

    getattr(ax, f"set_{axis}scale")("log", base=base)
    target = ax.xaxis if axis == "x" else ax.yaxis
    if ticks:
        target.set_major_locator(FixedLocator(sorted(set(ticks))))
    else:
        # Called after plotting, so the limits are the data's: within a decade or so 1-2-5 leaves one or two
        # labels (0.7 to 4 s showed only 1 and 2), so the steps get finer as the span gets shorter.
        low, high = sorted(getattr(ax, f"get_{axis}lim")())
        decades = math.log10(high / low) if low > 0 and high > low else 1.0
        subs = (1.0, 2.0, 5.0) if decades > 1.5 else (1.0, 1.5, 2.0, 3.0, 5.0, 7.0) if decades > 0.6 else tuple(range(1, 10))
        target.set_major_locator(LogLocator(base=base, subs=subs))
    target.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))  # 0.7, 1.5, 16, 1500
    target.set_minor_formatter(NullFormatter())


def fitted(fig, text: str, fontsize: float) -> str:
    """`text` wrapped to the figure's width at `fontsize`: a title wider than its figure is cut off at both sides
    (a narrow figure, one size column, a long explanation). Lines already broken by hand are kept."""
    import textwrap

    width = max(30, int(fig.get_figwidth() * 120 / fontsize))  # about 120/fontsize characters to the inch
    return "\n".join(textwrap.fill(line, width) for line in text.split("\n"))
