"""Chunk work spread over a few threads.

Why threads and not processes: the per-chunk passes over weights (counting keys, zeroing,
counting zeros) are NumPy ufuncs and torch kernels, which release the GIL inside their loops,
so threads scale them with cores and share the memory-mapped shards without copies. Out of
core these passes are what stands between reading a shard and writing its pruned copy
(benchmarks/out_of_core.py). The selection's gathering pass runs its chunks on them too, in
memory as out of core, across tensor boundaries (most of a model's tensors are one chunk).
"""

from __future__ import annotations

import collections
import contextlib
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Generic, Iterable, Iterator, TypeVar

import torch

MAX_WORKERS = 8  # past this the passes are bound by memory bandwidth, not by cores
AHEAD = 2  # items per worker submitted ahead of the one being read (bounds what waits in memory)

T = TypeVar("T")
Item = TypeVar("Item")


def ranges(numel: int, size: int) -> Iterator[tuple[int, int]]:
    """Consecutive ``(start, stop)`` ranges of at most ``size`` covering ``range(numel)``."""
    for start in range(0, numel, size):
        yield start, min(start + size, numel)


def worker_count() -> int:
    """Threads for chunk work: torch's intra-op thread count (what the user configured with
    ``torch.set_num_threads``), capped by the CPUs and :data:`MAX_WORKERS`."""
    return max(1, min(torch.get_num_threads(), os.cpu_count() or 1, MAX_WORKERS))


class ChunkWorkers:
    """Run ``fn(start, stop)`` over consecutive chunks of a range, results in chunk order; one
    worker runs inline (no thread, no pool)."""

    def __init__(self, count: int | None = None):
        self.count = count if count is not None else worker_count()
        self._pool = ThreadPoolExecutor(self.count, thread_name_prefix="es-plugins") if self.count > 1 else None

    def map(self, fn: Callable[[int, int], T], numel: int, size: int) -> list[T]:
        parts = list(ranges(numel, size))
        if self._pool is None or len(parts) < 2:
            return [fn(a, b) for a, b in parts]
        return list(self._pool.map(lambda r: fn(*r), parts))

    def imap(self, fn: Callable[[Item], T], items: Iterable[Item]) -> Iterator[T]:
        """``fn(item)`` for each item, yielded in item order as they finish; at most
        ``AHEAD * count`` are submitted ahead of the one being read, so results wait in memory
        only that long, and ``items`` is consumed lazily. One worker runs inline."""
        if self._pool is None:
            yield from map(fn, items)
            return
        pending: collections.deque[Future[T]] = collections.deque()
        try:
            for item in items:
                pending.append(self._pool.submit(fn, item))
                if len(pending) >= AHEAD * self.count:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:  # the reader stopped (an error, or it had enough): drop what has not started
            for future in pending:
                future.cancel()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()


@contextlib.contextmanager
def chunk_workers(count: int | None = None) -> Iterator[ChunkWorkers]:
    """A :class:`ChunkWorkers` for the block, its threads joined at the end."""
    workers = ChunkWorkers(count)
    try:
        yield workers
    finally:
        workers.close()


class PerThread(Generic[T]):
    """One value per thread, made by ``factory`` on that thread's first :meth:`get`: workers
    never share scratch memory, and a pass allocates its scratch once per thread."""

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._local = threading.local()

    def get(self) -> T:
        try:
            return self._local.value
        except AttributeError:
            self._local.value = self._factory()
            return self._local.value


class ThreadBuffers:
    """One reusable buffer per thread and dtype (grown when a longer one is asked for)."""

    def __init__(self) -> None:
        self._buffers: PerThread[dict[torch.dtype, torch.Tensor]] = PerThread(dict)

    def get(self, numel: int, dtype: torch.dtype) -> torch.Tensor:
        buffers = self._buffers.get()
        buffer = buffers.get(dtype)
        if buffer is None or buffer.numel() < numel:
            buffer = buffers[dtype] = torch.empty(numel, dtype=dtype)
        return buffer[:numel]
