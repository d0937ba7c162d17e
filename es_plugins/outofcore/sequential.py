"""Out-of-core Wanda / SparseGPT by sequential onloading: one transformer block in memory at a time.

The architecture is built twice without the checkpoint's weights: on the meta device in full
(names, targets, block layout: no memory) and for real with a single block (embeddings,
positions, final norm: what runs before block 0). The single block is the *template*: for block
``i`` its parameters are filled from the memory-mapped checkpoint, the block is calibrated and
pruned by the same engine as in memory (:func:`es_plugins.calibration.engine.prune_block_`), the
pruned weights are written in place into the output shards, and the block's outputs become the
next block's inputs. Activations between blocks are kept in memory up to a budget and on disk
beyond it. Peak memory is the embeddings plus one block, its statistics and the activations,
whatever the depth. Blocks run in the checkpoint's dtype, as an in-memory run with
``--dtype auto`` does (so both give the same masks); statistics accumulate in float32.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..calibration.blocks import capture_block_inputs, find_blocks
from ..calibration.engine import Inputs, prune_block_
from ..calibration.oneshot import calibrated_entry, check_calibrated_targets, check_calibration, group_by_block
from ..device import resolve_device, to_device
from ..hf_config import model_class, read_config
from ..masks.masks_file import MasksFileWriter
from ..naming import canonical_names
from ..plan import SparsityPlan
from ..progress import progress_factory
from ..report import LayerStats, SparsityReport, count_zeros
from ..state import MASKS_FILENAME, SparsityState
from ..targets import Target, resolve_targets
from .files import STORAGE_DTYPES, ShardedCheckpoint, copy_checkpoint_files, write_tensor_in_place
from .prune import checkpoint_names, meta_model


class ActivationStore:
    """The hidden states between two blocks: in memory while they fit ``budget`` bytes, else
    one file per batch in a temporary folder (read back when the next block needs it)."""

    def __init__(self, budget: int):
        self.budget = budget
        self._folder: tempfile.TemporaryDirectory | None = None

    def keep(self, inputs: Inputs) -> Inputs:
        size = sum(args[0].numel() * args[0].element_size() for args, _ in inputs)
        if size <= self.budget:
            return inputs
        if self._folder is None:
            self._folder = tempfile.TemporaryDirectory(prefix="es-plugins-activations-")
        stored: Inputs = []
        for index, (args, kwargs) in enumerate(inputs):
            path = Path(self._folder.name) / f"batch-{index}.pt"
            torch.save(args[0], path)
            stored.append(((_OnDisk(path), *args[1:]), kwargs))
        return stored

    @staticmethod
    def load(inputs: Inputs) -> Inputs:
        return [((a[0].load() if isinstance(a[0], _OnDisk) else a[0], *a[1:]), k) for a, k in inputs]

    def close(self) -> None:
        if self._folder is not None:
            self._folder.cleanup()


class _OnDisk:
    def __init__(self, path: Path):
        self.path = path

    def load(self) -> torch.Tensor:
        return torch.load(self.path, weights_only=True)


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


def prune_checkpoint_sequential(
    src: str | Path,
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
    """Prune ``src`` into the existing folder ``dst`` with a calibrated method, block by block.

    ``device`` (default: ``cuda`` when available, else the CPU) is where each block runs: the
    block is filled there from the memory-mapped shards, calibrated, pruned, and only its
    pruned weights and masks come back to be written. What runs before the blocks (the
    embeddings) stays on the CPU.

    Raises:
        SparsityConfigError: a method without calibration, bad calibration ids, or targets
            outside the blocks.
        MaskMismatchError: tensors that do not fit the architecture, or ``masks`` that do not.
    """
    src, dst = Path(src), Path(dst)
    work = resolve_device(device)
    entry = calibrated_entry(plan, masks)
    checkpoint = ShardedCheckpoint(src, allow_external)
    full = meta_model(src)
    prefix, blocks = find_blocks(full)
    grouped = group_by_block(resolve_targets(full, plan.targets), prefix, len(blocks))
    all_targets = [t for group in grouped for t in group]
    params = [n for n, _ in full.named_parameters()]
    mapping = checkpoint_names(full, checkpoint, params)
    stored_targets = [Target(t.name, t.module_name, checkpoint.tensor(mapping[t.name]), t.in_axis) for t in all_targets]
    check_calibrated_targets(plan, stored_targets, masks, full)  # the same checks as in memory

    stored = STORAGE_DTYPES[checkpoint.entries[mapping[all_targets[0].name]].dtype][1] if all_targets else torch.float32
    skeleton = skeleton_model(src, stored)
    check_calibration(skeleton, calibration)
    _, skeleton_blocks = find_blocks(skeleton)
    template = skeleton_blocks[0].to(work)
    outside = {n: p for n, p in skeleton.named_parameters() if not n.startswith(f"{prefix}.0.") and p.numel()}
    _fill(skeleton, {n: checkpoint.tensor(mapping[n]) for n in outside})

    copy_checkpoint_files(checkpoint, dst)
    state_meta = SparsityState.from_plan(
        {},
        plan,
        all_targets,
        calibration={"samples": int(calibration.shape[0]), "seq_len": int(calibration.shape[1])},
        refined_from=(masks.meta.get("plan") if masks is not None else None),
    ).state_dict()["meta"]
    canonical_of = dict(zip([t.name for t in all_targets], canonical_names([t.name for t in all_targets])))
    masks_file = MasksFileWriter(
        dst / MASKS_FILENAME, {canonical_of[t.name]: tuple(t.param.shape) for t in all_targets}, state_meta
    )
    passes = plan.method.calibration_passes or 2
    size = calibration.shape[0] if passes == 1 else batch_size
    batches = [calibration[i : i + size] for i in range(0, calibration.shape[0], size)]
    store = ActivationStore(activation_budget)
    inputs = store.keep(to_device(capture_block_inputs(skeleton, template, batches), work))
    template_modules = dict(template.named_modules())
    template_params = [n for n, _ in template.named_parameters()]
    layers: list[LayerStats] = []
    given = {name: mask.to(work) for name, mask in masks.masks.items()} if masks is not None else {}
    progress = progress_factory(show_progress, f"{plan.method.name} (block, out-of-core)")
    try:
        for index in progress(range(len(blocks))):
            block_prefix = f"{prefix}.{index}."
            _fill(template, {n: checkpoint.tensor(mapping[block_prefix + n]) for n in template_params})
            local = {n: p for n, p in template.named_parameters()}
            targets = [
                Target(t.name, t.module_name, local[t.name[len(block_prefix) :]], t.in_axis) for t in grouped[index]
            ]
            hooked = {t.name: template_modules[t.module_name[len(block_prefix) :]] for t in targets}
            keeps, outputs = prune_block_(
                template, targets, hooked, store.load(inputs), entry, plan.method, given, passes
            )
            inputs = store.keep(outputs)
            for target in targets:
                stored = checkpoint.entries[mapping[target.name]]
                write_tensor_in_place(stored, dst, target.param)
                masks_file.write(canonical_of[target.name], keeps[target.name])
                layers.append(LayerStats.measure(target.name, target.param, target.in_axis, pattern))
    finally:
        store.close()
    masks_file.close()
    floating = [e for e in checkpoint.entries.values() if e.dtype in ("F64", "F32", "F16", "BF16")]
    target_keys = {mapping[t.name] for t in all_targets}
    all_zeros = sum(count_zeros(checkpoint.tensor(e.name)) for e in floating if e.name not in target_keys)
    return SparsityReport(
        layers=layers,
        all_params=sum(e.numel for e in floating),
        all_zeros=all_zeros + sum(layer.zeros for layer in layers),
        pattern=pattern,
        meta={**(meta or {}), "out_of_core": "sequential"},
    )
