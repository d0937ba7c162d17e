"""The masks file: one writer, used by :meth:`es_plugins.SparsityState.save` and by the
out-of-core paths alike, so both produce the same bytes.

A safetensors file with one bit-packed ``U8`` tensor per mask (data in name order) and its
metadata: ``format``, ``version``, ``shapes``, ``meta`` (the plan and run details) and
``integrity`` (per mask: kept count and a digest of its packed bits). The header is laid out
from the shapes before any mask exists and the integrity records have a fixed width, so a
mask can be written the moment it is computed and dropped; :meth:`MasksFileWriter.close`
fills the records in place. Keys are sorted, so identical masks give identical bytes.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from .packing import pack_mask

MASKS_FORMAT = "es-plugins-masks"
MASKS_VERSION = "2"  # 2 adds the per-mask integrity records; version 1 files still load
MASKS_FILENAME = "sparsity_masks.safetensors"
DIGEST_BYTES = 16


_BYTE_POPCOUNT = np.array([bin(value).count("1") for value in range(256)], dtype=np.uint8)


def _popcount(data: np.ndarray) -> np.ndarray:
    """Set bits per byte: ``np.bitwise_count`` (NumPy 2), or a table lookup on NumPy 1.26."""
    return np.bitwise_count(data) if hasattr(np, "bitwise_count") else _BYTE_POPCOUNT[data]


def mask_record(packed: bytes, numel: int) -> tuple[int, str]:
    """``(kept count, digest)`` of one bit-packed mask, for the integrity records.

    The count is of the first ``numel`` bits in NumPy's default (big-endian) bit order, as
    version-2 files were written: a population count of the whole bytes (8x faster than
    unpacking every bit) plus the leading bits of a partial last byte."""
    data = np.frombuffer(packed, dtype=np.uint8)
    whole = min(numel // 8, data.size)
    kept = int(_popcount(data[:whole]).sum(dtype=np.int64))
    if numel % 8 and data.size > whole:
        kept += int(np.unpackbits(data[whole : whole + 1], count=numel % 8).sum())
    return kept, hashlib.blake2b(packed, digest_size=DIGEST_BYTES).hexdigest()


def integrity_text(records: Mapping[str, tuple[int, int, str]]) -> str:
    """The ``integrity`` metadata: per mask (by canonical name) its kept count, zero-padded to
    the digits of the mask's size (so the text's length is known before the masks exist), and
    its digest. ``records``: name -> (kept, numel, digest)."""
    return json.dumps(
        {name: [f"{kept:0{len(str(numel))}d}", digest] for name, (kept, numel, digest) in records.items()},
        sort_keys=True,
        separators=(",", ":"),
    )


def pwrite_fully(path: Path, data: bytes | memoryview, offset: int) -> None:
    """Write all of ``data`` at ``offset`` of the existing file ``path``: one pwrite moves at
    most ~2 GiB on Linux, so a large tensor or masks file takes several. Every large write of
    the package goes through here."""
    view = memoryview(data).cast("B")
    fd = os.open(path, os.O_WRONLY)
    try:
        done = 0
        while done < len(view):
            done += os.pwrite(fd, view[done:], offset + done)
    finally:
        os.close(fd)


class MasksFileWriter:
    """Write a masks file mask by mask: only the mask being written is ever in memory.

    ``shapes`` and ``meta`` use the canonical names of :meth:`SparsityState.state_dict`.
    """

    def __init__(self, path: str | Path, shapes: Mapping[str, tuple[int, ...]], meta: Mapping[str, Any]):
        self.path = Path(path)
        self._shapes = {name: tuple(shape) for name, shape in shapes.items()}
        self._meta = dict(meta)
        self._records = {name: (0, math.prod(s), "0" * (2 * DIGEST_BYTES)) for name, s in self._shapes.items()}
        self._slots: dict[str, tuple[int, int]] = {}
        offset = 0
        for name in sorted(self._shapes):  # data in name order, as safetensors lays out same-dtype tensors
            size = -(-math.prod(self._shapes[name]) // 8)
            self._slots[name] = (offset, size)
            offset += size
        header = self._header()
        self._data_start = 8 + len(header)
        with open(self.path, "wb") as handle:
            handle.write(len(header).to_bytes(8, "little") + header)
            handle.truncate(self._data_start + offset)
        self._written: set[str] = set()

    def _header(self) -> bytes:
        header: dict[str, Any] = {
            "__metadata__": {
                "format": MASKS_FORMAT,
                "version": MASKS_VERSION,
                "shapes": json.dumps({n: list(s) for n, s in self._shapes.items()}, sort_keys=True),
                "meta": json.dumps(self._meta, sort_keys=True),
                "integrity": integrity_text(self._records),
            }
        }
        for name, (offset, size) in self._slots.items():
            header[name] = {"dtype": "U8", "shape": [size], "data_offsets": [offset, offset + size]}
        text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
        return text + b" " * (-len(text) % 8)  # the data section stays 8-byte aligned

    def write(self, name: str, keep: torch.Tensor) -> None:
        """Pack and write the keep-mask of ``name`` (any device, any layout of its shape)."""
        if name not in self._slots:
            raise KeyError(f"mask {name!r} is not in this file's layout")
        offset, size = self._slots[name]
        packed = pack_mask(keep.detach().to("cpu").reshape(-1)).numpy().tobytes()
        if len(packed) != size:
            raise ValueError(f"mask {name!r}: {len(packed)} packed bytes for a {size}-byte slot")
        pwrite_fully(self.path, packed, self._data_start + offset)
        numel = math.prod(self._shapes[name])
        kept, digest = mask_record(packed, numel)
        self._records[name] = (kept, numel, digest)
        self._written.add(name)

    def close(self) -> None:
        """Check every mask was written and fill in the integrity records."""
        missing = sorted(set(self._slots) - self._written)
        if missing:
            raise ValueError(f"masks never written for {missing[:5]}")
        header = self._header()
        if 8 + len(header) != self._data_start:  # fixed-width records: cannot happen, but never shift data
            raise ValueError(f"{str(self.path)!r}: the integrity records changed the header's length")
        pwrite_fully(self.path, header, 8)
