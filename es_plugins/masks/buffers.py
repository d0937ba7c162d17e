"""Result buffers whose pages are mapped in one system call instead of one fault per page.

Why: a first call's masks are fresh memory, and every 4 KiB page of it faults on its first
write. On the VMs we measure on, that first touch costs about three read passes of fp32
weights (benchmarks/omp_passes.py, "first touch"), more than the selection's own comparisons.
``madvise(MADV_POPULATE_WRITE)`` (Linux 5.14+) maps the whole range at once, without a trap per
page; memory the allocator reuses is already mapped and costs only the walk over it.
"""

from __future__ import annotations

import ctypes
import mmap
import sys

import torch

# Below this a buffer is left to fault page by page: few pages, not worth a system call.
PREFAULT_MIN_BYTES = 1 << 20
MADV_POPULATE_WRITE = 23  # <linux/mman.h>; older kernels answer EINVAL and nothing changes


def _madvise() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    """The C library's ``madvise`` on Linux (the advice number is Linux's); None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError, TypeError):  # no C library symbols to look up
        return None
    function.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    function.restype = ctypes.c_int
    return function


_MADVISE = _madvise()


def prefault(tensor: torch.Tensor) -> bool:
    """Map every page of a CPU ``tensor``'s memory now (the start rounded down to its page:
    populating a page that is already mapped changes nothing). Returns whether the kernel did;
    where it cannot, the pages fault on first write as usual."""
    nbytes = tensor.numel() * tensor.element_size()
    if _MADVISE is None or tensor.device.type != "cpu" or nbytes < PREFAULT_MIN_BYTES:
        return False
    start = tensor.data_ptr() - tensor.data_ptr() % mmap.PAGESIZE
    return _MADVISE(start, tensor.data_ptr() + nbytes - start, MADV_POPULATE_WRITE) == 0


def prefaulted_bools(numel: int) -> torch.Tensor:
    """An uninitialised flat bool tensor whose pages are already mapped (see :func:`prefault`)."""
    out = torch.empty(numel, dtype=torch.bool)
    prefault(out)
    return out
