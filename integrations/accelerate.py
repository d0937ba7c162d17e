"""Accelerate helper. Accelerate has no callbacks, so one call wires everything:

    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    sparsifier = prepare_sparsity(accelerator, model, optimizer, "omp", sparsity=0.4)
    ...  # your loop: accelerator.accumulate / backward / optimizer.step as usual
    sparsifier.finalize()

Enforcement hooks sit on the *inner* torch optimizer, whose ``step`` Accelerate calls only on
real (gradient-sync) steps; the sparsity state is registered with
``accelerator.register_for_checkpointing`` so ``save_state`` / ``load_state`` round-trip it.
"""

from __future__ import annotations

from typing import Any

from es_plugins.engines.training import Sparsifier
from es_plugins.errors import SparsityConfigError
from es_plugins.masks.state import SparsityState
from es_plugins.methods.plan import make_plan

from ._common import unwrap_optimizer

__all__ = ["prepare_sparsity", "SparsityCheckpoint"]


class SparsityCheckpoint:
    """What ``register_for_checkpointing`` needs: ``state_dict`` / ``load_state_dict``."""

    def __init__(self, sparsifier: Sparsifier):
        self.sparsifier = sparsifier

    def state_dict(self) -> dict[str, Any]:
        return self.sparsifier.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.sparsifier.load_state_dict(state_dict)


def prepare_sparsity(
    accelerator,
    model,
    optimizer,
    plan=None,
    *,
    targets=None,
    schedule=None,
    mask_gradients: bool = True,
    state: SparsityState | None = None,
    calibration=None,
    step: int = 0,
    keep_saved_masks: bool = False,
    log_every: int | None = None,
    log_per_layer: bool = False,
    **options: Any,
) -> Sparsifier:
    """Prune the prepared ``model`` (every rank computes the same masks; verified by a checksum
    all-reduce), enforce them on ``optimizer`` and register them for checkpointing.

    Call ``sparsifier.step(global_step)`` each step only when using a gradual schedule.
    ``accelerator.load_state`` restores the masks; with another plan than the saved one that
    is an error unless ``keep_saved_masks=True``. With ``log_every=N`` the sparsity metrics go
    to ``accelerator.log`` every N real optimizer steps (when trackers are initialised).
    """
    if log_every is not None and (isinstance(log_every, bool) or not isinstance(log_every, int) or log_every < 1):
        raise SparsityConfigError(f"log_every must be an integer >= 1 or None, got {log_every!r}")
    plan = make_plan(plan, targets, **options) if plan is not None else None
    sparsifier = Sparsifier(
        plan,
        schedule=schedule,
        mask_gradients=mask_gradients,
        state=state,
        calibration=calibration,
        keep_saved_masks=keep_saved_masks,
    )
    sparsifier.setup(accelerator.unwrap_model(model), unwrap_optimizer(optimizer), step=step)
    accelerator.register_for_checkpointing(SparsityCheckpoint(sparsifier))
    if log_every is not None:
        steps = [0]

        def log_metrics(*_: Any) -> None:
            steps[0] += 1
            if steps[0] % log_every == 0 and accelerator.trackers:
                accelerator.log(sparsifier.metrics(per_layer=log_per_layer), step=step + steps[0])

        unwrap_optimizer(optimizer).register_step_post_hook(log_metrics)
    return sparsifier
