"""Run two ONNX graphs on the same synthetic inputs and compare outputs (ONNX Runtime, CPU).

Inputs are drawn from the graph itself: dynamic dims become a small batch and sequence,
integer inputs stay below the row count of any embedding table that gathers them (so
``input_ids`` are valid token ids), float inputs are standard normal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ExportError

if TYPE_CHECKING:
    import onnx

_NUMPY = {1: np.float32, 6: np.int32, 7: np.int64, 9: np.bool_, 10: np.float16, 11: np.float64}


def _index_bounds(model: "onnx.ModelProto") -> dict[str, int]:
    dims = {t.name: int(t.dims[0]) for t in model.graph.initializer if len(t.dims)}
    bounds: dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type == "Gather" and len(node.input) == 2 and node.input[0] in dims:
            bounds[node.input[1]] = min(bounds.get(node.input[1], 1 << 30), dims[node.input[0]])
    return bounds


def synthetic_feeds(model: "onnx.ModelProto", batch: int = 2, seq: int = 8, seed: int = 0) -> dict[str, np.ndarray]:
    """One valid input batch for ``model``; deterministic for a seed."""
    rng = np.random.default_rng(seed)
    initializers = {t.name for t in model.graph.initializer}
    bounds = _index_bounds(model)
    feeds: dict[str, np.ndarray] = {}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        tensor_type = value.type.tensor_type
        shape = []
        for position, dim in enumerate(tensor_type.shape.dim):
            shape.append(dim.dim_value if dim.dim_value > 0 else (batch if position == 0 else seq))
        dtype = _NUMPY.get(tensor_type.elem_type)
        if dtype is None:
            raise ExportError(
                f"input {value.name!r} has an element type ({tensor_type.elem_type}) "
                "the check cannot synthesise; pass feeds explicitly"
            )
        if np.issubdtype(dtype, np.integer):
            high = bounds.get(value.name, 2)
            feeds[value.name] = rng.integers(0, high, size=shape).astype(dtype)
            if "mask" in value.name:
                feeds[value.name][:] = 1
        elif dtype is np.bool_:
            feeds[value.name] = np.ones(shape, dtype=bool)
        else:
            feeds[value.name] = rng.standard_normal(shape).astype(dtype)
    return feeds


def run_onnx(model: "onnx.ModelProto", feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    return session.run(None, {k: v for k, v in feeds.items() if k in names})


@dataclass(frozen=True)
class OutputCheck:
    max_abs_diff: float
    atol: float

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.atol


def compare_outputs(
    reference: "onnx.ModelProto",
    candidate: "onnx.ModelProto",
    atol: float = 1e-5,
    feeds: dict[str, np.ndarray] | None = None,
) -> OutputCheck:
    """Max absolute difference over all outputs of two graphs fed the same inputs."""
    feeds = feeds if feeds is not None else synthetic_feeds(reference)
    expected, got = run_onnx(reference, feeds), run_onnx(candidate, feeds)
    if len(expected) != len(got):
        raise ExportError(f"the graphs have {len(expected)} and {len(got)} outputs")
    diff = max(
        (float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max()) if a.size else 0.0)
        for a, b in zip(expected, got)
    )
    return OutputCheck(diff, atol)


def pytorch_parity(
    model, onnx_model: "onnx.ModelProto", atol: float = 1e-4, feeds: dict[str, np.ndarray] | None = None
) -> OutputCheck:
    """Max |diff| between the first output of a PyTorch model and of its ONNX export.

    The model is called with the ONNX graph's inputs as keyword arguments, which is how
    exported Hugging Face models are fed.
    """
    import torch

    feeds = feeds if feeds is not None else synthetic_feeds(onnx_model)
    got = run_onnx(onnx_model, feeds)[0]
    with torch.no_grad():
        result = model(**{name: torch.from_numpy(value) for name, value in feeds.items()})
    expected = result[0] if isinstance(result, (tuple, list)) or hasattr(result, "to_tuple") else result
    expected = expected.detach().float().cpu().numpy()
    if expected.shape != got.shape:
        raise ExportError(f"first output shapes differ: PyTorch {expected.shape}, ONNX {got.shape}")
    return OutputCheck(float(np.abs(expected.astype(np.float64) - got.astype(np.float64)).max()), atol)
