"""Export-side tools: inspect ONNX graphs for sparsity, make 2:4 layers eligible for sparse
kernels, and write files that are actually smaller (sparse ONNX initializers, compressed
Hugging Face checkpoints). Heavy dependencies (onnx, onnxruntime, compressed-tensors) are
imported inside the functions that need them, so ``import es_plugins`` stays light."""

from .onnx_report import OnnxLayer, OnnxSparsityReport, inspect_onnx
from .onnx_weights import OnnxWeight, find_weights, load_onnx

__all__ = ["OnnxLayer", "OnnxSparsityReport", "OnnxWeight", "find_weights", "inspect_onnx", "load_onnx"]
