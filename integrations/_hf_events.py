"""Trainer event plumbing shared by the HF callbacks: where checkpoints go, how metrics reach
the reporting callbacks. No pruning logic lives here."""

from __future__ import annotations

import sys
from pathlib import Path

from transformers import Trainer, TrainerCallback, TrainerState, TrainingArguments
from transformers.trainer_callback import CallbackHandler


def checkpoint_dir(args: TrainingArguments, state: TrainerState) -> Path:
    return Path(args.output_dir) / f"checkpoint-{state.global_step}"


def add_callback_first(trainer: Trainer, callback: TrainerCallback) -> None:
    """Register ``callback`` before the reporting callbacks (TensorBoard, W&B, MLflow...),
    so the metrics it adds to ``logs`` reach them too."""
    trainer.callback_handler.callbacks.insert(0, callback)


def move_before_reporters(callback: TrainerCallback) -> bool:
    """Move ``callback`` to the front of the Trainer's callback list from inside one of its
    events, so the metrics it adds to ``logs`` reach TensorBoard / W&B / MLflow.

    Callbacks get no handle to their Trainer, so this finds the ``CallbackHandler`` calling
    the event in the caller's frames. Moving the running callback from index i to 0 keeps
    every later callback at its index, so the handler's loop skips or repeats nothing.
    Returns False (and changes nothing) if no handler is found.
    """
    frame = sys._getframe(1)
    for _ in range(4):
        frame = frame.f_back if frame is not None else None
        handler = frame.f_locals.get("self") if frame is not None else None
        if isinstance(handler, CallbackHandler) and callback in handler.callbacks:
            handler.callbacks.remove(callback)
            handler.callbacks.insert(0, callback)
            return True
    return False


def add_to_logs(state: TrainerState, logs: dict | None, metrics: dict[str, float]) -> None:
    """Put ``metrics`` into the log being reported now and into its ``log_history`` row."""
    if logs is not None:
        logs.update(metrics)
    if state.log_history and state.log_history[-1].get("step") == state.global_step:
        state.log_history[-1].update(metrics)
