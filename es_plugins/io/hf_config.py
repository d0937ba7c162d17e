"""Read a Hugging Face checkpoint folder's ``config.json`` and find its model class, with
errors that name the file. Shared by the plain and the compressed checkpoint loaders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import CheckpointError


def check_checkpoint_dir(path: Path) -> None:
    """Raise a clear error unless ``path`` looks like a HF model folder."""
    if not path.exists():
        raise CheckpointError(f"model path {str(path)!r} does not exist")
    if not path.is_dir():
        raise CheckpointError(f"model path {str(path)!r} is a file; expected a Hugging Face checkpoint folder")
    if not (path / "config.json").is_file():
        found = sorted(p.name for p in path.iterdir())[:15]
        raise CheckpointError(
            f"{str(path)!r} is not a Hugging Face checkpoint: no config.json (found: {found or 'nothing'})"
        )
    if not any(p.suffix in (".safetensors", ".bin") for p in path.iterdir()):
        raise CheckpointError(f"{str(path)!r} has a config.json but no model.safetensors / pytorch_model.bin")


def read_config(path: Path) -> dict:
    """``config.json`` as a dict, with an error that names the file when it is not JSON."""
    config_file = path / "config.json"
    try:
        data = json.loads(config_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{str(config_file)!r} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{str(config_file)!r} must hold a JSON object, got {type(data).__name__}")
    return data


def model_class(path: Path, config: dict) -> Any:
    """The transformers class named by ``architectures`` (``AutoModel`` when it names none).

    An unknown or malformed name is an error: falling back to the bare model would silently
    drop the task head the user saved.
    """
    import transformers

    archs = config.get("architectures")
    if archs is None or archs == []:
        return transformers.AutoModel
    if not isinstance(archs, list) or not all(isinstance(a, str) and a for a in archs):
        raise CheckpointError(
            f"{str(path / 'config.json')!r}: 'architectures' must be a list of transformers "
            f'class names (e.g. ["BertForSequenceClassification"]), got {archs!r}'
        )
    found = getattr(transformers, archs[0], None)
    if not (isinstance(found, type) and issubclass(found, transformers.PreTrainedModel)):
        raise CheckpointError(
            f"{str(path / 'config.json')!r} names architecture {archs[0]!r}, which is not a "
            f"model class of transformers {transformers.__version__}"
        )
    return found
