"""Optimizers and learning-rate schedules a run can use."""

from __future__ import annotations

import torch
import torch.nn as nn

from ..core.choices import OPTIMIZERS, SCHEDULES  # noqa: F401 - re-exported


def make_optimizer(name: str, model: nn.Module, lr: float, momentum: float, weight_decay: float) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}; got {name!r}")


def make_schedule(name: str, optimizer: torch.optim.Optimizer, total_steps: int):
    """A per-step scheduler, or None for a constant rate."""
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    if name == "constant":
        return None
    raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}; got {name!r}")
