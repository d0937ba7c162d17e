"""Configs of the calibration-based methods (Wanda, SparseGPT).

Unlike magnitude or random pruning they need activations, so they are run by
:func:`es_plugins.calibration.calibrated_prune_`, which walks the model block by block.
Their maths lives in :mod:`es_plugins.methods.wanda` and :mod:`es_plugins.methods.sparsegpt`
as plain functions of one weight and its input statistics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..errors import SparsityConfigError, check_fraction
from .configs import MethodConfig, parse_pattern


def _check_pattern(pattern: str | tuple[int, int] | None) -> tuple[int, int] | None:
    if pattern is None:
        return None
    n, m = parse_pattern(pattern)
    if not 0 < n < m or m > 255:
        raise SparsityConfigError(f"pattern needs 0 < N < M <= 255; got {pattern!r} (e.g. 2:4 or 4:8)")
    return n, m


@dataclass(frozen=True)
class CalibratedConfig(MethodConfig):
    """Shared fields: unstructured ``sparsity`` or an N:M ``pattern`` (then ``sparsity`` is
    ignored and must stay at its default)."""

    sparsity: float = 0.5
    pattern: str | None = None
    needs_calibration: ClassVar[bool] = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "sparsity", check_fraction("sparsity", self.sparsity))
        nm = _check_pattern(self.pattern)
        if nm is not None:  # one spelling: (2, 4) is stored as "2:4"
            object.__setattr__(self, "pattern", f"{nm[0]}:{nm[1]}")
        if nm and self.sparsity != 0.5:
            raise SparsityConfigError("give either sparsity (unstructured) or pattern (N:M), not both")

    @property
    def nm(self) -> tuple[int, int] | None:
        return _check_pattern(self.pattern)

    @property
    def target_sparsity(self) -> float:
        return 1.0 - self.nm[0] / self.nm[1] if self.nm else self.sparsity


@dataclass(frozen=True)
class WandaConfig(CalibratedConfig):
    """Wanda (Sun et al., 2023): score ``|W| * ||X||`` (input-activation norms), pruned per
    output row (unstructured) or per N:M group."""

    name: ClassVar[str] = "wanda"


@dataclass(frozen=True)
class SparseGPTConfig(CalibratedConfig):
    """SparseGPT (Frantar & Alistarh, 2023): layer-wise reconstruction with the inverse Hessian
    of the calibration inputs.

    Args:
        blocksize: columns processed per lazy-update block.
        damp: dampening added to the Hessian diagonal, as a fraction of its mean.
    """

    name: ClassVar[str] = "sparsegpt"
    blocksize: int = 128
    damp: float = 0.01

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.blocksize, int) or self.blocksize < 1:
            raise SparsityConfigError(f"blocksize must be an integer >= 1, got {self.blocksize!r}")
        if not isinstance(self.damp, (int, float)) or not 0 < self.damp < 1:
            raise SparsityConfigError(f"damp must be in (0, 1), got {self.damp!r}")
