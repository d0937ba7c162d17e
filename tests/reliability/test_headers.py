"""Damaged safetensors headers and indexes: each fault is a typed error naming the file (and the
tensor), exit 2 from the CLI with nothing written, in memory and out of core alike; a fuzzer
mutating headers gets a typed error or the correct result, never a wrong model or a crash.

Each row: how the checkpoint is damaged -> the words its one-line error must contain.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path
from typing import Callable

import pytest
import torch
from safetensors.torch import load_file

from es_plugins import CheckpointError, OMPConfig, SparsityPlan
from es_plugins.cli import main as cli
from es_plugins.engines.outofcore import prune_tensorwise
from tests.conftest import rewrite_header
from tests.reliability.conftest import damaged_copy

INDEX = "model.safetensors.index.json"
S2, S3, S5, S8 = (f"model-0000{i}-of-00008.safetensors" for i in (2, 3, 5, 8))


def _edit_index(folder: Path, edit: Callable[[dict], None]) -> None:
    data = json.loads((folder / INDEX).read_text())
    edit(data)
    (folder / INDEX).write_text(json.dumps(data))


def _set_length(folder: Path, length: int) -> None:
    path = folder / S3
    blob = path.read_bytes()
    path.write_bytes(length.to_bytes(8, "little") + blob[8:])


def _length(path: Path) -> int:
    return int.from_bytes(path.read_bytes()[:8], "little")


def _truncate(folder: Path, name: str, keep: int | None) -> None:
    path = folder / name
    blob = path.read_bytes()
    path.write_bytes(blob[: (len(blob) - 100) if keep is None else keep])


def _retype(name: str, **fields) -> Callable[[dict], dict]:
    def edit(header: dict) -> dict:
        header[name].update(fields)
        return header

    return edit


def _duplicate_in_s5(folder: Path) -> None:
    """S5 also claims a tensor that S3 holds (its own appended bytes): which one is the model's?"""
    blob = (folder / S5).read_bytes()
    size = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + size])
    end = max(v["data_offsets"][1] for k, v in header.items() if k != "__metadata__")
    header["transformer.h.0.ln_2.weight"] = {"dtype": "F32", "shape": [32], "data_offsets": [end, end + 128]}
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    (folder / S5).write_bytes(len(text).to_bytes(8, "little") + text + blob[8 + size :] + bytes(128))


