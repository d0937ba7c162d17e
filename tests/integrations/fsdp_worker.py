"""Worker for the FSDP tests, run under `torchrun --nproc_per_node 2` (gloo, CPU)."""

from __future__ import annotations

import copy
import json
import os
import sys

import torch
import torch.distributed as dist

sys.path.insert(0, sys.argv[3])
from es_plugins import OMPConfig, SparsityPlan, sparsify_  # noqa: E402
from es_plugins.engines.sharding import local_view  # noqa: E402
from tests.conftest import TinyBlocks  # noqa: E402


def reference_pieces(reference_masks: dict, rank: int, world: int, kind: str) -> dict:
    """The single-process masks cut the way this rank's shards are cut."""
    out = {}
    for name, mask in reference_masks.items():
        if kind == "fsdp2":
            out[name] = (
                torch.chunk(mask, world, dim=0)[rank] if rank < len(torch.chunk(mask, world, dim=0)) else mask[:0]
            )
        else:
            out[name] = mask.reshape(-1)  # compared after gathering pieces in rank order
    return out


def main(out: str, kind: str) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    model = TinyBlocks(width=32, hidden=64, depth=3)
    with torch.no_grad():  # bf16-like ties: many equal magnitudes across shards
        for p in model.parameters():
            p.copy_(p.bfloat16().float())
    reference = sparsify_(copy.deepcopy(model), SparsityPlan(OMPConfig(0.5)))
    if kind == "fsdp2":
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh("cpu", (world,))
        for block in model.blocks:
            fully_shard(block, mesh=mesh)
        fully_shard(model, mesh=mesh)
        names = lambda n: n
    else:
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

        model = FSDP(model, device_id=torch.device("cpu"), use_orig_params=True)
        names = lambda n: n.replace("_fsdp_wrapped_module.", "")
    state = sparsify_(model, SparsityPlan(OMPConfig(0.5)), sharded=True)
    local_pruned = sum(int((~m).sum()) for m in state.masks.values())
    pruned = torch.tensor([local_pruned])
    dist.all_reduce(pruned)
    ref = reference_pieces(reference.masks, rank, world, kind)
    if kind == "fsdp2":
        same = all(torch.equal(state.masks[n], ref[names(n)]) for n in state.masks)
    else:
        same = True
        for n, m in state.masks.items():
            pieces = [None] * world
            dist.all_gather_object(pieces, m.reshape(-1))
            same &= torch.equal(torch.cat(pieces), ref[names(n)])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    state.attach(model, optimizer, mask_gradients=True)
    gen = torch.Generator().manual_seed(rank)
    for _ in range(3):
        loss = model(torch.randint(0, 50, (4, 6), generator=gen)).pow(2).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    params = dict(model.named_parameters())
    regrown = sum(int((local_view(params[n]).detach()[~m] != 0).sum()) for n, m in state.masks.items())
    result = {
        "world": world,
        "pruned": int(pruned),
        "expected": reference.num_pruned,
        "same_as_single": bool(same),
        "regrown": regrown,
        "local_fraction": sum(m.numel() for m in state.masks.values()) / reference.num_weights,
    }
    with open(os.path.join(out, f"{kind}-rank{rank}.json"), "w") as handle:
        json.dump(result, handle)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
    # Results are on disk; skip C++ static destructors, where torch's gloo threads can abort
    # a finished rank ("terminate called without an active exception", seen in CI).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
