"""CLI pieces for export: ``inspect`` on ONNX files, ``compress``, ``decompress`` and the
verified Optimum ``export`` (also ``optimum-cli sparsity export``)."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from .._cli_args import DTYPE_CHOICES, add_device_argument, add_target_args, dtype_value, target_spec
from .._console import emit, log
from ..assets import resolve_model_path
from ..checkpoint import load_hf_model, save_hf_checkpoint
from ..errors import SparsityConfigError
from ..output import check_output, write_file_atomically, write_folder_atomically
from ..targets import resolve_targets
from .compressed import load_compressed, save_compressed
from .onnx_gemm import rewrite_and_check
from .onnx_report import compare_with_pytorch, inspect_onnx
from .onnx_sparse import compress_onnx
from .onnx_weights import load_onnx
from .tensorrt import trtexec_command
from .verified import ExportOptions, export_and_verify


def is_onnx_path(path: str) -> bool:
    """An ``.onnx`` file, or a folder holding ONNX files and no PyTorch weights (optimum's output)."""
    candidate = Path(path)
    if candidate.suffix == ".onnx":
        return True
    if not candidate.is_dir():
        return False
    has_onnx = any(candidate.glob("*.onnx"))
    has_torch = any(p.suffix in (".safetensors", ".bin") for p in candidate.iterdir())
    return has_onnx and not has_torch


def add_onnx_inspect_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("ONNX files")
    group.add_argument(
        "--rewrite-gemm",
        metavar="OUT.onnx",
        help="write a copy where N:M MatMul(+Add) layers become Gemm (eligible for TensorRT sparse "
        "kernels); outputs are checked equal first",
    )
    group.add_argument(
        "--reference",
        metavar="CHECKPOINT",
        help="PyTorch checkpoint the ONNX was exported from: every weight must match it bit for bit",
    )
    group.add_argument(
        "--min-channels",
        type=int,
        default=64,
        help="channel count below which a layer is reported as not worth a sparse kernel (default 64)",
    )
    group.add_argument(
        "--precision",
        default="fp16",
        choices=("fp16", "int8", "best", "fp32"),
        help="precision for the printed trtexec command (default fp16)",
    )
    group.add_argument("--overwrite", action="store_true", help="replace an existing --rewrite-gemm file")


def refuse_onnx_only_options(args: argparse.Namespace) -> None:
    for option in ("rewrite_gemm", "reference", "overwrite"):
        if getattr(args, option, None):
            raise SparsityConfigError(f"--{option.replace('_', '-')} applies to .onnx files; {args.path!r} is not one")


def cmd_inspect_onnx(args: argparse.Namespace, pattern: tuple[int, int]) -> int:
    if args.include or args.include_regex or args.exclude or args.exclude_regex:
        raise SparsityConfigError("--include/--exclude select PyTorch modules; an ONNX report covers every weight")
    if args.min_channels < 1:
        raise SparsityConfigError(f"--min-channels must be >= 1, got {args.min_channels}")
    if args.rewrite_gemm:
        check_output(
            args.rewrite_gemm, inputs=[args.path], overwrite=args.overwrite, kind="file", flag="--rewrite-gemm"
        )
    model = load_onnx(args.path)
    report = inspect_onnx(model, pattern, args.min_channels)
    report.meta["source"] = args.path
    problems: list[str] = []
    if args.reference:
        reference = load_hf_model(resolve_model_path(args.reference), dtype="float32")
        expected = [t.name for t in resolve_targets(reference)]
        comparison = compare_with_pytorch(model, dict(reference.named_parameters()), expected)
        problems = list(comparison.problems)
        report.meta["reference"] = {
            "checkpoint": args.reference,
            "mismatches": problems,
            "compared": comparison.compared,
            "targets": comparison.expected,
        }
    target = args.rewrite_gemm or args.path
    if args.rewrite_gemm:
        import onnx  # optional heavy dependency (the onnx extra)

        rewrite = rewrite_and_check(model, pattern)
        write_file_atomically(
            args.rewrite_gemm,
            lambda tmp: onnx.save(rewrite.model, str(tmp)),
            inputs=[args.path],
            overwrite=args.overwrite,
            flag="--rewrite-gemm",
        )
        after = inspect_onnx(rewrite.model, pattern, args.min_channels)
        report.meta["rewrite"] = {
            "output": args.rewrite_gemm,
            "layers": list(rewrite.rewritten),
            "bias_folded": rewrite.with_bias,
            "max_abs_diff": rewrite.max_abs_diff,
            "eligible_after": len(after.eligible),
        }
    eligible = len(report.eligible) if not args.rewrite_gemm else report.meta["rewrite"]["eligible_after"]
    if eligible and not problems:  # never suggest sparse kernels for a graph that failed its check
        report.meta["trtexec"] = trtexec_command(target, args.precision)
    if args.json:
        emit(report.to_json())
    else:
        emit(report.format_table())
        if args.reference:
            info = report.meta["reference"]
            emit(
                f"weights vs {args.reference}: "
                + (
                    f"all {info['compared']} targeted weights bit-identical"
                    if not problems
                    else f"FAILED ({info['compared']} of {info['targets']} targeted weights compared):\n  "
                    + "\n  ".join(problems)
                )
            )
        if args.rewrite_gemm:
            info = report.meta["rewrite"]
            emit(
                f"rewrote {len(info['layers'])} MatMul layers to Gemm ({info['bias_folded']} with bias folded); "
                f"outputs max |diff| {info['max_abs_diff']:.3g}; eligible now: {info['eligible_after']}/"
                f"{len(report.layers)}; wrote {args.rewrite_gemm}"
            )
        if "trtexec" in report.meta:
            emit("TensorRT engine with 2:4 sparse kernels allowed:\n  " + report.meta["trtexec"])
            emit(
                "ONNX Runtime: es_plugins.export.tensorrt.tensorrt_sparse_session(path) "
                "(TensorrtExecutionProvider, trt_sparsity_enable=True)"
            )
        else:
            emit(
                "no TensorRT sparse-kernel command: "
                + ("the weight check failed" if problems else "no layer is eligible for 2:4 sparse kernels")
            )
    return 1 if problems else 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    add_compress_arguments(
        sub.add_parser(
            "compress",
            help="write a smaller file: compressed HF checkpoint (bitmask / 2:4) or sparse ONNX initializers",
        )
    )
    add_decompress_arguments(
        sub.add_parser(
            "decompress", help="turn a compressed checkpoint back into a plain one (loads without this package)"
        )
    )
    add_export_arguments(
        sub.add_parser(
            "export", help="Optimum ONNX export of a pruned checkpoint, verified (same as optimum-cli sparsity export)"
        )
    )


def add_compress_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", help="pruned HF checkpoint folder, or an .onnx file")
    parser.add_argument("out", help="output folder (checkpoint) or .onnx file")
    parser.add_argument(
        "--format",
        default="auto",
        choices=("auto", "bitmask", "2:4"),
        help="checkpoint layout: auto picks 2:4 when every target is 2:4, else bitmask",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an output that an earlier es-plugins run wrote (never any other folder)",
    )
    parser.add_argument("--json", action="store_true", help="print the size summary as JSON")
    add_target_args(parser)


def add_decompress_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", help="compressed HF checkpoint folder")
    parser.add_argument("out", help="output folder for the plain checkpoint")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an output folder that an earlier es-plugins run wrote (never any other folder)",
    )


