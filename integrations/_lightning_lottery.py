"""Lightning lottery-ticket rounds inside one ``fit``: the round logic is the core's
(:meth:`es_plugins.LotteryTicket.after_step`); this maps it onto Lightning's events."""

from __future__ import annotations

import copy
from typing import Any

import lightning.pytorch as pl

from es_plugins._deprecation import renamed_keyword
from es_plugins.engines.lottery import LotteryConfig, LotteryTicket
from es_plugins.engines.training import Sparsifier
from es_plugins.errors import SparsityConfigError
from es_plugins.masks.state import SparsityState

from ._common import unwrap_optimizer


class LotteryTicketCallback(pl.Callback):
    """Lottery-ticket rounds inside one ``fit``, driven by :meth:`LotteryTicket.after_step`:
    every ``steps_per_round`` optimizer steps the core prunes and rewinds; this callback then
    resets the optimizer state and LR schedule and enforces the new masks. The callback state
    holds the round, so ``ckpt_path=`` resumes at the round and step where training stopped.
    """

    def __init__(
        self,
        config: LotteryConfig,
        output_dir: str | None = None,
        steps_per_round: int | None = None,
        *,
        folder: str | None = None,
    ):
        output_dir = renamed_keyword(output_dir, folder, "folder", "output_dir")  # as LotteryTicketRunner names it
        if output_dir is None or steps_per_round is None:
            raise SparsityConfigError("LotteryTicketCallback needs output_dir= and steps_per_round=")
        self.ticket = LotteryTicket(config, output_dir)
        self.ticket.check_step_budget(steps_per_round, max_steps=0)
        self.steps_per_round = steps_per_round
        self._sparsifier: Sparsifier | None = None
        self._initial: tuple[dict, list[dict]] = ({}, [])

    def on_fit_start(self, trainer, pl_module) -> None:
        self.ticket.check_step_budget(self.steps_per_round, trainer.max_steps)
        optimizer = unwrap_optimizer(trainer.optimizers[0])
        schedulers = [c.scheduler.state_dict() for c in trainer.lr_scheduler_configs]
        self._initial = copy.deepcopy((optimizer.state_dict(), schedulers))
        state = self.ticket.start(pl_module)
        if state is not None:
            self._enforce(pl_module, optimizer, state)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        def metric() -> dict[str, float]:
            return {k: float(v) for k, v in trainer.callback_metrics.items() if getattr(v, "numel", lambda: 1)() == 1}

        state = self.ticket.after_step(pl_module, trainer.global_step, self.steps_per_round, metric)
        if state is None:
            return
        optimizer = unwrap_optimizer(trainer.optimizers[0])
        optimizer_state, scheduler_states = copy.deepcopy(self._initial)
        optimizer.load_state_dict(optimizer_state)  # fresh moments
        for config, initial in zip(trainer.lr_scheduler_configs, scheduler_states):
            config.scheduler.load_state_dict(initial)
        self._enforce(pl_module, optimizer, state)

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
                f"checkpoint is at lottery round {state_dict.get('round')} but "
                f"{self.ticket.folder} records round {self.ticket.current_round}"
            )
