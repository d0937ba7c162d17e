"""Weight files are untrusted input: the index and every safetensors header are validated once,
where they enter, into typed :class:`TensorEntry` objects. Nothing downstream sees a raw path
or offset from a file.

What is checked, before any work (each fault is one :class:`CheckpointError` naming the file
and, where there is one, the tensor):

- **paths**: every shard an index names resolves inside the model folder: no ``..``, no
  absolute path, no link that leaves the folder (a Hugging Face cache snapshot may link into
  its own ``blobs/``). ``allow_external=True`` lifts this for a user who means it;
- **headers**: the length field fits the file, the JSON is an object of tensor records, each
  dtype is known and its byte count is ``numel x itemsize``, offsets are in order, do not
  overlap and lie inside the file;
- **the set**: no tensor name in two shards, no two shards with one file name, and the index
  and the headers agree tensor by tensor.

A shared or downloaded checkpoint can name any readable file on the machine in its index;
without these checks that file's unpruned tensors were read and the output's index pointed at it.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CheckpointError

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
BIN_INDEX_FILE = "pytorch_model.bin.index.json"
MAX_HEADER_BYTES = 100_000_000  # safetensors' own limit
# every dtype the safetensors format defines, with its size in bytes
DTYPE_SIZES: dict[str, int] = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U64": 8,
    "U32": 4,
    "U16": 2,
    "U8": 1,
    "BOOL": 1,
}
FLOATING = ("F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2")


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
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.stop - self.start


def read_header(path: Path) -> tuple[dict[str, Any], int]:
    """The JSON header of a safetensors file and the offset where its data starts, with the
    length field checked against the file before anything is read."""
    where = repr(str(path))
    if not path.is_file():
        raise CheckpointError(f"{where} is not a file")
    size = path.stat().st_size
    if size < 8:
        raise CheckpointError(f"{where} is not a safetensors file: {size} bytes, shorter than the 8-byte length field")
    try:
        with open(path, "rb") as handle:
            length = int.from_bytes(handle.read(8), "little")
            if not 0 < length <= min(size - 8, MAX_HEADER_BYTES):
                raise CheckpointError(
                    f"{where}: the header length field says {length} bytes, but the file has {size - 8} after it"
                )
            raw = handle.read(length)
    except OSError as exc:
        raise CheckpointError(f"{where} cannot be read ({exc.strerror or exc})") from None
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"{where}: the header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{where}: the header is a JSON {type(header).__name__}, not an object of tensors")
    return header, 8 + length


def shard_entries(path: Path) -> dict[str, TensorEntry]:
    """The validated tensors of one safetensors file: known dtypes whose byte counts match
    their shapes, in-order non-overlapping offsets inside the file."""
    header, data_start = read_header(path)
    data_size = path.stat().st_size - data_start
    entries: dict[str, TensorEntry] = {}
    for name, info in header.items():
        if name == "__metadata__":
            if info is not None and not isinstance(info, dict):
                raise CheckpointError(f"{str(path)!r}: __metadata__ must be an object of strings")
            continue
        where = f"{str(path)!r}, tensor {name!r}"
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise CheckpointError(f"{where}: a tensor record has exactly dtype, shape and data_offsets")
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if dtype not in DTYPE_SIZES:
            raise CheckpointError(f"{where}: unknown dtype {dtype!r} (safetensors defines {', '.join(DTYPE_SIZES)})")
        if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
            raise CheckpointError(f"{where}: shape must be a list of non-negative integers, got {shape!r}")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(o) for o in offsets)):
            raise CheckpointError(f"{where}: data_offsets must be two non-negative integers, got {offsets!r}")
        begin, end = offsets
        expected = math.prod(shape) * DTYPE_SIZES[dtype]
        if end - begin != expected:
            raise CheckpointError(
                f"{where}: {dtype} {shape} needs {expected} bytes, but its data_offsets span {end - begin}"
            )
        if end > data_size:
            raise CheckpointError(
                f"{where}: data ends at byte {end} of a {data_size}-byte data section (the file is truncated "
                "or its offsets are wrong)"
            )
        entries[name] = TensorEntry(name, path, dtype, tuple(shape), data_start + begin, data_start + end)
    # As the safetensors format requires: the tensors tile the data section, in order, with no
    # overlap and no hole. A hole means the header length or the offsets are off, and every
    # tensor after it would be read from the wrong bytes.
    cursor, previous = 0, None
    for entry in sorted(entries.values(), key=lambda e: (e.start, e.stop)):
        begin = entry.start - data_start
        if begin < cursor:
            raise CheckpointError(
                f"{str(path)!r}: tensors {previous!r} and {entry.name!r} overlap (data bytes {begin} to "
                f"{entry.stop - data_start} start before {cursor})"
            )
        if begin > cursor:
            raise CheckpointError(
                f"{str(path)!r}: data bytes {cursor} to {begin} belong to no tensor (before {entry.name!r}): "
                "the header length or the offsets are wrong"
            )
        cursor, previous = entry.stop - data_start, entry.name
    if cursor != data_size:
        raise CheckpointError(
            f"{str(path)!r}: the tensors cover {cursor} bytes of a {data_size}-byte data section: the header "
            "length or the offsets are wrong, or data was appended"
        )
    return entries


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def confined(folder: Path, name: Any, what: str, allow_external: bool = False) -> Path:
    """``folder / name`` for a file name read from ``what``, refused unless it stays inside
    ``folder`` (or the ``blobs/`` of the hub cache entry that ``folder`` is a snapshot of)."""
    if not isinstance(name, str) or not name or "\x00" in name:
        raise CheckpointError(f"{what} names a shard {name!r}, which is not a file name")
    path = folder / name
    if allow_external:
        return path
    if Path(name).is_absolute() or ".." in Path(name).parts or os.sep in name or "/" in name:
        raise CheckpointError(
            f"{what} names the shard {name!r}: shards must be plain file names inside the model folder "
            "(no folders, '..' or absolute paths; pass allow_external / --allow-external-shards if you mean it)"
        )
    real, roots = path.resolve(), _allowed_roots(folder)
    if path.is_symlink() and not any(real == root or root in real.parents for root in roots):
        raise CheckpointError(
            f"{what}: the shard {name!r} is a link to {str(real)!r}, outside the model folder "
            "(pass allow_external / --allow-external-shards if you mean it)"
        )
    return path


def _allowed_roots(folder: Path) -> list[Path]:
    """The model folder, and for a hub cache snapshot (``models--org--name/snapshots/REV``) the
    entry's ``blobs/``, where the cache keeps the files its snapshots link to."""
    real = folder.resolve()
    roots = [real]
    if folder.parent.name == "snapshots" and folder.parent.parent.name.startswith("models--"):
        roots.append((folder.parent.parent / "blobs").resolve())
    return roots


