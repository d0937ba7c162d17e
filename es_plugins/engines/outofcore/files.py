"""Safetensors checkpoints as files, not as memory: memory-mapped reads, in-place writes of one
tensor, and a masks file written one mask at a time.

Why not ``safetensors.torch.load_file``: it materialises every tensor in anonymous memory. Here a
tensor is a ``numpy.memmap`` view of the file (file-backed pages the kernel can drop), a pruned
tensor is written back at its byte offset in a copy of the shard (same layout, dtype and header),
and the masks file is laid out up front so each mask goes to disk as soon as it exists.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import shutil
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import torch

from ...errors import CheckpointError
from ...io.weight_files import FLOATING, INDEX_FILE, SINGLE_FILE, TensorEntry, WeightFiles
from ...masks.masks_file import pwrite_fully
from ...masks.report import LayerStats, SparsityReport, count_zeros

__all__ = [
    "STORAGE_DTYPES",
    "INDEX_FILE",
    "SINGLE_FILE",
    "ShardedCheckpoint",
    "TensorEntry",
    "copy_checkpoint_files",
    "tensor_slot",
    "write_tensor_in_place",
]

# safetensors dtype -> (numpy storage dtype, torch dtype) that out-of-core pruning reads; bf16 is
# stored as uint16 and viewed.
STORAGE_DTYPES: dict[str, tuple[Any, torch.dtype]] = {
    "F64": (np.float64, torch.float64),
    "F32": (np.float32, torch.float32),
    "F16": (np.float16, torch.float16),
    "BF16": (np.uint16, torch.bfloat16),
    "I64": (np.int64, torch.int64),
    "I32": (np.int32, torch.int32),
    "I16": (np.int16, torch.int16),
    "I8": (np.int8, torch.int8),
    "U8": (np.uint8, torch.uint8),
    "BOOL": (np.bool_, torch.bool),
}


class ShardedCheckpoint:
    """Every tensor of a safetensors checkpoint folder (one file, or shards with an index),
    validated from the headers alone (:class:`es_plugins.io.weight_files.WeightFiles`) and read
    through memory maps.

    Raises:
        CheckpointError: no safetensors weights, a shard outside the folder, a damaged header
            or index (see :mod:`es_plugins.io.weight_files`), or a dtype this path does not read.
    """

    def __init__(self, folder: str | Path | WeightFiles, allow_external: bool = False):
        """``folder``, or its :class:`WeightFiles` when they were read and validated already."""
        self.files = folder if isinstance(folder, WeightFiles) else WeightFiles.read(folder, allow_external)
        self.folder = self.files.folder
        self.shards = self.files.shards
        self.entries: dict[str, TensorEntry] = self.files.entries
        for entry in self.entries.values():
            if entry.dtype not in STORAGE_DTYPES:
                raise CheckpointError(
                    f"{str(entry.file)!r}, tensor {entry.name!r}: dtype {entry.dtype} is not read out of core "
                    f"({', '.join(STORAGE_DTYPES)}); prune it in memory"
                )

    @property
    def nbytes(self) -> int:
        return self.files.nbytes

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: entry.shape for name, entry in self.entries.items()}

    def tensor(self, name: str) -> torch.Tensor:
        """A read-only, file-backed view of tensor ``name`` (no copy: pages come from the file)."""
        entry = self.entries[name]
        storage, dtype = STORAGE_DTYPES[entry.dtype]
        if entry.numel == 0:
            return torch.empty(entry.shape, dtype=dtype)
        array = np.memmap(entry.file, dtype=storage, mode="r", offset=entry.start, shape=(entry.numel,))
        flat = torch.from_numpy(array)  # shares the mapping; torch warns that it is read-only
        return (flat.view(dtype) if dtype == torch.bfloat16 else flat).view(entry.shape)


def copy_checkpoint_files(src: ShardedCheckpoint, dst: Path, skip: Iterable[TensorEntry] = ()) -> None:
    """Copy the shards into ``dst`` under their own file names, every byte except the slots of
    ``skip`` (the tensors the caller writes itself, once, with :func:`write_tensor_in_place`):
    each output byte is written once, by the kernel for what is copied (no anonymous memory).
    ``dst`` gets its own index naming only those copies: it never points outside ``dst``, even
    when the source's shards were allowed to live elsewhere."""
    holes: dict[Path, list[tuple[int, int]]] = {}
    for entry in skip:
        holes.setdefault(entry.file, []).append((entry.start, entry.stop))
    for shard in src.shards:
        _copy_except(shard, dst / shard.name, sorted(holes.get(shard, [])))
    index = src.folder / INDEX_FILE
    if src.files.index is not None:
        original = json.loads(index.read_text())
        local = {tensor: src.entries[tensor].file.name for tensor in src.files.index}
        (dst / INDEX_FILE).write_text(json.dumps({**original, "weight_map": local}, indent=2) + "\n")


