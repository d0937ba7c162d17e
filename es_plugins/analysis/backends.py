"""Where a sweep's points run: in this process, one after another (``local``), or as Ray tasks
across a cluster (``ray``), several at a time.

A *point* is one (sparsity, seed) evaluation: one prune plus one evaluation or fine-tune,
independent of every other point. A backend takes a batch of points and reports each one as it
completes (a :class:`PointRecord`: value, worker, wall time, error); the sweep records it at
once and decides what to evaluate next.

How the model and data reach Ray workers (the choice, and why): the task is shipped as a
:class:`TaskSpec` (a factory and its arguments) put **once** into Ray's object store; each
worker process builds the task from it the first time it runs a point and keeps it for every
later point, so a checkpoint is loaded once per worker, not once per point. The checkpoint
itself is read from its path, which must be one all workers share (a network filesystem, the
hub cache, or one machine): putting its weights in the object store would hold another full
copy of the model in every node's shared memory, and pickling them per task would ship
gigabytes per point. The evaluation data (texts, examples) is small and travels inside the
spec, through the object store, once.
"""

from __future__ import annotations

import math
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

from ..errors import SparsityConfigError
from .noise import Measurement

Point = tuple[float, int]  # (sparsity, seed)
BACKENDS = ("local", "ray")


@dataclass(frozen=True)
class PointRecord:
    """One evaluated point: its value (NaN when it failed), where and how long it ran."""

    sparsity: float
    seed: int
    value: float
    worker: str
    seconds: float
    error: str | None = None
    refined: bool = False
    round: int = 0
    evidence: Measurement | None = None  # per-unit evidence, for the sweep's bootstrap

    def to_dict(self) -> dict[str, Any]:
        data = {
            "sparsity": self.sparsity,
            "seed": self.seed,
            "value": self.value,
            "worker": self.worker,
            "seconds": round(self.seconds, 3),
            "refined": self.refined,
            "round": self.round,
        }
        if self.error is not None:
            data["error"] = self.error
        if self.evidence is not None:
            data["evidence"] = self.evidence.to_dict()
        return data


@dataclass(frozen=True)
class TaskSpec:
    """How to build a sweep task anywhere: ``factory(**kwargs)`` must return an object with
    ``evaluate(sparsity, seed) -> float | Measurement`` (and ``layer_sparsity(sparsity)`` for the report).
    ``factory`` must be importable by name on the workers (a class or module-level function)."""

    factory: Callable[..., Any]
    kwargs: dict[str, Any] = field(default_factory=dict)

    def build(self) -> Any:
        return self.factory(**self.kwargs)


def this_worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


Value = float | Measurement  # what a task's evaluate returns; a Measurement carries its evidence


def _timed(evaluate: Callable[[float, int], Value], sparsity: float, seed: int) -> tuple[Value, str, float]:
    started = time.perf_counter()
    value = evaluate(sparsity, seed)
    if not isinstance(value, Measurement):
        value = float(value)
    return value, this_worker(), time.perf_counter() - started


class LocalBackend:
    """Points one after another in this process; an exception stops the sweep (as before),
    and the points already recorded are kept for a resume."""

    name = "local"
    slots = 1

    def __init__(self, evaluate: Callable[[float, int], Value]):
        self.evaluate = evaluate

    def run(self, points: Sequence[Point]) -> Iterator[tuple[Point, Value, str, float, str | None]]:
        for sparsity, seed in points:
            value, worker, seconds = _timed(self.evaluate, sparsity, seed)
            yield (sparsity, seed), value, worker, seconds, None

    def close(self) -> None:
        pass


_WORKER_TASKS: dict[str, Any] = {}  # in each Ray worker process: the built task, by spec key


def _evaluate_on_worker(key: str, spec: TaskSpec, sparsity: float, seed: int) -> tuple[Value, str, float]:
    """The body of one Ray task: build the task once per worker process, then evaluate."""
    task = _WORKER_TASKS.get(key)
    if task is None:
        task = _WORKER_TASKS[key] = spec.build()
    return _timed(task.evaluate, sparsity, seed)


def require_ray() -> Any:
    """Import Ray, or one line naming the extra that installs it."""
    try:
        import ray
    except ImportError:
        raise ImportError("--backend ray needs Ray: pip install 'es-plugins[ray]'") from None
    return ray


class RayBackend:
    """Each point is a Ray task with ``cpus_per_point`` CPUs and ``gpus_per_point`` GPUs; as many
    run at once as the cluster has room for (``slots``). A task whose worker dies is retried
    ``max_retries`` times by Ray; after that, or on an exception in the task, the point is
    reported failed with its error (the sweep records it as NaN, flagged in the report).

    ``address``: a running cluster (``"auto"``, ``"ray://host:10001"``, ...); default: the
    ``RAY_ADDRESS`` environment variable when set, else a new local cluster of this machine.
    """

    name = "ray"

    def __init__(
        self,
        spec: TaskSpec,
        address: str | None = None,
        cpus_per_point: float = 1.0,
        gpus_per_point: float = 0.0,
        max_retries: int = 2,
        num_cpus: int | None = None,
    ):
        if not (isinstance(cpus_per_point, (int, float)) and cpus_per_point > 0):
            raise SparsityConfigError(f"cpus_per_point must be > 0, got {cpus_per_point!r}")
        if not (isinstance(gpus_per_point, (int, float)) and gpus_per_point >= 0):
            raise SparsityConfigError(f"gpus_per_point must be >= 0, got {gpus_per_point!r}")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise SparsityConfigError(f"max_retries must be an integer >= 0, got {max_retries!r}")
        ray = require_ray()
        self._ray = ray
        self._started = False
        if not ray.is_initialized():
            address = address or os.environ.get("RAY_ADDRESS") or None
            options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if address is None and num_cpus is not None:
                options["num_cpus"] = num_cpus
            ray.init(address=address, **options)
            self._started = True
        resources = ray.cluster_resources()
        self.slots = max(1, int(resources.get("CPU", 1) // cpus_per_point))
        if gpus_per_point:
            if resources.get("GPU", 0) < gpus_per_point:
                raise SparsityConfigError(
                    f"--gpus-per-point {gpus_per_point}: the Ray cluster has {resources.get('GPU', 0):g} GPU(s)"
                )
            self.slots = min(self.slots, max(1, int(resources["GPU"] // gpus_per_point)))
        self._spec_ref = ray.put(spec)  # once: every task gets this reference, not a copy
        self._key = f"{id(self)}-{time.time_ns()}"
        self._remote = ray.remote(_evaluate_on_worker).options(
            num_cpus=cpus_per_point, num_gpus=gpus_per_point, max_retries=max_retries
        )

    def run(self, points: Sequence[Point]) -> Iterator[tuple[Point, Value, str, float, str | None]]:
        """Submit every point, then yield each as it completes (not in submission order)."""
        ray = self._ray
        pending = {
            self._remote.remote(self._key, self._spec_ref, sparsity, seed): (sparsity, seed)
            for sparsity, seed in points
        }
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            point = pending.pop(done[0])
            try:
                value, worker, seconds = ray.get(done[0])
                yield point, value, worker, seconds, None
            except Exception as exc:  # a dead worker past its retries, or the task's own error
                yield point, math.nan, "-", 0.0, _one_line(exc)

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()


def _one_line(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None)
    text = " ".join(str(cause if cause is not None else exc).split())
    return f"{type(exc).__name__}: {text[:500]}" if text else type(exc).__name__
