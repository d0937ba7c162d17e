"""A plain Accelerate training loop that keeps MiniLM 40 % sparse, with checkpoint and resume.

    python examples/accelerate_minilm.py [--sparsity 0.4] [--steps 20] [--output runs/example-accelerate]

`prepare_sparsity` prunes once and enforces the masks on real (synchronised) optimizer steps;
`accelerator.save_state` stores the masks with everything else and `load_state` restores them.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader

from es_plugins.integrations.accelerate import prepare_sparsity
from es_plugins.integrations.hf_recipes import load_classifier
from es_plugins.io.assets import packaged_model_dir
from es_plugins.io.datasets import TokenizedDataset, rotten_tomatoes


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sparsity", type=float, default=0.4)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--output", default="runs/example-accelerate")
    args = parser.parse_args(argv)

    accelerator = Accelerator(gradient_accumulation_steps=2)
    model, tokenizer = load_classifier(packaged_model_dir("minilm"), num_labels=2, seed=0)
    texts, labels = rotten_tomatoes(limit=16 * 2 * args.steps, seed=0)
    loader = DataLoader(TokenizedDataset(tokenizer, texts, labels, max_length=48), batch_size=16, shuffle=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5, weight_decay=0.01)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    sparsifier = prepare_sparsity(accelerator, model, optimizer, "omp", sparsity=args.sparsity)

    model.train()
    for batch in loader:
        with accelerator.accumulate(model):
            accelerator.backward(model(**batch).loss)
            optimizer.step()  # masks re-applied after every real step; accumulation micro-steps skip
            optimizer.zero_grad()
    accelerator.save_state(f"{args.output}/checkpoint")  # the masks travel with the checkpoint
    accelerator.load_state(f"{args.output}/checkpoint")  # ... and come back bit for bit

    measured = sparsifier.metrics()["sparsity/targets"]  # counted from the weights, not the masks
    sparsifier.finalize()  # hooks removed: a plain model is left
    unwrapped = accelerator.unwrap_model(model)
    unwrapped.save_pretrained(f"{args.output}/model")  # + sparsity_masks.safetensors, sparsity_report.json
    print(f"targeted weights at zero after training and resume: {measured:.1%}; saved: {args.output}/model")
    return measured


if __name__ == "__main__":
    main()
