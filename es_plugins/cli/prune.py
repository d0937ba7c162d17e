"""``es-plugins prune`` (and ``optimum-cli sparsity prune``): flags in,
:func:`es_plugins.prune_checkpoint` called, the report out."""

from __future__ import annotations

import argparse
from argparse import SUPPRESS

from ..io.artifacts import REPORT_FILENAME
from ..io.checkpoint import DTYPES
from ..jobs.prune import Calibration, prune_checkpoint
from ..masks.state import MASKS_FILENAME
from ..methods.plan import SparsityPlan
from .console import emit, log
from .options import (
    add_device_argument,
    add_method_arguments,
    add_model_and_output,
    add_target_args,
    command_line,
    deprecated_spelling,
    method_config,
    resolve_model_and_output,
    target_spec,
)


def add_arguments(prune: argparse.ArgumentParser) -> None:
    add_model_and_output(
        prune,
        "local HF checkpoint folder, packaged:minilm, or a hub name org/name[@revision]",
        "output folder (written only if everything succeeds)",
    )
    add_method_arguments(prune)
    calib = prune.add_argument_group("calibration (--method wanda | sparsegpt)")
    calib.add_argument("--calib", help="calibration text: a .txt file, a folder of them, or packaged:bbc-calib")
    calib.add_argument("--calib-samples", type=int, default=32, help="calibration sequences (default 32)")
    calib.add_argument("--calib-seq-len", type=int, default=512, help="tokens per calibration sequence (default 512)")
    calib.add_argument(
        "--seq-len", dest="calib_seq_len", type=int, action=deprecated_spelling("--calib-seq-len"), help=SUPPRESS
    )
    calib.add_argument(
        "--refine-masks",
        metavar="MASKS",
        help="sparsegpt: keep this masks file exactly and only reconstruct the weights",
    )
    prune.add_argument("--dtype", default="auto", choices=tuple(DTYPES))
    add_device_argument(
        calib,
        "where calibration runs (default: cuda when available, else cpu; e.g. cuda:1). The model stays in "
        "CPU memory and each transformer block is onloaded to the device in turn, so it need not fit the GPU; "
        "omp, random and nm read the weights where they are loaded",
    )
    scale = prune.add_argument_group("memory and threads")
    scale.add_argument(
        "--low-memory",
        action="store_true",
        help="prune out of core: tensor by tensor (omp, random, nm) or block by block (wanda, "
        "sparsegpt) from the memory-mapped safetensors shards; needs about one tensor or one "
        "block of memory, whatever the model size",
    )
    scale.add_argument(
        "--memory-budget",
        type=float,
        metavar="GB",
        help="checkpoints whose weights exceed this are pruned out of core (default: half of the available memory)",
    )
    scale.add_argument(
        "--threads", type=int, help="intra-op threads (default: the cores not kept busy by other processes)"
    )
    prune.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an OUTPUT that an earlier es-plugins run wrote (never any other folder)",
    )
    prune.add_argument(
        "--allow-external-shards",
        action="store_true",
        help="read shards that the safetensors index places outside the model folder (refused by default: "
        "an index is untrusted input); OUTPUT still gets its own copies and an index naming only them",
    )
    prune.add_argument(
        "--copy-remote-code",
        action="store_true",
        help="also copy the model folder's .py files (remote code) into OUTPUT",
    )
    prune.add_argument("--json", action="store_true", help="print the report as JSON")
    add_target_args(prune)


def run(args: argparse.Namespace) -> int:
    resolve_model_and_output(args, "prune")
    plan = SparsityPlan(method_config(args), target_spec(args))  # validated before any I/O
    calibration = (
        Calibration(args.calib, args.calib_samples, args.calib_seq_len, args.seed or 0) if args.calib else None
    )
    result = prune_checkpoint(
        args.model,
        args.output,
        plan,
        calibration=calibration,
        masks=args.refine_masks,
        device=args.device,
        low_memory=True if args.low_memory else "auto",
        memory_budget=args.memory_budget,
        dtype=args.dtype,
        overwrite=args.overwrite,
        allow_external_shards=args.allow_external_shards,
        copy_remote_code=args.copy_remote_code,
        show_progress=True,
        command=command_line(),
    )
    emit(result.report.to_json() if args.json else result.report.format_table())
    if result.not_copied:
        log(
            "not copied (subfolders, links leading outside the model folder, .py code without --copy-remote-code): "
            + ", ".join(result.not_copied)
        )
    how = "out of core" if result.out_of_core else "pruned"
    log(f"wrote {result.out_dir} ({how} in {result.seconds:.2f}s; masks: {MASKS_FILENAME}, report: {REPORT_FILENAME})")
    return 0
