"""``inspect``: sparsity and N:M compliance of a checkpoint or an ONNX file — the job of
``es-plugins inspect`` (and ``optimum-cli sparsity inspect``), with the same arguments."""

from __future__ import annotations

from pathlib import Path
from typing import Union

from ..errors import SparsityConfigError, option_flag
from ..export.onnx_gemm import rewrite_and_check
from ..export.onnx_report import OnnxSparsityReport, compare_with_pytorch, inspect_onnx
from ..export.onnx_weights import load_onnx
from ..export.tensorrt import trtexec_command
from ..io.assets import resolve_model_path
from ..io.checkpoint import load_hf_model
from ..io.output import check_output, write_file_atomically
from ..masks.patterns import parse_pattern
from ..masks.report import SparsityReport, build_report
from ..masks.state import MASKS_FILENAME, SparsityState
from ..masks.targets import TargetSpec, resolve_targets
from .export import is_onnx_path

TRT_PRECISIONS = ("fp16", "int8", "best", "fp32")


def inspect(
    model: str | Path,
    *,
    pattern: Union[str, tuple[int, int]] = "2:4",
    targets: TargetSpec | None = None,
    reference: str | Path | None = None,
    gemm_copy: str | Path | None = None,
    min_channels: int = 64,
    precision: str = "fp16",
    overwrite: bool = False,
) -> Union[SparsityReport, OnnxSparsityReport]:
    """The sparsity report of ``model``: a HF checkpoint (its targets; with its masks file,
    how many masked weights are non-zero) or an ONNX file (every weight, with sparse-kernel
    eligibility and, for eligible graphs, the trtexec command).

    ONNX only:
        reference: the PyTorch checkpoint the ONNX came from; every targeted weight must
            match it bit for bit (``report.meta["reference"]["mismatches"]``).
        gemm_copy: write a copy where N:M MatMul(+Add) layers become Gemm (eligible for
            TensorRT sparse kernels), after checking its outputs equal the original's.
        min_channels: channels below which a layer is not worth a sparse kernel.
        precision: precision of the suggested trtexec command.
    """
    nm = parse_pattern(pattern)
    if is_onnx_path(model):
        return _inspect_onnx(str(model), nm, targets, reference, gemm_copy, min_channels, precision, overwrite)
    for name, value in (("reference", reference), ("gemm_copy", gemm_copy), ("overwrite", overwrite)):
        if value:
            raise SparsityConfigError(f"{option_flag(name)} applies to .onnx files; {str(model)!r} is not one")
    path = resolve_model_path(model)
    loaded = load_hf_model(path)
    chosen = resolve_targets(loaded, targets or TargetSpec())
    meta: dict = {"source": str(path)}
    masks_file = path / MASKS_FILENAME
    if masks_file.is_file():
        state = SparsityState.load(masks_file, loaded)
        meta["masks_file"] = {
            "layers": len(state.masks),
            "sparsity": state.sparsity,
            "weights_nonzero_where_masked": state.count_nonzero_pruned(loaded),
        }
    return build_report(loaded, chosen, nm, meta=meta)


def _inspect_onnx(
    path: str,
    pattern: tuple[int, int],
    targets: TargetSpec | None,
    reference: str | Path | None,
    gemm_copy: str | Path | None,
    min_channels: int,
    precision: str,
    overwrite: bool,
) -> OnnxSparsityReport:
    if targets is not None and (targets.include or targets.exclude):
        raise SparsityConfigError("--include/--exclude select PyTorch modules; an ONNX report covers every weight")
    if min_channels < 1:
        raise SparsityConfigError(f"--min-channels must be >= 1, got {min_channels}")
    if precision not in TRT_PRECISIONS:
        raise SparsityConfigError(f"precision must be one of {', '.join(TRT_PRECISIONS)}; got {precision!r}")
    if gemm_copy:
        check_output(gemm_copy, inputs=[path], overwrite=overwrite, kind="file", flag="--gemm-copy")
    model = load_onnx(path)
    report = inspect_onnx(model, pattern, min_channels)
    report.meta["source"] = path
    problems: list[str] = []
    if reference:
        dense = load_hf_model(resolve_model_path(reference), dtype="float32")
        expected = [t.name for t in resolve_targets(dense)]
        comparison = compare_with_pytorch(model, dict(dense.named_parameters()), expected)
        problems = list(comparison.problems)
        report.meta["reference"] = {
            "checkpoint": str(reference),
            "mismatches": problems,
            "compared": comparison.compared,
            "targets": comparison.expected,
        }
    if gemm_copy:
        import onnx  # optional heavy dependency (the onnx extra)

        rewrite = rewrite_and_check(model, pattern)
        write_file_atomically(
            gemm_copy,
            lambda tmp: onnx.save(rewrite.model, str(tmp)),
            inputs=[path],
            overwrite=overwrite,
            flag="--gemm-copy",
        )
        after = inspect_onnx(rewrite.model, pattern, min_channels)
        report.meta["rewrite"] = {
            "output": str(gemm_copy),
            "layers": list(rewrite.rewritten),
            "bias_folded": rewrite.with_bias,
            "max_abs_diff": rewrite.max_abs_diff,
            "eligible_after": len(after.eligible),
        }
    eligible = len(report.eligible) if not gemm_copy else report.meta["rewrite"]["eligible_after"]
    if eligible and not problems:  # never suggest sparse kernels for a graph that failed its check
        report.meta["trtexec"] = trtexec_command(str(gemm_copy or path), precision)
    return report


__all__ = ["TRT_PRECISIONS", "inspect"]
