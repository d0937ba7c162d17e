"""Lottery tickets around the HF Trainer: the round loop is the core's
(:meth:`es_plugins.LotteryTicket.run`); this maps one round onto one ``Trainer.train()``."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from torch import nn
from transformers import Trainer, TrainerCallback

from es_plugins.engines.lottery import LotteryConfig, LotteryTicket, RoundRecord
from es_plugins.errors import SparsityConfigError
from es_plugins.masks.state import SparsityState

from ._hf_callbacks import SparsityCallback
from ._hf_events import add_callback_first


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
        self.on_step_end(args, state, control, model=model)

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

    def __init__(
        self,
        model: nn.Module,
        make_trainer: Callable[[nn.Module, str], Trainer],
        config: LotteryConfig,
        output_dir: str | Path,
        evaluate: Callable[[Trainer], dict[str, float]] | None = None,
    ):
        self.model, self.make_trainer, self.evaluate = model, make_trainer, evaluate
        self.ticket = LotteryTicket(config, output_dir)

    def run(self) -> list[RoundRecord]:
        return self.ticket.run(self.model, self._train_round)

    def _train_round(self, index: int, state: SparsityState | None) -> dict[str, float] | None:
        round_dir = self.ticket.round_dir(index)
        trainer = self.make_trainer(self.model, str(round_dir))
        if trainer.model is not self.model:
            raise SparsityConfigError("make_trainer must build the Trainer around the model it is given")
        if state is not None:
            add_callback_first(trainer, SparsityCallback(state=state))
        if index == 0 and self.ticket.config.rewind != "pretrained":
            trainer.add_callback(_RewindCapture(self.ticket, self.ticket.config.rewind_step))
        trainer.train(resume_from_checkpoint=True if any(round_dir.glob("checkpoint-*")) else None)
        if self.evaluate is not None:
            return dict(self.evaluate(trainer))
        if trainer.eval_dataset is not None:
            return {k: float(v) for k, v in trainer.evaluate().items() if isinstance(v, (int, float))}
        return None
