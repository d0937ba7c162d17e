"""DeepSpeed ZeRO code path (untested here: DeepSpeed does not run on these CPU machines).

Under ZeRO the optimizer updates fp32 *master* copies (partitioned across ranks) and then
copies them into the model's (often bf16) parameters. Masking only the model parameters is
not enough: the next step would copy the regrown master values back. So after each
``engine.step()`` the masks are applied to the master copies and to the optimizer moments
through DeepSpeed's public accessors (``deepspeed.utils.safe_get/set_full_fp32_param`` and
``safe_get/set_full_optimizer_state``), which gather and scatter the partitions.

    engine, optimizer, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=ds_config)
    state = sparsify_(engine.module, plan)               # same masks on every rank (same weights)
    ...
    engine.backward(loss); engine.step(); enforce_after_step(engine, state)
"""

from __future__ import annotations

import torch

from es_plugins.state import SparsityState

__all__ = ["enforce_after_step"]


@torch.no_grad()
def enforce_after_step(engine, state: SparsityState, moments: tuple[str, ...] = ("exp_avg", "exp_avg_sq")) -> None:
    """Zero pruned entries of the model params, their fp32 master copies and optimizer moments."""
    from deepspeed.utils import (
        safe_get_full_fp32_param,
        safe_get_full_optimizer_state,
        safe_set_full_fp32_param,
        safe_set_full_optimizer_state,
    )

    params = dict(engine.module.named_parameters())
    for name, mask in state.masks.items():
        param = params[name]
        master = safe_get_full_fp32_param(param)
        if master is not None:
            safe_set_full_fp32_param(param, master * mask.to(master.device))
        for key in moments:
            value = safe_get_full_optimizer_state(param, key)
            if value is not None:
                safe_set_full_optimizer_state(param, value * mask.to(value.device), key)
        if param.numel() == mask.numel():  # ZeRO-1/2: full params on every rank
            param.mul_(mask.to(param.device))
