"""HF Trainer callback that logs near-zero weight statistics during training."""

from __future__ import annotations

from transformers import TrainerCallback

from es_plugins._deprecation import renamed_keyword
from es_plugins.analysis.zeros import near_zero_stats
from es_plugins.errors import SparsityConfigError
from es_plugins.masks.targets import Target, TargetSpec, resolve_targets

from ._hf_events import move_before_reporters


class NearZeroMonitor(TrainerCallback):
    """Every ``log_every`` steps, log the fraction of targeted weights with ``|w|`` below a
    threshold (absolute, or relative to each layer's mean |w|), per layer and overall.

    Values go to ``state.log_history`` at the step they were measured, to ``self.history``,
    and into the next regular log (so TensorBoard / W&B get them).
    """

    def __init__(
        self,
        log_every: int | None = None,
        threshold: float = 1e-2,
        mode: str = "relative",
        targets: TargetSpec | None = None,
        log_per_layer: bool | None = None,
        log_prefix: str = "near_zero",
        *,
        every: int | None = None,
        per_layer: bool | None = None,
    ):
        # the keyword names every adapter uses (SparsityCallback, prepare_sparsity); the former
        # every= and per_layer= work for one release
        log_every = renamed_keyword(log_every, every, "every", "log_every", default=100)
        log_per_layer = renamed_keyword(log_per_layer, per_layer, "per_layer", "log_per_layer", default=True)
        if isinstance(log_every, bool) or not isinstance(log_every, int) or log_every < 1:
            raise SparsityConfigError(f"log_every must be an integer >= 1, got {log_every!r}")
        near_zero_stats([], threshold, mode)  # validates threshold and mode now
        self.every, self.threshold, self.mode = log_every, threshold, mode
        self.targets_spec, self.per_layer, self.log_prefix = targets, log_per_layer, log_prefix
        self.history: list[dict[str, float]] = []
        self._targets: list[Target] = []
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
