"""Compressed Hugging Face checkpoints in the compressed-tensors format.

A pruned model saved by ``save_pretrained`` stores its zeros densely: "pruned, but not
smaller". compressed-tensors (a maintained format with loaders in transformers and vLLM)
stores each targeted weight as its non-zero values plus a bitmask: about ``1 - s + 1/32`` of
the fp32 bytes at sparsity ``s``. Two layouts:

- ``bitmask`` (``sparse-bitmask``): any sparsity; transformers 4.57 cannot load it
  directly, so :func:`load_compressed` decompresses with compressed-tensors' own code.
- ``2:4`` (``sparse-24-bitmask``): 2:4 Linear weights; ``from_pretrained(..., dtype=torch.float32)``
  loads it bit-exactly (without ``dtype`` transformers silently loads it as fp16).

compressed-tensors 0.20 dropped the sparse compressors (loading such a file there gives
random weights without an error) and 0.19 no longer takes ``sparsity_config``; only the 0.14
series is tested (0.14.0.1, the lock's pin), so the version is checked before reading or
writing, and the ``onnx`` extra asks for exactly that series.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import CheckpointError, SparsityConfigError
from ..masks.patterns import nm_compliance
from ..masks.targets import Target, TargetSpec, resolve_targets
from .hf_config import model_class, read_config

FORMATS = {"bitmask": "sparse-bitmask", "2:4": "sparse-24-bitmask"}
LOADABLE_FORMATS = tuple(FORMATS.values())
WEIGHTS_FILE = "model.safetensors"
SUPPORTED_SERIES = (0, 14)
SUPPORTED = "compressed-tensors>=0.14.0.1,<0.15 (tested: 0.14.0.1)"


@dataclass(frozen=True)
class CompressionSummary:
    """Bytes before and after, for the whole file and for the compressed weights alone."""

    format: str
    layers: int
    dense_bytes: int
    file_bytes: int
    targets_dense_bytes: int
    targets_compressed_bytes: int

    @property
    def ratio(self) -> float:
        return self.file_bytes / self.dense_bytes

    @property
    def targets_ratio(self) -> float:
        return self.targets_compressed_bytes / self.targets_dense_bytes if self.targets_dense_bytes else 1.0

    def format_line(self) -> str:
        return (
            f"{self.format}: {self.layers} layers; file {self.file_bytes / 2**20:.2f} MiB = {self.ratio:.3f}x dense "
            f"({self.dense_bytes / 2**20:.2f} MiB); compressed weights {self.targets_ratio:.3f}x their dense bytes"
        )


def _compressed_tensors():
    try:
        import compressed_tensors
    except ImportError:
        raise ImportError(f"compressed checkpoints need {SUPPORTED}: pip install 'es-plugins[onnx]'") from None
    major, minor = (int(x) for x in compressed_tensors.__version__.split(".")[:2])
    if (major, minor) != SUPPORTED_SERIES:
        raise ImportError(
            f"compressed-tensors {compressed_tensors.__version__} is installed; sparse checkpoints need "
            f"{SUPPORTED} (0.19 changed the compressor API, 0.20 removed the sparse compressors and would "
            "give random weights): pip install 'compressed-tensors>=0.14.0.1,<0.15'"
        )
    return compressed_tensors


def is_compressed_config(config: dict) -> bool:
    """True when a parsed ``config.json`` declares a compressed-tensors sparsity format."""
    data = config.get("quantization_config") or {}
    return (
        isinstance(data, dict)
        and data.get("quant_method") == "compressed-tensors"
        and bool(data.get("sparsity_config"))
    )


def is_compressed_checkpoint(path: str | Path) -> bool:
    """True when ``path/config.json`` declares a compressed-tensors sparsity format."""
    config = Path(path) / "config.json"
    return config.is_file() and is_compressed_config(read_config(Path(path)))


def _two_four_problems(targets: list[Target]) -> list[str]:
    problems = []
    for target in targets:
        if target.in_axis != 1 or target.param.dim() != 2:
            problems.append(f"{target.name} (input axis {target.in_axis}; the 2:4 format needs nn.Linear)")
            continue
        groups, ok = nm_compliance(target.param.detach(), 2, 4, 1)
        if groups == 0 or ok != groups:
            problems.append(f"{target.name} ({ok}/{groups} groups are 2:4)")
    return problems


def choose_format(targets: list[Target], fmt: str) -> str:
    """Validate ``fmt`` (``auto``, ``bitmask``, ``2:4``); ``auto`` picks 2:4 when every target allows it."""
    if fmt not in ("auto", *FORMATS):
        raise SparsityConfigError(f"format must be one of auto, {', '.join(FORMATS)}; got {fmt!r}")
    problems = _two_four_problems(targets)
    if fmt == "2:4" and problems:
        raise SparsityConfigError(
            f"--format 2:4 needs every targeted weight to be 2:4 along its input axis; not: "
            f"{'; '.join(problems[:5])}{' ...' if len(problems) > 5 else ''}. Use --format bitmask"
        )
    if fmt == "auto":
        return "bitmask" if problems else "2:4"
    return fmt


def _unique_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """State dict without tied duplicates (safetensors refuses shared storage)."""
    seen: set[int] = set()
    state = {}
    for name, tensor in model.state_dict().items():
        key = tensor.data_ptr()
        if tensor.numel() and key in seen:
            continue
        seen.add(key)
        state[name] = tensor
    return state


def save_compressed(
    model: nn.Module, out_dir: str | Path, fmt: str = "auto", targets: TargetSpec | None = None
) -> CompressionSummary:
    """Write ``model``'s weights to ``out_dir/model.safetensors`` in a compressed-tensors sparse
    format and record it in ``config.json`` (``out_dir`` must already hold the config)."""
    _compressed_tensors()
    from compressed_tensors.compressors import ModelCompressor
    from compressed_tensors.config import SparsityCompressionConfig
    from safetensors.torch import save_file

    out = Path(out_dir)
    chosen = resolve_targets(model, targets or TargetSpec())
    fmt = choose_format(chosen, fmt)
    modules = sorted({t.module_name for t in chosen})
    zeros = sum(int((t.param == 0).sum()) for t in chosen)
    numel = sum(t.param.numel() for t in chosen)
    config = SparsityCompressionConfig.load_from_registry(
        FORMATS[fmt],
        targets=modules,
        global_sparsity=zeros / numel,
        sparsity_structure="2:4" if fmt == "2:4" else "unstructured",
    )
    compressor = ModelCompressor(sparsity_config=config)
    dense = _unique_state_dict(model)
    compressed = compressor.compress(model, state_dict=dict(dense))
    for stale in [*out.glob("model*.safetensors"), out / "model.safetensors.index.json"]:
        stale.unlink(missing_ok=True)
    save_file({k: v.contiguous() for k, v in compressed.items()}, str(out / WEIGHTS_FILE), metadata={"format": "pt"})
    compressor.update_config(str(out))
    target_keys = {t.name for t in chosen}
    prefixes = tuple(f"{m}." for m in modules)
    return CompressionSummary(
        format=fmt,
        layers=len(modules),
        dense_bytes=sum(t.numel() * t.element_size() for t in dense.values()),
        file_bytes=(out / WEIGHTS_FILE).stat().st_size,
        targets_dense_bytes=sum(dense[k].numel() * dense[k].element_size() for k in target_keys if k in dense),
        targets_compressed_bytes=sum(
            v.numel() * v.element_size() for k, v in compressed.items() if k.startswith(prefixes) and k not in dense
        ),
    )


def load_compressed(path: str | Path, dtype: torch.dtype | None = None) -> nn.Module:
    """Load a compressed-tensors sparse checkpoint back to a plain dense model, bit-exact.

    The returned model has no compression config left, so ``save_pretrained`` writes an
    ordinary checkpoint that loads without this package.
    """
    _compressed_tensors()
    import transformers
    from compressed_tensors.compressors import ModelCompressor

    path = Path(path)
    if not is_compressed_checkpoint(path):
        raise CheckpointError(
            f"{path} is not a compressed-tensors sparse checkpoint (no sparsity_config in config.json)"
        )
    raw = read_config(path)
    stored = (raw["quantization_config"].get("sparsity_config") or {}).get("format")
    if stored not in LOADABLE_FORMATS:
        raise CheckpointError(
            f"{str(path / 'config.json')!r}: sparsity format {stored!r} cannot be decompressed; "
            f"supported: {', '.join(LOADABLE_FORMATS)}"
        )
    if not raw.get("architectures"):
        raise CheckpointError(f"{path}/config.json names no transformers architecture")
    model_cls = model_class(path, raw)
    arch = model_cls.__name__
    config = transformers.AutoConfig.from_pretrained(path, local_files_only=True)
    compressor = ModelCompressor.from_pretrained(str(path))
    if compressor is None or compressor.sparsity_compressor is None:
        raise CheckpointError(f"{path}: compressed-tensors found no sparsity compressor for its config")
    del config.quantization_config
    with torch.device("cpu"):
        model = model_cls._from_config(config, dtype=dtype or torch.float32)
    # Copy into the existing parameters (keeps their order and ties) instead of replacing them.
    weights = dict(compressor.sparsity_compressor.decompress(str(path)))
    result = model.load_state_dict(weights, strict=False)
    model.tie_weights()
    params = dict(model.named_parameters(remove_duplicate=False))
    loaded = {params[name].data_ptr() for name in weights if name in params}
    lost = [k for k in result.missing_keys if k not in params or params[k].data_ptr() not in loaded]
    if result.unexpected_keys or lost:
        raise CheckpointError(
            f"{path}: weights do not fit {arch} (missing {lost[:5]}, unexpected {result.unexpected_keys[:5]})"
        )
    model.eval()
    return model
