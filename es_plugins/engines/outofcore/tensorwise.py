"""Out-of-core pruning with whole-model methods (magnitude, random, N:M) of a safetensors
checkpoint, shard by shard, without loading the model.

The model is built on the meta device (no memory) only to resolve the same targets, names and
input axes as an in-memory run. The registered method then runs on targets whose weights are
memory-mapped views of the checkpoint: the exact global threshold of bf16/fp16 magnitudes comes
from one pass that counts their 16-bit keys (:mod:`es_plugins.masks.key_counts`), other scores
go through the bracketing engine under a gather bound; each target's mask is then made, applied
into a byte copy of its shard (chunk by chunk on worker threads, zeros counted on the way) and
handed to a thread that packs and writes it, before the next. Peak anonymous memory is about two
masks and a few chunk buffers per worker, whatever the model size; the output has the input's
shards, index, dtypes and header layout.
"""

from __future__ import annotations

import itertools
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...errors import CheckpointError, SparsityConfigError
from ...io.hf_config import model_class, read_config
from ...io.weight_files import FLOATING, INDEX_FILE, SINGLE_FILE
from ...masks.apply import zeroed
from ...masks.masks_file import MasksFileWriter
from ...masks.naming import canonical_names, match_names
from ...masks.report import LayerStats, SparsityReport, count_zeros
from ...masks.select import CHUNK, bounded_gather
from ...masks.state import MASKS_FILENAME, SparsityState
from ...masks.targets import Target, resolve_targets
from ...masks.workers import ChunkWorkers, chunk_workers
from ...methods import entry_for, iter_masks
from ...methods.plan import SparsityPlan
from ...progress import progress_factory
from .files import ShardedCheckpoint, TensorEntry, copy_checkpoint_files, streamed_report, tensor_slot


def meta_model(folder: Path) -> nn.Module:
    """The checkpoint's architecture on the meta device: names, shapes and modules, no memory."""
    import transformers  # the hf extra: needed to know the architecture

    config = read_config(folder)
    cls = model_class(folder, config)
    hf_config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True)
    with torch.device("meta"):
        return cls._from_config(hf_config)


def checkpoint_names(model: nn.Module, checkpoint: ShardedCheckpoint, names: list[str]) -> dict[str, str]:
    """Map model parameter ``names`` to checkpoint tensor names (prefixes may differ, as with a
    base checkpoint loaded under a task head); shapes are checked, and a floating parameter
    stored with an integer dtype (a header that mislabels its data) is refused."""
    params = dict(model.named_parameters())
    mapping = match_names(
        {n: tuple(params[n].shape) for n in names},
        checkpoint.shapes(),
        what=f"the checkpoint's tensors do not match its architecture ({type(model).__name__})",
    )
    for name, stored in mapping.items():
        entry = checkpoint.entries[stored]
        if params[name].is_floating_point() and entry.dtype not in FLOATING:
            raise CheckpointError(
                f"{str(entry.file)!r}, tensor {stored!r}: stored as {entry.dtype}, but {name!r} is a floating "
                "weight (the header mislabels its data)"
            )
    return mapping


@dataclass
class StreamedTargets:
    """Targets whose ``param`` is a memory-mapped view of the checkpoint, and their entries."""

    targets: list[Target]
    entries: dict[str, TensorEntry]
    checkpoint: ShardedCheckpoint


def open_checkpoint(src: str | Path | ShardedCheckpoint, allow_external: bool = False) -> ShardedCheckpoint:
    """``src`` read and validated, once (a :class:`ShardedCheckpoint` passes through)."""
    return src if isinstance(src, ShardedCheckpoint) else ShardedCheckpoint(src, allow_external)


def streamed_targets(checkpoint: ShardedCheckpoint, plan: SparsityPlan) -> StreamedTargets:
    model = meta_model(checkpoint.folder)
    resolved = resolve_targets(model, plan.targets)
    mapping = checkpoint_names(model, checkpoint, [t.name for t in resolved])
    targets = [Target(t.name, t.module_name, checkpoint.tensor(mapping[t.name]), t.in_axis) for t in resolved]
    entries = {t.name: checkpoint.entries[mapping[t.name]] for t in resolved}
    return StreamedTargets(targets, entries, checkpoint)


