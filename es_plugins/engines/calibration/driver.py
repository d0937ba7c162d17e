"""The one calibrated driver: blocks in order, each calibrated and pruned by
:func:`.engine.prune_block_`, its outputs the next block's inputs.

Where a block's weights come from and where its results go is the *block source*'s job:
the loaded model (:class:`ModelBlocks`, each block onloaded to the device in turn) or the
memory-mapped shards of a checkpoint (:class:`es_plugins.engines.outofcore.sequential.ShardBlocks`,
each block filled into one template and written back). Both sources share this loop, the
checks before it (:func:`plan_blocks`) and the calibration batches, so the in-memory and
out-of-core runs cannot drift apart.
"""

from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator, Protocol

import torch
from torch import nn

from ...masks.state import SparsityState
from ...masks.targets import Target, resolve_targets
from ...methods import MethodEntry
from ...methods.plan import SparsityPlan
from ...progress import progress_factory
from .blocks import find_blocks
from .checks import calibrated_entry, check_calibrated_targets, check_calibration, group_by_block
from .engine import Inputs, prune_block_

OpenBlock = tuple[nn.Module, list[Target], dict[str, nn.Module]]  # block, its targets, hooked layers


class BlockSource(Protocol):
    """Where the blocks' weights come from and where their results go."""

    def open(self, index: int) -> ContextManager[OpenBlock]:
        """Block ``index`` ready to run on the work device, with its targets and their layers."""

    def commit(self, index: int, targets: list[Target], kept: dict[str, torch.Tensor]) -> None:
        """The pruned block's results (weights already updated in place, their masks)."""


@dataclass
class BlockPlan:
    """What a calibrated run knows before its first block: the method's registry entry, the
    targets grouped by block and the forwards per block."""

    plan: SparsityPlan
    entry: MethodEntry
    prefix: str
    grouped: list[list[Target]]
    passes: int

    @property
    def targets(self) -> list[Target]:
        return [t for group in self.grouped for t in group]

    def batches(self, calibration: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
        """One batch of everything with one pass (each layer sees its full input at once);
        ``batch_size`` sequences per forward with two."""
        size = calibration.shape[0] if self.passes == 1 else batch_size
        return [calibration[i : i + size] for i in range(0, calibration.shape[0], size)]

    def given_masks(self, masks: SparsityState | None, work: torch.device) -> dict[str, torch.Tensor]:
        """Masks to refine (SparseGPT), on the device where the blocks run."""
        return {name: mask.to(work) for name, mask in masks.masks.items()} if masks is not None else {}

    def state_meta(self, calibration: torch.Tensor, masks: SparsityState | None) -> dict[str, Any]:
        """The masks file's metadata, the same in memory and out of core."""
        return SparsityState.from_plan(
            {},
            self.plan,
            self.targets,
            calibration={"samples": int(calibration.shape[0]), "seq_len": int(calibration.shape[1])},
            refined_from=(masks.meta.get("plan") if masks is not None else None),
        ).meta


def plan_blocks(
    model: nn.Module,
    plan: SparsityPlan,
    masks: SparsityState | None,
    calibration: torch.Tensor | None = None,
    weights: Callable[[list[Target]], list[Target]] = lambda targets: targets,
) -> BlockPlan:
    """Resolve and check a calibrated plan on ``model`` (loaded, or on the meta device out of
    core, where ``weights`` swaps in the memory-mapped tensors for the checks and the
    calibration ids are checked on the model that embeds them): the same checks for every
    run, before any block."""
    entry = calibrated_entry(plan, masks)
    if calibration is not None:
        check_calibration(model, calibration)
    prefix, blocks = find_blocks(model)
    grouped = group_by_block(resolve_targets(model, plan.targets), prefix, len(blocks))
    blocked = BlockPlan(plan, entry, prefix, grouped, plan.method.calibration_passes or 2)
    check_calibrated_targets(plan, weights(blocked.targets), masks, model)
    return blocked


def run_blocks(
    source: BlockSource,
    blocked: BlockPlan,
    inputs: Inputs,
    given: dict[str, torch.Tensor],
    store: "ActivationStore | None" = None,
    show_progress: bool = False,
    label: str = "block",
    on_block: Callable[[int, int], None] | None = None,
) -> None:
    """Calibrate and prune every block of ``source`` in order, starting from the first
    block's captured ``inputs``."""
    store = store if store is not None else ActivationStore(None)
    count = len(blocked.grouped)
    progress = progress_factory(show_progress, f"{blocked.plan.method.name} ({label})")
    inputs = store.keep(inputs)
    try:
        for index in progress(range(count)):
            with source.open(index) as (block, targets, hooked):
                kept, outputs = prune_block_(
                    block,
                    targets,
                    hooked,
                    store.load(inputs),
                    blocked.entry,
                    blocked.plan.method,
                    given,
                    blocked.passes,
                )
                source.commit(index, targets, kept)
            inputs = store.keep(outputs)
            if on_block:
                on_block(index, count)
    finally:
        store.close()


class ModelBlocks:
    """Block source of a loaded model: block ``i`` onloaded to ``work`` while it runs (a no-op
    when the model is there already); masks come back beside the weights."""

    def __init__(self, model: nn.Module, blocked: BlockPlan, work: torch.device, home: torch.device):
        _, self.blocks = find_blocks(model)
        self.modules = dict(model.named_modules())
        self.grouped = blocked.grouped
        self.work, self.home = work, home
        self.keep: dict[str, torch.Tensor] = {}

    @contextlib.contextmanager
    def open(self, index: int) -> Iterator[OpenBlock]:
        targets = self.grouped[index]
        hooked = {t.name: self.modules[t.module_name] for t in targets}
        with onloaded(self.blocks[index], self.work, self.home):
            yield self.blocks[index], targets, hooked

    def commit(self, index: int, targets: list[Target], kept: dict[str, torch.Tensor]) -> None:
        self.keep.update({name: mask.to(self.home) for name, mask in kept.items()})


@contextlib.contextmanager
def onloaded(block: nn.Module, work: torch.device, home: torch.device) -> Iterator[None]:
    """``block`` on ``work`` for the duration, back on ``home`` after (a no-op when they agree).
    ``Module.to`` swaps each parameter's data in place, so targets keep pointing at them."""
    if work == home:
        yield
        return
    block.to(work)
    try:
        yield
    finally:
        block.to(home)


class ActivationStore:
    """The hidden states between two blocks: in memory while they fit ``budget`` bytes
    (``None``: always), else one file per batch in a temporary folder, read back when the next
    block needs it (out of core, where activations may outgrow memory)."""

    def __init__(self, budget: int | None):
        self.budget = budget
        self._folder: tempfile.TemporaryDirectory | None = None

    def keep(self, inputs: Inputs) -> Inputs:
        size = sum(args[0].numel() * args[0].element_size() for args, _ in inputs)
        if self.budget is None or size <= self.budget:
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
