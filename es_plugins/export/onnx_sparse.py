"""Sparse ONNX initializers: the standard way to store a mostly-zero weight in an ONNX file.

The ONNX spec requires int64 indices, so a value costs its own bytes plus 8 for its index:
for fp32 the sparse form is smaller only above 2/3 sparsity. We convert a tensor only when
that makes it smaller, and say so — at 50 % the honest answer is "no gain in ONNX"; the
compressed Hugging Face checkpoint (``compressed.py``) is the format that shrinks there.
ONNX Runtime densifies sparse initializers when it loads the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .onnx_weights import load_onnx, sparse_to_dense  # noqa: F401  (re-exported: its old home)

if TYPE_CHECKING:
    pass

INDEX_BYTES = 8  # int64, as onnx.checker requires


def sparse_bytes(nonzeros: int, itemsize: int) -> int:
    """Payload of a sparse initializer: values plus int64 linear indices."""
    return nonzeros * (itemsize + INDEX_BYTES)


@dataclass(frozen=True)
class OnnxCompression:
    """What :func:`compress_onnx` did, in bytes, for the report."""

    converted: tuple[str, ...]
    kept_dense: tuple[str, ...]
    dense_file_bytes: int
    compressed_file_bytes: int

    @property
    def ratio(self) -> float:
        return self.compressed_file_bytes / self.dense_file_bytes if self.dense_file_bytes else 1.0


def compress_onnx(src: str | Path, dst: str | Path, min_numel: int = 4096) -> OnnxCompression:
    """Write ``dst`` with every weight initializer stored sparse where that is smaller.

    Small tensors (``min_numel``) stay dense: their bytes do not matter and some tools
    expect dense shape constants. The weights are unchanged bit for bit.
    """
    import onnx
    from onnx import helper, numpy_helper

    model = load_onnx(src)
    converted, kept = [], []
    dense_inits = []
    for tensor in model.graph.initializer:
        array = numpy_helper.to_array(tensor)
        if array.dtype.kind != "f" or array.size < min_numel:
            dense_inits.append(tensor)
            continue
        flat = array.reshape(-1)
        indices = np.flatnonzero(flat)
        if sparse_bytes(indices.size, array.itemsize) >= array.nbytes:
            dense_inits.append(tensor)
            kept.append(tensor.name)
            continue
        values = numpy_helper.from_array(flat[indices], tensor.name)
        index_tensor = numpy_helper.from_array(indices.astype(np.int64), f"{tensor.name}__indices")
        model.graph.sparse_initializer.append(helper.make_sparse_tensor(values, index_tensor, list(array.shape)))
        converted.append(tensor.name)
    del model.graph.initializer[:]
    model.graph.initializer.extend(dense_inits)
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dst))
    return OnnxCompression(tuple(converted), tuple(kept), _file_bytes(src), dst.stat().st_size)


def _file_bytes(path: str | Path) -> int:
    path = Path(path)
    if path.is_dir():
        path = next(path.glob("*.onnx"))
    data = path.with_name(path.name + "_data")
    return path.stat().st_size + (data.stat().st_size if data.exists() else 0)
