"""A digest of the masks every method computes on both packaged models: run it on two commits to
show that a refactoring changed no mask bit.

Methods: omp 50 % (global and per layer), random 30 % (seed 1), nm 2:4, wanda 50 % and 2:4,
sparsegpt 50 % and 2:4 (calibrated on 8 x 128 BBC tokens, seed 0, one thread: the same kernels
on both commits). The digest is SHA-256 over the masks in name order (each name, shape and its
bits), so it depends on the bits only, not on the masks file's format.

``--dtype bfloat16`` loads the models in bf16 (global OMP then ranks on int16 keys, the bits without
the sign; run on a commit before them to show the masks equal the fp32-score selection's).

Usage: python benchmarks/masks_digests.py [--models minilm smollm2] [--dtype float32] [--methods ...] > digests.txt
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from _common import note, run_main, table  # noqa: E402

METHODS = {
    "omp-50-global": ("OMPConfig", {"sparsity": 0.5}),
    "omp-50-layer": ("OMPConfig", {"sparsity": 0.5, "scope": "layer"}),
    "random-30": ("RandomConfig", {"sparsity": 0.3, "seed": 1}),
    "nm-2:4": ("NMConfig", {"pattern": "2:4"}),
    "wanda-50": ("WandaConfig", {"sparsity": 0.5}),
    "wanda-2:4": ("WandaConfig", {"pattern": "2:4"}),
    "sparsegpt-50": ("SparseGPTConfig", {"sparsity": 0.5}),
    "sparsegpt-2:4": ("SparseGPTConfig", {"pattern": "2:4"}),
}


def digest(masks: dict[str, torch.Tensor]) -> str:
    hasher = hashlib.sha256()
    for name in sorted(masks):
        mask = masks[name].to("cpu", torch.bool).contiguous()
        hasher.update(f"{name}:{tuple(mask.shape)}".encode())
        hasher.update(mask.numpy().tobytes())
    return hasher.hexdigest()[:16]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["minilm", "smollm2"])
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    args = parser.parse_args()
    note(variant="" if args.dtype == "float32" else args.dtype)  # each dtype keeps its own results file
    torch.set_num_threads(1)

    import es_plugins
    from es_plugins.io.assets import resolve_model_path
    from es_plugins.io.checkpoint import load_hf_model
    from es_plugins.io.datasets import bbc_news, calibration_blocks

    rows = []
    for key in args.models:
        path = resolve_model_path(f"packaged:{key}")
        dense = load_hf_model(path, dtype=args.dtype)
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        calibration = calibration_blocks(tokenizer, bbc_news("calib"), 8, 128, seed=0)
        for label in args.methods:
            config_name, options = METHODS[label]
            config = getattr(es_plugins, config_name)(**options)
            calibrated = config_name in ("WandaConfig", "SparseGPTConfig")
            model = copy.deepcopy(dense)
            state = es_plugins.sparsify_(model, config, calibration=calibration if calibrated else None)
            rows.append([key, label, f"{state.sparsity:.4f}", digest(state.masks)])
            print(f"{key} {label} {rows[-1][3]}", file=sys.stderr, flush=True)
    print(table(rows, ["model", "method", "sparsity", "masks digest"]))


if __name__ == "__main__":
    run_main(main, __file__)
