"""Lightning adapter: the same configuration objects as the HF Trainer callback.

Example:
    >>> import lightning.pytorch as pl
    >>> from es_plugins.integrations.lightning import SparsityCallback
    >>> trainer = pl.Trainer(callbacks=[SparsityCallback("omp", sparsity=0.4)])  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl

from es_plugins.engines.training import Sparsifier
from es_plugins.errors import SparsityConfigError

from ._common import unwrap_optimizer
from ._lightning_lottery import LotteryTicketCallback

__all__ = ["SparsityCallback", "LotteryTicketCallback"]


class SparsityCallback(pl.Callback):
    """Prune at fit start and keep the mask through every real optimizer step.

    Event mapping: ``on_fit_start`` → ``setup`` (prune, or apply masks restored from
    ``ckpt_path``; enforcement runs in an optimizer step post-hook, so
    ``accumulate_grad_batches`` is respected); ``on_before_optimizer_step`` → zero pruned
    gradients (Lightning runs backward *inside* the optimizer closure); ``on_train_batch_start``
    → gradual schedule; callback state → the masks, in every checkpoint; ``on_fit_end`` →
    ``finalize`` (a plain module is left).

    Args:
        plan, **sparsifier_options: as in :class:`es_plugins.Sparsifier`.
        log_per_layer: also log ``sparsity/layer/<name>`` for every target.
        log_prefix: prefix of the logged keys.
    """

    def __init__(
        self,
        plan: Any = None,
        *,
        mask_gradients: bool = True,
        log_per_layer: bool = False,
        log_prefix: str = "sparsity",
        **sparsifier_options: Any,
    ):
        self.sparsifier = Sparsifier(plan, mask_gradients=False, **sparsifier_options)
        self.mask_gradients, self.log_per_layer, self.log_prefix = mask_gradients, log_per_layer, log_prefix

    @property
    def state_key(self) -> str:
        # Lightning names the callbacks a resume lacks by this key: it says what is at stake.
        return (
            f"es_plugins.SparsityCallback[{self.log_prefix}] (pruned model: resume WITH this callback, "
            "or every pruned weight regrows)"
        )

    @property
    def _legacy_state_key(self) -> str:  # checkpoints written before the key explained itself
        return f"es_plugins.SparsityCallback[{self.log_prefix}]"

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.sparsifier.check_schedule_fits(trainer.max_steps)
        if not trainer.optimizers:
            raise SparsityConfigError("SparsityCallback needs an optimizer (configure_optimizers returned none)")
        optimizer = unwrap_optimizer(trainer.optimizers[0])
        if self.sparsifier.is_setup:  # state restored after setup (late-restoring strategies)
            self.sparsifier.bind_optimizer(optimizer)
        else:
            self.sparsifier.setup(pl_module, optimizer, step=trainer.global_step)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.sparsifier.step(trainer.global_step)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if self.mask_gradients:
            self.sparsifier.mask_gradients_now()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step % max(trainer.log_every_n_steps, 1) == 0:
            metrics = self.sparsifier.metrics(self.log_prefix, per_layer=self.log_per_layer)
            pl_module.log_dict(metrics, on_step=True, on_epoch=False)

    def on_fit_end(self, trainer, pl_module) -> None:
        self.sparsifier.finalize()

    def state_dict(self) -> dict[str, Any]:
        return self.sparsifier.state_dict() if self.sparsifier.state is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict:
            self.sparsifier.load_state_dict(state_dict)
