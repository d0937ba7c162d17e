"""Out-of-core Wanda / SparseGPT by sequential onloading: one transformer block in memory at a time.

The architecture is built twice without the checkpoint's weights: on the meta device in full
(names, targets, block layout: no memory) and for real with a single block (embeddings,
positions, final norm: what runs before block 0). The single block is the *template*: for block
``i`` its parameters are filled from the memory-mapped checkpoint, the block is calibrated and
pruned by the same engine as in memory (:func:`es_plugins.engines.calibration.engine.prune_block_`), the
pruned weights are written in place into the output shards, and the block's outputs become the
next block's inputs. Activations between blocks are kept in memory up to a budget and on disk
beyond it. Peak memory is the embeddings plus one block, its statistics and the activations,
whatever the depth. Blocks run in the checkpoint's dtype, as an in-memory run with
``--dtype auto`` does (so both give the same masks); statistics accumulate in float32.
"""

from __future__ import annotations

import contextlib
import copy
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from ...io.hf_config import model_class, read_config
from ...masks.masks_file import MasksFileWriter
from ...masks.naming import canonical_names
from ...masks.report import LayerStats, SparsityReport
from ...masks.state import MASKS_FILENAME, SparsityState
from ...masks.targets import Target
from ...methods.plan import SparsityPlan
from ..calibration.blocks import capture_block_inputs, find_blocks
from ..calibration.checks import check_calibration
from ..calibration.driver import ActivationStore, BlockPlan, OpenBlock, plan_blocks, run_blocks
from ..device import resolve_device, to_device
from .files import STORAGE_DTYPES, ShardedCheckpoint, copy_checkpoint_files, streamed_report, write_tensor_in_place
from .tensorwise import checkpoint_names, meta_model, open_checkpoint


def skeleton_model(folder: Path, dtype: torch.dtype) -> nn.Module:
    """The architecture with one block, for real, in the checkpoint's dtype: what runs before
    the blocks. An untied output head is never reached by calibration, so it gets no memory."""
    import transformers  # the hf extra

    config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True)
    config = copy.deepcopy(config)
    config.num_hidden_layers = 1
    if isinstance(getattr(config, "layer_types", None), list):
        config.layer_types = config.layer_types[:1]
    cls = model_class(folder, read_config(folder))
    model = cls._from_config(config, dtype=dtype).eval()
    head, embeddings = model.get_output_embeddings(), model.get_input_embeddings()
    if head is not None and embeddings is not None and head.weight is not embeddings.weight:
        head.weight = nn.Parameter(torch.empty(0, dtype=dtype), requires_grad=False)
    return model


@torch.no_grad()
def _fill(module: nn.Module, values: dict[str, torch.Tensor]) -> None:
    params = dict(module.named_parameters())
    for name, value in values.items():
        params[name].data.copy_(value)


class ShardBlocks:
    """Block source of a checkpoint on disk: block ``i``'s weights are filled from the
    memory-mapped shards into one template block on the device; its pruned weights are
    written in place into the output shards, its masks streamed into the masks file."""

    def __init__(
        self,
        template: nn.Module,
        checkpoint: ShardedCheckpoint,
        mapping: dict[str, str],
        blocked: BlockPlan,
        dst: Path,
        masks_file: MasksFileWriter,
        pattern: tuple[int, int] | None,
    ):
        self.template, self.checkpoint, self.mapping = template, checkpoint, mapping
        self.blocked, self.dst, self.masks_file, self.pattern = blocked, dst, masks_file, pattern
        self.modules = dict(template.named_modules())
        self.params = [n for n, _ in template.named_parameters()]
        names = [t.name for t in blocked.targets]
        self.canonical_of = dict(zip(names, canonical_names(names)))
        self.layers: list[LayerStats] = []

    @contextlib.contextmanager
    def open(self, index: int) -> Iterator[OpenBlock]:
        prefix = f"{self.blocked.prefix}.{index}."
        _fill(self.template, {n: self.checkpoint.tensor(self.mapping[prefix + n]) for n in self.params})
        local = dict(self.template.named_parameters())
        targets = [
            Target(t.name, t.module_name, local[t.name[len(prefix) :]], t.in_axis) for t in self.blocked.grouped[index]
        ]
        yield self.template, targets, {t.name: self.modules[t.module_name[len(prefix) :]] for t in targets}

    def commit(self, index: int, targets: list[Target], kept: dict[str, torch.Tensor]) -> None:
        for target in targets:
            write_tensor_in_place(self.checkpoint.entries[self.mapping[target.name]], self.dst, target.param)
            self.masks_file.write(self.canonical_of[target.name], kept[target.name])
            self.layers.append(LayerStats.measure(target.name, target.param, target.in_axis, self.pattern))


