"""Optimum's ONNX export of a pruned checkpoint, then proof that nothing was lost.

After ``main_export`` the checkpoint's head is known to fit the task (otherwise transformers
would attach a random one), every targeted weight is compared bit for bit with its PyTorch
parameter, ONNX Runtime is run against PyTorch, and the report says where the 2:4 layers
ended up. ``optimum-cli sparsity export`` is a thin command over :func:`export_and_verify`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .._deprecation import dtype_value
from ..engines.device import resolve_device
from ..errors import ExportError, SparsityConfigError
from ..io.checkpoint import load_hf_model
from ..io.weight_files import check_weight_files
from ..masks.targets import resolve_targets
from .onnx_check import pytorch_parity
from .onnx_gemm import rewrite_and_check
from .onnx_report import compare_with_pytorch, inspect_onnx
from .onnx_weights import load_onnx

OPTIMUM_DTYPES = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}  # our names -> Optimum's


MIN_OPSET = 14


def max_opset() -> int:
    """The newest opset this torch's ONNX exporter writes (what Optimum's export calls)."""
    from torch.onnx import _constants

    return int(getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", _constants.ONNX_MAX_OPSET))


@dataclass(frozen=True)
class ExportOptions:
    """Optimum's own export options, passed through unchanged (``None`` = Optimum's default).

    Args:
        task: Optimum task, or ``"auto"`` to infer it from the checkpoint.
        opset: ONNX opset; ``None`` lets Optimum pick the recommended one for the architecture.
        device: device the export runs on: ``"auto"`` (cuda when available, else cpu), ``"cpu"``,
            ``"cuda"``, ``"cuda:1"``.
        dtype: ``"float32"``, ``"float16"`` or ``"bfloat16"`` (the ``--dtype`` names of every
            command; the former ``"fp32"``/``"fp16"``/``"bf16"`` still work, with a warning).
        optimize: ONNX Runtime optimization level ``"O1"`` ... ``"O4"``.
        library_name: ``"transformers"``, ``"sentence_transformers"``, ... (Optimum infers it).
        trust_remote_code: allow the checkpoint's own modelling code.
    """

    task: str = "auto"
    opset: int | None = None
    device: str = "auto"
    dtype: str | None = None
    optimize: str | None = None
    library_name: str | None = None
    trust_remote_code: bool = False

    def __post_init__(self) -> None:
        resolve_device(self.device, flag="device")  # a missing GPU is an error before the export
        if self.opset is not None and not MIN_OPSET <= self.opset <= max_opset():
            raise SparsityConfigError(
                f"opset must be in [{MIN_OPSET}, {max_opset()}] (SDPA attention does not export below {MIN_OPSET}; "
                f"torch {torch.__version__} exports up to {max_opset()}), got {self.opset}"
            )
        if self.dtype is not None:
            object.__setattr__(self, "dtype", dtype_value(self.dtype) if isinstance(self.dtype, str) else self.dtype)
            if self.dtype not in OPTIMUM_DTYPES:
                raise SparsityConfigError(f"dtype must be one of {', '.join(OPTIMUM_DTYPES)}; got {self.dtype!r}")
        if self.optimize is not None and self.optimize not in ("O1", "O2", "O3", "O4"):
            raise SparsityConfigError(f"optimize must be one of O1, O2, O3, O4; got {self.optimize!r}")


def check_task(model_dir: str | Path, task: str) -> str:
    """Refuse a task whose head the checkpoint does not have; return the task to export.

    ``feature-extraction`` (the bare encoder) fits every checkpoint; any other task must map
    the checkpoint's model type to exactly the architecture named in its ``config.json``.
    """
    import transformers
    from optimum.exporters.tasks import TasksManager

    config = transformers.AutoConfig.from_pretrained(model_dir, local_files_only=True)
    arch = (getattr(config, "architectures", None) or [None])[0]
    arch_class = getattr(transformers, arch, None) if arch else None
    inferred = TasksManager.infer_task_from_model(arch_class) if arch_class else "feature-extraction"
    if task == "auto":
        return inferred
    known = TasksManager.get_all_tasks()
    if task.replace("-with-past", "") not in known:
        raise SparsityConfigError(f"--task {task!r} is not an Optimum task; known: {', '.join(sorted(known))}")
    if task == "feature-extraction":
        return task
    auto_class = TasksManager.get_model_class_for_task(task.replace("-with-past", ""), framework="pt")
    mapping = getattr(auto_class, "_model_mapping", {})
    expected = mapping[type(config)] if type(config) in mapping else None
    if expected is None or (arch is not None and expected.__name__ != arch):
        raise SparsityConfigError(
            f"{model_dir} is a {arch or config.model_type} checkpoint without a {task!r} head "
            f"(exporting it would attach a randomly initialised one); its task is {inferred!r}: use --task {inferred}"
        )
    return task


def export_and_verify(
    model_dir: str | Path,
    output: str | Path,
    options: ExportOptions | None = None,
    rewrite_gemm: bool = False,
    atol: float = 1e-4,
) -> dict[str, Any]:
    """Run Optimum's ONNX export on a pruned checkpoint, then verify and report the result.

    Raises:
        ExportError: a weight differs from the checkpoint, fewer than all targeted weights
            could be compared, or the outputs differ by more than ``atol`` (scaled for
            fp16/bf16 exports). With ``rewrite_gemm`` the 2:4 MatMul layers are rewritten
            to Gemm in place after an output check.
    """
    import onnx
    from optimum.exporters.onnx import main_export

    options = options or ExportOptions()
    check_weight_files(model_dir)  # Optimum reads the index as it is: shards must stay in the folder
    task = check_task(model_dir, options.task)
    main_export(
        str(model_dir),
        output=str(output),
        task=task,
        opset=options.opset,
        device=str(resolve_device(options.device)),
        dtype=OPTIMUM_DTYPES[options.dtype] if options.dtype else None,
        optimize=options.optimize,
        library_name=options.library_name,
        trust_remote_code=options.trust_remote_code,
        local_files_only=True,
        do_validation=False,
    )
    onnx_path = Path(output) / "model.onnx"
    graph = load_onnx(onnx_path)
    reduced = options.dtype in ("float16", "bfloat16")
    # the reference in the exported precision, so the zeros and values compare bit for bit
    model = load_hf_model(model_dir, dtype=options.dtype if options.dtype and reduced else "float32")
    summary: dict[str, Any] = {"onnx": str(onnx_path), "task": task, "options": options.__dict__}
    if options.optimize is None:
        comparison = compare_with_pytorch(
            graph, dict(model.named_parameters()), [t.name for t in resolve_targets(model)]
        )
        if not comparison.ok:
            raise ExportError("the export changed weights:\n  " + "\n  ".join(comparison.problems))
        summary["weights_compared"] = comparison.compared
    else:  # ONNX Runtime's fusions merge initializers (QKV, bias+GELU): only outputs can be compared
        summary["weights_compared"] = 0
    tolerance = atol * 100 if reduced else atol
    parity = pytorch_parity(model.float() if reduced else model, graph, atol=tolerance)
    if not parity.ok:
        raise ExportError(f"ONNX Runtime differs from PyTorch by {parity.max_abs_diff:.3g} (> {tolerance})")
    summary["max_abs_diff"] = parity.max_abs_diff
    if rewrite_gemm:
        rewrite = rewrite_and_check(graph)
        onnx.save(rewrite.model, str(onnx_path))
        graph = rewrite.model
        summary["gemm_rewrite"] = {"layers": len(rewrite.rewritten), "max_abs_diff": rewrite.max_abs_diff}
    summary["report"] = inspect_onnx(graph)
    return summary
