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

from ..errors import CheckpointError, SparsityConfigError
from .compressed import is_compressed_config, load_compressed
from .hf_config import check_checkpoint_dir, model_class, read_config
from .weight_files import FLOATING, WeightFiles, check_weight_files

__all__ = [
    "DTYPES",
    "TOKENIZER_FILES",
    "check_checkpoint_dir",
    "copy_side_files",
    "load_hf_model",
    "load_tokenizer",
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


def load_hf_model(
    path: str | Path, dtype: str = "auto", allow_external: bool = False, files: WeightFiles | None = None
) -> nn.Module:
    """Load the architecture named in ``config.json`` (``AutoModel`` when none is named), offline.

    The weight files are validated first (:func:`es_plugins.io.weight_files.check_weight_files`):
    shards outside ``path`` (unless ``allow_external``), damaged headers, an index that
    disagrees with them, and tensors whose stored dtype mislabels a floating weight are errors.
    ``files``: the folder's weight files as a caller already read and validated them (read once).
    """
    import transformers

    path = Path(path)
    check_checkpoint_dir(path)
    if dtype not in DTYPES:
        raise SparsityConfigError(f"dtype must be one of {', '.join(DTYPES)}; got {dtype!r}")
    files = files if files is not None else check_weight_files(path, allow_external)
    config = read_config(path)
    if is_compressed_config(config):
        return load_compressed(path, dtype=None if dtype == "auto" else DTYPES[dtype])
    cls = model_class(path, config)
    try:
        hf_config = transformers.AutoConfig.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{str(path / 'config.json')!r} is not a usable transformers config: {exc}") from None
    if files is not None:  # before transformers converts mislabelled bytes (or fails on them)
        with torch.device("meta"):
            _check_stored_dtypes(cls._from_config(hf_config), files)
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


def _check_stored_dtypes(model: nn.Module, files: WeightFiles) -> None:
    """A floating weight loaded from integer data (a header declaring F32 bytes as I32) would be
    converted silently into garbage: refuse it, naming the file and the tensor."""
    floating = {name for name, value in model.state_dict(keep_vars=True).items() if value.is_floating_point()}
    for entry in files.entries.values():
        if entry.dtype in FLOATING:
            continue
        loaded_as = [
            n for n in floating if n == entry.name or n.endswith("." + entry.name) or entry.name.endswith("." + n)
        ]
        if loaded_as:
            raise CheckpointError(
                f"{str(entry.file)!r}, tensor {entry.name!r}: stored as {entry.dtype}, but it loads into the "
                f"floating weight {loaded_as[0]!r} (the header mislabels its data)"
            )


TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "spiece.model",
    "sentencepiece.bpe.model",
)


def load_tokenizer(path: str | Path, needed_for: str) -> Any:
    """The checkpoint's own tokenizer, offline, or one clear error saying what needs it and
    which files are missing (a pruned folder written by hand often lacks them)."""
    from transformers import AutoTokenizer

    path = Path(path)
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise CheckpointError(
            f"{needed_for} needs the model's tokenizer, and {str(path)!r} has no tokenizer files "
            f"({', '.join(TOKENIZER_FILES[:4])}, ...): copy them from the checkpoint it came from"
        )
    try:
        return AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise CheckpointError(
            f"{needed_for} needs the model's tokenizer, and the one in {str(path)!r} does not load "
            f"({type(exc).__name__}: {first}); replace its tokenizer files"
        ) from None


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
