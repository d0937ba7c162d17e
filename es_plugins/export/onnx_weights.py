"""Find the weight matrices of an ONNX graph and map them back to PyTorch names.

``optimum-cli export onnx`` constant-folds each ``nn.Linear`` into a ``MatMul`` whose
weight is a transposed initializer named ``onnx::MatMul_123``. The node keeps the module
path (``/bert/encoder/layer.0/attention/self/query/MatMul``), so the PyTorch parameter
name is recovered from it; initializers that kept their PyTorch name are used as is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ExportError

if TYPE_CHECKING:
    import onnx

WEIGHT_OPS = ("MatMul", "Gemm", "Conv")
_FLOAT_TYPES = {1: np.float32, 10: np.float16, 11: np.float64, 16: None}  # 16 = bfloat16, counted via raw bits


class OnnxInputError(ExportError):
    """A path that should be an ONNX model is missing or not one."""


@dataclass(frozen=True)
class OnnxWeight:
    """One weight tensor consumed by a MatMul/Gemm/Conv node.

    ``in_axis`` is the reduction (input-channel) axis of the stored tensor: the axis along
    which sparse tensor cores need the 2:4 groups. ``transposed`` says the stored layout is
    the transpose of PyTorch's ``[out, in]`` (a folded ``MatMul``).
    """

    initializer: str
    pytorch_name: str
    op_type: str
    node_name: str
    shape: tuple[int, ...]
    in_axis: int
    transposed: bool
    groups: int = 1

    @property
    def in_channels(self) -> int:
        return self.shape[self.in_axis] * self.groups if self.op_type == "Conv" else self.shape[self.in_axis]

    @property
    def out_channels(self) -> int:
        return self.shape[0] if self.op_type == "Conv" or not self.transposed else self.shape[1]


def load_onnx(path: str | Path, load_external_data: bool = True) -> "onnx.ModelProto":
    """Load an ONNX model, or fail with an error that names the path and the problem."""
    import onnx

    path = Path(path)
    if path.is_dir():
        candidates = sorted(path.glob("*.onnx"))
        if len(candidates) != 1:
            raise OnnxInputError(f"{path} is a folder with {len(candidates)} .onnx files; pass the file itself")
        path = candidates[0]
    if not path.is_file():
        raise OnnxInputError(f"ONNX file not found: {path}")
    try:
        model = onnx.load(str(path), load_external_data=load_external_data)
    except Exception as exc:  # protobuf raises DecodeError, onnx raises its own types
        raise OnnxInputError(f"{path} is not an ONNX model ({type(exc).__name__}: {exc})") from None
    # protobuf parses an empty file (or any bytes that happen to decode) as an empty message
    if model.ir_version <= 0 or not model.HasField("graph") or not model.graph.node:
        raise OnnxInputError(
            f"{path} is not an ONNX model ({path.stat().st_size} bytes: no IR version or no graph nodes)"
        )
    return model


def sparse_to_dense(sparse: "onnx.SparseTensorProto") -> np.ndarray:
    """Densify a SparseTensorProto (linear ``[NNZ]`` or coordinate ``[NNZ, rank]`` indices)."""
    from onnx import numpy_helper

    values = numpy_helper.to_array(sparse.values)
    indices = numpy_helper.to_array(sparse.indices).astype(np.int64)
    shape = tuple(int(d) for d in sparse.dims)
    dense = np.zeros(int(np.prod(shape)), dtype=values.dtype)
    if indices.ndim == 2:
        indices = np.ravel_multi_index(tuple(indices.T), shape)
    dense[indices] = values
    return dense.reshape(shape)


def initializer_arrays(model: "onnx.ModelProto") -> dict[str, np.ndarray]:
    """Every initializer as a dense numpy array, sparse initializers densified."""
    from onnx import numpy_helper

    arrays = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    arrays.update({s.values.name: sparse_to_dense(s) for s in model.graph.sparse_initializer})
    return arrays


def module_path(node_name: str) -> str | None:
    """``/bert/encoder/layer.0/attention/self/query/MatMul`` -> ``bert.encoder.layer.0.attention.self.query``."""
    parts = [p for p in node_name.split("/") if p]
    if len(parts) < 2:
        return None
    return ".".join(parts[:-1])


def _pytorch_name(initializer: str, node_name: str) -> str:
    if "::" not in initializer and not initializer.startswith("/") and "." in initializer:
        return initializer  # the exporter kept the parameter name
    module = module_path(node_name)
    return f"{module}.weight" if module else initializer


def _attr(node, name: str, default: int) -> int:
    for attribute in node.attribute:
        if attribute.name == name:
            return int(attribute.i)
    return default


def constant_sources(model: "onnx.ModelProto") -> dict[str, str]:
    """Map ``Identity`` outputs to the initializer they forward (the exporter deduplicates
    equal tensors that way, e.g. all-zero biases), resolving chains."""
    sources = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "Identity" and n.input}
    resolved = {}
    for name in sources:
        origin = name
        while origin in sources:
            origin = sources[origin]
        resolved[name] = origin
    return resolved


def find_weights(model: "onnx.ModelProto") -> list[OnnxWeight]:
    """Weight initializers of rank >= 2 feeding MatMul (input B), Gemm (B) or Conv (W), once each."""
    via_identity = constant_sources(model)
    shapes = {t.name: tuple(int(d) for d in t.dims) for t in model.graph.initializer}
    types = {t.name: t.data_type for t in model.graph.initializer}
    for sparse in model.graph.sparse_initializer:
        shapes[sparse.values.name] = tuple(int(d) for d in sparse.dims)
        types[sparse.values.name] = sparse.values.data_type
    seen: set[str] = set()
    weights = []
    for node in model.graph.node:
        if node.op_type not in WEIGHT_OPS or len(node.input) < 2:
            continue
        name = via_identity.get(node.input[1], node.input[1])
        if name not in shapes or name in seen or types[name] not in _FLOAT_TYPES or len(shapes[name]) < 2:
            continue
        seen.add(name)
        shape = shapes[name]
        if node.op_type == "MatMul":
            if len(shape) != 2:
                continue  # batched constant matmuls are not Linear layers
            in_axis, transposed = 0, True
        elif node.op_type == "Gemm":
            trans_b = _attr(node, "transB", 0)
            in_axis, transposed = (1, False) if trans_b else (0, True)
        else:
            in_axis, transposed = 1, False
        weights.append(
            OnnxWeight(
                initializer=name,
                pytorch_name=_pytorch_name(name, node.name),
                op_type=node.op_type,
                node_name=node.name,
                shape=shape,
                in_axis=in_axis,
                transposed=transposed,
                groups=_attr(node, "group", 1) if node.op_type == "Conv" else 1,
            )
        )
    return weights
