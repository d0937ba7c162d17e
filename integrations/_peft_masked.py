"""Masked LoRA: train the low-rank update inside the base mask, so the sparse merge discards
nothing. PEFT-layer plumbing only; the merge arithmetic is :mod:`es_plugins.engines.merge`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from es_plugins.errors import SparsityConfigError
from es_plugins.masks.state import SparsityState


@dataclass
class MaskedLoRA:
    """Handle of :func:`mask_lora_`: the LoRA layers whose update is masked; ``remove()`` undoes it."""

    layers: dict[str, nn.Module] = field(default_factory=dict)

    def remove(self) -> None:
        for module in self.layers.values():
            module.__dict__.pop("forward", None)
            module.__dict__.pop("_es_plugins_mask", None)
        self.layers.clear()


def mask_lora_(peft_model: nn.Module, state: SparsityState) -> MaskedLoRA:
    """Train LoRA *inside* the base mask: each adapted layer computes
    ``base(x) + x @ (ΔW ⊙ M)ᵀ`` instead of ``base(x) + x @ ΔWᵀ``.

    The model then never uses the part of the update the mask removes, so
    :func:`merge_and_unload_sparse` discards nothing (its report shows 0) and the merged
    model computes exactly what was trained. Costs one ``B @ A`` product per adapted layer
    and forward.

    Example:
        >>> state = sparsify_(peft_model, OMPConfig(0.5))               # doctest: +SKIP
        >>> handle = mask_lora_(peft_model, state)                      # doctest: +SKIP
        >>> trainer = Trainer(peft_model, ..., callbacks=[SparsityCallback(state=state)])  # doctest: +SKIP
    """
    state.validate(peft_model)
    handle = MaskedLoRA()
    for name, module in peft_model.named_modules():
        base = getattr(module, "base_layer", None)
        lora_a = getattr(module, "lora_A", None)
        key = f"{name}.base_layer.weight"
        if base is None or lora_a is None or key not in state.masks:
            continue
        module._es_plugins_mask = state.masks[key]
        module.forward = _masked_forward(module)
        handle.layers[name] = module
    if not handle.layers:
        raise SparsityConfigError("no LoRA layer of the model has a masked base weight; prune the base first")
    return handle


def _masked_forward(module: nn.Module) -> Callable:
    original = type(module).forward

    def forward(x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if module.disable_adapters or module.merged or args or kwargs:
            return original(module, x, *args, **kwargs)
        result = module.base_layer(x)
        mask = module._es_plugins_mask.to(result.device)
        for adapter in module.active_adapters:
            if adapter not in module.lora_A:
                continue
            delta = module.get_delta_weight(adapter) * mask  # base weight layout, scaling included
            weight = delta.T if getattr(module, "fan_in_fan_out", False) else delta
            dropped = module.lora_dropout[adapter](x).to(weight.dtype)
            result = result + torch.nn.functional.linear(dropped, weight).to(result.dtype)
        return result

    return forward
