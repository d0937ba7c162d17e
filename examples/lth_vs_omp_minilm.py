"""Lottery tickets (IMP with rewinding to the pre-trained weights) on the packaged MiniLM, and
how much their masks agree with one-shot magnitude pruning (OMP) of the pre-trained
checkpoint at the same sparsity — the paper finds cosine similarity > 96 % up to ~50 %.

    python examples/lth_vs_omp_minilm.py [--rounds 3] [--prune-fraction 0.2] [--train 480]

Each round fine-tunes on Rotten Tomatoes sentences, prunes 20 % of the remaining weights by
global magnitude and rewinds the survivors to the pre-trained values.
"""

from __future__ import annotations

import argparse
import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from transformers import Trainer, TrainingArguments

from es_plugins import LotteryConfig, OMPConfig, SparsityState
from es_plugins.analysis import mask_similarity
from es_plugins.engines.device import resolve_device
from es_plugins.integrations.hf_recipes import load_classifier
from es_plugins.integrations.transformers import LotteryTicketRunner
from es_plugins.io.assets import packaged_model_dir
from es_plugins.io.datasets import TokenizedDataset, rotten_tomatoes
from es_plugins.masks.targets import resolve_targets
from es_plugins.methods import compute_masks


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--prune-fraction", type=float, default=0.2)
    parser.add_argument("--train", type=int, default=480)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=None, help="keep progress here (rerun to resume)")
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    args = parser.parse_args(argv)
    use_cpu = resolve_device(args.device).type == "cpu"

    texts, labels = rotten_tomatoes(limit=args.train, seed=args.seed)
    model, tok = load_classifier(packaged_model_dir("minilm"), 2, seed=args.seed)
    targets = resolve_targets(model)
    pretrained = {t.name: t.param.detach().clone() for t in targets}
    dataset = TokenizedDataset(tok, texts, labels)

    def make_trainer(model, out):
        targs = TrainingArguments(
            output_dir=out,
            use_cpu=use_cpu,
            num_train_epochs=1,
            per_device_train_batch_size=16,
            learning_rate=5e-5,
            weight_decay=0.01,
            seed=args.seed,
            save_strategy="no",
            report_to=[],
            disable_tqdm=True,
            logging_steps=10,
        )
        return Trainer(model=model, args=targs, train_dataset=dataset)

    config = LotteryConfig(prune_fraction=args.prune_fraction, rounds=args.rounds)
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.output or f"{tmp}/lth"
        records = LotteryTicketRunner(model, make_trainer, config, folder).run()
        rows = []
        print(f"{'round':>5} {'sparsity':>9} {'OMP cosine':>10} {'chance':>7} {'IoU':>6}")
        for record in records[1:]:
            lth = SparsityState.load(f"{folder}/{record.masks_file}").masks
            # OMP of the *pre-trained* weights at exactly the same sparsity.
            for t in targets:
                t.param.data.copy_(pretrained[t.name])
            omp = compute_masks(targets, OMPConfig(record.sparsity))
            sim = mask_similarity(lth, omp).overall
            rows.append(
                {
                    "round": record.round,
                    "sparsity": record.sparsity,
                    "cosine": sim.cosine,
                    "chance": sim.chance["cosine"],
                    "iou": sim.iou,
                }
            )
            print(
                f"{record.round:>5} {record.sparsity:>9.2%} {sim.cosine:>10.4f} {sim.chance['cosine']:>7.4f} {sim.iou:>6.4f}"
            )
    return rows


if __name__ == "__main__":
    main()
