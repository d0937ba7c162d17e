"""Local text and labeled data: token blocks, calibration windows, clear data errors."""

from __future__ import annotations

import pytest

from es_plugins.errors import DataError
from es_plugins.io.datasets import calibration_blocks, load_labeled, read_texts, token_blocks
from tests.conftest import random_text, word_tokenizer


def test_token_and_calibration_blocks_have_the_asked_shape_and_are_seeded():
    tokenizer, texts = word_tokenizer(), [random_text(200, seed) for seed in range(5)]
    blocks = token_blocks(tokenizer, texts, num_tokens=64, seq_len=16)
    assert tuple(blocks.shape) == (4, 16)
    a = calibration_blocks(tokenizer, texts, samples=3, seq_len=8, seed=1)
    b = calibration_blocks(tokenizer, texts, samples=3, seq_len=8, seed=1)
    assert tuple(a.shape) == (3, 8) and bool((a == b).all())


def test_read_and_labeled_files(tmp_path):
    (tmp_path / "a.txt").write_text("first text")
    (tmp_path / "b.txt").write_text("second text")
    assert sorted(read_texts(tmp_path)) == ["first text", "second text"]
    csv = tmp_path / "data.csv"
    csv.write_text("text,label\ngood film,pos\nbad film,neg\nfine,pos\n")
    texts, labels, names = load_labeled(csv)
    assert texts == ["good film", "bad film", "fine"] and len(set(labels)) == 2 and sorted(names) == ["neg", "pos"]
    with pytest.raises(DataError):
        read_texts(tmp_path / "missing.txt")