def prune_tensorwise(
    src: str | Path | ShardedCheckpoint,
    dst: str | Path,
    plan: SparsityPlan,
    pattern: tuple[int, int] | None = None,
    show_progress: bool = False,
    meta: dict[str, Any] | None = None,
    allow_external: bool = False,
) -> SparsityReport:
    """Prune the safetensors checkpoint in ``src`` into the (existing, empty) folder ``dst``,
    one memory-mapped tensor at a time (the registry's ``out_of_core_driver == "tensors"``).
    :func:`es_plugins.prune_checkpoint` with ``low_memory=True`` is the job around it.

    ``allow_external``: accept an index naming shards outside ``src`` (refused by default:
    :mod:`es_plugins.io.weight_files`); ``dst`` gets its own copies and an index naming them.

    ``dst`` receives the pruned shards (same names, layout and dtypes), the index, and the
    masks file; side files (config, tokenizer) are the caller's. Returns the report (with N:M
    compliance counted for ``pattern``, when given).

    Raises:
        SparsityConfigError: a calibrated method (see :mod:`es_plugins.engines.outofcore.blockwise`).
        MaskMismatchError: tensors that do not fit the architecture in ``config.json``.
        CheckpointError: not a safetensors checkpoint, or tensors that do not fit the config.
    """
    if entry_for(plan.method).out_of_core_driver != "tensors":
        raise SparsityConfigError(f"{plan.method.name!r} is calibrated: use the block-wise out-of-core driver")
    dst = Path(dst)
    streamed = streamed_targets(open_checkpoint(src, allow_external), plan)
    copy_checkpoint_files(streamed.checkpoint, dst, skip=streamed.entries.values())  # targets: written once, below
    by_name = {t.name: t for t in streamed.targets}
    # The masks file an in-memory run would write, byte for byte: canonical names, same metadata.
    state_meta = SparsityState.from_plan({}, plan, streamed.targets).state_dict()["meta"]
    canonical_of = dict(zip(by_name, canonical_names(list(by_name))))
    shapes = {canonical_of[n]: tuple(t.param.shape) for n, t in by_name.items()}
    masks_file = MasksFileWriter(dst / MASKS_FILENAME, shapes, state_meta)
    layers = []
    progress = progress_factory(show_progress, f"{plan.method.name} (out-of-core)")
    limit = max(max(t.numel for t in streamed.targets) // 4, 1 << 20)  # gathered scores <= 1x the largest tensor
    with bounded_gather(limit):
        masks = iter_masks(streamed.targets, plan.method)
        first = next(masks, None)  # the threshold search runs here, inside the bound
    # A mask is packed, hashed and written on a thread of its own while the next tensor is
    # pruned; at most one is pending (two masks in memory at most).
    with chunk_workers() as workers, ThreadPoolExecutor(1, thread_name_prefix="es-plugins-masks") as mask_writer:
        pending: Future | None = None
        for name, keep in progress(itertools.chain([first] if first else [], masks)):
            target = by_name[name]
            with tensor_slot(streamed.entries[name], dst) as slot:  # computed straight into the output file
                zeros = write_pruned(target.param, keep, slot, workers)
                layers.append(LayerStats.measure(name, slot, target.in_axis, pattern, zeros=zeros))
            if pending is not None:
                pending.result()  # raises what the write raised
            pending = mask_writer.submit(masks_file.write, canonical_of[name], keep)
            del keep
        if pending is not None:
            pending.result()
    masks_file.close()
    return streamed_report(
        streamed.checkpoint, streamed.entries.values(), layers, pattern, {**(meta or {}), "out_of_core": True}
    )


def write_pruned(param: torch.Tensor, keep: torch.Tensor, slot: torch.Tensor, workers: ChunkWorkers) -> int:
    """``slot = param * keep`` (bit for bit, see :func:`zeroed`), chunk by chunk on the workers,
    each chunk's zeros counted while it is still in cache; returns the zeros."""
    flat_param, flat_keep, flat_slot = param.reshape(-1), keep.reshape(-1), slot.view(-1)

    def chunk(start: int, stop: int) -> int:
        return count_zeros(zeroed(flat_param[start:stop], flat_keep[start:stop], out=flat_slot[start:stop]))

    return sum(workers.map(chunk, flat_param.numel(), CHUNK))


def is_streamable(folder: Path) -> bool:
    """Whether ``folder`` holds safetensors weights (a single file or an index), which the
    out-of-core paths read. Their validity is checked by :class:`ShardedCheckpoint`, whose
    errors name the fault: a damaged checkpoint is an error, not "no safetensors"."""
    return (folder / INDEX_FILE).is_file() or (folder / SINGLE_FILE).is_file()
