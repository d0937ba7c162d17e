"""Configs of the calibration-based methods (Wanda, SparseGPT).

Unlike magnitude or random pruning they need activations: they are registered with
``calibrated=True``, and :func:`es_plugins.sparsify_` runs them block by block
(:mod:`es_plugins.calibration`). Their maths lives in :mod:`es_plugins.methods.wanda` and
:mod:`es_plugins.methods.sparsegpt` as plain functions of one weight and its input statistics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..errors import SparsityConfigError, check_fraction
from ..masks.nm import parse_pattern
from .configs import MethodConfig

DEFAULT_SPARSITY = 0.5


@dataclass(frozen=True)
class CalibratedConfig(MethodConfig):
    """Shared fields: unstructured ``sparsity`` (default 0.5) or an N:M ``pattern``.

    With a pattern the sparsity is the pattern's (``1 - N/M``); giving a different one is an
    error, so a plan never records two sparsities.

    Args:
        passes: ``1``: one forward per block over the whole calibration set, each layer
            pruned as its input arrives ("true sequential"); ``2``: the reference codes' scheme
            (statistics from the dense block, then a second forward for the outputs). ``None``
            (default): the method's choice, from the measurements in docs/llm.md — see
            :meth:`default_passes`.
    """

    sparsity: float | None = None
    pattern: str | None = None
    passes: int | None = None

    def default_passes(self) -> int:
        """One pass: SparseGPT reconstructs each layer, and fitting the inputs the pruned
        model really feeds it is at least as good as the reference's dense statistics."""
        return 1

    def __post_init__(self) -> None:
        self._check_level()
        if self.passes is None:
            object.__setattr__(self, "passes", self.default_passes())
        if self.passes not in (1, 2) or isinstance(self.passes, bool):
            raise SparsityConfigError(f"passes must be 1 or 2, got {self.passes!r}")

    def _check_level(self) -> None:
        if self.pattern is None:
            given = DEFAULT_SPARSITY if self.sparsity is None else self.sparsity
            object.__setattr__(self, "sparsity", check_fraction("sparsity", given))
            return
        n, m = parse_pattern(self.pattern)
        implied = 1.0 - n / m
        if self.sparsity is not None and abs(check_fraction("sparsity", self.sparsity) - implied) > 1e-9:
            raise SparsityConfigError(
                f"give either sparsity (unstructured) or pattern (N:M), not both: pattern {n}:{m} "
                f"prunes {implied:g}, sparsity={self.sparsity!r}"
            )
        object.__setattr__(self, "pattern", f"{n}:{m}")  # one spelling: (2, 4) is stored as "2:4"
        object.__setattr__(self, "sparsity", implied)

    @property
    def nm(self) -> tuple[int, int] | None:
        return parse_pattern(self.pattern) if self.pattern is not None else None

    @property
    def nm_pattern(self) -> tuple[int, int] | None:
        return self.nm

    @property
    def calibration_passes(self) -> int | None:
        return self.passes

    @property
    def target_sparsity(self) -> float:
        return float(self.sparsity)  # type: ignore[arg-type]  # set in __post_init__


@dataclass(frozen=True)
class WandaConfig(CalibratedConfig):
    """Wanda (Sun et al., 2023): score ``|W| * ||X||`` (input-activation norms), pruned per
    output row (unstructured) or per N:M group."""

    name: ClassVar[str] = "wanda"

    def default_passes(self) -> int:
        """Wanda only *chooses* weights. Unstructured, scoring a layer on inputs the pruned
        layers before it already changed is as good as the dense statistics (one pass); under
        an N:M pattern it cost 6-15 % perplexity on SmolLM2 at 2:4, so two passes, the
        reference's scheme (docs/llm.md)."""
        return 2 if self.pattern is not None else 1


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
