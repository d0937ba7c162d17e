"""Fine-tune the packaged pre-trained MiniLM on packaged Rotten Tomatoes sentences with 40 %
global OMP — the paper's protocol: prune the pre-trained checkpoint once, then fine-tune with
the mask fixed. Prints dense vs pruned accuracy and the sparsity report.

    python examples/finetune_minilm_omp.py [--sparsity 0.4] [--train 2000] [--test 1000] [--skip-dense]

~90 s per fine-tune of 2,000 sentences on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from es_plugins.integrations.hf_recipes import finetune_and_evaluate, load_classifier
from es_plugins.integrations.transformers import SparsityCallback
from es_plugins.io.assets import packaged_model_dir
from es_plugins.io.datasets import rotten_tomatoes
from es_plugins.masks.report import build_report
from es_plugins.masks.targets import resolve_targets


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sparsity", type=float, default=0.4)
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-dense", action="store_true", help="do not fine-tune the dense baseline")
    args = parser.parse_args(argv)

    texts, labels = rotten_tomatoes(limit=args.train + args.test, seed=args.seed)
    train = (texts[: args.train], labels[: args.train])
    test = (texts[args.train :], labels[args.train :])
    model_dir = packaged_model_dir("minilm")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_dense:
            model, tok = load_classifier(model_dir, 2, seed=args.seed)
            results["dense"], _ = finetune_and_evaluate(model, tok, train, test, f"{tmp}/dense", seed=args.seed)
        model, tok = load_classifier(model_dir, 2, seed=args.seed)
        callback = SparsityCallback("omp", sparsity=args.sparsity, scope="global")
        results[f"omp {args.sparsity:.0%}"], _ = finetune_and_evaluate(
            model, tok, train, test, f"{tmp}/omp", callbacks=[callback], seed=args.seed
        )
    print(build_report(model, resolve_targets(model)).format_table().splitlines()[-2])
    print(f"\n{'run':<10} {'accuracy':>8}   (train {args.train}, test {args.test}, seed {args.seed})")
    for name, metrics in results.items():
        print(f"{name:<10} {metrics['accuracy']:>8.3f}")
    return results


if __name__ == "__main__":
    main()
