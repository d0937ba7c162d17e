"""HF Trainer callback that logs near-zero weight statistics during training."""

from __future__ import annotations

from transformers import TrainerCallback

from es_plugins.analysis.zeros import near_zero_stats
from es_plugins.errors import SparsityConfigError
from es_plugins.targets import Target, TargetSpec, resolve_targets

from ._hf_events import move_before_reporters


class NearZeroMonitor(TrainerCallback):
    """Every ``every`` steps, log the fraction of targeted weights with ``|w|`` below a
    threshold (absolute, or relative to each layer's mean |w|), per layer and overall.

    Values go to ``state.log_history`` at the step they were measured, to ``self.history``,
    and into the next regular log (so TensorBoard / W&B get them).
    """

    def __init__(
        self,
        every: int = 100,
        threshold: float = 1e-2,
        mode: str = "relative",
        targets: TargetSpec | None = None,
        per_layer: bool = True,
        log_prefix: str = "near_zero",
    ):
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise SparsityConfigError(f"every must be an integer >= 1, got {every!r}")
        near_zero_stats([], threshold, mode)  # validates threshold and mode now
        self.every, self.threshold, self.mode = every, threshold, mode
        self.targets_spec, self.per_layer, self.log_prefix = targets, per_layer, log_prefix
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
