"""HF Trainer callback: pruning with enforcement through training, checkpoints and resume."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from es_plugins.engines.training import Sparsifier
from es_plugins.masks.state import MASKS_FILENAME

from ._common import load_masks_from, unwrap_optimizer
from ._hf_events import add_to_logs, checkpoint_dir, move_before_reporters


class SparsityCallback(TrainerCallback):
    """Prune at train begin and keep the mask through every real optimizer step.

    One line in ``Trainer(..., callbacks=[SparsityCallback("omp", sparsity=0.4)])``. Masks
    are written into every ``checkpoint-N`` folder and restored by
    ``trainer.train(resume_from_checkpoint=...)``; at train end the hooks are removed, so
    ``trainer.save_model()`` writes a plain checkpoint with exact zeros (plus masks, report
    and model-card section). The callback moves itself before the reporting callbacks when
    the Trainer is built, so its metrics reach TensorBoard / W&B / MLflow.

    Args:
        plan, targets, schedule, mask_gradients, state, calibration, keep_saved_masks, **options:
            as in :class:`es_plugins.Sparsifier` (``plan`` may be a method name with options).
        log_per_layer: also log ``sparsity/layer/<name>`` for every target.
        log_prefix: prefix of the logged keys (``sparsity/targets``, ``sparsity/level``).

    Raises:
        SparsityConfigError: at construction for a bad method/option, at train begin (before
            any step) for a schedule that ends after ``max_steps``.
    """

    def __init__(
        self, plan: Any = None, *, log_per_layer: bool = False, log_prefix: str = "sparsity", **sparsifier_options: Any
    ):
        self.sparsifier = Sparsifier(plan, **sparsifier_options)
        self.log_prefix, self.log_per_layer = log_prefix, log_per_layer

    def on_init_end(self, args, state, control, **kwargs):
        move_before_reporters(self)

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        self.sparsifier.check_schedule_fits(state.max_steps)
        if state.global_step > 0:  # resuming: the masks must be the saved ones, bit for bit
            given = [Path(args.resume_from_checkpoint)] if isinstance(args.resume_from_checkpoint, str) else []
            folders = given + [checkpoint_dir(args, state)]
            found = load_masks_from(folders)
            if found is not None:
                self.sparsifier.restore(found[0])
            else:
                warnings.warn(
                    f"resuming at step {state.global_step} but no {MASKS_FILENAME} was found in "
                    f"{[str(f) for f in folders]}; masks are recomputed from the loaded weights",
                    stacklevel=2,
                )
        self.sparsifier.setup(model, unwrap_optimizer(optimizer), step=state.global_step)

    def on_step_begin(self, args, state, control, **kwargs):
        self.sparsifier.step(state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        add_to_logs(state, logs, self.sparsifier.metrics(self.log_prefix, per_layer=self.log_per_layer))

    def on_save(self, args, state, control, **kwargs):
        if args.should_save:
            self.sparsifier.save_masks(checkpoint_dir(args, state) / MASKS_FILENAME, global_step=state.global_step)

    def on_train_end(self, args, state, control, **kwargs):
        self.sparsifier.finalize()