@dataclass(frozen=True)
class WeightFiles:
    """The validated safetensors weights of a checkpoint folder (one file, or an index and its
    shards): ``entries`` by tensor name, ``shards`` in index order, ``index`` the weight map."""

    folder: Path
    shards: list[Path]
    entries: dict[str, TensorEntry]
    index: dict[str, str] | None

    @classmethod
    def read(cls, folder: str | Path, allow_external: bool = False) -> "WeightFiles":
        """Raises:
        CheckpointError: no safetensors weights, or any of the faults in the module docstring."""
        folder = Path(folder)
        index_path = folder / INDEX_FILE
        index: dict[str, str] | None = None
        if index_path.is_file():
            index = read_weight_map(index_path)
            names = sorted(set(index.values()))
            shards = [confined(folder, name, repr(str(index_path)), allow_external) for name in names]
        elif (folder / SINGLE_FILE).is_file():
            shards = [confined(folder, SINGLE_FILE, repr(str(folder)), allow_external)]
        else:
            raise CheckpointError(f"{str(folder)!r} has no {SINGLE_FILE} or {INDEX_FILE}")
        basenames: dict[str, Path] = {}
        for shard in shards:
            if not shard.is_file():
                raise CheckpointError(f"{str(index_path)!r} names the shard {str(shard)!r}, which is not a file")
            if shard.name in basenames and basenames[shard.name] != shard:
                raise CheckpointError(
                    f"{str(index_path)!r} names two shards with the file name {shard.name!r} "
                    f"({str(basenames[shard.name])!r} and {str(shard)!r})"
                )
            basenames[shard.name] = shard
        entries: dict[str, TensorEntry] = {}
        for shard in shards:
            for name, entry in shard_entries(shard).items():
                if name in entries:
                    raise CheckpointError(
                        f"tensor {name!r} is in two shards, {str(entries[name].file)!r} and {str(shard)!r}: "
                        "which one is the model's is ambiguous"
                    )
                entries[name] = entry
        if index is not None:
            _check_index_agrees(index_path, index, entries, folder)
        return cls(folder, shards, entries, index)

    @property
    def nbytes(self) -> int:
        return sum(e.nbytes for e in self.entries.values())


def read_weight_map(index_path: Path) -> dict[str, str]:
    """The ``weight_map`` of an index file: an object of tensor name -> shard file name."""
    try:
        data = json.loads(index_path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"{str(index_path)!r} is not a readable JSON index ({exc})") from None
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        kind = type(weight_map).__name__ if weight_map is not None else "missing"
        raise CheckpointError(
            f"{str(index_path)!r}: 'weight_map' must be a non-empty object of tensor -> shard ({kind})"
        )
    for tensor, shard in weight_map.items():
        if not isinstance(shard, str):
            raise CheckpointError(f"{str(index_path)!r}: tensor {tensor!r} maps to {shard!r}, not a shard file name")
    return weight_map


def _check_index_agrees(index_path: Path, index: dict[str, str], entries: dict[str, TensorEntry], folder: Path) -> None:
    for tensor, shard in index.items():
        entry = entries.get(tensor)
        if entry is None:
            raise CheckpointError(f"{str(index_path)!r} names tensor {tensor!r}, which no shard's header holds")
        if entry.file != folder / shard:
            raise CheckpointError(
                f"{str(index_path)!r} puts tensor {tensor!r} in {shard!r}, but it is in {entry.file.name!r}"
            )
    unlisted = sorted(set(entries) - set(index))
    if unlisted:
        raise CheckpointError(f"{str(index_path)!r} does not list tensors its shards hold: {unlisted[:5]}")


def check_weight_files(folder: str | Path, allow_external: bool = False) -> WeightFiles | None:
    """Validate ``folder``'s weights before a loader trusts them: the safetensors index, shards
    and headers (returned), or the shard paths of a ``pytorch_model.bin`` index. ``None`` when
    the folder has no safetensors weights."""
    folder = Path(folder)
    if (folder / INDEX_FILE).is_file() or (folder / SINGLE_FILE).is_file():
        return WeightFiles.read(folder, allow_external)
    bin_index = folder / BIN_INDEX_FILE
    if bin_index.is_file():
        for name in sorted(set(read_weight_map(bin_index).values())):
            confined(folder, name, repr(str(bin_index)), allow_external)
    return None
