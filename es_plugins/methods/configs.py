"""Method configuration objects, validated at construction.

Each config names one pruning method; the registry in :mod:`es_plugins.methods` maps the
config type to the pure function that turns targets into keep-masks.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from ..errors import SparsityConfigError, check_choice, check_fraction
from ..masks.nm import parse_pattern

SCOPES = ("global", "layer")


@dataclass(frozen=True)
class MethodConfig:
    """Base class: ``name`` is the CLI/registry key; ``target_sparsity`` what a report checks."""

    name: ClassVar[str] = ""

    @property
    def target_sparsity(self) -> float:
        raise NotImplementedError

    @property
    def nm_pattern(self) -> tuple[int, int] | None:
        """``(N, M)`` when the method keeps N of every M inputs, else None (what reports check)."""
        return None

    @property
    def calibration_passes(self) -> int | None:
        """Forwards per block for calibrated methods (1 or 2); None for the others."""
        return None

    @property
    def selects_globally(self) -> bool:
        """True when one threshold spans all targets (a single layer may then be emptied);
        False when every layer gets its own quota (N:M, per-layer scope, calibrated methods)."""
        return getattr(self, "scope", None) == "global"

    def at_sparsity(self, level: float) -> "MethodConfig":
        """This config pruning ``level`` instead (a gradual schedule's step): methods with an
        unstructured ``sparsity`` field; the others have no level to move."""
        if "sparsity" not in {f.name for f in dataclasses.fields(self)}:
            raise SparsityConfigError(f"method {self.name!r} has no sparsity level to schedule")
        return dataclasses.replace(self, sparsity=level)  # type: ignore[call-arg]

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
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
            raise SparsityConfigError(f"seed must be an integer in [0, 2**63) (a torch seed), got {self.seed!r}")

    @property
    def target_sparsity(self) -> float:
        return self.sparsity


@dataclass(frozen=True, init=False)
class NMConfig(MethodConfig):
    """N:M magnitude pruning: keep the N largest of every M consecutive input weights.

    Example:
        >>> NMConfig("2:4") == NMConfig(pattern=(2, 4)) == NMConfig(2, 4)
        True

    Args:
        pattern: ``"N:M"`` (the one spelling used everywhere), or ``(N, M)``; 0 < N < M
            (2:4 and 4:8 are what hardware uses). ``NMConfig(2, 4)`` also works.
        skip_incompatible: leave a layer dense, with a warning, when its input dimension
            is not divisible by ``M``; by default that is an error.
    """

    name: ClassVar[str] = "nm"
    n: int = 2
    m: int = 4
    skip_incompatible: bool = False

    def __init__(
        self,
        pattern: str | tuple[int, int] | int = "2:4",
        m: int | None = None,
        skip_incompatible: bool = False,
        *,
        n: int | None = None,
    ) -> None:
        if n is not None:  # the n=, m= keywords of saved plans (to_dict of older versions)
            pair = (n, 4 if m is None else m)
        elif isinstance(pattern, int) and not isinstance(pattern, bool) and m is not None:
            pair = (pattern, m)
        else:
            if m is not None:
                raise SparsityConfigError(f"give the N:M pattern once, as pattern='N:M'; got {pattern!r} and m={m!r}")
            pair = parse_pattern(pattern)
        object.__setattr__(self, "n", pair[0])
        object.__setattr__(self, "m", pair[1])
        object.__setattr__(self, "skip_incompatible", skip_incompatible)
        self.__post_init__()

    def __post_init__(self) -> None:
        parse_pattern((self.n, self.m))  # the one N:M validator
        if not isinstance(self.skip_incompatible, bool):
            raise SparsityConfigError(f"skip_incompatible must be True or False, got {self.skip_incompatible!r}")

    @property
    def target_sparsity(self) -> float:
        return 1.0 - self.n / self.m

    @property
    def pattern(self) -> str:
        return f"{self.n}:{self.m}"

    @property
    def nm_pattern(self) -> tuple[int, int] | None:
        return (self.n, self.m)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.name, "pattern": self.pattern, "skip_incompatible": self.skip_incompatible}
