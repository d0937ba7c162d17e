"""``prune_checkpoint``: a checkpoint folder in, a pruned plain checkpoint folder out — the job
``es-plugins prune`` runs, with the same arguments.

Everything a run needs to decide is decided here, from the registry's facts: calibrated or
not (calibration is tokenised and checked before the model loads), in memory or out of core
(``low_memory``, or weights larger than the memory budget), and for out of core which driver
reads the shards (:attr:`es_plugins.methods.MethodEntry.out_of_core_driver`). The output
folder is written atomically: it appears complete, or not at all.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Union

import torch

from ..engines.device import resolve_device
from ..engines.memory import available_memory
from ..engines.outofcore.blockwise import prune_blockwise
from ..engines.outofcore.files import INDEX_FILE, ShardedCheckpoint
from ..engines.outofcore.tensorwise import is_streamable, prune_tensorwise
from ..engines.sparsify import sparsify_
from ..errors import SparsityConfigError
from ..io.artifacts import write_report_files, write_sparsity_files
from ..io.assets import resolve_model_path
from ..io.checkpoint import (
    DTYPES,
    check_checkpoint_dir,
    copy_side_files,
    load_hf_model,
    load_tokenizer,
    save_hf_checkpoint,
)
from ..io.compressed import is_compressed_config
from ..io.datasets import calibration_blocks, resolve_texts
from ..io.hf_config import read_config
from ..io.output import check_output, write_folder_atomically
from ..io.weight_files import WeightFiles, check_weight_files
from ..masks.report import SparsityReport
from ..masks.state import SparsityState
from ..methods import MethodConfig, entry_for, method_names
from ..methods.plan import SparsityPlan, make_plan

logger = logging.getLogger("es_plugins")


@dataclass(frozen=True)
class Calibration:
    """Calibration text for calibrated methods (Wanda, SparseGPT), tokenised with the model's
    own tokenizer: ``samples`` random windows of ``seq_len`` tokens (``seed``).

    Args:
        text: a ``.txt`` file, a folder of them, ``packaged:bbc-calib``, or a list of strings.
    """

    text: Union[str, Path, list[str]]
    samples: int = 32
    seq_len: int = 512
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("samples", "seq_len"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SparsityConfigError(f"calibration {name} must be an integer >= 1, got {value!r}")

    def texts(self) -> list[str]:
        return list(self.text) if isinstance(self.text, list) else resolve_texts(self.text, flag="--calib")


@dataclass
class PruneResult:
    """What a prune job wrote and measured."""

    out_dir: Path
    report: SparsityReport
    seconds: float
    out_of_core: bool
    not_copied: list[str] = field(default_factory=list)


def prune_checkpoint(
    model: str | Path,
    out_dir: str | Path,
    plan: SparsityPlan | MethodConfig,
    *,
    calibration: Calibration | torch.Tensor | None = None,
    masks: str | Path | None = None,
    device: str | torch.device | None = None,
    low_memory: bool | str = "auto",
    memory_budget: float | None = None,
    dtype: str = "auto",
    overwrite: bool = False,
    allow_external_shards: bool = False,
    copy_remote_code: bool = False,
    show_progress: bool = False,
    command: str | None = None,
) -> PruneResult:
    """Prune the checkpoint ``model`` into the new folder ``out_dir``: the pruned weights (a
    plain checkpoint that loads without this package), the masks, the report and a
    model-card section. ``es-plugins prune`` calls this with its options.

    Args:
        model: a local HF checkpoint folder, ``packaged:minilm``, or a hub name ``org/name[@rev]``.
        plan: method and targets (a bare config targets the default layers).
        calibration: text (:class:`Calibration`) or token ids ``[samples, seq_len]``, for
            calibrated methods only.
        masks: a masks file for methods that refine a given mask (SparseGPT).
        device: where calibrated methods run (``None``: cuda when available, else cpu).
        low_memory: ``True`` prunes out of core, from the memory-mapped shards (about one
            tensor or one block of memory); ``"auto"`` does so when the weights exceed
            ``memory_budget`` GB (default: half the available memory).
        dtype: ``auto`` (the checkpoint's) or a torch dtype name, for in-memory runs.
        overwrite: replace an ``out_dir`` an earlier es-plugins run wrote (never another folder).
        allow_external_shards: read shards the index places outside the model folder.
        copy_remote_code: also copy the model folder's ``.py`` files.
        command: the command line to record in the model card.

    Raises:
        SparsityConfigError: options that do not fit the method (calibration, masks), bad
            values; all before any model is loaded or any output is created.
        OutputPathError: ``out_dir`` is not ours to write.
    """
    plan = make_plan(plan)
    entry = entry_for(plan.method)
    if not (low_memory == "auto" or isinstance(low_memory, bool)):
        raise SparsityConfigError(f"low_memory must be True, False or 'auto'; got {low_memory!r}")
    if dtype not in DTYPES:
        raise SparsityConfigError(f"dtype must be one of {', '.join(DTYPES)}; got {dtype!r}")
    if memory_budget is not None and not memory_budget > 0:
        raise SparsityConfigError(f"memory_budget (--memory-budget) must be > 0 GB, got {memory_budget}")
    if entry.calibrated and calibration is None:
        raise SparsityConfigError(
            f"method {entry.name} needs calibration data: --calib PATH or packaged:bbc-calib "
            "(calibration=Calibration(text) from Python)"
        )
    if not entry.calibrated and calibration is not None:
        calibrated = [name for name in method_names() if entry_for(name).calibrated]
        raise SparsityConfigError(
            f"method {entry.name} needs no calibration, it prunes from the weights alone: --calib (calibration=) "
            f"and --refine-masks apply to calibrated methods ({', '.join(calibrated)})"
        )
    if masks is not None and not entry.refines_masks:
        refiners = [name for name in method_names() if entry_for(name).refines_masks]
        raise SparsityConfigError(
            f"--refine-masks (masks=) does not apply to method {entry.name}: "
            f"only {', '.join(refiners)} refines a given mask"
        )
    if masks is not None and not Path(masks).is_file():
        raise SparsityConfigError(f"masks (--refine-masks) {str(masks)!r}: no such masks file")
    given = SparsityState.load(masks) if masks is not None else None  # integrity checked before the model loads
    work = resolve_device(device, flag="device") if entry.calibrated else None
    src = resolve_model_path(model)
    check_output(out_dir, inputs=[src], overwrite=overwrite)  # before minutes of work
    check_checkpoint_dir(src)
    tokens = _calibration_tokens(src, calibration) if calibration is not None else None
    checkpoint, files = _out_of_core_checkpoint(src, low_memory, memory_budget, dtype, allow_external_shards)
    if checkpoint is not None:
        return _prune_out_of_core(
            checkpoint, out_dir, plan, tokens, given, work, overwrite, copy_remote_code, show_progress, command
        )
    logger.info(f"loading {src}")
    loaded = load_hf_model(src, dtype=dtype, allow_external=allow_external_shards, files=files)
    if given is not None:
        given.validate(loaded)
    started = time.perf_counter()
    if tokens is not None:
        logger.info(f"calibrating on {tokens.shape[0]} x {tokens.shape[1]} tokens on {work}")
    state = sparsify_(loaded, plan, calibration=tokens, masks=given, show_progress=show_progress, device=work)
    seconds = time.perf_counter() - started
    skipped: list[str] = []
    reports: list[SparsityReport] = []

    def write(tmp: Path) -> None:
        skipped.extend(save_hf_checkpoint(loaded, src, tmp, copy_code=copy_remote_code))
        meta = {"source": str(src), "prune_seconds": round(seconds, 3)}
        reports.append(write_sparsity_files(tmp, loaded, state, meta, command))

    out = write_folder_atomically(out_dir, write, inputs=[src], overwrite=overwrite, command="prune")
    return PruneResult(out, reports[0], seconds, False, skipped)


def _calibration_tokens(src: Path, calibration: Calibration | torch.Tensor) -> torch.Tensor:
    """Token ids from the calibration text, with the model's tokenizer; checked before the
    model is loaded (ids passed in are checked against the model by the driver)."""
    if isinstance(calibration, torch.Tensor):
        return calibration
    if not isinstance(calibration, Calibration):
        raise SparsityConfigError(
            f"calibration must be a Calibration(text, ...) or a tensor of token ids, got {type(calibration).__name__}"
        )
    from transformers import AutoConfig  # the hf extra, needed for calibration only

    read_config(src)  # a clear error for a broken config.json
    limit = getattr(AutoConfig.from_pretrained(src, local_files_only=True), "max_position_embeddings", None)
    if isinstance(limit, int) and calibration.seq_len > limit:
        raise SparsityConfigError(
            f"--calib-seq-len {calibration.seq_len} is larger than the model's maximum ({limit}): "
            "lower Calibration.seq_len"
        )
    texts = calibration.texts()
    tokenizer = load_tokenizer(src, "--calib (calibration of wanda/sparsegpt)")
    tokens = calibration_blocks(tokenizer, texts, calibration.samples, calibration.seq_len, calibration.seed)
    logger.info(f"calibration: {tokens.shape[0]} x {tokens.shape[1]} tokens (seed {calibration.seed})")
    return tokens


def _out_of_core_checkpoint(
    src: Path, low_memory: bool | str, memory_budget: float | None, dtype: str, allow_external: bool
) -> tuple[ShardedCheckpoint | None, WeightFiles | None]:
    """The shards to prune out of core, or ``None`` for an in-memory run (``low_memory=True``,
    or ``"auto"`` with weights over the budget), and the validated weight files: the index,
    shard paths and headers are read once, here, whichever path runs."""
    streamable = is_streamable(src) and not is_compressed_config(read_config(src))
    if low_memory is True:
        if not streamable:
            raise SparsityConfigError(
                f"low_memory=True (--low-memory) reads safetensors shards (model.safetensors or {INDEX_FILE}); "
                f"{str(src)!r} has none (or is a compressed checkpoint: decompress it first)"
            )
        if dtype != "auto":
            raise SparsityConfigError(
                "dtype (--dtype) does not apply to low_memory=True (--low-memory): the checkpoint's dtype is kept"
            )
    files = check_weight_files(src, allow_external) if streamable else None
    if files is None:
        return None, None
    budget = memory_budget * 2**30 if memory_budget else available_memory() / 2
    over = low_memory == "auto" and budget and files.nbytes > budget and dtype == "auto"
    if over:
        logger.info(
            f"the weights ({files.nbytes / 2**30:.1f} GiB) exceed the memory budget ({budget / 2**30:.1f} GiB): "
            "pruning out of core (as with low_memory=True)"
        )
    return (ShardedCheckpoint(files) if low_memory is True or over else None), files


def _prune_out_of_core(
    checkpoint: ShardedCheckpoint,
    out_dir: str | Path,
    plan: SparsityPlan,
    tokens: torch.Tensor | None,
    masks: SparsityState | None,
    work: torch.device | None,
    overwrite: bool,
    copy_remote_code: bool,
    show_progress: bool,
    command: str | None,
) -> PruneResult:
    """Prune without loading the model, with the driver the registry names for the method;
    the output folder gets what an in-memory run writes."""
    src = checkpoint.folder
    skipped: list[str] = []
    results: list[tuple[SparsityReport, float]] = []
    drivers: dict[str, Callable[..., SparsityReport]] = {
        "tensors": lambda tmp, meta: prune_tensorwise(
            checkpoint, tmp, plan, plan.method.nm_pattern, show_progress=show_progress, meta=meta
        ),
        "blocks": lambda tmp, meta: prune_blockwise(
            checkpoint,
            tmp,
            plan,
            tokens,
            masks,
            pattern=plan.method.nm_pattern,
            show_progress=show_progress,
            meta=meta,
            device=work,
        ),
    }
    driver = drivers[entry_for(plan.method).out_of_core_driver]

    def write(tmp: Path) -> None:
        skipped.extend(copy_side_files(src, tmp, copy_remote_code))
        started = time.perf_counter()
        report = driver(tmp, {"plan": plan.to_dict(), "source": str(src)})
        seconds = time.perf_counter() - started
        report.meta["prune_seconds"] = round(seconds, 3)
        write_report_files(tmp, report, command)
        results.append((report, seconds))

    logger.info(f"pruning {src} out of core")
    out = write_folder_atomically(out_dir, write, inputs=[src], overwrite=overwrite, command="prune")
    report, seconds = results[0]
    return PruneResult(out, report, seconds, True, skipped)


__all__: list[str] = ["Calibration", "PruneResult", "prune_checkpoint"]