def cmd_compress(args: argparse.Namespace) -> int:
    if is_onnx_path(args.src):
        return _compress_onnx(args)
    spec = target_spec(args)
    src = resolve_model_path(args.src)
    check_output(args.out, inputs=[src], overwrite=args.overwrite, flag="OUT")
    model = load_hf_model(src)
    summaries = []

    def write(tmp: Path) -> None:
        save_hf_checkpoint(model, src, tmp)
        summaries.append(save_compressed(model, tmp, args.format, spec))

    out = write_folder_atomically(
        args.out, write, inputs=[src], overwrite=args.overwrite, command="compress", flag="OUT"
    )
    summary = summaries[0]
    if args.json:
        emit(json.dumps({**summary.__dict__, "ratio": summary.ratio, "targets_ratio": summary.targets_ratio}, indent=2))
    else:
        emit(summary.format_line())
    log(f"wrote {out} (load it with es_plugins.export.compressed.load_compressed or `es-plugins decompress`)")
    return 0


def _compress_onnx(args: argparse.Namespace) -> int:
    if args.format != "auto":
        raise SparsityConfigError("--format applies to HF checkpoints; ONNX files get sparse initializers")
    if Path(args.out).suffix != ".onnx":
        raise SparsityConfigError(f"the output for an ONNX input must be an .onnx file, got {args.out!r}")
    result = write_file_atomically(
        args.out, lambda tmp: compress_onnx(args.src, tmp), inputs=[args.src], overwrite=args.overwrite
    )
    if args.json:
        emit(json.dumps({**result.__dict__, "ratio": result.ratio}, indent=2))
    else:
        emit(
            f"sparse initializers: {len(result.converted)} tensors; kept dense (sparse form would be larger with "
            f"int64 indices, i.e. below 2/3 sparsity in fp32): {len(result.kept_dense)}; file "
            f"{result.compressed_file_bytes / 2**20:.2f} MiB = {result.ratio:.3f}x dense"
        )
    return 0


