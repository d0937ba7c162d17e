"""Ready-made Trainer recipes used by the examples and the sweep's fine-tune evaluation:
load a local checkpoint as a classifier, fine-tune it with callbacks, report accuracy.

:class:`FinetuneTask` is registered as the ``finetune`` sweep task (entry point group
``es_plugins.sweep_tasks`` in setup.cfg), so the core's sweep finds it without importing it."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from safetensors.torch import save_file
from transformers import (AutoModelForSequenceClassification, AutoTokenizer, PrinterCallback, Trainer,
                          TrainerCallback, TrainingArguments)
from transformers.utils import logging as hf_logging

from es_plugins.analysis.tasks import layer_sparsity_at, method_at
from es_plugins.checkpoint import check_checkpoint_dir
from es_plugins.datasets import TokenizedDataset
from es_plugins.targets import resolve_targets

from .transformers import SparsityCallback


def load_classifier(model_dir: str | Path, num_labels: int, seed: int = 0):
    """Encoder checkpoint + a freshly initialised classification head (seeded), offline."""
    check_checkpoint_dir(Path(model_dir))
    torch.manual_seed(seed)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the "newly initialized classifier" notice is expected here
    try:
        model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=num_labels, local_files_only=True)
    finally:
        hf_logging.set_verbosity(verbosity)
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    return model, tokenizer


def _accuracy(eval_pred) -> dict[str, float]:
    logits, labels = eval_pred
    return {"accuracy": float((np.argmax(logits, axis=-1) == labels).mean())}


def finetune_and_evaluate(
    model,
    tokenizer,
    train: tuple[Sequence[str], Sequence[int]],
    test: tuple[Sequence[str], Sequence[int]],
    output_dir: str | Path,
    callbacks: Sequence[TrainerCallback] = (),
    epochs: float = 1.0,
    batch_size: int = 16,
    learning_rate: float = 5e-5,
    max_length: int = 64,
    seed: int = 0,
    max_steps: int = -1,
) -> tuple[dict[str, float], Trainer]:
    """Fine-tune on ``train`` (texts, labels) and return test accuracy and the trainer."""
    args = TrainingArguments(
        output_dir=str(output_dir), use_cpu=True, num_train_epochs=epochs, max_steps=max_steps,
        per_device_train_batch_size=batch_size, per_device_eval_batch_size=64,
        learning_rate=learning_rate, weight_decay=0.01, warmup_ratio=0.1, seed=seed,
        logging_steps=20, save_strategy="no", report_to=[], disable_tqdm=True, dataloader_num_workers=0,
    )
    trainer = Trainer(
        model=model, args=args,
        train_dataset=TokenizedDataset(tokenizer, *train, max_length=max_length),
        eval_dataset=TokenizedDataset(tokenizer, *test, max_length=max_length),
        compute_metrics=_accuracy, callbacks=list(callbacks),
    )
    trainer.remove_callback(PrinterCallback)  # keep sweeps' output to one line per evaluation
    trainer.train()
    metrics = trainer.evaluate()
    return {"accuracy": metrics["eval_accuracy"], "loss": metrics["eval_loss"]}, trainer


class FinetuneTask:
    """Sweep task: accuracy after a short fine-tune with the mask fixed — the paper's BERT
    protocol (prune the pre-trained encoder once, fine-tune, evaluate). Each evaluation loads
    the checkpoint afresh with a seeded head, so levels and seeds are independent."""

    def __init__(self, model_dir: str | Path, train: tuple[Sequence[str], Sequence[int]],
                 test: tuple[Sequence[str], Sequence[int]], num_labels: int,
                 method: str = "omp", scope: str = "global", epochs: float = 1.0, batch_size: int = 16,
                 learning_rate: float = 1e-4, max_length: int = 64, targets=None,
                 keep_dense_weights: str | Path | None = None):
        method_at(method, 0.0, scope, 0)  # validate before any training
        check_checkpoint_dir(Path(model_dir))
        self.model_dir, self.train, self.test, self.num_labels = model_dir, train, test, num_labels
        self.method, self.scope, self.targets = method, scope, targets
        self.keep_dense_weights = Path(keep_dense_weights) if keep_dense_weights else None
        self.options = dict(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, max_length=max_length)

    def load_model(self, seed: int = 0):
        """The checkpoint as a classifier with a seeded head (what each evaluation fine-tunes)."""
        return load_classifier(self.model_dir, self.num_labels, seed=seed)[0]

    def evaluate(self, sparsity: float, seed: int) -> float:
        model, tokenizer = load_classifier(self.model_dir, self.num_labels, seed=seed)
        callbacks = []
        if sparsity > 0:
            callbacks.append(SparsityCallback(method_at(self.method, sparsity, self.scope, seed), targets=self.targets))
        with tempfile.TemporaryDirectory() as workdir:
            metrics, _ = finetune_and_evaluate(model, tokenizer, self.train, self.test, workdir,
                                               callbacks=callbacks, seed=seed, **self.options)
        if sparsity == 0 and self.keep_dense_weights and not self.keep_dense_weights.exists():
            # The fine-tuned dense weights: OMP of them is what one IMP round would prune.
            self.keep_dense_weights.parent.mkdir(parents=True, exist_ok=True)
            save_file({t.name: t.param.detach().contiguous() for t in resolve_targets(model, self.targets)},
                      str(self.keep_dense_weights))
        return metrics["accuracy"]

    def layer_sparsity(self, sparsity: float) -> dict[str, float]:
        return layer_sparsity_at(self.load_model(), self.method, sparsity, self.scope, self.targets)
