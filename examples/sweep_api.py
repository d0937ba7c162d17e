"""How much of SmolLM2 can be pruned for free? The essential-sparsity sweep from Python.

    python examples/sweep_api.py [--tokens 2048] [--output runs/example-sweep] [--device cuda]

Runs `es_plugins.sweep` (the library call behind `es-plugins sweep`) on the packaged
SmolLM2-135M with held-out BBC News text, then prints the essential sparsity and the knee with
their 90 % bootstrap intervals, and the noise warning when the 1 % tolerance is below the noise.
"""

from __future__ import annotations

import argparse
import logging
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from es_plugins import sweep


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=2048, help="held-out tokens per point (more: less noise)")
    parser.add_argument("--levels", type=float, nargs="+", default=[0.1, 0.2, 0.3, 0.5, 0.7])
    parser.add_argument("--resolution", type=float, default=0.05)
    parser.add_argument("--output", default="runs/example-sweep", help="report folder (rerun to resume)")
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # one line per evaluated point

    run = sweep(
        model="packaged:smollm2",
        task="perplexity",
        text="packaged:bbc-eval",
        tokens=args.tokens,
        eval_seq_len=256,
        levels=args.levels,
        resolution=args.resolution,
        output=args.output,
        device=args.device,
    )
    _, result = run.results[0]
    u = result.uncertainty
    print(f"dense perplexity {result.dense:.2f}")
    print(f"essential sparsity {result.essential_sparsity:.1%}, 90 % interval {u.essential_interval}")
    print(f"knee {result.knee}, 90 % interval {u.knee_interval}")
    print(u.warning(result.config.metric) or "the tolerance is above the measurement noise")
    print(f"report: {run.summary}")
    return result


if __name__ == "__main__":
    main()
