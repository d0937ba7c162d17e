"""Load a local Hugging Face checkpoint and save a pruned one (see ``output`` for safe writes).

transformers is imported lazily here: the core's pruning code never needs it, only the
CLI's "read a folder, write a folder" path does. The written checkpoint is a plain HF
folder (weights with exact zeros, unchanged keys) that loads without this package.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import CheckpointError, SparsityConfigError
from .export.compressed import is_compressed_config, load_compressed
from .hf_config import check_checkpoint_dir, model_class, read_config

__all__ = [
    "DTYPES",
    "check_checkpoint_dir",
    "copy_side_files",
    "load_hf_model",
    "model_class",
    "read_config",
    "save_hf_checkpoint",
]

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".h5", ".msgpack", ".ot", ".ckpt", ".gguf")
WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
DTYPES: dict[str, Any] = {
    "auto": "auto",
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}


def _load_error(path: Path, exc: Exception) -> CheckpointError:
    """One line naming the checkpoint and what is wrong with its weights."""
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "from_tf=True" in str(exc) or "weights_only" in str(exc).lower():
        weights = [p.name for p in path.iterdir() if p.suffix == ".bin"]
        return CheckpointError(
            f"{str(path)!r}: {', '.join(weights) or 'the weights file'} could not be unpickled "
            "safely (torch.load weights_only=True refused it or it is corrupt); convert it to "
            "model.safetensors with the tool that wrote it"
        )
    return CheckpointError(f"cannot load the weights of {str(path)!r}: {type(exc).__name__}: {message}")


def load_hf_model(path: str | Path, dtype: str = "auto") -> nn.Module:
    """Load the architecture named in ``config.json`` (``AutoModel`` when none is named), offline."""
    import transformers

    path = Path(path)
    check_checkpoint_dir(path)
    if dtype not in DTYPES:
        raise SparsityConfigError(f"dtype must be one of {', '.join(DTYPES)}; got {dtype!r}")
    config = read_config(path)
    if is_compressed_config(config):
        return load_compressed(path, dtype=None if dtype == "auto" else DTYPES[dtype])
    cls = model_class(path, config)
    try:
        hf_config = transformers.AutoConfig.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{str(path / 'config.json')!r} is not a usable transformers config: {exc}") from None
    try:
        model = cls.from_pretrained(path, config=hf_config, local_files_only=True, dtype=DTYPES[dtype])
    except (OSError, ValueError, RuntimeError, KeyError, TypeError, EOFError) as exc:
        raise _load_error(path, exc) from None
    except Exception as exc:  # safetensors and pickle raise their own types
        if type(exc).__module__.split(".")[0] in ("safetensors", "pickle", "_pickle"):
            raise _load_error(path, exc) from None
        raise
    model.eval()
    return model


def copy_side_files(src: Path, dst: Path, copy_code: bool = False) -> list[str]:
    """Copy the tokenizer/config side files of ``src``'s top level; return what was skipped.

    Only regular files directly in ``src`` are copied: no subfolders (checkpoints, runs,
    caches), no symlink that leads outside ``src``, and no ``.py`` remote code unless asked.
    """
    root = src.resolve()
    skipped = []
    for item in sorted(src.iterdir()):
        if item.name.startswith(".") or item.name in WEIGHT_INDEXES or item.suffix in WEIGHT_SUFFIXES:
            continue
        real = item.resolve()
        if item.is_dir() or not real.is_file() or root not in real.parents or (item.suffix == ".py" and not copy_code):
            skipped.append(item.name)
            continue
        shutil.copyfile(real, dst / item.name)
    return skipped


def save_hf_checkpoint(model: nn.Module, src_dir: Path | None, dst: Path, copy_code: bool = False) -> list[str]:
    """``save_pretrained`` plus the source folder's tokenizer and side files; returns the
    names of source entries that were not copied (see ``copy_side_files``)."""
    skipped = copy_side_files(src_dir, dst, copy_code) if src_dir is not None else []
    save_pretrained: Any = model.save_pretrained  # a transformers model (or one wrapping it)
    save_pretrained(dst, safe_serialization=True)
    return skipped
