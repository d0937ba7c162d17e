"""Load a local Hugging Face checkpoint and write a pruned one atomically.

transformers is imported lazily here: the core's pruning code never needs it, only the
CLI's "read a folder, write a folder" path does. The written checkpoint is a plain HF
folder (weights with exact zeros, unchanged keys) that loads without this package.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .errors import CheckpointError

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".h5", ".msgpack", ".ot", ".ckpt", ".gguf")
WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
DTYPES = {"auto": "auto", "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


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


def load_hf_model(path: str | Path, dtype: str = "auto") -> nn.Module:
    """Load the architecture named in ``config.json`` (``AutoModel`` as fallback), offline."""
    import transformers

    path = Path(path)
    check_checkpoint_dir(path)
    if dtype not in DTYPES:
        raise CheckpointError(f"dtype must be one of {', '.join(DTYPES)}; got {dtype!r}")
    from .export.compressed import is_compressed_checkpoint, load_compressed

    if is_compressed_checkpoint(path):
        return load_compressed(path, dtype=None if dtype == "auto" else DTYPES[dtype])
    config = transformers.AutoConfig.from_pretrained(path, local_files_only=True)
    arch = (getattr(config, "architectures", None) or [None])[0]
    model_cls = getattr(transformers, arch, None) if arch else None
    if model_cls is None:
        model_cls = transformers.AutoModel
    model = model_cls.from_pretrained(path, local_files_only=True, dtype=DTYPES[dtype])
    model.eval()
    return model


def _copy_side_files(src: Path, dst: Path) -> None:
    """Copy tokenizer/config side files (anything that is not a weight file)."""
    for item in src.iterdir():
        if item.name.startswith(".") or item.name in WEIGHT_INDEXES or item.suffix in WEIGHT_SUFFIXES:
            continue
        target = dst / item.name
        if item.is_dir():
            shutil.copytree(item, target, dirs_exist_ok=True)
        else:
            shutil.copy2(item, target)


def write_checkpoint_atomically(
    out_dir: str | Path,
    write: Callable[[Path], None],
    overwrite: bool = False,
) -> Path:
    """Run ``write(tmp_dir)`` and move the result to ``out_dir`` only if it succeeds,
    so a failed run leaves nothing behind."""
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise CheckpointError(f"output {str(out)!r} exists and is not empty; pass --overwrite to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp creates 0700; the result should look like mkdir's
    try:
        write(tmp)
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def save_hf_checkpoint(model: nn.Module, src_dir: Path | None, dst: Path) -> None:
    """``save_pretrained`` plus the source folder's tokenizer and side files."""
    if src_dir is not None:
        _copy_side_files(src_dir, dst)
    model.save_pretrained(dst, safe_serialization=True)
