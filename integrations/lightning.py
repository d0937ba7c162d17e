"""Lightning adapter: the same configuration objects as the HF Trainer callback.

Example:
    >>> import lightning.pytorch as pl
    >>> from es_plugins.integrations.lightning import SparsityCallback
    >>> trainer = pl.Trainer(callbacks=[SparsityCallback("omp", sparsity=0.4)])  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl

from es_plugins.errors import SparsityConfigError
from es_plugins.lottery import LotteryConfig, LotteryTicket
from es_plugins.plan import make_plan
from es_plugins.schedules import CubicSchedule
from es_plugins.sparsifier import Sparsifier
from es_plugins.state import SparsityState
from es_plugins.targets import TargetSpec

from ._common import unwrap_optimizer

__all__ = ["SparsityCallback", "LotteryTicketCallback"]


class SparsityCallback(pl.Callback):
    """Prune at fit start and keep the mask through every real optimizer step.

    Event mapping: ``on_fit_start`` → prune (or apply masks restored from ``ckpt_path``) and
    attach a step post-hook to the optimizer, which runs only on real steps, so
    ``accumulate_grad_batches`` is respected; ``on_before_optimizer_step`` → zero pruned
    gradients (Lightning runs backward *inside* the optimizer closure, so a step pre-hook
    would see stale gradients); ``on_train_batch_start`` → gradual schedule; callback state
    (bit-packed masks, level) → saved in every checkpoint and restored with ``ckpt_path=``;
    ``on_fit_end`` → hooks removed, a plain module is left.

    Args:
        plan, targets, schedule, mask_gradients, state, calibration, keep_saved_masks, **options: as in
            :class:`es_plugins.integrations.transformers.SparsityCallback`.
        log_per_layer: also log ``sparsity/layer/<name>`` for every target (like
            ``ModelPruning(verbose=2)``).
        log_prefix: prefix of the logged keys.
    """

    def __init__(self, plan=None, *, targets: TargetSpec | None = None, schedule: CubicSchedule | None = None,
                 mask_gradients: bool = True, state: SparsityState | None = None, calibration=None,
                 keep_saved_masks: bool = False, log_per_layer: bool = False, log_prefix: str = "sparsity",
                 **options: Any):
        plan = make_plan(plan, targets, **options) if plan is not None else None
        self.sparsifier = Sparsifier(plan, schedule=schedule, mask_gradients=False, state=state,
                                     calibration=calibration, keep_saved_masks=keep_saved_masks)
        self.mask_gradients = mask_gradients
        self.log_prefix = log_prefix
        self.log_per_layer = log_per_layer

    @property
    def state_key(self) -> str:
        # Lightning names the callbacks a checkpoint needs when a resume lacks them: this key
        # makes that warning say what is at stake (the masks live only in this state).
        return (f"es_plugins.SparsityCallback[{self.log_prefix}] (pruned model: resume WITH this callback, "
                "or every pruned weight regrows)")

    @property
    def _legacy_state_key(self) -> str:  # checkpoints written before the key explained itself
        return f"es_plugins.SparsityCallback[{self.log_prefix}]"

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        schedule = self.sparsifier.schedule
        if schedule is not None and trainer.max_steps > 0 and schedule.end_step > trainer.max_steps:
            raise SparsityConfigError(f"schedule end_step={schedule.end_step} is beyond training (max_steps={trainer.max_steps})")
        if not trainer.optimizers:
            raise SparsityConfigError("SparsityCallback needs an optimizer (configure_optimizers returned none)")
        if self.sparsifier._model is None:
            self.sparsifier.setup(pl_module, unwrap_optimizer(trainer.optimizers[0]), step=trainer.global_step)
        else:  # state restored after setup (strategies that restore late): re-bind to the new optimizer
            self.sparsifier.bind_optimizer(unwrap_optimizer(trainer.optimizers[0]))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.sparsifier.step(trainer.global_step)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if self.mask_gradients:
            self.sparsifier.mask_gradients_now()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step % max(trainer.log_every_n_steps, 1) == 0:
            pl_module.log_dict(self.sparsifier.metrics(self.log_prefix, per_layer=self.log_per_layer), on_step=True,
                               on_epoch=False)

    def on_fit_end(self, trainer, pl_module) -> None:
        self.sparsifier.finalize()

    def state_dict(self) -> dict[str, Any]:
        return self.sparsifier.state_dict() if self.sparsifier.state is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict:
            self.sparsifier.load_state_dict(state_dict)


class LotteryTicketCallback(pl.Callback):
    """Lottery-ticket rounds inside one ``fit``: every ``steps_per_round`` optimizer steps,
    prune ``prune_fraction`` of the remaining weights, rewind the survivors to the rewind point
    (written into the real parameters) and reset the optimizer state and LR schedule.

    Progress (round records, masks, rewind point) goes to ``folder``; the callback state holds
    the round, so ``ckpt_path=`` resumes at the round and step where training stopped.
    """

    def __init__(self, config: LotteryConfig, folder: str, steps_per_round: int):
        if not isinstance(steps_per_round, int) or steps_per_round < 1:
            raise SparsityConfigError(f"steps_per_round must be an integer >= 1, got {steps_per_round!r}")
        self.ticket = LotteryTicket(config, folder)
        self.steps_per_round = steps_per_round
        self._sparsifier: Sparsifier | None = None
        self._initial_optimizer_state: dict | None = None
        self._initial_scheduler_states: list[dict] = []

    def on_fit_start(self, trainer, pl_module) -> None:
        needed = self.steps_per_round * (self.ticket.config.rounds + 1)
        if trainer.max_steps > 0 and trainer.max_steps < needed:
            raise SparsityConfigError(
                f"{self.ticket.config.rounds + 1} rounds of {self.steps_per_round} steps need max_steps >= {needed}, "
                f"got {trainer.max_steps}")
        if self.ticket.config.rewind_step > self.steps_per_round:
            raise SparsityConfigError(
                f"rewind step {self.ticket.config.rewind_step} is beyond the first round ({self.steps_per_round} steps)")
        optimizer = unwrap_optimizer(trainer.optimizers[0])
        self._initial_optimizer_state = _clone(optimizer.state_dict())
        self._initial_scheduler_states = [_clone(c.scheduler.state_dict()) for c in trainer.lr_scheduler_configs]
        if self.ticket.current_round == 0 and self.ticket.config.rewind_step == 0 and not self.ticket.has_rewind_point:
            self.ticket.capture_rewind_point(pl_module)
        if self.ticket.state is not None or self.ticket.current_round > 0:
            state = self.ticket.state or SparsityState.load(self.ticket._masks_path(self.ticket.current_round), pl_module)
            self.ticket.state = state
            self._enforce(pl_module, optimizer, state)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if (self.ticket.current_round == 0 and step == self.ticket.config.rewind_step
                and not self.ticket.has_rewind_point):
            self.ticket.capture_rewind_point(pl_module)
        if step == 0 or step % self.steps_per_round or self.ticket.finished:
            return
        if step // self.steps_per_round != self.ticket.current_round + 1:
            return  # already handled (resumed exactly at a boundary)
        metric = {k: float(v) for k, v in trainer.callback_metrics.items() if getattr(v, "numel", lambda: 1)() == 1}
        next_state = self.ticket.end_round(pl_module, metric)
        if next_state is None:
            return
        self.ticket.begin_round(pl_module)  # rewinds: w = w_rewind * mask
        optimizer = unwrap_optimizer(trainer.optimizers[0])
        optimizer.load_state_dict(_clone(self._initial_optimizer_state))  # fresh moments
        for config, initial in zip(trainer.lr_scheduler_configs, self._initial_scheduler_states):
            config.scheduler.load_state_dict(_clone(initial))
        self._enforce(pl_module, optimizer, self.ticket.state)

    def on_fit_end(self, trainer, pl_module) -> None:
        if self._sparsifier is not None:
            self._sparsifier.finalize()

    def _enforce(self, module, optimizer, state: SparsityState) -> None:
        if self._sparsifier is not None:
            self._sparsifier.finalize()
        self._sparsifier = Sparsifier(state=state, mask_gradients=False)
        self._sparsifier.setup(module, optimizer)

    def state_dict(self) -> dict[str, Any]:
        return {"round": self.ticket.current_round}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict.get("round", 0) != self.ticket.current_round:
            raise SparsityConfigError(
                f"checkpoint is at lottery round {state_dict.get('round')} but {self.ticket.folder} records "
                f"round {self.ticket.current_round}")


def _clone(state: Any) -> Any:
    import copy

    return copy.deepcopy(state)
