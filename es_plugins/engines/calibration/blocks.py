"""Find a transformer's repeated blocks and capture the inputs of the first one."""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

from ...errors import SparsityConfigError


def find_blocks(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The largest ``nn.ModuleList`` of the model: its transformer blocks (Llama ``model.layers``,
    GPT-2 ``transformer.h``, OPT ``decoder.layers``, BERT ``encoder.layer``)."""
    lists = [
        (name, module) for name, module in model.named_modules() if isinstance(module, nn.ModuleList) and len(module)
    ]
    if not lists:
        raise SparsityConfigError(
            "calibration methods need a model with transformer blocks (an nn.ModuleList); none found"
        )
    return max(lists, key=lambda item: (sum(p.numel() for p in item[1].parameters()), -len(item[0])))


class _Captured(Exception):
    pass


@torch.no_grad()
def capture_block_inputs(
    model: nn.Module, first_block: nn.Module, batches: list[torch.Tensor]
) -> list[tuple[tuple, dict]]:
    """Run the model on each batch until the first block, recording its ``(args, kwargs)``."""
    captured: list[tuple[tuple, dict]] = []

    def hook(module: nn.Module, args: tuple, kwargs: dict) -> Any:
        captured.append((args, kwargs))
        raise _Captured

    handle = first_block.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        for batch in batches:
            try:
                model(input_ids=batch, use_cache=False) if _accepts_use_cache(model) else model(input_ids=batch)
            except _Captured:
                continue
            raise SparsityConfigError("the model's forward never reached its first transformer block")
    finally:
        handle.remove()
    return captured


def _accepts_use_cache(model: nn.Module) -> bool:
    return "use_cache" in inspect.signature(model.forward).parameters


def block_output(output: Any) -> torch.Tensor:
    """Blocks return a tensor (Llama) or a tuple whose first item is the hidden states."""
    return output[0] if isinstance(output, (tuple, list)) else output
