"""config.json reading and model-class lookup, with errors that name the file."""

from __future__ import annotations

import json

import pytest

from es_plugins import CheckpointError
from es_plugins.io.hf_config import model_class, read_config


def test_config_problems_name_the_file(tiny_bert_dir):
    config = tiny_bert_dir / "config.json"
    data = json.loads(config.read_text())
    assert model_class(tiny_bert_dir, data).__name__ == "BertForSequenceClassification"
    with pytest.raises(CheckpointError, match="not a model class"):
        model_class(tiny_bert_dir, {**data, "architectures": ["NoSuchModel"]})
    config.write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json' is not valid JSON"):
        read_config(tiny_bert_dir)
