"""Final saves carry their masks, report and model-card section."""

from __future__ import annotations

import json

import pytest

from es_plugins import OMPConfig, Sparsifier, SparsityState
from es_plugins.io.artifacts import REPORT_FILENAME, write_sparsity_files
from es_plugins.masks.state import MASKS_FILENAME


def test_finalize_makes_save_pretrained_write_the_sparsity_files(tiny_bert, tmp_path):
    sparsifier = Sparsifier(OMPConfig(0.5))
    sparsifier.setup(tiny_bert)
    sparsifier.finalize().save_pretrained(tmp_path / "out")
    report = json.loads((tmp_path / "out" / REPORT_FILENAME).read_text())
    assert report["targets"]["sparsity"] == pytest.approx(0.5, abs=1e-3)
    assert "Sparsity (es-plugins)" in (tmp_path / "out" / "README.md").read_text()
    masks = SparsityState.load(tmp_path / "out" / MASKS_FILENAME, tiny_bert)
    assert masks.count_nonzero_pruned(tiny_bert) == 0


def test_a_second_write_replaces_only_our_card_section(tiny_bert, tmp_path):
    (tmp_path / "README.md").write_text("# My model\n\nuser notes\n")
    state = Sparsifier(OMPConfig(0.3)).setup(tiny_bert)
    write_sparsity_files(tmp_path, tiny_bert, state)
    write_sparsity_files(tmp_path, tiny_bert, state)
    card = (tmp_path / "README.md").read_text()
    assert card.startswith("# My model") and card.count("Sparsity (es-plugins)") == 1
