"""``es-plugins`` command line: prune and inspect local Hugging Face checkpoints."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from argparse import SUPPRESS
from pathlib import Path
from typing import Any, Sequence

import torch

from ._cli_args import add_device_argument, deprecated_spelling
from ._cli_args import add_target_args as _add_target_args
from ._cli_args import target_spec as _target_spec
from ._console import console_logging, emit, log, results_only_on_stdout
from ._version import __version__
from .analysis import cli as analysis_cli
from .artifacts import REPORT_FILENAME, plan_pattern, write_report_files, write_sparsity_files
from .assets import resolve_model_path
from .checkpoint import (
    DTYPES,
    check_checkpoint_dir,
    copy_side_files,
    load_hf_model,
    load_tokenizer,
    read_config,
    save_hf_checkpoint,
)
from .datasets import calibration_blocks, resolve_texts
from .device import resolve_device
from .errors import SparsityConfigError
from .export import cli as export_cli
from .export.compressed import is_compressed_config
from .memory import available_memory, default_threads
from .methods import MethodConfig, config_from_dict, entry_for, is_calibrated, method_names, parse_pattern
from .outofcore.files import INDEX_FILE, ShardedCheckpoint
from .outofcore.prune import is_streamable, prune_checkpoint
from .outofcore.sequential import prune_checkpoint_sequential
from .output import check_output, write_folder_atomically
from .plan import SparsityPlan
from .report import build_report
from .sparsify import sparsify_
from .state import MASKS_FILENAME, SparsityState
from .targets import resolve_targets

# CLI flag -> config option; which ones a method takes is the registry's answer.
METHOD_FLAGS = {
    "sparsity": "--sparsity",
    "scope": "--scope",
    "pattern": "--pattern",
    "seed": "--seed",
    "skip_incompatible": "--skip-incompatible",
    "damp": "--damp",
    "blocksize": "--blocksize",
    "passes": "--passes",
}


def _method_config(args: argparse.Namespace) -> MethodConfig:
    """The method config from the registry: given flags become options, and a flag the
    method does not take is an error naming the ones it does."""
    entry = entry_for(args.method)
    given = {key: getattr(args, key) for key in METHOD_FLAGS if getattr(args, key, None) not in (None, False)}
    if "seed" in given and "seed" not in entry.options:
        given.pop("seed")  # --seed also seeds calibration sampling
    unknown = [METHOD_FLAGS[key] for key in given if key not in entry.options]
    if unknown:
        takes = [METHOD_FLAGS[k] for k in entry.options if k in METHOD_FLAGS]
        raise SparsityConfigError(
            f"{', '.join(unknown)} does not apply to --method {entry.name} "
            f"(it takes {', '.join(takes) or 'no options'})"
        )
    calibrated = [name for name in method_names() if is_calibrated(name)]
    if not entry.calibrated and (args.calib or args.refine_masks):
        raise SparsityConfigError(
            f"--calib/--refine-masks apply to calibrated methods ({', '.join(calibrated)}), not {args.method!r}"
        )
    if entry.calibrated and not args.calib:
        raise SparsityConfigError(
            f"--method {args.method} needs calibration data: --calib PATH (or packaged:bbc-calib)"
        )
    if args.refine_masks and not entry.refines_masks:
        refiners = [name for name in method_names() if entry_for(name).refines_masks]
        raise SparsityConfigError(
            f"--refine-masks does not apply to --method {entry.name} (only {', '.join(refiners)} refines a given mask)"
        )
    return config_from_dict({"method": entry.name, **given})


def add_prune_arguments(prune: argparse.ArgumentParser) -> None:
    """Options of ``prune`` (shared with ``optimum-cli sparsity prune``)."""
    prune.add_argument("model", help="local HF checkpoint folder, or packaged:minilm")
    prune.add_argument("out_dir", help="output folder (written only if everything succeeds)")
    prune.add_argument("--method", default="omp", choices=method_names())
    prune.add_argument("--sparsity", type=float, help="fraction in [0, 1) to prune (default 0.5)")
    prune.add_argument(
        "--scope",
        choices=("global", "layer"),
        help="omp/random: one global threshold (default) or the same fraction per layer",
    )
    prune.add_argument("--pattern", help="N:M pattern for --method nm (default 2:4), wanda or sparsegpt")
    prune.add_argument("--seed", type=int, default=0, help="seed for --method random and calibration sampling")
    prune.add_argument(
        "--skip-incompatible",
        action="store_true",
        help="N:M: leave layers whose input dim is not divisible by M dense (warning) instead of failing",
    )
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
    calib.add_argument("--damp", type=float, help="sparsegpt Hessian dampening (default 0.01)")
    calib.add_argument("--blocksize", type=int, help="sparsegpt column block size (default 128)")
    calib.add_argument(
        "--passes",
        type=int,
        choices=(1, 2),
        help="forwards per block: 1 prunes each layer as its input arrives, 2 is the reference codes' "
        "scheme (default: 1, and 2 for wanda with --pattern; docs/llm.md has the measurements)",
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
        help="replace an OUT_DIR that an earlier es-plugins run wrote (never any other folder)",
    )
    prune.add_argument(
        "--allow-external-shards",
        action="store_true",
        help="read shards that the safetensors index places outside the model folder (refused by default: "
        "an index is untrusted input); OUT_DIR still gets its own copies and an index naming only them",
    )
    prune.add_argument(
        "--copy-remote-code",
        action="store_true",
        help="also copy the model folder's .py files (remote code) into OUT_DIR",
    )
    prune.add_argument("--json", action="store_true", help="print the report as JSON")
    _add_target_args(prune)


def add_inspect_arguments(inspect: argparse.ArgumentParser) -> None:
    """Options of ``inspect`` (shared with ``optimum-cli sparsity inspect``)."""
    inspect.add_argument("path", help="local HF checkpoint folder, packaged:minilm, or an .onnx file")
    inspect.add_argument("--pattern", default="2:4", help="N:M pattern to check compliance for (default 2:4)")
    inspect.add_argument("--json", action="store_true", help="print the report as JSON")
    _add_target_args(inspect)
    export_cli.add_onnx_inspect_arguments(inspect)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="es-plugins",
        description="Essential sparsity for pre-trained transformers: prune, inspect, sweep, compare masks, "
        "count zeros, export.",
    )
    parser.add_argument("--version", action="version", version=f"es-plugins {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    add_prune_arguments(sub.add_parser("prune", help="prune a local HF checkpoint and write a plain sparse one"))
    add_inspect_arguments(
        sub.add_parser("inspect", help="report sparsity and N:M compliance of a HF checkpoint or an ONNX file")
    )
    export_cli.add_parsers(sub)
    analysis_cli.add_parsers(sub)
    return parser


def cmd_prune(args: argparse.Namespace) -> int:
    plan = SparsityPlan(_method_config(args), _target_spec(args))  # validate before any I/O
    args.device = resolve_device(args.device, flag="--device")
    src = resolve_model_path(args.model)
    check_output(args.out_dir, inputs=[src], overwrite=args.overwrite)  # before minutes of work
    calibration_inputs = _calibration_inputs(src, args) if is_calibrated(plan.method) else None
    if _out_of_core(src, args):
        return _prune_out_of_core(src, plan, calibration_inputs, args)
    log(f"loading {src}")
    model = load_hf_model(src, dtype=args.dtype, allow_external=args.allow_external_shards)
    started = time.perf_counter()
    state = _prune(model, plan, calibration_inputs, args)
    elapsed = time.perf_counter() - started
    command = "es-plugins " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else None
    skipped: list[str] = []
    reports = []

    def write(tmp: Path) -> None:
        skipped.extend(save_hf_checkpoint(model, src, tmp, copy_code=args.copy_remote_code))
        reports.append(
            write_sparsity_files(tmp, model, state, {"source": str(src), "prune_seconds": round(elapsed, 3)}, command)
        )

    out = write_folder_atomically(args.out_dir, write, inputs=[src], overwrite=args.overwrite, command="prune")
    report = reports[0]
    emit(report.to_json() if args.json else report.format_table())
    if skipped:
        log(
            f"not copied from {src} (subfolders, links leading outside it, .py code without --copy-remote-code): "
            f"{', '.join(skipped)}"
        )
    log(f"wrote {out} (pruned in {elapsed:.2f}s; masks: {MASKS_FILENAME}, report: {REPORT_FILENAME})")
    return 0


def _configure_process(args: argparse.Namespace) -> None:
    """Every command: threads that do not fight a busy machine (``--threads`` where offered)."""
    threads = getattr(args, "threads", None)
    if threads is not None and threads < 1:
        raise SparsityConfigError(f"--threads must be >= 1, got {threads}")
    torch.set_num_threads(threads or default_threads())


def _out_of_core(src: Path, args: argparse.Namespace) -> bool:
    """``--low-memory``, or a safetensors checkpoint whose weights exceed the memory budget."""
    if args.memory_budget is not None and not args.memory_budget > 0:
        raise SparsityConfigError(f"--memory-budget must be > 0 GB, got {args.memory_budget}")
    check_checkpoint_dir(src)
    streamable = is_streamable(src) and not is_compressed_config(read_config(src))
    if args.low_memory:
        if not streamable:
            raise SparsityConfigError(
                f"--low-memory reads safetensors shards (model.safetensors or {INDEX_FILE}); {str(src)!r} has none "
                "(or is a compressed checkpoint: decompress it first)"
            )
        if args.dtype != "auto":
            raise SparsityConfigError("--dtype does not apply to --low-memory: the checkpoint's dtype is kept")
    # index, shard paths and headers validated here, before OUT_DIR is created
    size = ShardedCheckpoint(src, args.allow_external_shards).nbytes if streamable else 0
    if args.low_memory:
        return True
    budget = args.memory_budget * 2**30 if args.memory_budget else available_memory() / 2
    if streamable and budget and size > budget and args.dtype == "auto":
        log(
            f"the weights ({size / 2**30:.1f} GiB) exceed the memory budget ({budget / 2**30:.1f} GiB): "
            "pruning out of core (as with --low-memory)"
        )
        return True
    return False


def _prune_out_of_core(
    src: Path, plan: SparsityPlan, inputs: tuple[Any, list[str]] | None, args: argparse.Namespace
) -> int:
    """Prune without loading the model: the output folder gets the pruned shards, the masks,
    the report and the side files, like the in-memory path."""
    command = "es-plugins " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else None
    skipped: list[str] = []
    reports = []
    pattern = plan_pattern(plan.to_dict())

    def write(tmp: Path) -> None:
        skipped.extend(copy_side_files(src, tmp, args.copy_remote_code))
        started = time.perf_counter()
        meta = {"plan": plan.to_dict(), "source": str(src)}
        if inputs is None:
            report = prune_checkpoint(
                src, tmp, plan, pattern, show_progress=True, meta=meta, allow_external=args.allow_external_shards
            )
        else:
            tokenizer, texts = inputs
            calibration = calibration_blocks(tokenizer, texts, args.calib_samples, args.calib_seq_len, args.seed)
            masks = SparsityState.load(args.refine_masks) if args.refine_masks else None
            log(
                f"calibrating on {calibration.shape[0]} x {calibration.shape[1]} tokens (seed {args.seed}), "
                f"block by block on {args.device}"
            )
            report = prune_checkpoint_sequential(
                src,
                tmp,
                plan,
                calibration,
                masks,
                pattern=pattern,
                show_progress=True,
                meta=meta,
                device=args.device,
                allow_external=args.allow_external_shards,
            )
        report.meta["prune_seconds"] = round(time.perf_counter() - started, 3)
        write_report_files(tmp, report, command)
        reports.append(report)

    log(f"pruning {src} out of core")
    out = write_folder_atomically(args.out_dir, write, inputs=[src], overwrite=args.overwrite, command="prune")
    report = reports[0]
    emit(report.to_json() if args.json else report.format_table())
    if skipped:
        log(f"not copied from {src}: {', '.join(skipped)}")
    log(
        f"wrote {out} (out of core in {report.meta['prune_seconds']:.2f}s; masks: {MASKS_FILENAME}, "
        f"report: {REPORT_FILENAME})"
    )
    return 0


def _calibration_inputs(src: Path, args: argparse.Namespace) -> tuple[Any, list[str]]:
    """The tokenizer and calibration texts, checked before the model is loaded."""
    from transformers import AutoConfig  # the hf extra, needed for calibration only

    read_config(src)  # a clear error for a broken config.json
    limit = getattr(AutoConfig.from_pretrained(src, local_files_only=True), "max_position_embeddings", None)
    if isinstance(limit, int) and args.calib_seq_len > limit:
        raise SparsityConfigError(f"--calib-seq-len {args.calib_seq_len} is larger than the model's maximum ({limit})")
    if args.refine_masks and not Path(args.refine_masks).is_file():
        raise SparsityConfigError(f"--refine-masks {args.refine_masks!r}: no such masks file")
    texts = resolve_texts(args.calib, flag="--calib")
    tokenizer = load_tokenizer(src, "--calib (calibration of wanda/sparsegpt)")
    return tokenizer, texts


def _prune(model, plan: SparsityPlan, inputs: tuple[Any, list[str]] | None, args: argparse.Namespace) -> SparsityState:
    """One call for every method; calibrated ones get the tokenised calibration text."""
    if inputs is None:
        return sparsify_(model, plan, show_progress=True)
    tokenizer, texts = inputs
    masks = SparsityState.load(args.refine_masks, model) if args.refine_masks else None
    calibration = calibration_blocks(tokenizer, texts, args.calib_samples, args.calib_seq_len, args.seed)
    log(f"calibrating on {calibration.shape[0]} x {calibration.shape[1]} tokens (seed {args.seed}) on {args.device}")
    return sparsify_(model, plan, calibration=calibration, masks=masks, show_progress=True, device=args.device)


def cmd_inspect(args: argparse.Namespace) -> int:
    pattern = parse_pattern(args.pattern)
    if export_cli.is_onnx_path(args.path):
        return export_cli.cmd_inspect_onnx(args, pattern)
    export_cli.refuse_onnx_only_options(args)
    spec = _target_spec(args)
    path = resolve_model_path(args.path)
    model = load_hf_model(path)
    targets = resolve_targets(model, spec)
    meta: dict = {"source": str(path)}
    masks_file = path / MASKS_FILENAME
    if masks_file.is_file():
        state = SparsityState.load(masks_file, model)
        regrown = state.count_nonzero_pruned(model)
        meta["masks_file"] = {
            "layers": len(state.masks),
            "sparsity": state.sparsity,
            "weights_nonzero_where_masked": regrown,
        }
    report = build_report(model, targets, pattern, meta=meta)
    emit(report.to_json() if args.json else report.format_table())
    if "masks_file" in meta and not args.json:
        info = meta["masks_file"]
        emit(
            f"masks file: {info['layers']} layers, {info['sparsity']:.2%} pruned, "
            f"{info['weights_nonzero_where_masked']} weights non-zero where masked"
        )
    return 0


COMMANDS = {"prune": cmd_prune, "inspect": cmd_inspect, **export_cli.COMMANDS, **analysis_cli.COMMANDS}


def add_arguments(name: str, parser: argparse.ArgumentParser) -> None:
    """The options of command ``name`` (used by the ``optimum-cli sparsity`` commands)."""
    adders = {
        "prune": add_prune_arguments,
        "inspect": add_inspect_arguments,
        "compress": export_cli.add_compress_arguments,
        "export": export_cli.add_export_arguments,
    }
    adders[name](parser)


def run_command(name: str, args: argparse.Namespace, prog: str = "es-plugins") -> int:
    """Run a parsed command; bad input exits with status 2 and one clear line on stderr.

    Shared by ``es-plugins`` and the ``optimum-cli sparsity`` commands (``prog`` names the
    one the user typed), so both catch the same errors the same way.
    """
    threads = torch.get_num_threads()  # restored after: main() may be called as a library function
    try:
        with results_only_on_stdout(), console_logging():
            _configure_process(args)
            return COMMANDS[name](args)
    except (ValueError, ImportError, OSError) as exc:  # bad input, a missing extra, a failed write
        print(f"{prog} {name}: error: {_one_line(exc)}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    except Exception as exc:  # a bug: one line by default, the traceback on request
        if os.environ.get("ES_PLUGINS_TRACEBACK"):
            raise
        print(
            f"{prog} {name}: internal error: {type(exc).__name__}: {_one_line(exc)} "
            "(set ES_PLUGINS_TRACEBACK=1 for the traceback and please report it)",
            file=sys.stderr,
            flush=True,
        )
        raise SystemExit(1) from None
    finally:
        torch.set_num_threads(threads)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    return run_command(args.command, args)


if __name__ == "__main__":
    sys.exit(main())
