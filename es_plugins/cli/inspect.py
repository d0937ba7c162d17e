"""``es-plugins inspect`` (and ``optimum-cli sparsity inspect``): flags in,
:func:`es_plugins.jobs.inspect` called, the report out."""

from __future__ import annotations

import argparse

from ..export.onnx_report import OnnxSparsityReport
from ..jobs.inspect import TRT_PRECISIONS, inspect
from .console import emit
from .options import add_model_and_output, add_target_args, deprecated_spelling, resolve_model_and_output, target_spec


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_and_output(parser, "local HF checkpoint folder, packaged:minilm, or an .onnx file", None)
    parser.add_argument("--pattern", default="2:4", help="N:M pattern to check compliance for (default 2:4)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    add_target_args(parser)
    group = parser.add_argument_group("ONNX files")
    group.add_argument(
        "--gemm-copy",
        metavar="OUT.onnx",
        help="write a copy where N:M MatMul(+Add) layers become Gemm (eligible for TensorRT sparse "
        "kernels); outputs are checked equal first",
    )
    group.add_argument(  # its former name: --rewrite-gemm is the export's switch now, one meaning
        "--rewrite-gemm", dest="gemm_copy", action=deprecated_spelling("--gemm-copy"), help=argparse.SUPPRESS
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
        choices=TRT_PRECISIONS,
        help="precision for the printed trtexec command (default fp16)",
    )
    group.add_argument("--overwrite", action="store_true", help="replace an existing --gemm-copy file")


def run(args: argparse.Namespace) -> int:
    resolve_model_and_output(args, "inspect")
    report = inspect(
        args.model,
        pattern=args.pattern,
        targets=target_spec(args),
        reference=args.reference,
        gemm_copy=args.gemm_copy,
        min_channels=args.min_channels,
        precision=args.precision,
        overwrite=args.overwrite,
    )
    if args.json:
        emit(report.to_json())
    elif isinstance(report, OnnxSparsityReport):
        render_onnx(report)
    else:
        emit(report.format_table())
        if "masks_file" in report.meta:
            info = report.meta["masks_file"]
            emit(
                f"masks file: {info['layers']} layers, {info['sparsity']:.2%} pruned, "
                f"{info['weights_nonzero_where_masked']} weights non-zero where masked"
            )
    problems = report.meta.get("reference", {}).get("mismatches") if isinstance(report, OnnxSparsityReport) else None
    return 1 if problems else 0


def render_onnx(report: OnnxSparsityReport) -> None:
    emit(report.format_table())
    meta = report.meta
    if "reference" in meta:
        info = meta["reference"]
        problems = info["mismatches"]
        emit(
            f"weights vs {info['checkpoint']}: "
            + (
                f"all {info['compared']} targeted weights bit-identical"
                if not problems
                else f"FAILED ({info['compared']} of {info['targets']} targeted weights compared):\n  "
                + "\n  ".join(problems)
            )
        )
    if "rewrite" in meta:
        info = meta["rewrite"]
        emit(
            f"rewrote {len(info['layers'])} MatMul layers to Gemm ({info['bias_folded']} with bias folded); "
            f"outputs max |diff| {info['max_abs_diff']:.3g}; eligible now: {info['eligible_after']}/"
            f"{len(report.layers)}; wrote {info['output']}"
        )
    if "trtexec" in meta:
        emit("TensorRT engine with 2:4 sparse kernels allowed:\n  " + meta["trtexec"])
        emit(
            "ONNX Runtime: es_plugins.export.tensorrt.tensorrt_sparse_session(path) "
            "(TensorrtExecutionProvider, trt_sparsity_enable=True)"
        )
    else:
        failed = bool(meta.get("reference", {}).get("mismatches"))
        emit(
            "no TensorRT sparse-kernel command: "
            + ("the weight check failed" if failed else "no layer is eligible for 2:4 sparse kernels")
        )
