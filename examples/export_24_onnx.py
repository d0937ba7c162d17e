"""Ship a 2:4 MiniLM: prune, export to ONNX with Optimum (checked), run it with ONNX Runtime.

    python examples/export_24_onnx.py [--output runs/example-export]

1. `prune_checkpoint` keeps 2 of every 4 consecutive input weights of each block Linear layer;
2. `export` runs Optimum's exporter, checks every weight bit for bit and ONNX Runtime against
   PyTorch, and rewrites the 2:4 MatMuls as Gemms (the form TensorRT's sparse kernels take);
3. this script then runs ONNX Runtime itself on real sentences and compares with PyTorch.

Magnitude 2:4 alone costs quality (50 % of every layer): fine-tune with the masks fixed, or use
Wanda/SparseGPT for LLMs (examples/wanda_sparsegpt_smollm2.py). ONNX Runtime on CPU computes
the 2:4 layers dense; the speed-up needs sparse kernels (TensorRT, cuSPARSELt).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import onnxruntime as ort
import torch
from transformers import AutoModel, AutoTokenizer

from es_plugins import ExportOptions, NMConfig, export, prune_checkpoint
from es_plugins.io.datasets import rotten_tomatoes


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="runs/example-export")
    parser.add_argument("--sentences", type=int, default=8)
    args = parser.parse_args(argv)
    pruned, onnx_dir = Path(args.output) / "minilm-24", Path(args.output) / "minilm-24-onnx"

    result = prune_checkpoint("packaged:minilm", pruned, NMConfig("2:4"), overwrite=True)
    print(f"pruned: {result.report.target_sparsity:.1%} of the targeted weights are zero")
    summary = export(
        pruned, onnx_dir, ExportOptions(task="feature-extraction", device="cpu"), rewrite_gemm=True, overwrite=True
    )
    print(f"exported: {summary['onnx']}")

    tokenizer = AutoTokenizer.from_pretrained(pruned)
    texts, _ = rotten_tomatoes(limit=args.sentences, seed=1)
    batch = tokenizer(texts, padding=True, truncation=True, max_length=64, return_tensors="np")
    session = ort.InferenceSession(summary["onnx"], providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    onnx_out = session.run(None, {k: v for k, v in batch.items() if k in names})[0]
    with torch.no_grad():
        torch_out = AutoModel.from_pretrained(pruned)(**{k: torch.from_numpy(v) for k, v in batch.items()})[0].numpy()
    difference = float(np.abs(onnx_out - torch_out).max())
    print(f"ONNX Runtime vs PyTorch on {len(texts)} sentences: max |difference| {difference:.2e}")
    return difference


if __name__ == "__main__":
    main()
