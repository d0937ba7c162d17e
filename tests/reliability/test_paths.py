"""Shard paths from an index stay in the model folder, for every reader.

An index naming ``../outside/x.safetensors``, an absolute path, a link that leaves the folder or
a subfolder is refused (exit 2, one line naming the shard, nothing written) by in-memory and
out-of-core pruning, inspect, compress and export. With ``--allow-external-shards`` the user's
choice is honoured and OUT gets its own copies and an index naming only files inside OUT.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

import pytest

from es_plugins.cli import main as cli
from tests.reliability.conftest import damaged_copy

INDEX = "model.safetensors.index.json"
S3 = "model-00003-of-00008.safetensors"  # holds block 0's attention and ln_2


def _point_index_at(folder: Path, name: str) -> None:
    data = json.loads((folder / INDEX).read_text())
    data["weight_map"] = {t: (name if s == S3 else s) for t, s in data["weight_map"].items()}
    (folder / INDEX).write_text(json.dumps(data))


def _outside_relative(folder: Path) -> None:
    outside = folder.parent / "outside"
    outside.mkdir()
    shutil.move(folder / S3, outside / S3)
    _point_index_at(folder, f"../outside/{S3}")


def _absolute(folder: Path) -> None:
    outside = folder.parent / "elsewhere"
    outside.mkdir()
    shutil.move(folder / S3, outside / S3)
    _point_index_at(folder, str((outside / S3).resolve()))


def _link_outside(folder: Path) -> None:
    outside = folder.parent / "linked"
    outside.mkdir()
    shutil.move(folder / S3, outside / S3)
    (folder / S3).symlink_to(outside / S3)


def _subfolder(folder: Path) -> None:
    (folder / "sub").mkdir()
    shutil.move(folder / S3, folder / "sub" / S3)
    _point_index_at(folder, f"sub/{S3}")


ESCAPES: dict[str, tuple[Callable[[Path], None], str]] = {
    "../ in the index": (_outside_relative, rf"names the shard '\.\./outside/{S3}': shards must be plain file names"),
    "absolute path": (_absolute, rf"names the shard '/.*/elsewhere/{S3}': shards must be plain file names"),
    "link leaving the folder": (_link_outside, rf"the shard '{S3}' is a link to '.*/linked/{S3}', outside"),
    "subfolder": (_subfolder, rf"names the shard 'sub/{S3}': shards must be plain file names"),
}
COMMANDS = {
    "prune": ["prune", "--model", "{m}", "{out}"],
    "prune --low-memory": ["prune", "--model", "{m}", "{out}", "--low-memory"],
    "prune wanda --low-memory": [
        *("prune", "--model", "{m}", "{out}", "--low-memory", "--method", "wanda"),
        *("--calib", "packaged:bbc-calib", "--calib-seq-len", "16"),
    ],
    "inspect": ["inspect", "--model", "{m}"],
    "compress": ["compress", "--model", "{m}", "{out}"],
    "export": ["export", "--model", "{m}", "{out}"],
}


def escaped(pristine: Path, tmp_path: Path, escape: str) -> Path:
    return damaged_copy(pristine, tmp_path, ESCAPES[escape][0])


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("escape", list(ESCAPES))
def test_every_reader_refuses_a_shard_outside_the_model_folder(pristine, tmp_path, capsys, escape, command):
    import re

    folder = escaped(pristine, tmp_path, escape)
    argv = [a.format(m=folder, out=tmp_path / "out") for a in COMMANDS[command]]
    with pytest.raises(SystemExit) as exit_info:
        cli(argv)
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert exit_info.value.code == 2 and len(errors) == 1, err
    assert re.search(ESCAPES[escape][1], errors[0]), errors[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("low_memory", [True, False], ids=["low-memory", "in-memory"])
def test_allow_external_shards_gives_out_its_own_copies_and_index(pristine, tmp_path, low_memory):
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    folder = escaped(pristine, tmp_path, "../ in the index")
    out = tmp_path / "out"
    argv = ["prune", "--model", str(folder), str(out), "--sparsity", "0.5", "--allow-external-shards"]
    assert cli(argv + (["--low-memory"] if low_memory else [])) == 0
    # out of core keeps the shard layout with a new index; in memory save_pretrained writes its own files
    index = out / INDEX
    weight_map = json.loads(index.read_text())["weight_map"] if low_memory else {"*": "model.safetensors"}
    assert index.is_file() == low_memory
    assert all(
        "/" not in name and (out / name).is_file() and not (out / name).is_symlink() for name in weight_map.values()
    )
    # the layer that came from outside is pruned in OUT, as the report says
    model = AutoModelForCausalLM.from_pretrained(out)
    weight = model.transformer.h[0].attn.c_attn.weight
    report = json.loads((out / "sparsity_report.json").read_text())
    layer = next(r for r in report["layers"] if r["name"] == "transformer.h.0.attn.c_attn.weight")
    assert float((weight == 0).float().mean()) == pytest.approx(layer["sparsity"]) and layer["sparsity"] > 0.2
    with safe_open(str(folder.parent / "outside" / S3), framework="pt") as untouched:  # the source is not modified
        assert float((untouched.get_tensor("transformer.h.0.attn.c_attn.weight") == 0).float().mean()) == 0.0
