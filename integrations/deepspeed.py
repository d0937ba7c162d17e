"""DeepSpeed ZeRO-1/2 adapter.

Under ZeRO the optimizer updates fp32 *master* copies (partitioned across ranks) and then
copies them into the model's parameters. Masking only the model parameters is not enough:
momentum regrows the master values and the next copy brings them back. So after each
``engine.step()`` the masks are applied to the master copies and the Adam moments through
DeepSpeed's public accessors (``deepspeed.utils.safe_get/set_full_fp32_param`` and
``safe_get/set_full_optimizer_state``), and to the model parameters.

    engine, optimizer, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=ds_config)
    state = prepare_sparsity(engine, "omp", sparsity=0.5)
    for batch in loader:
        engine.backward(engine(batch).loss); engine.step(); enforce_after_step(engine, state)

ZeRO-3 partitions the parameters themselves (each rank holds a flat piece); it is refused
with a clear error rather than pruned wrongly.
"""

from __future__ import annotations

from typing import Any

import torch

from es_plugins.engines.distributed import assert_identical_across_ranks
from es_plugins.engines.sparsify import sparsify_
from es_plugins.errors import SparsityConfigError
from es_plugins.masks.state import SparsityState
from es_plugins.methods.plan import make_plan

__all__ = ["prepare_sparsity", "enforce_after_step"]


def _check_stage(engine) -> None:
    stage = engine.zero_optimization_stage()
    if stage not in (0, 1, 2):
        raise SparsityConfigError(f"DeepSpeed ZeRO stage {stage} is not supported; use ZeRO stage 0, 1 or 2")


def prepare_sparsity(engine, plan=None, *, targets=None, **options: Any) -> SparsityState:
    """Prune ``engine.module`` (identical masks on every rank, verified) and mask the master
    copies and optimizer state right away."""
    _check_stage(engine)
    state = sparsify_(engine.module, make_plan(plan, targets, **options))
    assert_identical_across_ranks(state)
    enforce_after_step(engine, state)
    return state


@torch.no_grad()
def enforce_after_step(engine, state: SparsityState, moments: tuple[str, ...] = ("exp_avg", "exp_avg_sq")) -> None:
    """Zero pruned entries of the model params, their fp32 master copies and optimizer moments."""
    from deepspeed.utils import (
        safe_get_full_fp32_param,
        safe_get_full_optimizer_state,
        safe_set_full_fp32_param,
        safe_set_full_optimizer_state,
    )

    _check_stage(engine)
    params = dict(engine.module.named_parameters())
    # The accessors below are collectives: decide on every rank alike whether moments exist yet.
    inner = getattr(engine.optimizer, "optimizer", engine.optimizer)
    moments = moments if getattr(inner, "state", None) else ()
    for name, mask in state.masks.items():
        param = params[name]
        master = safe_get_full_fp32_param(param)
        if master is not None:
            safe_set_full_fp32_param(param, master * mask.to(master.device))
        for key in moments:
            value = safe_get_full_optimizer_state(param, key)
            if value is not None:
                safe_set_full_optimizer_state(param, value * mask.to(value.device), key)
        param.mul_(mask.to(param.device))