def _overlap(header: dict) -> dict:
    """The first tensor grows by one float into the second one's bytes (no hole is left)."""
    first = min((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][0])
    begin, end = header[first]["data_offsets"]
    header[first] = {"dtype": "F32", "shape": [(end - begin) // 4 + 1], "data_offsets": [begin, end + 4]}
    return header


def _folder_as_shard(folder: Path) -> None:
    (folder / S2).unlink()
    (folder / S2).mkdir()


FAULTS: dict[str, tuple[Callable[[Path], None], str]] = {
    "header length beyond the file": (lambda f: _set_length(f, 10**6), rf"{S3}.*header length field says 1000000"),
    "header length 2^63": (lambda f: _set_length(f, 2**63), rf"{S3}.*header length field says {2**63}"),
    "corrupt header JSON": (lambda f: _set_length(f, 9), rf"{S3}.*header is not valid JSON"),
    "header not an object": (lambda f: rewrite_header(f / S3, lambda h: [1, 2]), rf"{S3}.*JSON list, not an object"),
    "unknown dtype": (
        lambda f: rewrite_header(f / S3, _retype("transformer.h.0.ln_2.bias", dtype="F8_E9")),
        rf"{S3}.*'transformer.h.0.ln_2.bias': unknown dtype 'F8_E9'",
    ),
    "dtype that does not match its bytes": (
        lambda f: rewrite_header(f / S3, _retype("transformer.h.0.ln_2.bias", dtype="F16")),
        r"'transformer.h.0.ln_2.bias': F16 \[32\] needs 64 bytes, but its data_offsets span 128",
    ),
    "shape that does not match its bytes": (
        lambda f: rewrite_header(f / S3, _retype("transformer.h.0.ln_2.bias", shape=[31])),
        r"'transformer.h.0.ln_2.bias': F32 \[31\] needs 124 bytes",
    ),
    "truncated shard": (lambda f: _truncate(f, S3, None), rf"{S3}.*data ends at byte .* truncated"),
    "header length one byte short": (
        lambda f: _set_length(f, _length(f / S3) - 1),
        rf"{S3}.*the tensors cover \d+ bytes of a \d+-byte data section",
    ),
    "bytes appended after the data": (
        lambda f: (f / S3).write_bytes((f / S3).read_bytes() + bytes(16)),
        rf"{S3}.*the tensors cover \d+ bytes of a \d+-byte data section",
    ),
    "overlapping offsets": (
        lambda f: rewrite_header(f / S3, _overlap),
        rf"{S3}': tensors '[\w.]+' and '[\w.]+' overlap",
    ),
    "empty shard": (lambda f: _truncate(f, S2, 0), rf"{S2}.*0 bytes, shorter than the 8-byte length field"),
    "a folder as a shard": (_folder_as_shard, rf"names the shard .*{S2}.*which is not a file"),
    "missing shard": (lambda f: (f / S8).unlink(), rf"names the shard .*{S8}.*which is not a file"),
    "a tensor in two shards": (_duplicate_in_s5, r"tensor 'transformer.h.0.ln_2.weight' is in two shards"),
    "index names an absent tensor": (
        lambda f: _edit_index(f, lambda d: d["weight_map"].update({"transformer.h.9.x": S3})),
        r"names tensor 'transformer.h.9.x', which no shard's header holds",
    ),
    "index puts a tensor in the wrong shard": (
        lambda f: _edit_index(f, lambda d: d["weight_map"].update({"transformer.h.0.ln_2.weight": S5})),
        rf"puts tensor 'transformer.h.0.ln_2.weight' in '{S5}', but it is in '{S3}'",
    ),
    "index omits a tensor": (
        lambda f: _edit_index(f, lambda d: d["weight_map"].pop("transformer.h.0.ln_2.weight")),
        r"does not list tensors its shards hold: \['transformer.h.0.ln_2.weight'\]",
    ),
    "weight_map is a list": (
        lambda f: _edit_index(f, lambda d: d.update(weight_map=list(d["weight_map"]))),
        r"'weight_map' must be a non-empty object of tensor -> shard \(list\)",
    ),
    "index not JSON": (lambda f: (f / INDEX).write_text("{oops"), r"is not a readable JSON index"),
    "F32 data declared as I32": (
        lambda f: rewrite_header(f / S3, _retype("transformer.h.0.attn.c_attn.weight", dtype="I32")),
        r"'transformer.h.0.attn.c_attn.weight': stored as I32, .*the header mislabels its data",
    ),
}


def damaged(pristine: Path, tmp_path: Path, fault: str) -> Path:
    return damaged_copy(pristine, tmp_path, FAULTS[fault][0])


@pytest.mark.parametrize("fault", list(FAULTS))
def test_the_api_raises_a_typed_error_naming_the_fault(pristine, tmp_path, fault):
    folder = damaged(pristine, tmp_path, fault)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(CheckpointError, match=FAULTS[fault][1]):
        prune_tensorwise(folder, out, SparsityPlan(OMPConfig(0.5)))


@pytest.mark.parametrize("mode", ["in-memory", "low-memory", "wanda-low-memory"])
@pytest.mark.parametrize("fault", list(FAULTS))
def test_the_cli_exits_2_with_one_line_and_writes_nothing(pristine, tmp_path, capsys, fault, mode):
    folder = damaged(pristine, tmp_path, fault)
    extra = {
        "in-memory": [],
        "low-memory": ["--low-memory"],
        "wanda-low-memory": [
            "--low-memory",
            "--method",
            "wanda",
            "--calib",
            "packaged:bbc-calib",
            "--calib-seq-len",
            "16",
        ],
    }[mode]
    with pytest.raises(SystemExit) as exit_info:
        cli(["prune", "--model", str(folder), str(tmp_path / "out"), *extra])
    err = capsys.readouterr().err.strip()
    errors = [line for line in err.splitlines() if line.startswith("es-plugins prune: error: ")]
    assert exit_info.value.code == 2 and len(errors) == 1 and "Traceback" not in err
    assert re.search(FAULTS[fault][1], errors[0]), err
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


def _mutate_header(folder: Path, rng: random.Random) -> str:
    """One random damage to one shard's header region: a byte flip, a length field, an offset,
    a name or a dtype. Returns what was done (for the failure message)."""
    shard = folder / rng.choice(sorted(p.name for p in folder.glob("model-*.safetensors")))
    blob = bytearray(shard.read_bytes())
    size = int.from_bytes(blob[:8], "little")
    kind = rng.choice(["flip", "length", "offset", "name", "dtype"])
    if kind == "flip":
        at = rng.randrange(8, 8 + size)
        blob[at] ^= 1 << rng.randrange(8)
    elif kind == "length":
        blob[:8] = max(0, size + rng.choice([-9, -1, 1, 7, 2**40])).to_bytes(8, "little")
    else:
        header = json.loads(blob[8 : 8 + size])
        name = rng.choice([k for k in header if k != "__metadata__"])
        if kind == "offset":
            header[name]["data_offsets"][rng.randrange(2)] += rng.choice([-4, 4, 10**6])
        elif kind == "name":
            header[name[:-1] + "X"] = header.pop(name)
        else:
            header[name]["dtype"] = rng.choice(["I32", "F16", "BF16", "U8", "F64", "BOOL"])
        text = json.dumps(header).encode()
        text += b" " * (-len(text) % 8)
        blob = bytearray(len(text).to_bytes(8, "little") + text + blob[8 + size :])
    shard.write_bytes(bytes(blob))
    return f"{kind} in {shard.name}"


def _content(folder: Path) -> dict:
    """What a pruned folder means: every tensor by name, the masks file's bytes, the index's map
    (a harmless flip inside a shard's free-form metadata is copied through, and changes nothing)."""
    content: dict = {"masks": (folder / "sparsity_masks.safetensors").read_bytes()}
    content["weight_map"] = json.loads((folder / INDEX).read_text())["weight_map"]
    for shard in folder.glob("model-*.safetensors"):
        content.update({f"tensor {k}": v for k, v in load_file(str(shard)).items()})
    return content


def test_fuzzed_headers_give_a_typed_error_or_the_correct_model(pristine, tmp_path):
    """48 seeded mutations of a sharded checkpoint's headers: pruning either raises one of our
    typed errors (all ValueError subclasses) or writes exactly what the undamaged one gives."""
    reference = tmp_path / "reference"
    reference.mkdir()
    prune_tensorwise(pristine, reference, SparsityPlan(OMPConfig(0.5)))
    expected = _content(reference)
    outcomes = {"typed error": 0, "same output": 0}
    for seed in range(48):
        folder = tmp_path / f"fuzz-{seed}" / "model"
        shutil.copytree(pristine, folder)
        done = _mutate_header(folder, random.Random(seed))
        out = folder.parent / "out"
        out.mkdir()
        try:
            prune_tensorwise(folder, out, SparsityPlan(OMPConfig(0.5)))
        except ValueError:
            outcomes["typed error"] += 1
            continue
        written = _content(out)
        same = written.keys() == expected.keys() and all(
            torch.equal(written[k], expected[k]) if isinstance(written[k], torch.Tensor) else written[k] == expected[k]
            for k in expected
        )
        assert same, f"seed {seed} ({done}) gave another output without an error"
        outcomes["same output"] += 1
    assert outcomes["typed error"] >= 24, outcomes  # most damage is caught, not silently survived
