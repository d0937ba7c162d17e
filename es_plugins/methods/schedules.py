"""Sparsity schedules: pure functions of the optimizer step.

The paper's protocol is one-shot (prune the pre-trained checkpoint once, then fine-tune with
the mask fixed); a gradual cubic ramp (Zhu & Gupta, 2017) is offered for users who want to go
past the essential range and let training recover in between.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import SparsityConfigError, check_fraction


@dataclass(frozen=True)
class CubicSchedule:
    """Ramp sparsity from ``initial_sparsity`` to the plan's sparsity between two steps.

    ``s(t) = s_f + (s_0 - s_f) * (1 - (t - start) / (end - start)) ** 3``, updated every
    ``frequency`` steps; before ``start_step`` the sparsity is ``s_0``, after ``end_step`` it is
    ``s_f``.

    Args:
        start_step: first optimizer step of the ramp (>= 0).
        end_step: step at which the final sparsity is reached (> start_step).
        initial_sparsity: sparsity applied at train begin, in [0, 1).
        frequency: recompute masks every this many steps (>= 1).
    """

    start_step: int = 0
    end_step: int = 100
    initial_sparsity: float = 0.0
    frequency: int = 10

    def __post_init__(self) -> None:
        object.__setattr__(self, "initial_sparsity", check_fraction("initial_sparsity", self.initial_sparsity))
        if not isinstance(self.start_step, int) or self.start_step < 0:
            raise SparsityConfigError(f"start_step must be an integer >= 0, got {self.start_step!r}")
        if not isinstance(self.end_step, int) or self.end_step <= self.start_step:
            raise SparsityConfigError(
                f"end_step must be an integer > start_step={self.start_step}, got {self.end_step!r}"
            )
        if not isinstance(self.frequency, int) or self.frequency < 1:
            raise SparsityConfigError(f"frequency must be an integer >= 1, got {self.frequency!r}")

    def sparsity_at(self, step: int, final: float) -> float:
        if final < self.initial_sparsity:
            raise SparsityConfigError(
                f"final sparsity {final} is below initial_sparsity {self.initial_sparsity}: "
                "a schedule may only increase sparsity"
            )
        if step <= self.start_step:
            return self.initial_sparsity
        if step >= self.end_step:
            return final
        # Quantise to update points so masks change only every `frequency` steps.
        step = self.start_step + (step - self.start_step) // self.frequency * self.frequency
        progress = (step - self.start_step) / (self.end_step - self.start_step)
        return self.initial_sparsity + (final - self.initial_sparsity) * (1.0 - (1.0 - progress) ** 3)

    def to_dict(self) -> dict:
        return {
            "kind": "cubic",
            "start_step": self.start_step,
            "end_step": self.end_step,
            "initial_sparsity": self.initial_sparsity,
            "frequency": self.frequency,
        }
