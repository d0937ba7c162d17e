"""PEFT adapter: LoRA on a sparse base, and a merge that keeps the sparsity.

``merge_and_unload()`` of a LoRA trained on a 50 %-sparse base gives a fully dense weight
(B·A is dense). :func:`merge_and_unload_sparse` merges, then re-applies the base masks (or
re-projects to N:M), and reports how much of the LoRA update the masks discarded.

    model = get_peft_model(base, LoraConfig(...))
    trainer = Trainer(model=model, ..., callbacks=[SparsityCallback("omp", sparsity=0.5)])
    trainer.train()
    merged, report = merge_and_unload_sparse(model, trainer_callback.sparsifier.state)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from es_plugins.errors import MaskMismatchError, SparsityConfigError
from es_plugins.masks.nm import nm_keep_within
from es_plugins.state import SparsityState
from es_plugins.targets import resolve_targets

__all__ = ["MergeReport", "merge_and_unload_sparse", "merged_name"]


def merged_name(peft_name: str) -> str:
    """Parameter name after ``merge_and_unload``: no ``base_model.model.`` prefix, no ``.base_layer``."""
    name = peft_name.removeprefix("base_model.model.")
    return name.replace(".base_layer.", ".")


@dataclass
class MergeReport:
    """How much of each layer's LoRA update (``W_merged - W_base``) the masks discarded."""

    layers: dict[str, float] = field(default_factory=dict)  # name -> ||discarded|| / ||update||
    discarded_norm: float = 0.0
    update_norm: float = 0.0
    metric_before: float | None = None
    metric_after: float | None = None

    @property
    def discarded_ratio(self) -> float:
        return self.discarded_norm / self.update_norm if self.update_norm else 0.0

    def to_dict(self) -> dict:
        return {"discarded_ratio": self.discarded_ratio, "layers": self.layers,
                "metric_before_merge": self.metric_before, "metric_after_merge": self.metric_after}


@torch.no_grad()
def merge_and_unload_sparse(
    peft_model: nn.Module,
    state: SparsityState | None = None,
    pattern: tuple[int, int] | None = None,
    evaluate: Callable[[nn.Module], float] | None = None,
) -> tuple[nn.Module, MergeReport]:
    """Merge LoRA adapters into a sparse base and keep it sparse.

    Args:
        peft_model: a ``PeftModel`` whose base was pruned (and kept frozen).
        state: the base masks (names as in the PEFT model or the merged one); by default the
            zeros of the targeted base weights.
        pattern: ``(n, m)`` to re-project the merged weights to N:M (keeping the N largest of
            each group *within* the base mask) instead of applying the base mask unchanged.
        evaluate: ``evaluate(model) -> float`` run before the merge (PEFT model) and after it.

    Raises:
        MaskMismatchError: a mask names no parameter of the merged model or has another shape.
    """
    report = MergeReport()
    if evaluate is not None:
        report.metric_before = float(evaluate(peft_model))
    base = {merged_name(t.name): t.param.detach().clone() for t in resolve_targets(peft_model)}
    if not base:
        raise SparsityConfigError("no targeted base weights found in the PEFT model")
    if state is not None:
        masks = {merged_name(n): m for n, m in state.masks.items()}
    else:
        masks = {name: weight != 0 for name, weight in base.items()}
    merged = peft_model.merge_and_unload()
    params = dict(merged.named_parameters())
    unknown = sorted(n for n in masks if n not in params)
    if unknown:
        raise MaskMismatchError(f"masks name parameters the merged model lacks: {unknown[:5]}")
    targets = {t.name: t for t in resolve_targets(merged)}
    for name, mask in masks.items():
        weight = params[name]
        if tuple(mask.shape) != tuple(weight.shape):
            raise MaskMismatchError(f"mask {name!r} has shape {tuple(mask.shape)}, weight {tuple(weight.shape)}")
        mask = mask.to(weight.device)
        if pattern is not None:
            in_axis = targets[name].in_axis if name in targets else 1
            mask = nm_keep_within(weight, mask, pattern[0], pattern[1], in_axis)
        update = weight.detach().float() - base.get(name, weight.detach()).float()
        discarded = float(update[~mask].norm())
        total = float(update.norm())
        report.layers[name] = discarded / total if total else 0.0
        report.discarded_norm = math.hypot(report.discarded_norm, discarded)
        report.update_norm = math.hypot(report.update_norm, total)
        weight.mul_(mask)
    if evaluate is not None:
        report.metric_after = float(evaluate(merged))
    return merged, report
