"""The validated view of a checkpoint's weight files (the hostile cases: tests/reliability/)."""

from __future__ import annotations

import json
import shutil

import pytest

from es_plugins import CheckpointError
from es_plugins.io.weight_files import BIN_INDEX_FILE, WeightFiles, check_weight_files
from tests.conftest import make_tiny_gpt2, sharded_checkpoint


def test_a_sharded_checkpoint_reads_into_typed_entries(tmp_path):
    folder = sharded_checkpoint(tmp_path / "m")
    files = WeightFiles.read(folder)
    assert set(files.entries) == set(make_tiny_gpt2().state_dict()) - {"lm_head.weight"}  # tied head not stored
    entry = files.entries["transformer.h.0.attn.c_attn.weight"]
    assert entry.dtype == "F32" and entry.shape == (32, 96) and entry.nbytes == 32 * 96 * 4
    assert entry.file.parent == folder and len(files.shards) == 8
    assert files.nbytes == sum(e.nbytes for e in files.entries.values())


def test_a_hub_snapshot_may_link_into_its_own_blobs(tmp_path):
    """The Hugging Face cache keeps files in blobs/ and links them from snapshots/REV/."""
    repo = tmp_path / "models--acme--tiny"
    snapshot = repo / "snapshots" / ("a" * 40)
    sharded_checkpoint(tmp_path / "src")
    (repo / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    for item in (tmp_path / "src").iterdir():
        shutil.copyfile(item, repo / "blobs" / item.name)
        (snapshot / item.name).symlink_to(f"../../blobs/{item.name}")
    assert len(WeightFiles.read(snapshot).shards) == 8
    (snapshot / "model-00001-of-00008.safetensors").unlink()
    (snapshot / "model-00001-of-00008.safetensors").symlink_to(tmp_path / "src" / "model-00001-of-00008.safetensors")
    with pytest.raises(CheckpointError, match="is a link to .* outside the model folder"):
        WeightFiles.read(snapshot)


def test_allow_external_reads_shards_elsewhere(tmp_path):
    folder = sharded_checkpoint(tmp_path / "m")
    (tmp_path / "elsewhere").mkdir()
    shard = "model-00001-of-00008.safetensors"
    shutil.move(folder / shard, tmp_path / "elsewhere" / shard)
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    index["weight_map"] = {t: (f"../elsewhere/{shard}" if s == shard else s) for t, s in index["weight_map"].items()}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="shards must be plain file names"):
        WeightFiles.read(folder)
    entry = WeightFiles.read(folder, allow_external=True).entries["transformer.wte.weight"]
    assert entry.file.resolve() == (tmp_path / "elsewhere" / shard).resolve()


def test_a_pytorch_bin_index_is_confined_too(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / BIN_INDEX_FILE).write_text(json.dumps({"weight_map": {"w": "/etc/passwd"}}))
    with pytest.raises(CheckpointError, match="'/etc/passwd': shards must be plain file names"):
        check_weight_files(folder)
    assert check_weight_files(tmp_path) is None  # no weights of ours to check: the loader reports that
