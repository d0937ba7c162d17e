"""Shared tiny-model fixtures. Tests never touch the network."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.up = nn.Linear(width, hidden)
        self.down = nn.Linear(hidden, width)
        self.norm = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x + self.down(torch.relu(self.up(x))))


class TinyBlocks(nn.Module):
    """Embedding -> ModuleList of MLP blocks -> classifier: the shape of a transformer."""

    def __init__(self, vocab: int = 50, width: int = 16, hidden: int = 32, depth: int = 3, classes: int = 3):
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.blocks = nn.ModuleList(Block(width, hidden) for _ in range(depth))
        self.classifier = nn.Linear(width, classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids)
        for block in self.blocks:
            x = block(x)
        return self.classifier(x.mean(dim=1))


@pytest.fixture
def tiny_blocks() -> TinyBlocks:
    torch.manual_seed(0)
    return TinyBlocks()


def make_tiny_bert(num_labels: int = 2):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=99,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=num_labels,
    )
    return BertForSequenceClassification(config).eval()


def make_tiny_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=99, n_embd=32, n_layer=2, n_head=4, n_positions=64)
    return GPT2LMHeadModel(config).eval()


@pytest.fixture
def tiny_bert():
    return make_tiny_bert()


@pytest.fixture
def tiny_gpt2():
    return make_tiny_gpt2()


@pytest.fixture
def tiny_bert_dir(tmp_path, tiny_bert):
    path = tmp_path / "tiny-bert"
    tiny_bert.save_pretrained(path)
    return path


WORDS = (
    "the a film movie good bad great dull plot cast story scene actor music long short fun boring "
    "best worst love hate very not really quite funny sad slow fast news market game team vote"
).split()


def word_tokenizer():
    """A real (tiny) fast tokenizer built offline: whitespace words, [UNK]/[PAD]/[EOS]."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(["[UNK]", "[PAD]", "[EOS]", *WORDS])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]", pad_token="[PAD]", eos_token="[EOS]")


def random_text(n_words: int, seed: int = 0) -> str:
    import random

    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(n_words))


def save_checkpoint(model, path):
    """A complete local HF checkpoint: weights, config and a (word) tokenizer."""
    model.save_pretrained(path)
    word_tokenizer().save_pretrained(path)
    return path


@pytest.fixture
def tiny_lm_dir(tmp_path):
    return save_checkpoint(make_tiny_gpt2(), tmp_path / "tiny-gpt2")


@pytest.fixture
def tiny_classifier_dir(tmp_path):
    return save_checkpoint(make_tiny_bert(), tmp_path / "tiny-bert-cls")


def sharded_checkpoint(path, model=None, shard: str = "20KB"):
    """A complete local checkpoint saved in several safetensors shards with an index (a tiny
    GPT-2 by default, with the word tokenizer, so calibrated methods run on it too)."""
    model = model if model is not None else make_tiny_gpt2()
    model.save_pretrained(path, max_shard_size=shard)
    word_tokenizer().save_pretrained(path)
    return path


def rewrite_header(shard, edit) -> None:
    """Replace the JSON header of a safetensors file with ``edit(header)`` (data bytes kept)."""
    import json
    from pathlib import Path

    blob = Path(shard).read_bytes()
    size = int.from_bytes(blob[:8], "little")
    header = edit(json.loads(blob[8 : 8 + size]))
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    Path(shard).write_bytes(len(text).to_bytes(8, "little") + text + blob[8 + size :])
