"""Method configuration objects, validated at construction.

Each config names one pruning method; the registry in :mod:`es_plugins.methods` maps the
config type to the pure function that turns targets into keep-masks.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional

from ..errors import SparsityConfigError, check_choice, check_fraction
from ..masks.patterns import parse_pattern

SCOPES = ("global", "layer")


def option(default: Any, help: str, choices: Optional[tuple] = None) -> Any:
    """A config field that carries its own command-line help (and choices), as PEFT's config
    fields do: ``es-plugins prune`` and ``optimum-cli sparsity prune`` generate their method
    flags from these, so a new field gets its flag without touching the CLI."""
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass(frozen=True)
class MethodConfig:
    """Base class: ``name`` is the CLI/registry key; ``target_sparsity`` what a report checks."""

    name: ClassVar[str] = ""
    # Help for keyword options that are not fields (a custom __init__'s), like ``option``'s.
    init_options: ClassVar[dict[str, dict[str, Any]]] = {}

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
    sparsity: float = option(0.5, "fraction of the targeted weights to prune, in [0, 1)")
    scope: str = option("global", "one threshold over all targets, or the same fraction in every layer", SCOPES)

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
    sparsity: float = option(0.5, "fraction of the targeted weights to prune, in [0, 1)")
    scope: str = option("global", "one threshold over all targets, or the same fraction in every layer", SCOPES)
    seed: int = option(0, "seed of the random draw (the CLI's --seed also seeds calibration sampling)")

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
    init_options: ClassVar[dict[str, dict[str, Any]]] = {
        "pattern": {"help": "N:M pattern: keep N of every M consecutive input weights (2:4, 4:8)", "choices": None}
    }
    n: int = 2
    m: int = 4
    skip_incompatible: bool = option(
        False, "leave layers whose input dim is not divisible by M dense (a warning) instead of failing"
    )

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


# --------------------------------------------------------------------- calibrated methods
# Wanda and SparseGPT need activations: registered with ``calibrated=True``, run block by block
# by :func:`es_plugins.sparsify_`; their maths is in ``wanda.py`` and ``sparsegpt.py``.
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

    sparsity: float | None = option(None, "unstructured fraction to prune per layer, in [0, 1) (default 0.5)")
    pattern: str | None = option(None, "an N:M pattern (2:4) instead of an unstructured sparsity")
    passes: int | None = option(
        None,
        "forwards per block: 1 prunes each layer as its input arrives, 2 is the reference codes' scheme "
        "(default: 1, and 2 for wanda with a pattern; docs/llm.md has the measurements)",
        (1, 2),
    )

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
    blocksize: int = option(128, "columns per lazy-update block")
    damp: float = option(0.01, "Hessian dampening, a fraction of its mean diagonal")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.blocksize, int) or self.blocksize < 1:
            raise SparsityConfigError(f"blocksize must be an integer >= 1, got {self.blocksize!r}")
        if not isinstance(self.damp, (int, float)) or not 0 < self.damp < 1:
            raise SparsityConfigError(f"damp must be in (0, 1), got {self.damp!r}")
