"""The TensorRT side of 2:4: the engine-build command and an ONNX Runtime session with
TensorRT's sparse weights enabled.

TensorRT cannot be installed on the machines this project is tested on, so nothing here is
executed by the test suite beyond building the command line and the clear error when the
provider is missing; the docs say so.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from ..errors import SparsityConfigError

TRT_PROVIDER = "TensorrtExecutionProvider"


class TensorRTUnavailableError(RuntimeError):
    """ONNX Runtime has no TensorRT execution provider in this environment."""


def trtexec_command(onnx_path: str | Path, precision: str = "fp16", engine: str | Path | None = None) -> str:
    """The ``trtexec`` line that builds an engine allowed to use 2:4 sparse kernels.

    ``--sparsity=enable`` lets TensorRT pick sparse tactics for eligible layers (it times
    them against dense ones); ``precision`` is ``fp16``, ``int8``, ``best`` or ``fp32`` (TF32).
    """
    if precision not in ("fp16", "int8", "best", "fp32"):
        raise SparsityConfigError(f"precision must be one of fp16, int8, best, fp32, got {precision!r}")
    path = Path(onnx_path)
    engine = Path(engine) if engine else path.with_suffix(".sparse.engine")
    parts = ["trtexec", f"--onnx={path}", "--sparsity=enable", f"--saveEngine={engine}"]
    if precision != "fp32":
        parts.append(f"--{precision}")
    parts.append("--verbose")  # the build log lists the layers TensorRT found eligible for sparse math
    return " ".join(shlex.quote(p) for p in parts)


def tensorrt_provider_options(fp16: bool = True, cache_dir: str | Path | None = None) -> dict[str, Any]:
    """ORT TensorRT provider options with sparse weights enabled."""
    options: dict[str, Any] = {"trt_sparsity_enable": True, "trt_fp16_enable": fp16}
    if cache_dir is not None:
        options.update(trt_engine_cache_enable=True, trt_engine_cache_path=str(cache_dir))
    return options


def tensorrt_sparse_session(onnx_path: str | Path, fp16: bool = True, cache_dir: str | Path | None = None):
    """An ``onnxruntime.InferenceSession`` on TensorRT with 2:4 sparse kernels allowed.

    Raises :class:`TensorRTUnavailableError` naming the providers that *are* available when
    this onnxruntime build has no TensorRT provider (e.g. the CPU wheel).
    """
    import onnxruntime as ort

    available = ort.get_available_providers()
    if TRT_PROVIDER not in available:
        raise TensorRTUnavailableError(
            f"onnxruntime {ort.__version__} has no {TRT_PROVIDER} (available: {', '.join(available)}). "
            "Install onnxruntime-gpu with TensorRT libraries on a GPU machine, or build the engine with: "
            + trtexec_command(onnx_path, "fp16" if fp16 else "fp32")
        )
    providers = [(TRT_PROVIDER, tensorrt_provider_options(fp16, cache_dir)), "CUDAExecutionProvider"]
    return ort.InferenceSession(str(onnx_path), providers=providers)