def prune_blockwise(
    src: str | Path | ShardedCheckpoint,
    dst: str | Path,
    plan: SparsityPlan,
    calibration: torch.Tensor,
    masks: SparsityState | None = None,
    batch_size: int = 4,
    activation_budget: int = 1 << 30,
    pattern: tuple[int, int] | None = None,
    show_progress: bool = False,
    meta: dict[str, Any] | None = None,
    device: str | torch.device | None = None,
    allow_external: bool = False,
) -> SparsityReport:
    """Prune ``src`` into the existing folder ``dst`` with a calibrated method, block by block
    (the registry's ``out_of_core_driver == "blocks"``). :func:`es_plugins.prune_checkpoint`
    with ``low_memory=True`` is the job around it.

    ``device`` (default: ``cuda`` when available, else the CPU) is where each block runs: the
    block is filled there from the memory-mapped shards, calibrated, pruned, and only its
    pruned weights and masks come back to be written. What runs before the blocks (the
    embeddings) stays on the CPU. The loop and its checks are the in-memory run's
    (:mod:`es_plugins.engines.calibration.driver`); only the block source differs.

    Raises:
        SparsityConfigError: a method without calibration, bad calibration ids, or targets
            outside the blocks.
        MaskMismatchError: tensors that do not fit the architecture, or ``masks`` that do not.
    """
    dst = Path(dst)
    work = resolve_device(device)
    checkpoint = open_checkpoint(src, allow_external)
    src = checkpoint.folder
    full = meta_model(src)
    mapping = checkpoint_names(full, checkpoint, [n for n, _ in full.named_parameters()])

    def stored(targets: list[Target]) -> list[Target]:
        return [Target(t.name, t.module_name, checkpoint.tensor(mapping[t.name]), t.in_axis) for t in targets]

    blocked = plan_blocks(full, plan, masks, weights=stored)  # the same checks as in memory
    first = blocked.targets[0].name if blocked.targets else None
    dtype = STORAGE_DTYPES[checkpoint.entries[mapping[first]].dtype][1] if first else torch.float32
    skeleton = skeleton_model(src, dtype)
    check_calibration(skeleton, calibration)
    _, skeleton_blocks = find_blocks(skeleton)
    template = skeleton_blocks[0].to(work)
    outside = {n: p for n, p in skeleton.named_parameters() if not n.startswith(f"{blocked.prefix}.0.") and p.numel()}
    _fill(skeleton, {n: checkpoint.tensor(mapping[n]) for n in outside})

    target_entries = [checkpoint.entries[mapping[t.name]] for t in blocked.targets]
    copy_checkpoint_files(checkpoint, dst, skip=target_entries)  # the targets: written once, block by block
    canonical = canonical_names([t.name for t in blocked.targets])
    masks_file = MasksFileWriter(
        dst / MASKS_FILENAME,
        {c: tuple(t.param.shape) for c, t in zip(canonical, blocked.targets)},
        blocked.state_meta(calibration, masks),
    )
    inputs = to_device(capture_block_inputs(skeleton, template, blocked.batches(calibration, batch_size)), work)
    given = blocked.given_masks(masks, work)
    source = ShardBlocks(template, checkpoint, mapping, blocked, dst, masks_file, pattern)
    run_blocks(source, blocked, inputs, given, ActivationStore(activation_budget), show_progress, "block, out-of-core")
    masks_file.close()
    return streamed_report(
        checkpoint, target_entries, source.layers, pattern, {**(meta or {}), "out_of_core": "sequential"}
    )
