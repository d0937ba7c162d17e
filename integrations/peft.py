"""PEFT adapter: LoRA on a sparse base, and a merge that keeps the sparsity.

``merge_and_unload()`` of a LoRA trained on a 50 %-sparse base gives a fully dense weight
(B·A is dense). :func:`merge_and_unload_sparse` merges, then re-applies the base masks (or
re-projects to N:M), and reports how much of the LoRA update the masks discarded.

    model = get_peft_model(base, LoraConfig(...))
    trainer = Trainer(model=model, ..., callbacks=[SparsityCallback("omp", sparsity=0.5)])
    trainer.train()
    merged, report = merge_and_unload_sparse(model, trainer_callback.sparsifier.state)

When the merge discards more than ``DISCARD_WARNING_FRACTION`` (10 %) of the update it warns;
:func:`mask_lora_` trains the update inside the mask so the merge discards nothing.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from es_plugins.engines.merge import DISCARD_WARNING_FRACTION, MergedLayer, MergeReport, sparsify_merged_
from es_plugins.errors import SparsityConfigError
from es_plugins.masks.naming import match_names
from es_plugins.masks.patterns import parse_pattern
from es_plugins.masks.state import SparsityState
from es_plugins.masks.targets import resolve_targets

from ._peft_masked import MaskedLoRA, mask_lora_

__all__ = [
    "DISCARD_WARNING_FRACTION",
    "MaskedLoRA",
    "MergeReport",
    "mask_lora_",
    "merge_and_unload_sparse",
    "merged_name",
]


def merged_name(peft_name: str) -> str:
    """Parameter name after ``merge_and_unload``: no ``base_model.model.`` prefix, no ``.base_layer``."""
    name = peft_name.removeprefix("base_model.model.")
    return name.replace(".base_layer.", ".")


def merge_and_unload_sparse(
    peft_model: nn.Module,
    state: SparsityState | None = None,
    pattern: str | tuple[int, int] | None = None,
    evaluate: Callable[[nn.Module], float] | None = None,
) -> tuple[nn.Module, MergeReport]:
    """Merge LoRA adapters into a sparse base and keep it sparse.

    Args:
        peft_model: a ``PeftModel`` whose base was pruned (and kept frozen).
        state: the base masks (names as in the PEFT model or the merged one); by default the
            zeros of the targeted base weights.
        pattern: ``"N:M"`` (or ``(N, M)``) to re-project the merged weights to N:M (keeping the N
            largest of each group *within* the base mask) instead of applying the base mask unchanged.
        evaluate: ``evaluate(model) -> float`` run before the merge (PEFT model) and after it.

    Raises:
        MaskMismatchError: a mask names no parameter of the merged model or has another shape.
    """
    if pattern is not None:
        parse_pattern(pattern)  # a bad pattern fails before the merge changes the model
    masked_training = {
        merged_name(f"{n}.base_layer.weight") for n, m in peft_model.named_modules() if hasattr(m, "_es_plugins_mask")
    }
    before = float(evaluate(peft_model)) if evaluate is not None else None
    base = {merged_name(t.name): t.param.detach().clone() for t in resolve_targets(peft_model)}
    if not base:
        raise SparsityConfigError("no targeted base weights found in the PEFT model")
    masks = (
        {merged_name(n): m for n, m in state.masks.items()}
        if state is not None
        else {name: weight != 0 for name, weight in base.items()}
    )
    merged = peft_model.merge_and_unload()
    params = dict(merged.named_parameters())
    mapping = match_names(
        {n: tuple(m.shape) for n, m in masks.items()},
        {n: tuple(p.shape) for n, p in params.items()},
        what="masks do not match the merged model",
    )
    base = {mapping.get(n, n): w for n, w in base.items()}
    in_axes = {t.name: t.in_axis for t in resolve_targets(merged)}
    layers = {
        mapping[n]: MergedLayer(
            params[mapping[n]].data,
            base.get(mapping[n], params[mapping[n]].detach()),
            m,
            in_axes.get(mapping[n], 1),
            mapping[n] in masked_training,
        )
        for n, m in masks.items()
    }
    report = sparsify_merged_(
        layers,
        pattern,
        warn_hint="train with the mask instead "
        "(es_plugins.integrations.peft.mask_lora_(peft_model, state)) and the merge discards nothing",
    )
    report.metric_before = before
    if evaluate is not None:
        report.metric_after = float(evaluate(merged))
    return merged, report
