"""How much of a sweep's answer is measurement noise.

A sweep decides "within tolerance" from one number per level, but that number is a sum over
evaluation units (text chunks for perplexity, test examples for accuracy) and seeds. A
tolerance of 1 % means nothing when the metric moves by 4 % from one 1,000-token sample to the
next. So a task may return a :class:`Measurement` — the value and the per-unit evidence it was
computed from — and the sweep bootstraps it:

- each replicate draws the units with replacement (the *same* draw for every level: the levels
  are evaluated on the same text, so their differences are paired) and, with several seeds, the
  seeds with replacement;
- it recomputes every level's metric, then the essential sparsity and the knee exactly as the
  sweep defines them;
- the percentiles of those give the intervals. The *noise* the tolerance is compared with is
  the spread of the difference from dense at the levels that decide the answer (the essential
  level and the first failing one): that difference is what "within tolerance" tests, and on a
  shared evaluation set it is much steadier than either value alone.

A task that returns a plain float still works: with several seeds the bootstrap resamples
the seeds only; with one seed and no evidence there is no interval, and the report says so.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from ..errors import SparsityConfigError
from .definitions import essential_from_means, find_knee

if TYPE_CHECKING:
    from .sweep import SweepConfig

TRANSFORMS = ("mean", "exp")  # accuracy-like: sum(num)/sum(den); perplexity: exp of that


@dataclass(frozen=True)
class Measurement:
    """A metric value with the evidence behind it: per unit, a numerator and a denominator.

    ``value = f(sum(numerators) / sum(denominators))`` with ``f`` the identity (``"mean"``:
    accuracy = correct / examples) or ``exp`` (perplexity = exp(NLL / tokens)). ``unit`` names
    what the denominators count, for the report ("tokens", "examples").
    """

    numerators: tuple[float, ...]
    denominators: tuple[float, ...]
    transform: str = "mean"
    unit: str = "examples"

    def __post_init__(self) -> None:
        if self.transform not in TRANSFORMS:
            raise SparsityConfigError(f"transform must be one of {', '.join(TRANSFORMS)}, got {self.transform!r}")
        if len(self.numerators) != len(self.denominators) or not self.numerators:
            raise SparsityConfigError(
                "numerators and denominators must be non-empty and of the same length, got "
                f"{len(self.numerators)} and {len(self.denominators)}"
            )
        object.__setattr__(self, "numerators", tuple(float(x) for x in self.numerators))
        object.__setattr__(self, "denominators", tuple(float(x) for x in self.denominators))

    @property
    def value(self) -> float:
        mean = sum(self.numerators) / sum(self.denominators)
        if not math.isfinite(mean):
            return math.nan  # flagged by the sweep, never plotted as a number
        return float(_metric(mean, 1.0, self.transform))

    @property
    def units(self) -> int:
        return len(self.numerators)

    @property
    def size(self) -> float:
        """How many tokens or examples the measurement covers."""
        return sum(self.denominators)

    def to_dict(self) -> dict[str, Any]:
        return {
            "numerators": list(self.numerators),
            "denominators": list(self.denominators),
            "transform": self.transform,
            "unit": self.unit,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Measurement":
        return cls(tuple(data["numerators"]), tuple(data["denominators"]), str(data["transform"]), str(data["unit"]))


def _metric(numerator: Any, denominator: Any, transform: str) -> Any:
    mean = numerator / denominator
    return np.exp(np.minimum(mean, 709.0)) if transform == "exp" else mean


@dataclass(frozen=True)
class Uncertainty:
    """The bootstrap's answer for one sweep.

    ``essential_interval`` / ``knee_interval``: the central ``confidence`` interval of the
    replicates (None when there is nothing to resample). ``noise``: the standard error of the
    difference from dense at ``noise_at`` (the deciding level where it is largest).
    ``needed_size``: tokens or examples a point would need for the tolerance to be twice that
    noise (None when it already is)."""

    replicates: int
    confidence: float
    resampled: str  # what was resampled, in words
    essential_interval: tuple[float, float] | None
    knee_interval: tuple[float, float] | None
    noise: float | None
    noise_at: float | None
    slack: float
    size: float | None
    unit: str | None
    needed_size: int | None

    @property
    def noisy(self) -> bool:
        """The tolerance is below twice the noise of the tested difference: the edge is noise-bound."""
        return self.noise is not None and self.slack < 2 * self.noise

    def to_dict(self) -> dict[str, Any]:
        return {
            "replicates": self.replicates,
            "confidence": self.confidence,
            "resampled": self.resampled,
            "essential_sparsity_interval": list(self.essential_interval) if self.essential_interval else None,
            "knee_interval": list(self.knee_interval) if self.knee_interval else None,
            "noise": self.noise,
            "noise_at_sparsity": self.noise_at,
            "tolerance_in_metric_units": self.slack,
            "evaluation_size": self.size,
            "unit": self.unit,
            "tolerance_below_noise": self.noisy,
            "size_needed": self.needed_size,
        }

    def warning(self, metric: str) -> str | None:
        """One sentence for the console and the summary when the tolerance is below the noise."""
        if not self.noisy or self.noise is None or self.noise_at is None:
            return None
        need = f"about {self.needed_size:,} {self.unit} per point" if self.needed_size else "more evaluation data"
        have = f"{self.size:,.0f} {self.unit}" if self.size else "this evaluation"
        return (
            f"the tolerance ({self.slack:.4g} in {metric}) is below twice the noise of the difference from dense "
            f"(standard error {self.noise:.4g} at {self.noise_at:.1%}, on {have}): measurement noise decides the "
            f"essential sparsity. The bootstrap interval is the honest answer; to resolve the tolerance, evaluate "
            f"{need} (--tokens / --test), add --seeds, or widen --tolerance."
        )


def bootstrap(
    config: "SweepConfig",
    sparsities: Sequence[float],
    values: Sequence[Mapping[int, float]],
    evidence: Sequence[Mapping[int, Measurement]],
    replicates: int = 400,
    confidence: float = 0.9,
    seed: int = 0,
) -> Uncertainty:
    """Resample the units (paired across levels) and the seeds; recompute the sweep's answers.

    ``sparsities`` ascending with 0 first; ``values[i]`` / ``evidence[i]``: seed -> value /
    measurement of level ``i``. Units are used only when every point has a measurement with
    the same number of units (the same evaluation set); otherwise only seeds are resampled.
    """
    if not 0 < confidence < 1:
        raise SparsityConfigError(f"confidence must be in (0, 1), got {confidence!r}")
    seeds = list(config.seeds)
    means = [statistics.fmean(v.get(s, math.nan) for s in seeds) for v in values]  # the sweep's level means
    slack = config.slack(means[0])
    complete = all(all(s in ev for s in seeds) for ev in evidence)
    shapes = {ev[s].units for ev in evidence for s in seeds} if complete else set()
    use_units = complete and len(shapes) == 1
    if not use_units and len(seeds) < 2:
        return Uncertainty(replicates, confidence, "nothing (one seed, no per-unit evidence)", None, None, None,
                           None, slack, None, None, None)  # fmt: skip
    rng = np.random.default_rng(seed)
    n_levels = len(sparsities)
    # metric[b, level] for each replicate
    metric = np.empty((replicates, n_levels))
    if use_units:
        units = shapes.pop()
        transform = evidence[0][seeds[0]].transform
        num = np.array([[ev[s].numerators for s in seeds] for ev in evidence])  # [level, seed, unit]
        den = np.array([[ev[s].denominators for s in seeds] for ev in evidence])
        draws = rng.integers(0, units, size=(replicates, units))
        counts = np.stack([np.bincount(d, minlength=units) for d in draws])  # [b, unit]
        seed_draws = rng.integers(0, len(seeds), size=(replicates, len(seeds)))
        for b in range(replicates):
            per_seed = _metric(num @ counts[b], den @ counts[b], transform)  # [level, seed]
            metric[b] = per_seed[:, seed_draws[b]].mean(axis=1)
        first = evidence[0][seeds[0]]
        unit, size = first.unit, first.size
        resampled = f"{units} evaluation units of {first.unit}" + (f" and {len(seeds)} seeds" if len(seeds) > 1 else "")
    else:
        table = np.array([[v.get(s, math.nan) for s in seeds] for v in values])  # [level, seed]
        seed_draws = rng.integers(0, len(seeds), size=(replicates, len(seeds)))
        for b in range(replicates):
            metric[b] = table[:, seed_draws[b]].mean(axis=1)
        unit, size = None, None
        resampled = f"{len(seeds)} seeds"
    essentials, knees = [], []
    for row in metric:
        essentials.append(essential_from_means(config, sparsities, row.tolist()))
        knee = find_knee(sparsities, [config.degradation(m, row[0]) for m in row])
        knees.append(knee if knee is not None else math.nan)
    lo, hi = (1 - confidence) / 2, 1 - (1 - confidence) / 2

    def interval(xs: list[float]) -> tuple[float, float] | None:
        finite = np.array([x for x in xs if math.isfinite(x)])
        if finite.size < replicates / 2:
            return None
        return float(np.quantile(finite, lo, method="lower")), float(np.quantile(finite, hi, method="higher"))

    # The levels that decide the answer: the essential one and the first failing one (every
    # level when all pass); the noise is the spread of their difference from dense.
    essential = essential_from_means(config, sparsities, means)
    edge = sparsities.index(essential)
    deciding = [i for i in (edge, edge + 1) if 0 < i < n_levels] or list(range(1, n_levels))
    spreads = {i: float(np.std(metric[:, i] - metric[:, 0], ddof=1)) for i in deciding}
    spreads = {i: sd for i, sd in spreads.items() if math.isfinite(sd)}
    noise_index = max(spreads, key=spreads.__getitem__) if spreads else None
    noise = spreads[noise_index] if noise_index is not None else None
    needed = None
    if noise is not None and size and slack > 0 and slack < 2 * noise:
        needed = int(math.ceil(size * (2 * noise / slack) ** 2))
    return Uncertainty(
        replicates,
        confidence,
        resampled,
        interval(essentials),
        interval(knees),
        noise,
        sparsities[noise_index] if noise_index is not None else None,
        slack,
        size,
        unit,
        needed,
    )