def cmd_decompress(args: argparse.Namespace) -> int:
    src = resolve_model_path(args.src)
    check_output(args.out, inputs=[src], overwrite=args.overwrite, flag="OUT")
    model = load_compressed(src)
    out = write_folder_atomically(
        args.out,
        lambda tmp: save_hf_checkpoint(model, src, tmp),
        inputs=[src],
        overwrite=args.overwrite,
        command="decompress",
        flag="OUT",
    )
    log(f"wrote plain checkpoint {out}")
    return 0


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the verified export: Optimum's own export options plus the checks'."""
    parser.add_argument("--model", "-m", required=True, help="pruned HF checkpoint folder, or packaged:minilm")
    parser.add_argument("output", help="output folder for model.onnx")
    parser.add_argument("--task", default="auto", help="Optimum task (default: inferred from the checkpoint)")
    parser.add_argument(
        "--opset",
        type=int,
        default=None,
        help="ONNX opset (>= 14; default: the one Optimum recommends for the architecture)",
    )
    add_device_argument(
        parser, "device the export runs on (Optimum's --device; default: cuda when available, else cpu)"
    )
    parser.add_argument(
        "--dtype",
        type=dtype_value,
        choices=DTYPE_CHOICES,
        default=None,
        help="precision of the export (default float32)",
    )
    parser.add_argument(
        "--optimize",
        choices=("O1", "O2", "O3", "O4"),
        default=None,
        help="ONNX Runtime optimization level (Optimum's --optimize); fused weights are then "
        "checked through the outputs only",
    )
    parser.add_argument("--library-name", default=None, help="Optimum's --library-name (default: inferred)")
    parser.add_argument("--trust-remote-code", action="store_true", help="Optimum's --trust-remote-code")
    parser.add_argument(
        "--rewrite-gemm",
        action="store_true",
        help="rewrite 2:4 MatMul layers to Gemm so TensorRT may use sparse kernels",
    )
    parser.add_argument("--atol", type=float, default=1e-4, help="PyTorch vs ONNX Runtime tolerance")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an output folder that an earlier es-plugins export wrote"
    )


def cmd_export(args: argparse.Namespace) -> int:
    """Optimum's ONNX export into OUT, published only once every check passed."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(ExportOptions)}
    options = ExportOptions(**{**given, "device": args.device or "auto"})
    model = resolve_model_path(args.model)
    check_output(args.output, inputs=[model], overwrite=args.overwrite, flag="output")
    results = []

    def write(tmp: Path) -> None:
        results.append(export_and_verify(model, tmp, options, args.rewrite_gemm, args.atol))

    out = write_folder_atomically(
        args.output,
        write,
        inputs=[model],
        overwrite=args.overwrite,
        command="optimum-cli sparsity export",
        flag="output",
    )
    summary = results[0]
    summary["onnx"] = str(out / "model.onnx")
    emit(summary["report"].format_table())
    compared = (
        f"all {summary['weights_compared']} targeted weights bit-identical to {args.model}"
        if summary["weights_compared"]
        else "weights checked through the outputs (--optimize)"
    )
    emit(f"{compared}; ONNX Runtime vs PyTorch max |diff| {summary['max_abs_diff']:.3g}")
    if "gemm_rewrite" in summary:
        emit(
            f"MatMul->Gemm: {summary['gemm_rewrite']['layers']} layers, outputs max |diff| "
            f"{summary['gemm_rewrite']['max_abs_diff']:.3g}"
        )
    if summary["report"].eligible:
        emit("TensorRT: " + trtexec_command(summary["onnx"]))
    else:
        emit(
            "TensorRT: no layer is eligible for 2:4 sparse kernels (see the table), so no "
            "--sparsity=enable command is suggested"
        )
    return 0


COMMANDS = {"compress": cmd_compress, "decompress": cmd_decompress, "export": cmd_export}
