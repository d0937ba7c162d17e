"""Process memory: what is measured (anonymous RSS, not file-backed pages), how the peak is
sampled, and how freed buffers go back to the OS so the peak is the same run to run.

Why anonymous memory: out-of-core pruning reads weights through memory maps; those pages are
file-backed (the kernel drops them under pressure), so ``VmHWM`` would count the checkpoint
itself. ``RssAnon`` is what the process really holds.

Why an allocator setting: glibc serves large blocks from its heap arenas once its dynamic mmap
threshold has grown, and keeps freed chunks there, so a peak can depend on what ran before. A
fixed mmap threshold makes every large buffer its own mapping, returned to the OS on free.
Measured (benchmarks/global_omp.py, 5 interleaved runs): at 352M weights the peak is 0.26x the
weights in every run with it, 0.26-0.53x without; but every large buffer is then mapped and
page-faulted afresh, 1.5-1.9x the time. So it is opt-in (the benchmarks use it for repeatable
memory figures), not a CLI default.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
import time
from pathlib import Path

M_MMAP_THRESHOLD = -3
STABLE_MMAP_THRESHOLD = 8 << 20  # 8 MiB: weight-sized buffers are mmaps; 4 MiB chunk scratch stays in the heap

_libc: ctypes.CDLL | None = None


def _glibc() -> ctypes.CDLL | None:
    global _libc
    if _libc is None:
        name = ctypes.util.find_library("c")
        try:
            _libc = ctypes.CDLL(name or "libc.so.6")
            _libc.mallopt  # noqa: B018  (glibc only; musl and macOS lack it)
        except (OSError, AttributeError):
            return None
    return _libc


def stable_allocator(threshold: int = STABLE_MMAP_THRESHOLD) -> bool:
    """Serve allocations >= ``threshold`` bytes by mmap (freed to the OS at once) and stop glibc
    from raising that threshold (process-wide); returns False where glibc is not the allocator."""
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, int(threshold)))


def release_memory() -> None:
    """Return freed heap memory to the OS now (glibc ``malloc_trim``)."""
    libc = _glibc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


def rss_anon(pid: int | None = None) -> int:
    """Anonymous resident memory of a process in bytes (0 where /proc is unavailable)."""
    status = Path(f"/proc/{pid or 'self'}/status")
    try:
        for line in status.read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class PeakAnonSampler:
    """Samples ``RssAnon`` from a thread while the block runs; ``peak - baseline`` is what the
    work added. Sampling every ``interval`` seconds can miss a spike shorter than that.

    Example:
        >>> with PeakAnonSampler() as sampler:
        ...     data = bytearray(1 << 20)
        >>> sampler.peak >= sampler.baseline
        True
    """

    def __init__(self, interval: float = 0.002):
        self.interval = interval
        self.baseline = 0
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_anon())
            time.sleep(self.interval)

    def __enter__(self) -> "PeakAnonSampler":
        self.baseline = self.peak = rss_anon()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_anon())

    @property
    def added(self) -> int:
        return max(self.peak - self.baseline, 0)


def available_memory() -> int:
    """``MemAvailable`` in bytes (what can be allocated without swapping); 0 if unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def default_threads() -> int:
    """Intra-op threads for CLI work: the cores this process may use minus those other processes
    are running on right now, at least one. Uses the instantaneous count of runnable tasks
    (``/proc/loadavg``), not the 1-minute average, which still counts work that has ended."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        running = int(Path("/proc/loadavg").read_text().split()[3].split("/")[0])
    except (OSError, IndexError, ValueError):
        return cores
    return max(1, min(cores, cores - (running - 1)))
