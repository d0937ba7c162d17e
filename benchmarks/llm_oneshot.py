"""One-shot pruning of the packaged SmolLM2-135M: perplexity of dense, OMP, Wanda and SparseGPT
at 50 % unstructured, 2:4 and 4:8, and SparseGPT refinement of the OMP mask; with the wall time
and peak memory of each method (fresh process per row).

Calibration on BBC News articles disjoint from the evaluation articles.
Usage: python benchmarks/llm_oneshot.py [--calib-samples 32] [--seq-len 512] [--eval-tokens 4096]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _common import reset_peak, rss_bytes, run_isolated, run_main, table  # noqa: E402

ROWS = [
    ("dense", "-", None),
    ("omp", "50%", {"method": "omp", "sparsity": 0.5}),
    ("wanda", "50%", {"method": "wanda", "sparsity": 0.5}),
    ("sparsegpt", "50%", {"method": "sparsegpt", "sparsity": 0.5}),
    (
        "sparsegpt refines omp",
        "50%",
        {"method": "sparsegpt", "sparsity": 0.5, "refine": {"method": "omp", "sparsity": 0.5}},
    ),
    ("omp", "2:4", {"method": "nm", "n": 2, "m": 4}),
    ("wanda", "2:4", {"method": "wanda", "pattern": "2:4"}),
    ("sparsegpt", "2:4", {"method": "sparsegpt", "pattern": "2:4"}),
    (
        "sparsegpt refines omp",
        "2:4",
        {"method": "sparsegpt", "pattern": "2:4", "refine": {"method": "nm", "n": 2, "m": 4}},
    ),
    ("omp", "4:8", {"method": "nm", "n": 4, "m": 8}),
    ("wanda", "4:8", {"method": "wanda", "pattern": "4:8"}),
    ("sparsegpt", "4:8", {"method": "sparsegpt", "pattern": "4:8"}),
]


def case(spec: dict | None, calib_samples: int, seq_len: int, eval_tokens: int) -> dict:
    import torch
    from transformers import AutoTokenizer

    from es_plugins import SparsityPlan, SparsityState, sparsify_
    from es_plugins.analysis.evaluation import perplexity
    from es_plugins.io.assets import packaged_model_dir
    from es_plugins.io.checkpoint import load_hf_model
    from es_plugins.io.datasets import bbc_news, calibration_blocks, token_blocks
    from es_plugins.masks.targets import resolve_targets
    from es_plugins.methods import compute_masks, config_from_dict, is_calibrated

    path = packaged_model_dir("smollm2")
    model = load_hf_model(path, dtype="float32")
    tokenizer = AutoTokenizer.from_pretrained(path)
    evaluation = token_blocks(tokenizer, bbc_news("eval"), eval_tokens, 512)
    calibration = calibration_blocks(tokenizer, bbc_news("calib"), calib_samples, seq_len, seed=0)
    model_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    with torch.no_grad():
        # from_pretrained may leave weights memory-mapped from the file: writing zeros into them
        # would then count copy-on-write pages of the model itself as the method's memory.
        for p in model.parameters():
            p.data = p.data.clone()
    reset_peak()
    base = rss_bytes()
    start = time.perf_counter()
    if spec is not None:
        spec = dict(spec)
        refine = spec.pop("refine", None)
        config = config_from_dict(spec)
        masks = None
        if refine:  # the mask of OMP, applied by SparseGPT to the *dense* weights it reconstructs
            masks = SparsityState(compute_masks(resolve_targets(model), config_from_dict(refine)))
        sparsify_(model, SparsityPlan(config), calibration=calibration if is_calibrated(config) else None, masks=masks)
    seconds = time.perf_counter() - start
    peak = rss_bytes("VmHWM")
    return {
        "ppl": perplexity(model, evaluation),
        "seconds": seconds,
        "peak_extra": peak - base,
        "peak_total": peak,
        "model_bytes": model_bytes,
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--case":
        spec = json.loads(sys.argv[2])
        print(json.dumps(case(spec, *map(int, sys.argv[3:6]))))
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calib-samples", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--eval-tokens", type=int, default=4096)
    args = parser.parse_args()
    rows = []
    for name, level, spec in ROWS:
        r = run_isolated(
            __file__,
            "--case",
            json.dumps(spec),
            str(args.calib_samples),
            str(args.seq_len),
            str(args.eval_tokens),
            timeout=3600,
        )
        if "error" in r:
            rows.append([name, level, "error", "-", "-", r["error"][:60]])
            continue
        mib = 2**20
        rows.append(
            [
                name,
                level,
                f"{r['ppl']:.2f}",
                f"{r['seconds']:.1f}",
                f"{r['peak_extra'] / mib:.0f}",
                f"{r['peak_total'] / mib:.0f} (model {r['model_bytes'] / mib:.0f})",
            ]
        )
        print(f"  {name} {level}: ppl {r['ppl']:.2f}", file=sys.stderr, flush=True)
    print(
        f"SmolLM2-135M perplexity on {args.eval_tokens} BBC News tokens (held-out articles); calibration "
        f"{args.calib_samples} x {args.seq_len} tokens from other articles, seed 0; 2-core CPU"
    )
    print(table(rows, ["method", "sparsity", "perplexity", "prune s", "peak extra MiB", "peak RSS MiB"]))


if __name__ == "__main__":
    run_main(main, __file__)
