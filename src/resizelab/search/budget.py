"""What a search may spend: compute time (`30m`, `4h`, `900s`), a number of full runs (`12`, `12runs`), or a share
of what the full grid would cost (`20%`), turned into seconds of training once the cost of a run is known."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ..core.errors import ConfigError

UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
EXAMPLES = "e.g. 30m, 4h, 900s (compute time), 12 (full runs) or 20% (of the full grid's cost)"


@dataclass(frozen=True)
class Budget:
    kind: str  # seconds | runs | share
    amount: float
    text: str

    def seconds(self, grid_seconds: float, mean_run_seconds: float) -> float:
        """The budget in seconds of training, given what the full grid and one full run cost."""
        if self.kind == "seconds":
            return self.amount
        if self.kind == "runs":
            return self.amount * mean_run_seconds
        return self.amount * grid_seconds

    def check_affordable(self, grid_seconds: float, min_run_seconds: float, mean_run_seconds: float) -> None:
        """Refuse a budget that cannot pay for one full run of the cheapest pipeline, naming the smallest that can."""
        have = self.seconds(grid_seconds, mean_run_seconds)
        if have + 1e-9 >= min_run_seconds:
            return
        if self.kind == "seconds":
            smallest = f"{math.ceil(min_run_seconds)}s"
        elif self.kind == "runs":
            smallest = f"{math.ceil(min_run_seconds / mean_run_seconds)} run(s)"
        else:
            smallest = f"{math.ceil(1000 * min_run_seconds / grid_seconds) / 10:g}%"
        raise ConfigError(f"budget {self.text} buys {have:.1f} s of training, less than one run of the cheapest pipeline "
                          f"({min_run_seconds:.1f} s); the smallest budget that works is {smallest}")


def parse_budget(text: str) -> Budget:
    raw = str(text).strip().lower().replace(" ", "")
    m = re.fullmatch(r"(-?[0-9]*\.?[0-9]+)(%|s|m|h|runs?)?", raw)
    if not m:
        raise ConfigError(f"budget {text!r} is not a budget; {EXAMPLES}")
    value, unit = float(m.group(1)), m.group(2) or "runs"
    if value <= 0 or not math.isfinite(value):
        raise ConfigError(f"budget {text!r} must be more than zero; {EXAMPLES}")
    if unit == "%":
        if value > 100:
            raise ConfigError(f"budget {text!r} is more than the full grid; give at most 100% (or run the grid with `resizelab sweep`)")
        return Budget("share", value / 100, text)
    if unit.startswith("run"):
        if value != int(value):
            raise ConfigError(f"budget {text!r}: a number of runs is a whole number; {EXAMPLES}")
        return Budget("runs", value, text)
    return Budget("seconds", value * UNITS[unit], text)
