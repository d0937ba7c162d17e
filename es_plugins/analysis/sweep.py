"""Essential-sparsity sweep: evaluate a grid of sparsities, refine around the point where the
metric leaves its tolerance band, and locate the knee.

The sweep is independent of how a level is evaluated: it calls ``evaluate(sparsity, seed)``
and gets a float (perplexity, accuracy, anything). Results are appended to a JSON file as
they come, so an interrupted sweep resumes from the levels already evaluated.

Definitions (also printed in every report):
- *within tolerance*: the mean over seeds is no worse than dense by more than ``tolerance``
  (relative: a fraction of the dense value; absolute: in metric units).
- *essential sparsity*: the largest level of the contiguous within-tolerance run that starts
  at 0 — a noisy level that passes after a failing one does not extend it. Refinement bisects
  between the last passing and the first failing level until they are at most ``resolution``
  apart, so it is located to that resolution.
- *knee*: Kneedle's point of maximum distance below the chord of the degradation curve, with
  both axes normalised to [0, 1]; degradation is ``log(m / dense)`` for lower-is-better metrics
  (perplexity grows multiplicatively) and ``(dense - m) / |dense|`` for higher-is-better ones.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from .._io import atomic_write_text
from ..errors import SparsityConfigError, check_choice

Evaluate = Callable[[float, int], float]
DEFAULT_LEVELS = tuple(round(0.1 * i, 10) for i in range(10))


@dataclass(frozen=True)
class SweepConfig:
    """Args:
    levels: grid of sparsities, each in [0, 1); 0 (dense) is always added.
    tolerance: allowed degradation from dense (0.01 = 1 %, the paper's choice).
    tolerance_kind: ``"relative"`` or ``"absolute"``.
    higher_is_better: True for accuracy, False for perplexity or loss.
    resolution: refine until the last passing and first failing levels are this close.
    seeds: evaluation seeds; the decision uses their mean.
    metric: name of the metric (for reports).
    """

    levels: tuple[float, ...] = DEFAULT_LEVELS
    tolerance: float = 0.01
    tolerance_kind: str = "relative"
    higher_is_better: bool = True
    resolution: float = 0.025
    seeds: tuple[int, ...] = (0,)
    metric: str = "metric"

    def __post_init__(self) -> None:
        levels = tuple(sorted({0.0, *(float(x) for x in self.levels)}))
        if any(not 0.0 <= x < 1.0 for x in levels):
            raise SparsityConfigError(f"levels must be in [0, 1), got {self.levels!r}")
        object.__setattr__(self, "levels", levels)
        check_choice("tolerance_kind", self.tolerance_kind, ("relative", "absolute"))
        limit = 1.0 if self.tolerance_kind == "relative" else math.inf
        if not (isinstance(self.tolerance, (int, float)) and 0.0 <= self.tolerance < limit):
            allowed = "[0, 1)" if self.tolerance_kind == "relative" else "[0, inf)"
            raise SparsityConfigError(
                f"tolerance must be in {allowed} for {self.tolerance_kind} tolerance, got {self.tolerance!r}"
            )
        if not 0.0 < self.resolution < 1.0:
            raise SparsityConfigError(f"resolution must be in (0, 1), got {self.resolution!r}")
        seeds = tuple(self.seeds)
        if not seeds or not all(isinstance(s, int) for s in seeds):
            raise SparsityConfigError(f"seeds must be a non-empty list of integers, got {self.seeds!r}")
        object.__setattr__(self, "seeds", seeds)

    def within(self, value: float, dense: float) -> bool:
        if not math.isfinite(value):
            return False
        slack = self.tolerance * abs(dense) if self.tolerance_kind == "relative" else self.tolerance
        return value >= dense - slack if self.higher_is_better else value <= dense + slack

    def degradation(self, value: float, dense: float) -> float:
        if self.higher_is_better:
            return (dense - value) / abs(dense) if dense else dense - value
        if value > 0 and dense > 0:
            return math.log(value / dense)
        return value - dense


@dataclass
class Level:
    sparsity: float
    values: dict[int, float] = field(default_factory=dict)  # seed -> metric
    refined: bool = False

    @property
    def finite(self) -> list[float]:
        return [v for v in self.values.values() if math.isfinite(v)]

    @property
    def flagged(self) -> bool:
        """Some seed returned NaN/Inf: reported, never plotted as a number."""
        return len(self.finite) < len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.finite) if self.finite and not self.flagged else math.nan

    @property
    def std(self) -> float:
        return statistics.stdev(self.finite) if len(self.finite) > 1 else 0.0


@dataclass
class SweepResult:
    config: SweepConfig
    levels: list[Level]
    essential_sparsity: float | None
    first_failing: float | None
    knee: float | None
    evaluations: int

    @property
    def dense(self) -> float:
        return self.levels[0].mean

    def to_dict(self) -> dict:
        return {
            "config": asdict(self.config),
            "dense": self.dense,
            "essential_sparsity": self.essential_sparsity,
            "first_failing": self.first_failing,
            "knee": self.knee,
            "evaluations": self.evaluations,
            "levels": [
                {
                    "sparsity": lv.sparsity,
                    "mean": lv.mean,
                    "std": lv.std,
                    "refined": lv.refined,
                    "flagged_nan": lv.flagged,
                    "within_tolerance": self.config.within(lv.mean, self.dense),
                    "values": {str(k): v for k, v in lv.values.items()},
                }
                for lv in self.levels
            ],
        }


def find_knee(xs: Sequence[float], degradation: Sequence[float]) -> float | None:
    """Kneedle on a convex, increasing degradation curve; None when it is flat or too short."""
    points = [(x, d) for x, d in zip(xs, degradation) if math.isfinite(d)]
    if len(points) < 3:
        return None
    x0, x1 = points[0][0], points[-1][0]
    lo, hi = min(d for _, d in points), max(d for _, d in points)
    if hi - lo < 1e-9 or x1 <= x0:
        return None
    gaps = [((x - x0) / (x1 - x0)) - ((d - lo) / (hi - lo)) for x, d in points]
    best = max(range(len(points)), key=lambda i: gaps[i])
    return points[best][0] if gaps[best] > 1e-9 else None


class SweepStore:
    """Append-only JSON record of evaluations, keyed by (sparsity, seed)."""

    def __init__(self, path: str | Path | None, config: SweepConfig, identity: dict | None = None):
        self.path = Path(path) if path else None
        self.identity = {"config": asdict(config), **(identity or {})}
        self.values: dict[tuple[float, int], float] = {}
        self.refined: set[float] = set()
        if self.path and self.path.is_file():
            try:
                data = json.loads(self.path.read_text())
                rows = data["evaluations"]
            except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
                raise SparsityConfigError(
                    f"{self.path} is not a sweep store this version can resume ({exc}); use a new --output folder"
                ) from None
            if data.get("identity") != json.loads(json.dumps(self.identity)):
                raise SparsityConfigError(
                    f"{self.path} belongs to a different sweep ({data.get('identity')}); "
                    "use a new output folder or the same settings to resume"
                )
            for row in rows:
                self.values[(row["sparsity"], row["seed"])] = row["value"]
                if row.get("refined"):
                    self.refined.add(row["sparsity"])

    def get(self, sparsity: float, seed: int) -> float | None:
        return self.values.get((sparsity, seed))

    def put(self, sparsity: float, seed: int, value: float, refined: bool) -> None:
        self.values[(sparsity, seed)] = value
        if refined:
            self.refined.add(sparsity)
        if self.path:
            rows = [
                {"sparsity": s, "seed": k, "value": v, "refined": s in self.refined}
                for (s, k), v in sorted(self.values.items())
            ]
            atomic_write_text(
                self.path, json.dumps({"identity": self.identity, "evaluations": rows}, indent=1, allow_nan=True)
            )


def run_sweep(
    evaluate: Evaluate,
    config: SweepConfig,
    store_path: str | Path | None = None,
    identity: dict | None = None,
    on_result: Callable[[float, int, float, bool], None] | None = None,
) -> SweepResult:
    """Run (or resume) the sweep; ``evaluate(sparsity, seed) -> float``."""
    store = SweepStore(store_path, config, identity)
    levels: dict[float, Level] = {}
    count = 0

    def measure(sparsity: float, refined: bool) -> Level:
        nonlocal count
        sparsity = round(sparsity, 10)
        level = levels.setdefault(sparsity, Level(sparsity, refined=refined))
        for seed in config.seeds:
            value = store.get(sparsity, seed)
            if value is None:
                value = float(evaluate(sparsity, seed))
                count += 1
                store.put(sparsity, seed, value, refined)
                if on_result:
                    on_result(sparsity, seed, value, refined)
            level.values[seed] = value
        return level

    for sparsity in config.levels:
        measure(sparsity, refined=False)
    dense = levels[0.0].mean
    if not math.isfinite(dense):
        raise SparsityConfigError(
            f"the dense model's {config.metric} is not finite ({dense}); cannot define a tolerance"
        )

    def bracket() -> tuple[float, float | None]:
        ordered = sorted(levels)
        last_ok = 0.0
        for s in ordered[1:]:
            if not config.within(levels[s].mean, dense):
                return last_ok, s
            last_ok = s
        return last_ok, None

    last_ok, first_fail = bracket()
    while first_fail is not None and first_fail - last_ok > config.resolution + 1e-9:
        measure((last_ok + first_fail) / 2, refined=True)
        last_ok, first_fail = bracket()

    ordered = [levels[s] for s in sorted(levels)]
    knee = find_knee([lv.sparsity for lv in ordered], [config.degradation(lv.mean, dense) for lv in ordered])
    return SweepResult(config, ordered, last_ok, first_fail, knee, count)