def _copy_except(source: Path, target: Path, holes: list[tuple[int, int]]) -> None:
    """``target`` = ``source`` with the byte ranges ``holes`` left to be written later (the file
    has its full size at once; a hole reads as zeros until it is filled)."""
    if not holes:
        shutil.copyfile(source, target)
        return
    size = source.stat().st_size
    with open(source, "rb") as src_file, open(target, "wb") as dst_file:
        dst_file.truncate(size)
        position = 0
        for start, stop in [*holes, (size, size)]:
            _copy_range(src_file.fileno(), dst_file.fileno(), position, start - position)
            position = max(position, stop)


def _copy_range(src_fd: int, dst_fd: int, offset: int, count: int) -> None:
    """``count`` bytes at ``offset`` from one file to the same offset of the other, in the kernel
    where it can (``copy_file_range``), else through a bounded buffer."""
    done = 0
    while done < count:
        try:
            copied = os.copy_file_range(src_fd, dst_fd, count - done, offset + done, offset + done)
        except (AttributeError, OSError):  # not Linux, or a filesystem without it
            chunk = os.pread(src_fd, min(count - done, 1 << 24), offset + done)
            copied = os.pwrite(dst_fd, chunk, offset + done) if chunk else 0
        if copied <= 0:
            raise CheckpointError(f"short copy at byte {offset + done} of a shard ({count - done} bytes left)")
        done += copied


def streamed_report(
    checkpoint: ShardedCheckpoint,
    targets: Iterable[TensorEntry],
    layers: list[LayerStats],
    pattern: tuple[int, int] | None,
    meta: dict[str, Any],
) -> SparsityReport:
    """The report of an out-of-core run, as an in-memory run would make it: the targets' lines,
    and every floating tensor counted for the all-parameters line (the others read from the
    mapped shards)."""
    floating = [e for e in checkpoint.entries.values() if e.dtype in FLOATING]
    target_keys = {e.name for e in targets}
    all_zeros = sum(count_zeros(checkpoint.tensor(e.name)) for e in floating if e.name not in target_keys)
    return SparsityReport(
        layers=layers,
        all_params=sum(e.numel for e in floating),
        all_zeros=all_zeros + sum(layer.zeros for layer in layers),
        pattern=pattern,
        meta=meta,
    )


@contextlib.contextmanager
def tensor_slot(entry: TensorEntry, folder: Path) -> Iterator[torch.Tensor]:
    """Tensor ``entry``'s bytes in ``folder``'s copy of its shard, as a writable tensor of its
    dtype and shape (a shared memory map of the file): a value computed into it reaches the
    file through the page cache, with no buffer of its own and no copy through ``pwrite``
    (faster than :func:`write_tensor_in_place`; benchmarks/out_of_core.py times the whole path). The
    slot's bounds are checked against the file before it is mapped."""
    _, dtype = STORAGE_DTYPES[entry.dtype]
    path = folder / entry.file.name
    base = entry.start - entry.start % mmap.ALLOCATIONGRANULARITY
    with open(path, "r+b") as handle:
        size = os.fstat(handle.fileno()).st_size
        if entry.stop > size or entry.start < 0:
            raise CheckpointError(f"{entry.name}: bytes {entry.start}-{entry.stop} lie outside {str(path)!r} ({size})")
        mapped = mmap.mmap(handle.fileno(), entry.stop - base, offset=base)
    try:
        raw = torch.frombuffer(mapped, dtype=torch.uint8, count=entry.nbytes, offset=entry.start - base)
        yield raw.view(dtype).view(entry.shape)
        del raw
    finally:
        with contextlib.suppress(BufferError):  # a view still held elsewhere: unmapped when it is freed
            mapped.close()


def write_tensor_in_place(entry: TensorEntry, folder: Path, value: torch.Tensor) -> None:
    """Overwrite tensor ``entry`` in ``folder``'s copy of its shard with ``value`` (same shape;
    cast to the stored dtype, so a bf16 checkpoint stays bf16)."""
    _, dtype = STORAGE_DTYPES[entry.dtype]
    if tuple(value.shape) != entry.shape:
        raise CheckpointError(f"{entry.name}: writing shape {tuple(value.shape)} over {entry.shape}")
    data = value.detach().to("cpu", dtype).contiguous().reshape(-1)
    raw = memoryview((data.view(torch.uint16) if dtype == torch.bfloat16 else data).numpy()).cast("B")  # no copy
    if len(raw) != entry.nbytes:
        raise CheckpointError(f"{entry.name}: {len(raw)} bytes do not fit its {entry.nbytes}-byte slot")
    pwrite_fully(folder / entry.file.name, raw, entry.start)
