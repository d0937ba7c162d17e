"""Keep MiniLM 40 % sparse through a Lightning fine-tune, then save a plain checkpoint.

    python examples/lightning_minilm.py [--sparsity 0.4] [--steps 30] [--output runs/example-lightning]

The LightningModule is ordinary; `SparsityCallback` prunes at fit start, zeroes the pruned
gradients before every optimizer step and the pruned weights after it, and removes its hooks at
fit end. `save_pretrained` then writes the weights (exact zeros) plus the masks and the report.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

from es_plugins.integrations.hf_recipes import load_classifier
from es_plugins.integrations.lightning import SparsityCallback
from es_plugins.io.assets import packaged_model_dir
from es_plugins.io.datasets import TokenizedDataset, rotten_tomatoes
from es_plugins.masks.report import build_report
from es_plugins.masks.targets import resolve_targets


class Classifier(pl.LightningModule):
    """A Hugging Face sequence classifier as a LightningModule: nothing sparsity-specific."""

    def __init__(self, model: torch.nn.Module, learning_rate: float):
        super().__init__()
        self.model, self.learning_rate = model, learning_rate
        self.model.train()  # from_pretrained returns it in eval mode (dropout off)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self.model(**batch).loss
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.learning_rate, weight_decay=0.01)


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sparsity", type=float, default=0.4)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--train", type=int, default=480)
    parser.add_argument("--output", default="runs/example-lightning")
    args = parser.parse_args(argv)

    model, tokenizer = load_classifier(packaged_model_dir("minilm"), num_labels=2, seed=0)
    texts, labels = rotten_tomatoes(limit=args.train, seed=0)
    loader = DataLoader(TokenizedDataset(tokenizer, texts, labels, max_length=48), batch_size=16, shuffle=True)
    trainer = pl.Trainer(
        max_epochs=1,
        max_steps=args.steps,  # bounded: the example ends after --steps optimizer steps
        callbacks=[SparsityCallback("omp", sparsity=args.sparsity)],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
    )
    trainer.fit(Classifier(model, 5e-5), loader)

    report = build_report(model, resolve_targets(model))
    print(report.format_table().splitlines()[-2])
    model.save_pretrained(args.output)  # + sparsity_masks.safetensors, sparsity_report.json, README.md section
    print(f"saved: {args.output}")
    return report


if __name__ == "__main__":
    main()
