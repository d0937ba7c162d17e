"""Export-side tools: the verified Optimum ONNX export, ONNX inspection for sparsity, 2:4
layers made eligible for sparse kernels (MatMul->Gemm), sparse ONNX initializers and TensorRT
commands. (Compressed Hugging Face checkpoints are a checkpoint format: ``es_plugins.io.compressed``.)
Heavy dependencies (onnx, onnxruntime, optimum) are imported inside the functions that need
them, so ``import es_plugins`` stays light."""

from .onnx_report import OnnxLayer, OnnxSparsityReport, inspect_onnx
from .onnx_weights import OnnxWeight, find_weights, load_onnx

__all__ = ["OnnxLayer", "OnnxSparsityReport", "OnnxWeight", "find_weights", "inspect_onnx", "load_onnx"]
