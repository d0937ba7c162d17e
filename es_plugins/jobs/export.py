"""The export jobs: ``export`` (Optimum's ONNX export, verified), ``compress`` and
``decompress`` — what ``es-plugins export|compress|decompress`` (and ``optimum-cli sparsity``)
run, with the same arguments. Outputs are written atomically."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..errors import SparsityConfigError, check_choice
from ..export.onnx_sparse import OnnxCompression, compress_onnx
from ..export.verified import ExportOptions, export_and_verify
from ..io.assets import resolve_model_path
from ..io.checkpoint import load_hf_model, save_hf_checkpoint
from ..io.compressed import CompressionSummary, load_compressed, save_compressed
from ..io.output import check_output, write_file_atomically, write_folder_atomically
from ..masks.targets import TargetSpec

logger = logging.getLogger("es_plugins")

COMPRESS_FORMATS = ("auto", "bitmask", "2:4")


def is_onnx_path(path: str | Path) -> bool:
    """An ``.onnx`` file, or a folder holding ONNX files and no PyTorch weights (optimum's output)."""
    candidate = Path(path)
    if candidate.suffix == ".onnx":
        return True
    if not candidate.is_dir():
        return False
    has_onnx = any(candidate.glob("*.onnx"))
    has_torch = any(p.suffix in (".safetensors", ".bin") for p in candidate.iterdir())
    return has_onnx and not has_torch


def export(
    model: str | Path,
    output: str | Path,
    options: ExportOptions | None = None,
    *,
    rewrite_gemm: bool = False,
    atol: float = 1e-4,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Optimum's ONNX export of the pruned checkpoint ``model`` into the new folder
    ``output``, published only once every check passed: each targeted weight bit-identical
    to the checkpoint, ONNX Runtime's outputs within ``atol`` of PyTorch's, N:M compliance
    reported. ``rewrite_gemm`` turns 2:4 MatMul layers into Gemm (TensorRT sparse kernels).

    Returns the summary (report, weights compared, max difference, the ONNX path).
    """
    options = options or ExportOptions()
    src = resolve_model_path(model)
    check_output(output, inputs=[src], overwrite=overwrite, flag="output")
    results: list[dict[str, Any]] = []

    def write(tmp: Path) -> None:
        results.append(export_and_verify(src, tmp, options, rewrite_gemm, atol))

    out = write_folder_atomically(
        output, write, inputs=[src], overwrite=overwrite, command="optimum-cli sparsity export", flag="output"
    )
    summary = results[0]
    summary["onnx"] = str(out / "model.onnx")
    return summary


def compress(
    model: str | Path,
    output: str | Path,
    *,
    format: str = "auto",
    targets: TargetSpec | None = None,
    overwrite: bool = False,
) -> CompressionSummary | OnnxCompression:
    """A smaller file: a pruned HF checkpoint as a compressed-tensors checkpoint (``bitmask``
    or ``2:4``; ``auto`` picks 2:4 when every target is 2:4), or an ``.onnx`` file with sparse
    initializers (``output`` then an ``.onnx`` file)."""
    check_choice("format", format, COMPRESS_FORMATS)
    if is_onnx_path(model):
        if format != "auto":
            raise SparsityConfigError("--format applies to HF checkpoints; ONNX files get sparse initializers")
        if Path(output).suffix != ".onnx":
            raise SparsityConfigError(f"the output for an ONNX input must be an .onnx file, got {str(output)!r}")
        return write_file_atomically(output, lambda tmp: compress_onnx(model, tmp), inputs=[model], overwrite=overwrite)
    src = resolve_model_path(model)
    check_output(output, inputs=[src], overwrite=overwrite, flag="OUTPUT")
    loaded = load_hf_model(src)
    summaries: list[CompressionSummary] = []

    def write(tmp: Path) -> None:
        save_hf_checkpoint(loaded, src, tmp)
        summaries.append(save_compressed(loaded, tmp, format, targets or TargetSpec()))

    write_folder_atomically(output, write, inputs=[src], overwrite=overwrite, command="compress", flag="OUTPUT")
    return summaries[0]


def decompress(model: str | Path, output: str | Path, *, overwrite: bool = False) -> Path:
    """A compressed checkpoint back into a plain one, which loads without this package."""
    src = resolve_model_path(model)
    check_output(output, inputs=[src], overwrite=overwrite, flag="OUTPUT")
    loaded = load_compressed(src)
    return write_folder_atomically(
        output,
        lambda tmp: save_hf_checkpoint(loaded, src, tmp),
        inputs=[src],
        overwrite=overwrite,
        command="decompress",
        flag="OUTPUT",
    )


__all__ = ["COMPRESS_FORMATS", "compress", "decompress", "export", "is_onnx_path"]
