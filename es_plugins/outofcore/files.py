"""Safetensors checkpoints as files, not as memory: memory-mapped reads, in-place writes of one
tensor, and a masks file written one mask at a time.

Why not ``safetensors.torch.load_file``: it materialises every tensor in anonymous memory. Here a
tensor is a ``numpy.memmap`` view of the file (file-backed pages the kernel can drop), a pruned
tensor is written back at its byte offset in a copy of the shard (same layout, dtype and header),
and the masks file is laid out up front so each mask goes to disk as soon as it exists.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from ..errors import CheckpointError
from ..masks.packing import pack_mask
from ..state import MASKS_FORMAT, MASKS_VERSION

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
# safetensors dtype -> (numpy storage dtype, torch dtype); bf16 is stored as uint16 and viewed.
DTYPES: dict[str, tuple[Any, torch.dtype]] = {
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


@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor lives: its shard, byte range (absolute in the file), dtype, shape."""

    name: str
    file: Path
    dtype: str
    shape: tuple[int, ...]
    start: int
    stop: int

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1

    @property
    def nbytes(self) -> int:
        return self.stop - self.start


def read_header(path: Path) -> tuple[dict[str, Any], int]:
    """The JSON header of a safetensors file and the offset where its data starts."""
    try:
        with open(path, "rb") as handle:
            size = int.from_bytes(handle.read(8), "little")
            if not 0 < size < 100_000_000:
                raise ValueError(f"header size {size}")
            header = json.loads(handle.read(size))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{str(path)!r} is not a readable safetensors file ({exc})") from None
    return header, 8 + size


