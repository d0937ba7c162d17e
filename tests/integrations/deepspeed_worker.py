"""Worker for the DeepSpeed test, run under `torchrun --nproc_per_node 2` on CPU (gloo)."""

from __future__ import annotations

import json
import os
import sys

import torch

sys.path.insert(0, sys.argv[4])
import deepspeed  # noqa: E402
from deepspeed.utils import safe_get_full_fp32_param, safe_get_full_optimizer_state  # noqa: E402

from es_plugins import SparsityConfigError  # noqa: E402
from es_plugins.integrations.deepspeed import enforce_after_step, prepare_sparsity  # noqa: E402
from tests.conftest import TinyBlocks  # noqa: E402


def main(out: str, stage: int, enforce: bool) -> None:
    # DeepSpeed's CPU shared-memory all-reduce is a C++ op it compiles on first use (~2 minutes
    # on 2 cores, every fresh CI machine); without it DeepSpeed reduces through gloo, and the
    # masking under test does not depend on which transport adds the gradients.
    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    torch.manual_seed(0)
    model = TinyBlocks()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    config = {"train_micro_batch_size_per_gpu": 4, "zero_optimization": {"stage": stage}}
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=config)
    rank = engine.global_rank
    if stage == 3:
        try:
            prepare_sparsity(engine, "omp", sparsity=0.5)
            result = {"refused": False}
        except SparsityConfigError as exc:
            result = {"refused": "stage 3" in str(exc)}
    else:
        state = prepare_sparsity(engine, "omp", sparsity=0.5)
        gen = torch.Generator().manual_seed(rank)
        for _ in range(3):
            loss = engine(torch.randint(0, 50, (4, 6), generator=gen)).pow(2).mean()
            engine.backward(loss)
            engine.step()
            if enforce:
                enforce_after_step(engine, state)
        params = dict(engine.module.named_parameters())
        master_regrown = moment_regrown = weight_regrown = 0
        for name, mask in state.masks.items():
            weight_regrown += int((params[name].detach()[~mask] != 0).sum())
            master_regrown += int((safe_get_full_fp32_param(params[name])[~mask] != 0).sum())
            moment_regrown += int((safe_get_full_optimizer_state(params[name], "exp_avg")[~mask] != 0).sum())
        result = {
            "world": engine.world_size,
            "pruned": state.num_pruned,
            "total": state.num_weights,
            "weights": weight_regrown,
            "master": master_regrown,
            "moments": moment_regrown,
        }
    with open(os.path.join(out, f"stage{stage}-enforce{int(enforce)}-rank{rank}.json"), "w") as handle:
        json.dump(result, handle)
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1")
    # Results are on disk; skip C++ static destructors, where torch's gloo threads can abort
    # a finished rank ("terminate called without an active exception", seen in CI).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
