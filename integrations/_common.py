"""Small helpers shared by the framework adapters (event plumbing only, no algorithms)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from es_plugins.masks.state import MASKS_FILENAME, SparsityState


def unwrap_optimizer(optimizer: Any) -> torch.optim.Optimizer:
    """The torch optimizer inside framework wrappers (Accelerate's AcceleratedOptimizer,
    Lightning's LightningOptimizer), whose ``step`` runs only on real updates."""
    for _ in range(5):  # wrappers may subclass Optimizer themselves (AcceleratedOptimizer does)
        inner = getattr(optimizer, "optimizer", None) or getattr(optimizer, "_optimizer", None)
        if not isinstance(inner, torch.optim.Optimizer) or inner is optimizer:
            break
        optimizer = inner
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"cannot find a torch.optim.Optimizer inside {type(optimizer).__name__}")
    return optimizer


def load_masks_from(folders: list[Path]) -> tuple[SparsityState, Path] | None:
    """First masks file found in ``folders`` (checkpoint folders, most specific first)."""
    for folder in folders:
        path = Path(folder) / MASKS_FILENAME
        if path.is_file():
            return SparsityState.load(path), path
    return None