class ShardedCheckpoint:
    """Every tensor of a safetensors checkpoint folder (one file, or shards with an index),
    found from the headers alone.

    Raises:
        CheckpointError: no safetensors weights, an index naming missing shards, or a header
            that is not safetensors.
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        index = self.folder / INDEX_FILE
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
            except (ValueError, KeyError, TypeError) as exc:
                raise CheckpointError(f"{str(index)!r} is not a safetensors index ({exc})") from None
            self.shards = sorted({self.folder / name for name in weight_map.values()})
        elif (self.folder / SINGLE_FILE).is_file():
            self.shards = [self.folder / SINGLE_FILE]
        else:
            raise CheckpointError(f"{str(self.folder)!r} has no {SINGLE_FILE} or {INDEX_FILE}")
        missing = [str(s) for s in self.shards if not s.is_file()]
        if missing:
            raise CheckpointError(f"{str(index)!r} names shards that do not exist: {missing[:3]}")
        self.entries: dict[str, TensorEntry] = {}
        for shard in self.shards:
            header, data_start = read_header(shard)
            for name, info in header.items():
                if name == "__metadata__":
                    continue
                if info["dtype"] not in DTYPES:
                    raise CheckpointError(f"{shard.name}: tensor {name!r} has unsupported dtype {info['dtype']}")
                begin, end = info["data_offsets"]
                self.entries[name] = TensorEntry(
                    name, shard, info["dtype"], tuple(info["shape"]), data_start + begin, data_start + end
                )

    @property
    def nbytes(self) -> int:
        return sum(e.nbytes for e in self.entries.values())

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: entry.shape for name, entry in self.entries.items()}

    def tensor(self, name: str) -> torch.Tensor:
        """A read-only, file-backed view of tensor ``name`` (no copy: pages come from the file)."""
        entry = self.entries[name]
        storage, dtype = DTYPES[entry.dtype]
        if entry.numel == 0:
            return torch.empty(entry.shape, dtype=dtype)
        array = np.memmap(entry.file, dtype=storage, mode="r", offset=entry.start, shape=(entry.numel,))
        flat = torch.from_numpy(array)  # shares the mapping; torch warns that it is read-only
        return (flat.view(dtype) if dtype == torch.bfloat16 else flat).view(entry.shape)


def copy_checkpoint_files(src: ShardedCheckpoint, dst: Path) -> None:
    """Copy the shards (and the index) byte for byte into ``dst``: the kernel copies, so no
    anonymous memory is used; pruned tensors are then written in place."""
    for shard in src.shards:
        shutil.copyfile(shard, dst / shard.name)
    index = src.folder / INDEX_FILE
    if index.is_file():
        shutil.copyfile(index, dst / INDEX_FILE)


def write_tensor_in_place(entry: TensorEntry, folder: Path, value: torch.Tensor) -> None:
    """Overwrite tensor ``entry`` in ``folder``'s copy of its shard with ``value`` (same shape;
    cast to the stored dtype, so a bf16 checkpoint stays bf16)."""
    _, dtype = DTYPES[entry.dtype]
    if tuple(value.shape) != entry.shape:
        raise CheckpointError(f"{entry.name}: writing shape {tuple(value.shape)} over {entry.shape}")
    data = value.detach().to("cpu", dtype).contiguous().reshape(-1)
    raw = memoryview((data.view(torch.uint16) if dtype == torch.bfloat16 else data).numpy()).cast("B")  # no copy
    if len(raw) != entry.nbytes:
        raise CheckpointError(f"{entry.name}: {len(raw)} bytes do not fit its {entry.nbytes}-byte slot")
    fd = os.open(folder / entry.file.name, os.O_WRONLY)
    try:
        done = 0
        while done < len(raw):  # one pwrite moves at most ~2 GiB on Linux: a large tensor takes several
            done += os.pwrite(fd, raw[done:], entry.start + done)
    finally:
        os.close(fd)


class StreamingMasksFile:
    """A masks file byte-identical to :meth:`es_plugins.SparsityState.save`'s, written one mask
    at a time: the header (sorted keys, data in name order) is laid out from the shapes first,
    so only the mask being written is ever in memory. ``shapes`` and ``meta`` use the canonical
    names of :meth:`SparsityState.state_dict`.
    """

    def __init__(self, path: Path, shapes: dict[str, tuple[int, ...]], meta: dict[str, Any]):
        self.path = Path(path)
        header: dict[str, Any] = {
            "__metadata__": {
                "format": MASKS_FORMAT,
                "version": MASKS_VERSION,
                "shapes": json.dumps({n: list(s) for n, s in shapes.items()}, sort_keys=True),
                "meta": json.dumps(meta, sort_keys=True),
            }
        }
        offset = 0
        self._slots: dict[str, tuple[int, int]] = {}
        for name in sorted(shapes):  # data in name order, as safetensors lays out same-dtype tensors
            shape = shapes[name]
            size = -(-int(np.prod(shape)) // 8) if shape else 1
            header[name] = {"dtype": "U8", "shape": [size], "data_offsets": [offset, offset + size]}
            self._slots[name] = (offset, size)
            offset += size
        text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
        text += b" " * (-len(text) % 8)
        self._data_start = 8 + len(text)
        with open(self.path, "wb") as handle:
            handle.write(len(text).to_bytes(8, "little") + text)
            handle.truncate(self._data_start + offset)
        self._written: set[str] = set()

    def write(self, name: str, keep: torch.Tensor) -> None:
        offset, size = self._slots[name]
        packed = pack_mask(keep.detach().to("cpu").reshape(-1)).numpy().tobytes()
        if len(packed) != size:
            raise CheckpointError(f"mask {name!r}: {len(packed)} packed bytes for a {size}-byte slot")
        fd = os.open(self.path, os.O_WRONLY)
        try:
            os.pwrite(fd, packed, self._data_start + offset)
        finally:
            os.close(fd)
        self._written.add(name)

    def close(self) -> None:
        missing = sorted(set(self._slots) - self._written)
        if missing:
            raise CheckpointError(f"masks never written for {missing[:5]}")


def unique_shards(entries: Iterable[TensorEntry]) -> list[Path]:
    return sorted({e.file for e in entries})
