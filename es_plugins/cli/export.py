"""``es-plugins export|compress|decompress`` (and ``optimum-cli sparsity export|compress``):
flags in, the jobs of :mod:`es_plugins.jobs.export` called, their summaries out."""

from __future__ import annotations

import argparse
import dataclasses
import json

from .._deprecation import dtype_value
from ..export.onnx_sparse import OnnxCompression
from ..export.tensorrt import trtexec_command
from ..export.verified import ExportOptions
from ..jobs.export import COMPRESS_FORMATS, compress, decompress, export
from .console import emit, log
from .options import (
    DTYPE_CHOICES,
    add_device_argument,
    add_model_and_output,
    add_target_args,
    resolve_model_and_output,
    target_spec,
)

_OVERWRITE = "replace an OUTPUT that an earlier es-plugins run wrote (never any other folder)"


def add_compress_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_and_output(
        parser, "pruned HF checkpoint folder, or an .onnx file", "output folder (checkpoint) or .onnx file"
    )
    parser.add_argument(
        "--format",
        default="auto",
        choices=COMPRESS_FORMATS,
        help="checkpoint layout: auto picks 2:4 when every target is 2:4, else bitmask",
    )
    parser.add_argument("--overwrite", action="store_true", help=_OVERWRITE)
    parser.add_argument("--json", action="store_true", help="print the size summary as JSON")
    add_target_args(parser)


def add_decompress_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_and_output(parser, "compressed HF checkpoint folder", "output folder for the plain checkpoint")
    parser.add_argument("--overwrite", action="store_true", help=_OVERWRITE)


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the verified export: Optimum's own export options plus the checks'."""
    add_model_and_output(parser, "pruned HF checkpoint folder, or packaged:minilm", "output folder for model.onnx")
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
    parser.add_argument("--overwrite", action="store_true", help=_OVERWRITE)


def run_compress(args: argparse.Namespace) -> int:
    resolve_model_and_output(args, "compress")
    result = compress(args.model, args.output, format=args.format, targets=target_spec(args), overwrite=args.overwrite)
    if isinstance(result, OnnxCompression):
        if args.json:
            emit(json.dumps({**result.__dict__, "ratio": result.ratio}, indent=2))
        else:
            emit(
                f"sparse initializers: {len(result.converted)} tensors; kept dense (sparse form would be larger "
                f"with int64 indices, i.e. below 2/3 sparsity in fp32): {len(result.kept_dense)}; file "
                f"{result.compressed_file_bytes / 2**20:.2f} MiB = {result.ratio:.3f}x dense"
            )
        return 0
    if args.json:
        emit(json.dumps({**result.__dict__, "ratio": result.ratio, "targets_ratio": result.targets_ratio}, indent=2))
    else:
        emit(result.format_line())
    log(f"wrote {args.output} (load it with es_plugins.io.compressed.load_compressed or `es-plugins decompress`)")
    return 0


def run_decompress(args: argparse.Namespace) -> int:
    resolve_model_and_output(args, "decompress")
    out = decompress(args.model, args.output, overwrite=args.overwrite)
    log(f"wrote plain checkpoint {out}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    """Optimum's ONNX export into OUTPUT, published only once every check passed."""
    resolve_model_and_output(args, "export")
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(ExportOptions)}
    options = ExportOptions(**{**given, "device": args.device or "auto"})
    summary = export(
        args.model, args.output, options, rewrite_gemm=args.rewrite_gemm, atol=args.atol, overwrite=args.overwrite
    )
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
