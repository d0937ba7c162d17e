"""Ready-made Trainer recipes used by the examples and the sweep's fine-tune evaluation:
load a local checkpoint as a classifier, fine-tune it with callbacks, report accuracy.

The sweep's fine-tune task built on them is :class:`es_plugins.integrations.hf_sweep.FinetuneTask`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from transformers import (
    AutoModelForSequenceClassification,
    PrinterCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from transformers.utils import logging as hf_logging

from es_plugins.engines.device import check_precision, resolve_device
from es_plugins.io.checkpoint import check_checkpoint_dir, load_tokenizer
from es_plugins.io.datasets import TokenizedDataset


def load_classifier(model_dir: str | Path, num_labels: int, seed: int = 0):
    """Encoder checkpoint + a freshly initialised classification head (seeded), offline."""
    check_checkpoint_dir(Path(model_dir))
    torch.manual_seed(seed)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the "newly initialized classifier" notice is expected here
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            model_dir, num_labels=num_labels, local_files_only=True
        )
    finally:
        hf_logging.set_verbosity(verbosity)
    tokenizer = load_tokenizer(model_dir, "fine-tuning")
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
    device: str | torch.device | None = None,
    precision: str | None = None,
) -> tuple[dict[str, Any], Trainer]:
    """Fine-tune on ``train`` (texts, labels) and return test accuracy, loss, the per-example
    correctness (``"correct"``, a bool array: what a sweep bootstraps) and the trainer.

    ``device``: ``"cpu"`` keeps the Trainer on the CPU; anything else (default: cuda when
    available) leaves it to the Trainer, which uses the GPUs it sees (pick them with
    ``CUDA_VISIBLE_DEVICES``). ``precision``: ``"bf16"``/``"fp16"`` mixed precision, or None."""
    use_cpu = resolve_device(device).type == "cpu"
    check_precision(precision)
    args = TrainingArguments(
        output_dir=str(output_dir),
        use_cpu=use_cpu,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        num_train_epochs=epochs,
        max_steps=max_steps,
        per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=64,
        learning_rate=learning_rate,
        weight_decay=0.01,
        warmup_ratio=0.1,
        seed=seed,
        logging_steps=20,
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=TokenizedDataset(tokenizer, *train, max_length=max_length),
        eval_dataset=TokenizedDataset(tokenizer, *test, max_length=max_length),
        compute_metrics=_accuracy,
        callbacks=list(callbacks),
    )
    trainer.remove_callback(PrinterCallback)  # keep sweeps' output to one line per evaluation
    trainer.train()
    predicted = trainer.predict(trainer.eval_dataset, metric_key_prefix="eval")  # one pass: metrics + predictions
    logits = predicted.predictions[0] if isinstance(predicted.predictions, tuple) else predicted.predictions
    correct = np.argmax(logits, axis=-1) == predicted.label_ids
    metrics = predicted.metrics or {}
    return {"accuracy": metrics["eval_accuracy"], "loss": metrics["eval_loss"], "correct": correct}, trainer
