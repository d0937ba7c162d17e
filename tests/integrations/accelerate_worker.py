"""Worker for the Accelerate tests, run under `torchrun --nproc_per_node 2` (or alone)."""

from __future__ import annotations

import json
import os
import sys

import torch
from accelerate import Accelerator

sys.path.insert(0, sys.argv[3])
from es_plugins.engines.distributed import masks_checksum  # noqa: E402
from es_plugins.integrations.accelerate import prepare_sparsity  # noqa: E402
from tests.conftest import TinyBlocks  # noqa: E402


def main(out: str, phase: str) -> None:
    accelerator = Accelerator(cpu=True, gradient_accumulation_steps=2)
    # Different init per rank (DDP syncs rank 0's), and a different one again when resuming:
    # the resumed masks can only match the trained ones if load_state restored them.
    torch.manual_seed((10 if phase == "train" else 99) + accelerator.process_index)
    model = TinyBlocks()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    gen = torch.Generator().manual_seed(0)
    data = torch.utils.data.TensorDataset(
        torch.randint(0, 50, (64, 6), generator=gen), torch.randint(0, 3, (64,), generator=gen)
    )
    loader = torch.utils.data.DataLoader(data, batch_size=4)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    sparsifier = prepare_sparsity(accelerator, model, optimizer, "omp", sparsity=0.5)
    before_load = masks_checksum(sparsifier.state)
    if phase == "resume":
        accelerator.load_state(os.path.join(out, "state"))
    real_steps = 0
    for ids, labels in loader:
        with accelerator.accumulate(model):
            loss = torch.nn.functional.cross_entropy(model(ids), labels)
            accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad()
            real_steps += int(accelerator.sync_gradients)
    if phase == "train":
        accelerator.save_state(os.path.join(out, "state"))
    state = sparsifier.state
    result = {
        "before_load": before_load,
        "rank": accelerator.process_index,
        "world": accelerator.num_processes,
        "checksum": masks_checksum(state),
        "pruned": state.num_pruned,
        "total": state.num_weights,
        "real_steps": real_steps,
        "regrown": state.count_nonzero_pruned(accelerator.unwrap_model(model)),
    }
    sparsifier.finalize()
    with open(os.path.join(out, f"{phase}-rank{accelerator.process_index}.json"), "w") as handle:
        json.dump(result, handle)
    # Tear gloo down explicitly: leaving it to interpreter exit can abort a rank
    # ("terminate called without an active exception") after the work is done.
    accelerator.wait_for_everyone()
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
    # Results are on disk; skip C++ static destructors, where torch's gloo threads can abort
    # a finished rank ("terminate called without an active exception", seen in CI).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
