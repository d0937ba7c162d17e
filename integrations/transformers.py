"""Hugging Face Trainer adapters: a sparsity callback, a near-zero-weight monitor and a
lottery-ticket runner. They translate Trainer events into :mod:`es_plugins` core calls.

Example:
    >>> from transformers import Trainer
    >>> from es_plugins.integrations.transformers import SparsityCallback
    >>> trainer = Trainer(model=model, args=args, train_dataset=ds,
    ...                   callbacks=[SparsityCallback("omp", sparsity=0.4)])  # doctest: +SKIP
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any, Callable

from torch import nn
from transformers import Trainer, TrainerCallback, TrainerState, TrainingArguments

from es_plugins.analysis.zeros import near_zero_stats
from es_plugins.errors import SparsityConfigError
from es_plugins.lottery import LotteryConfig, LotteryTicket, RoundRecord
from es_plugins.methods import MethodConfig
from es_plugins.plan import SparsityPlan, make_plan
from es_plugins.schedules import CubicSchedule
from es_plugins.sparsifier import Sparsifier
from es_plugins.state import MASKS_FILENAME, SparsityState
from es_plugins.targets import TargetSpec, resolve_targets

from ._common import load_masks_from, unwrap_optimizer

__all__ = ["SparsityCallback", "NearZeroMonitor", "LotteryTicketRunner", "add_callback_first"]


def _checkpoint_dir(args: TrainingArguments, state: TrainerState) -> Path:
    return Path(args.output_dir) / f"checkpoint-{state.global_step}"


def add_callback_first(trainer: Trainer, callback: TrainerCallback) -> None:
    """Register ``callback`` before the reporting callbacks (TensorBoard, W&B, MLflow...),
    so the metrics it adds to ``logs`` reach them too."""
    trainer.callback_handler.callbacks.insert(0, callback)


def move_before_reporters(callback: TrainerCallback) -> bool:
    """Move ``callback`` to the front of the Trainer's callback list, from inside one of its
    events, so the metrics it adds to ``logs`` reach TensorBoard / W&B / MLflow.

    Callbacks see no handle to their Trainer, so this finds the ``CallbackHandler`` that is
    calling the event in the caller's frame. Moving the running callback from index i to 0
    keeps every later callback at its index, so the handler's loop skips or repeats nothing.
    Returns False (and changes nothing) if no handler is found.
    """
    from transformers.trainer_callback import CallbackHandler

    frame = sys._getframe(1)
    for _ in range(4):
        frame = frame.f_back if frame is not None else None
        handler = frame.f_locals.get("self") if frame is not None else None
        if isinstance(handler, CallbackHandler) and callback in handler.callbacks:
            handler.callbacks.remove(callback)
            handler.callbacks.insert(0, callback)
            return True
    return False


def _add_to_logs(state: TrainerState, logs: dict | None, metrics: dict[str, float]) -> None:
    if logs is not None:
        logs.update(metrics)
    if state.log_history and state.log_history[-1].get("step") == state.global_step:
        state.log_history[-1].update(metrics)


class SparsityCallback(TrainerCallback):
    """Prune at train begin and keep the mask through every real optimizer step.

    One line in ``Trainer(..., callbacks=[SparsityCallback("omp", sparsity=0.4)])``. Masks
    are written into every ``checkpoint-N`` folder and restored by
    ``trainer.train(resume_from_checkpoint=...)``; at train end the hooks are removed, so
    ``trainer.save_model()`` writes a plain checkpoint with exact zeros.

    Args:
        plan: a :class:`SparsityPlan`, a method config, or a method name with options
            (``"omp"``, ``"random"``, ``"nm"``).
        targets: target selection when ``plan`` is a config or a name.
        schedule: ``None`` (one-shot, the paper's protocol) or a :class:`CubicSchedule`.
        mask_gradients: zero gradients of pruned weights before each step too.
        state: fixed masks to enforce instead of computing them (lottery-ticket rounds).
        calibration: token ids ``[samples, seq_len]`` for ``"wanda"`` / ``"sparsegpt"`` plans.
        keep_saved_masks: on resume, continue with the checkpoint's masks even if they were
            made with another plan (by default that is an error naming both).
        log_per_layer: also log ``sparsity/layer/<name>`` for every target.
        log_prefix: prefix of the logged keys (``sparsity/targets``, ``sparsity/level``).

    The callback places itself before the reporting callbacks (TensorBoard, W&B, MLflow...)
    when the Trainer is built, so its metrics reach them with the one-line setup.

    Raises:
        SparsityConfigError: at construction for a bad method/option, at train begin (before
            any step) for a schedule that ends after ``max_steps``.
    """

    def __init__(
        self,
        plan: SparsityPlan | MethodConfig | str | None = None,
        *,
        targets: TargetSpec | None = None,
        schedule: CubicSchedule | None = None,
        mask_gradients: bool = True,
        state: SparsityState | None = None,
        calibration=None,
        keep_saved_masks: bool = False,
        log_per_layer: bool = False,
        log_prefix: str = "sparsity",
        **options: Any,
    ):
        plan = make_plan(plan, targets, **options) if plan is not None else None
        self.sparsifier = Sparsifier(plan, schedule=schedule, mask_gradients=mask_gradients, state=state,
                                     calibration=calibration, keep_saved_masks=keep_saved_masks)
        self.log_prefix = log_prefix
        self.log_per_layer = log_per_layer

    def on_init_end(self, args, state, control, **kwargs):
        move_before_reporters(self)

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        schedule = self.sparsifier.schedule
        if schedule is not None and schedule.end_step > state.max_steps:
            raise SparsityConfigError(
                f"schedule end_step={schedule.end_step} is beyond training (max_steps={state.max_steps})"
            )
        if state.global_step > 0:  # resuming: the masks must be the saved ones, bit for bit
            folders = [Path(args.resume_from_checkpoint)] if isinstance(args.resume_from_checkpoint, str) else []
            found = load_masks_from(folders + [_checkpoint_dir(args, state)])
            if found is not None:
                self.sparsifier.restore(found[0])
            else:
                warnings.warn(
                    f"resuming at step {state.global_step} but no {MASKS_FILENAME} was found in "
                    f"{[str(f) for f in folders + [_checkpoint_dir(args, state)]]}; masks are recomputed "
                    "from the loaded weights", stacklevel=2,
                )
        self.sparsifier.setup(model, unwrap_optimizer(optimizer), step=state.global_step)

    def on_step_begin(self, args, state, control, **kwargs):
        self.sparsifier.step(state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        _add_to_logs(state, logs, self.sparsifier.metrics(self.log_prefix, per_layer=self.log_per_layer))

    def on_save(self, args, state, control, **kwargs):
        if args.should_save:
            folder = _checkpoint_dir(args, state)
            folder.mkdir(parents=True, exist_ok=True)
            self.sparsifier.state.meta["global_step"] = state.global_step
            self.sparsifier.state.save(folder / MASKS_FILENAME)

    def on_train_end(self, args, state, control, **kwargs):
        self.sparsifier.finalize()


class NearZeroMonitor(TrainerCallback):
    """Every ``every`` steps, log the fraction of targeted weights with ``|w|`` below a
    threshold (absolute, or relative to each layer's mean |w|), per layer and overall.

    Values go to ``state.log_history`` at the step they were measured, to ``self.history``,
    and into the next regular log (so TensorBoard / W&B get them).
    """

    def __init__(self, every: int = 100, threshold: float = 1e-2, mode: str = "relative",
                 targets: TargetSpec | None = None, per_layer: bool = True, log_prefix: str = "near_zero"):
        if not isinstance(every, int) or every < 1:
            raise SparsityConfigError(f"every must be an integer >= 1, got {every!r}")
        near_zero_stats([], threshold, mode)  # validates threshold and mode now
        self.every, self.threshold, self.mode = every, threshold, mode
        self.targets_spec, self.per_layer, self.log_prefix = targets, per_layer, log_prefix
        self.history: list[dict[str, float]] = []
        self._targets = []
        self._latest: dict[str, float] = {}

    def on_init_end(self, args, state, control, **kwargs):
        move_before_reporters(self)

    def measure(self, step: int) -> dict[str, float]:
        stats = near_zero_stats(self._targets, self.threshold, self.mode)
        row = {f"{self.log_prefix}/overall": stats.overall}
        if self.per_layer:
            row.update({f"{self.log_prefix}/{name}": frac for name, frac in stats.fractions().items()})
        self.history.append({"step": step, **row})
        return row

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._targets = resolve_targets(model, self.targets_spec)
        self._latest = self.measure(state.global_step)

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.every == 0:
            self._latest = self.measure(state.global_step)
            state.log_history.append({"step": state.global_step, **self._latest})

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is not None:
            logs.update(self._latest)


class _RewindCapture(TrainerCallback):
    """Capture the lottery rewind point at optimizer step ``k`` of the first round."""

    def __init__(self, ticket: LotteryTicket, step: int):
        self.ticket, self.step = ticket, step

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if self.step > state.max_steps:
            raise SparsityConfigError(
                f"rewind step {self.step} is beyond training (max_steps={state.max_steps}); "
                "choose rewind='pretrained' or a step <= max_steps"
            )
        if self.step == state.global_step and not self.ticket.has_rewind_point:
            self.ticket.capture_rewind_point(model)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step == self.step and not self.ticket.has_rewind_point:
            self.ticket.capture_rewind_point(model)


class LotteryTicketRunner:
    """Lottery tickets around a Trainer: one ``train()`` per round, a fresh optimizer and LR
    schedule each round, masks enforced by :class:`SparsityCallback`.

    Args:
        model: the model to prune; ``make_trainer`` must train this very object.
        make_trainer: ``make_trainer(model, output_dir) -> Trainer`` builds the round's
            Trainer (and therefore a new optimizer and scheduler).
        config: prune fraction, rounds, rewind point, scope, targets.
        output_dir: progress, per-round masks, rewind point and each round's checkpoints
            (``round-R/checkpoint-N``). Running again with the same folder resumes at the
            round, and with the Trainer's checkpoints at the step, where it stopped.
        evaluate: ``evaluate(trainer) -> dict`` after each round (default:
            ``trainer.evaluate()`` when the trainer has an eval dataset).
    """

    def __init__(self, model: nn.Module, make_trainer: Callable[[nn.Module, str], Trainer],
                 config: LotteryConfig, output_dir: str | Path,
                 evaluate: Callable[[Trainer], dict[str, float]] | None = None):
        self.model = model
        self.make_trainer = make_trainer
        self.ticket = LotteryTicket(config, output_dir)
        self.evaluate = evaluate

    def run(self) -> list[RoundRecord]:
        ticket, config = self.ticket, self.ticket.config
        if config.rewind == "pretrained" and not ticket.has_rewind_point:
            if ticket.current_round > 0:
                raise RuntimeError(f"{ticket.folder} has finished rounds but no rewind point file")
            ticket.capture_rewind_point(self.model)
        while not ticket.finished:
            index = ticket.current_round
            state = ticket.begin_round(self.model)
            round_dir = ticket.round_dir(index)
            trainer = self.make_trainer(self.model, str(round_dir))
            if trainer.model is not self.model:
                raise SparsityConfigError("make_trainer must build the Trainer around the model it is given")
            if state is not None:
                add_callback_first(trainer, SparsityCallback(state=state))
            if index == 0 and config.rewind != "pretrained":
                trainer.add_callback(_RewindCapture(ticket, config.rewind_step))
            resume = any(round_dir.glob("checkpoint-*"))
            trainer.train(resume_from_checkpoint=True if resume else None)
            if index == 0 and not ticket.has_rewind_point:
                raise RuntimeError("the rewind point was never reached during the first round")
            metric = self._evaluate(trainer)
            ticket.end_round(self.model, metric)
        return ticket.records

    def _evaluate(self, trainer: Trainer) -> dict[str, float] | None:
        if self.evaluate is not None:
            return dict(self.evaluate(trainer))
        if trainer.eval_dataset is not None:
            return {k: float(v) for k, v in trainer.evaluate().items() if isinstance(v, (int, float))}
        return None
