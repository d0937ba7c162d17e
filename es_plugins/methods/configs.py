"""Method configuration objects, validated at construction.

Each config names one pruning method; the registry in :mod:`es_plugins.methods` maps the
config type to the pure function that turns targets into keep-masks.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from ..errors import SparsityConfigError, check_choice, check_fraction

SCOPES = ("global", "layer")


@dataclass(frozen=True)
class MethodConfig:
    """Base class: ``name`` is the CLI/registry key; ``target_sparsity`` what a report checks."""

    name: ClassVar[str] = ""

    @property
    def target_sparsity(self) -> float:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.name, **dataclasses.asdict(self)}


@dataclass(frozen=True)
class OMPConfig(MethodConfig):
    """One-shot magnitude pruning of the pre-trained weights (the paper's OMP).

    Args:
        sparsity: fraction of targeted weights set to zero, in [0, 1). Exactly
            ``round(sparsity * n)`` weights are pruned (globally, or per layer).
        scope: ``"global"`` (one threshold over all targets, the paper's setting) or
            ``"layer"`` (the same fraction in every layer).
    """

    name: ClassVar[str] = "omp"
    sparsity: float = 0.5
    scope: str = "global"

    def __post_init__(self) -> None:
        object.__setattr__(self, "sparsity", check_fraction("sparsity", self.sparsity))
        check_choice("scope", self.scope, SCOPES)

    @property
    def target_sparsity(self) -> float:
        return self.sparsity


@dataclass(frozen=True)
class RandomConfig(MethodConfig):
    """Random pruning, the paper's baseline; reproducible through ``seed``."""

    name: ClassVar[str] = "random"
    sparsity: float = 0.5
    scope: str = "global"
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "sparsity", check_fraction("sparsity", self.sparsity))
        check_choice("scope", self.scope, SCOPES)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise SparsityConfigError(f"seed must be a non-negative integer, got {self.seed!r}")

    @property
    def target_sparsity(self) -> float:
        return self.sparsity


@dataclass(frozen=True)
class NMConfig(MethodConfig):
    """N:M magnitude pruning: keep the N largest of every M consecutive input weights.

    Args:
        n: weights kept per group, 0 < n < m.
        m: group size along the input dimension (2:4 and 4:8 are what hardware uses).
        skip_incompatible: leave a layer dense, with a warning, when its input dimension
            is not divisible by ``m``; by default that is an error.
    """

    name: ClassVar[str] = "nm"
    n: int = 2
    m: int = 4
    skip_incompatible: bool = False

    def __post_init__(self) -> None:
        for key in ("n", "m"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int):
                raise SparsityConfigError(f"{key} must be an integer, got {value!r}")
        if self.m < 2 or self.m > 255:
            raise SparsityConfigError(f"m must be in [2, 255], got {self.m}")
        if not 0 < self.n < self.m:
            raise SparsityConfigError(
                f"N:M pattern needs 0 < N < M; got N={self.n}, M={self.m} (e.g. 2:4 or 4:8)"
            )

    @property
    def target_sparsity(self) -> float:
        return 1.0 - self.n / self.m

    @property
    def pattern(self) -> str:
        return f"{self.n}:{self.m}"


def parse_pattern(pattern: str) -> tuple[int, int]:
    """Parse ``"N:M"`` into integers, with an error naming the expected form."""
    try:
        n_text, m_text = pattern.split(":")
        return int(n_text), int(m_text)
    except (AttributeError, ValueError):
        raise SparsityConfigError(f"pattern must look like N:M (e.g. 2:4), got {pattern!r}") from None
