"""Essential-sparsity sweep: evaluate a grid of sparsities, refine around the point where the
metric leaves its tolerance band, and locate the knee.

The sweep is independent of how a level is evaluated: it calls ``evaluate(sparsity, seed)``
and gets a float (perplexity, accuracy, anything), in this process or as Ray tasks on a cluster
(:mod:`.backends`). Each point is recorded the moment it completes, so an interrupted sweep
resumes from the points already evaluated, with either backend.

Definitions (also printed in every report):
- *within tolerance*: the mean over seeds is no worse than dense by more than ``tolerance``
  (relative: a fraction of the dense value; absolute: in metric units).
- *essential sparsity*: the largest level of the contiguous within-tolerance run that starts
  at 0 — a noisy level that passes after a failing one does not extend it. Refinement
  evaluates k interior points between the last passing and the first failing level (k = 1,
  bisection, in one process; k = the free workers on a cluster) until they are at most
  ``resolution`` apart, so it is located to that resolution.
- *knee*: Kneedle's point of maximum distance below the chord of the degradation curve, with
  both axes normalised to [0, 1]; degradation is ``log(m / dense)`` for lower-is-better metrics
  (perplexity grows multiplicatively) and ``(dense - m) / |dense|`` for higher-is-better ones.
- *intervals*: a task that returns a :class:`~.noise.Measurement` (per-unit evidence) lets the
  sweep bootstrap both answers over the evaluation units and the seeds (:mod:`.noise`), and
  warn when the tolerance is below the noise of the dense value.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from ..errors import SparsityConfigError, check_choice, check_fraction
from ..io.output import atomic_write_text
from .backends import BACKENDS, LocalBackend, Point, PointRecord, RayBackend, TaskSpec, Value
from .definitions import essential_from_means, find_knee
from .noise import Measurement, Uncertainty, bootstrap

Evaluate = Callable[[float, int], Value]
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
        if isinstance(self.levels, (str, bytes)) or not self.levels:
            raise SparsityConfigError(f"levels must be a non-empty list of sparsities in [0, 1), got {self.levels!r}")
        levels = tuple(sorted({0.0, *(check_fraction("levels", x) for x in self.levels)}))
        object.__setattr__(self, "levels", levels)
        if not isinstance(self.higher_is_better, bool):
            raise SparsityConfigError(f"higher_is_better must be True or False, got {self.higher_is_better!r}")
        check_choice("tolerance_kind", self.tolerance_kind, ("relative", "absolute"))
        limit = 1.0 if self.tolerance_kind == "relative" else math.inf
        number = isinstance(self.tolerance, (int, float)) and not isinstance(self.tolerance, bool)
        if not (number and 0.0 <= self.tolerance < limit):
            allowed = "[0, 1)" if self.tolerance_kind == "relative" else "[0, inf)"
            raise SparsityConfigError(
                f"tolerance must be in {allowed} for {self.tolerance_kind} tolerance, got {self.tolerance!r}"
            )
        if (
            isinstance(self.resolution, bool)
            or not isinstance(self.resolution, (int, float))
            or not 0 < self.resolution < 1
        ):
            raise SparsityConfigError(f"resolution must be in (0, 1), got {self.resolution!r}")
        seeds = tuple(self.seeds)
        if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
            raise SparsityConfigError(f"seeds must be a non-empty list of integers, got {self.seeds!r}")
        object.__setattr__(self, "seeds", seeds)

    def slack(self, dense: float) -> float:
        """The allowed degradation in metric units (what ``within`` compares against)."""
        return self.tolerance * abs(dense) if self.tolerance_kind == "relative" else self.tolerance

    def within(self, value: float, dense: float) -> bool:
        if not math.isfinite(value):
            return False
        slack = self.slack(dense)
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
    evidence: dict[int, Measurement] = field(default_factory=dict)  # seed -> per-unit evidence, when given

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
    rounds: int = 0  # refinement rounds this run
    points: list[PointRecord] = field(default_factory=list)  # every recorded point: worker, wall time, error
    uncertainty: Uncertainty | None = None  # bootstrap intervals and noise (None before refinement)

    @property
    def dense(self) -> float:
        return self.levels[0].mean

    @property
    def failed(self) -> list[PointRecord]:
        return [p for p in self.points if p.error is not None]

    def to_dict(self) -> dict:
        return {
            "config": asdict(self.config),
            "dense": self.dense,
            "essential_sparsity": self.essential_sparsity,
            "first_failing": self.first_failing,
            "knee": self.knee,
            "evaluations": self.evaluations,
            "refinement_rounds": self.rounds,
            "uncertainty": self.uncertainty.to_dict() if self.uncertainty else None,
            "points": [p.to_dict() for p in self.points],
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


class SweepStore:
    """The record of evaluated points, keyed by (sparsity, seed): one small JSON file per point
    in ``<store>.points/``, written atomically the moment the point completes, plus the
    aggregate ``<store>`` (``evaluations.json``) rewritten after each point.

    One file per point is what lets several processes write into one folder at once (shards of
    a SLURM array, a driver resumed with another backend) without losing a point; a failed point
    is recorded with its error and evaluated again on resume. A store written by an earlier
    version (the aggregate alone) resumes too.
    """

    def __init__(self, path: str | Path | None, config: SweepConfig, identity: dict | None = None):
        self.path = Path(path) if path else None
        self.identity = json.loads(json.dumps({"config": asdict(config), **(identity or {})}))
        self.records: dict[tuple[float, int], PointRecord] = {}
        if self.path is None:
            return
        self.points = self.path.with_name(self.path.name.removesuffix(".json") + ".points")
        saved_identity = self._read_identity()
        if saved_identity is not None and saved_identity != self.identity:
            raise SparsityConfigError(
                f"{self.path} belongs to a different sweep ({saved_identity}); "
                "use a new output folder or the same settings to resume"
            )
        self.reload()

    def _read_identity(self) -> dict | None:
        assert self.path is not None
        for source in (self.points / "identity.json", self.path):
            if source.is_file():
                try:
                    return json.loads(source.read_text())["identity"]
                except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
                    raise SparsityConfigError(
                        f"{source} is not a sweep store this version can resume ({exc}); use a new --output folder"
                    ) from None
        return None

    def reload(self) -> None:
        """Read every recorded point (the aggregate of an older version, then the point files)."""
        if self.path is None:
            return
        if self.path.is_file():
            for row in json.loads(self.path.read_text()).get("evaluations", []):
                self._adopt(row)
        if self.points.is_dir():
            for item in sorted(self.points.glob("point-*.json")):
                try:
                    self._adopt(json.loads(item.read_text()))
                except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
                    continue  # a file another process is still renaming into place: read next time

    def _adopt(self, row: dict) -> None:
        record = PointRecord(
            float(row["sparsity"]),
            int(row["seed"]),
            float(row["value"]),
            str(row.get("worker", "-")),
            float(row.get("seconds", 0.0)),
            row.get("error"),
            bool(row.get("refined", False)),
            int(row.get("round", 0)),
            Measurement.from_dict(row["evidence"]) if isinstance(row.get("evidence"), dict) else None,
        )
        self.records[(record.sparsity, record.seed)] = record

    def get(self, sparsity: float, seed: int) -> float | None:
        """The value of a finished point; None when it was never evaluated or it failed."""
        record = self.records.get((sparsity, seed))
        return None if record is None or record.error is not None else record.value

    @property
    def refined(self) -> set[float]:
        return {s for (s, _), r in self.records.items() if r.refined}

    def put(self, record: PointRecord) -> None:
        self.records[(record.sparsity, record.seed)] = record
        if self.path is None:
            return
        if not (self.points / "identity.json").is_file():
            atomic_write_text(self.points / "identity.json", json.dumps({"identity": self.identity}, indent=1))
        name = f"point-{record.sparsity:.10f}-seed{record.seed}.json"
        atomic_write_text(self.points / name, json.dumps(record.to_dict(), allow_nan=True))
        rows = [r.to_dict() for _, r in sorted(self.records.items())]
        atomic_write_text(
            self.path, json.dumps({"identity": self.identity, "evaluations": rows}, indent=1, allow_nan=True)
        )


def run_sweep(
    evaluate: Evaluate | TaskSpec,
    config: SweepConfig,
    store_path: str | Path | None = None,
    identity: dict | None = None,
    on_result: Callable[[float, int, float, bool], None] | None = None,
    backend: str | LocalBackend | RayBackend = "local",
    on_point: Callable[[PointRecord], None] | None = None,
    points: Callable[[list[Point]], list[Point]] | None = None,
    refine: bool = True,
) -> SweepResult:
    """Run (or resume) the sweep; ``evaluate(sparsity, seed) -> float``, or a :class:`TaskSpec`
    that builds a task with that method (needed by ``backend="ray"``, which builds it on the
    workers).

    The grid's points go to the backend as one batch; each round of refinement around the
    turning point evaluates ``k`` interior points at once, ``k`` being the points the backend
    can run together (``slots`` over the number of seeds): with one slot this is bisection, with
    ``k`` slots the bracket shrinks ``k + 1``-fold per round.

    Args:
        backend: ``"local"`` (this process), ``"ray"`` (a :class:`RayBackend` with default
            settings), or a backend instance.
        on_point: called with each :class:`PointRecord` as it is recorded.
        points: filter of the grid's points to evaluate (``--shard i/N``); with it, and
            ``refine=False``, a sweep evaluates its share of the grid and stops.
    """
    runner = _backend(evaluate, backend)
    store = SweepStore(store_path, config, identity)
    levels: dict[float, Level] = {}
    count = 0
    rounds = 0

    def measure(sparsities: Sequence[float], refined: bool) -> None:
        nonlocal count
        wanted = [(round(s, 10), seed) for s in sparsities for seed in config.seeds]
        if points is not None and not refined:
            wanted = points(wanted)
        store.reload()  # points another process (a shard, an earlier driver) recorded meanwhile
        todo = [p for p in wanted if store.get(*p) is None]
        for (sparsity, seed), value, worker, seconds, error in runner.run(todo):
            evidence = value if isinstance(value, Measurement) else None
            number = value.value if isinstance(value, Measurement) else float(value)
            record = PointRecord(sparsity, seed, number, worker, seconds, error, refined, rounds, evidence)
            store.put(record)
            count += 1
            if on_point:
                on_point(record)
            if on_result:
                on_result(sparsity, seed, number, refined)
        for sparsity, seed in wanted:
            record = store.records[(sparsity, seed)]
            level = levels.setdefault(sparsity, Level(sparsity, refined=record.refined))
            level.values[seed] = record.value
            if record.evidence is not None:
                level.evidence[seed] = record.evidence

    try:
        measure(config.levels, refined=False)
        if not refine:
            return _result(config, levels, None, None, count, store, rounds)
        dense = levels[0.0].mean
        if not math.isfinite(dense):
            raise SparsityConfigError(
                f"the dense model's {config.metric} is not finite ({dense}); cannot define a tolerance"
            )

        def bracket() -> tuple[float, float | None]:
            ordered = sorted(levels)
            last_ok = essential_from_means(config, ordered, [levels[s].mean for s in ordered])
            later = [s for s in ordered if s > last_ok]
            return last_ok, (later[0] if later else None)

        last_ok, first_fail = bracket()
        k = max(1, runner.slots // len(config.seeds))
        while first_fail is not None and first_fail - last_ok > config.resolution + 1e-9:
            rounds += 1
            step = (first_fail - last_ok) / (k + 1)
            measure([last_ok + step * i for i in range(1, k + 1)], refined=True)
            last_ok, first_fail = bracket()
        return _result(config, levels, last_ok, first_fail, count, store, rounds)
    finally:
        if runner is not backend:
            runner.close()


def _backend(evaluate: Evaluate | TaskSpec, backend: str | LocalBackend | RayBackend) -> LocalBackend | RayBackend:
    if isinstance(backend, (LocalBackend, RayBackend)):
        return backend
    check_choice("backend", backend, BACKENDS)
    if backend == "ray":
        if not isinstance(evaluate, TaskSpec):
            raise SparsityConfigError(
                "backend='ray' builds the task on the workers: pass a TaskSpec(factory, kwargs), not a function"
            )
        return RayBackend(evaluate)
    return LocalBackend(evaluate.build().evaluate if isinstance(evaluate, TaskSpec) else evaluate)


def _result(
    config: SweepConfig,
    levels: dict[float, Level],
    last_ok: float | None,
    first_fail: float | None,
    count: int,
    store: SweepStore,
    rounds: int,
) -> SweepResult:
    ordered = [levels[s] for s in sorted(levels)]
    dense = levels[0.0].mean if 0.0 in levels else math.nan
    knee = find_knee([lv.sparsity for lv in ordered], [config.degradation(lv.mean, dense) for lv in ordered])
    records = [r for (s, _), r in sorted(store.records.items()) if s in levels]
    uncertainty = None
    if last_ok is not None:  # a refined sweep (not one shard's share of the grid)
        uncertainty = bootstrap(
            config, [lv.sparsity for lv in ordered], [lv.values for lv in ordered], [lv.evidence for lv in ordered]
        )
    return SweepResult(config, ordered, last_ok, first_fail, knee, count, rounds, records, uncertainty)
