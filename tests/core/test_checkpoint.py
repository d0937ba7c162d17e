"""Loading and saving local HF checkpoints."""

from __future__ import annotations

import pytest
import torch

from es_plugins import CheckpointError, SparsityConfigError
from es_plugins.io.checkpoint import load_hf_model, save_hf_checkpoint


def test_round_trip_keeps_the_architecture_and_weights(tiny_bert_dir, tmp_path):
    model = load_hf_model(tiny_bert_dir)
    assert type(model).__name__ == "BertForSequenceClassification"
    (tiny_bert_dir / "vocab.txt").write_text("[PAD]\n")
    (tiny_bert_dir / "runs").mkdir()
    (tmp_path / "out").mkdir()  # the caller's fresh folder (write_folder_atomically's temp folder)
    skipped = save_hf_checkpoint(model, tiny_bert_dir, tmp_path / "out")
    assert skipped == ["runs"] and (tmp_path / "out" / "vocab.txt").is_file()
    again = load_hf_model(tmp_path / "out", dtype="bfloat16")
    assert again.classifier.weight.dtype == torch.bfloat16


def test_bad_paths_and_options(tmp_path, tiny_bert_dir):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_hf_model(tmp_path / "missing")
    with pytest.raises(SparsityConfigError, match="dtype must be one of"):
        load_hf_model(tiny_bert_dir, dtype="int3")
