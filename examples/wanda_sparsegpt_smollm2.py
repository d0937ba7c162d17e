"""One-shot pruning of an LLM with calibration: magnitude vs Wanda vs SparseGPT on SmolLM2.

    python examples/wanda_sparsegpt_smollm2.py [--sparsity 0.5] [--pattern 2:4] [--calib-samples 16]

Each method prunes a fresh copy of the packaged SmolLM2-135M to the same sparsity (or the same
N:M pattern) through the one entry point `sparsify_(model, plan, calibration=...)`; Wanda and
SparseGPT read calibration text (BBC News articles) that the held-out evaluation never sees.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from transformers import AutoTokenizer

from es_plugins import NMConfig, OMPConfig, SparseGPTConfig, WandaConfig, sparsify_
from es_plugins.analysis.evaluation import perplexity
from es_plugins.engines.device import resolve_device
from es_plugins.io.assets import packaged_model_dir
from es_plugins.io.checkpoint import load_hf_model
from es_plugins.io.datasets import bbc_news, calibration_blocks, token_blocks
from es_plugins.methods import is_calibrated

METHODS = ("magnitude", "wanda", "sparsegpt")


def configs(sparsity: float, pattern: str | None) -> dict:
    """The three methods at one sparsity, or at one N:M pattern."""
    if pattern:
        return {
            "magnitude": NMConfig(pattern),
            "wanda": WandaConfig(pattern=pattern),
            "sparsegpt": SparseGPTConfig(pattern=pattern),
        }
    return {"magnitude": OMPConfig(sparsity), "wanda": WandaConfig(sparsity), "sparsegpt": SparseGPTConfig(sparsity)}


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sparsity", type=float, default=0.5)
    parser.add_argument("--pattern", default=None, help="an N:M pattern such as 2:4 instead of --sparsity")
    parser.add_argument("--calib-samples", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--eval-tokens", type=int, default=4096)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    args = parser.parse_args(argv)

    path = packaged_model_dir("smollm2")
    device = resolve_device(args.device)
    tokenizer = AutoTokenizer.from_pretrained(path)
    evaluation = token_blocks(tokenizer, bbc_news("eval"), args.eval_tokens, args.seq_len)
    calibration = calibration_blocks(tokenizer, bbc_news("calib"), args.calib_samples, args.seq_len, seed=0)

    results = {"dense": (perplexity(load_hf_model(path, dtype="float32").to(device), evaluation), 0.0)}
    for name, config in configs(args.sparsity, args.pattern).items():
        if name not in args.methods:
            continue
        model = load_hf_model(path, dtype="float32").to(device)
        started = time.perf_counter()
        sparsify_(model, config, calibration=calibration if is_calibrated(config) else None)  # magnitude needs none
        results[name] = (perplexity(model, evaluation), time.perf_counter() - started)

    target = args.pattern or f"{args.sparsity:.0%}"
    print(f"SmolLM2-135M at {target}: perplexity on {evaluation.numel():,} held-out BBC News tokens")
    for name, (ppl, seconds) in results.items():
        print(f"{name:<10} {ppl:>10.2f}   pruning {seconds:.1f} s")
    return results


if __name__ == "__main__":
    main()
