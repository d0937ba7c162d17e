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

from es_plugins.plan import make_plan
from es_plugins.sparsifier import Sparsifier
from es_plugins.state import SparsityState

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


def prepare_sparsity(accelerator, model, optimizer, plan=None, *, targets=None, schedule=None,
                     mask_gradients: bool = True, state: SparsityState | None = None, calibration=None,
                     step: int = 0, **options: Any) -> Sparsifier:
    """Prune the prepared ``model`` (every rank computes the same masks; verified by a checksum
    all-reduce), enforce them on ``optimizer`` and register them for checkpointing.

    Call ``sparsifier.step(global_step)`` each step only when using a gradual schedule.
    """
    plan = make_plan(plan, targets, **options) if plan is not None else None
    sparsifier = Sparsifier(plan, schedule=schedule, mask_gradients=mask_gradients, state=state,
                            calibration=calibration)
    sparsifier.setup(accelerator.unwrap_model(model), unwrap_optimizer(optimizer), step=step)
    accelerator.register_for_checkpointing(SparsityCheckpoint(sparsifier))
    return sparsifier
