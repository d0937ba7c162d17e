"""Where work runs: one parser for every ``device`` argument and ``--device`` option.

Users prune and fine-tune on GPUs. The default is the first CUDA device when there is one,
else the CPU; a device that this machine does not have is an error before any work, never a
silent fall-back to the CPU.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from ..errors import SparsityConfigError

AUTO = "auto"


def resolve_device(spec: str | torch.device | None = None, *, flag: str = "device") -> torch.device:
    """``None``/``"auto"`` -> ``cuda`` when available, else ``cpu``; ``"cuda:1"``, ``"cpu"``,
    ``"mps"`` or a ``torch.device`` are checked against this machine.

    >>> resolve_device("cpu")
    device(type='cpu')

    Raises:
        SparsityConfigError: an unknown spelling, or a device this machine does not have.
    """
    if spec is None or (isinstance(spec, str) and spec.strip().lower() == AUTO):
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = spec if isinstance(spec, torch.device) else torch.device(str(spec).strip())
    except (RuntimeError, ValueError):
        raise SparsityConfigError(
            f"{flag}: {spec!r} is not a device; use auto, cpu, cuda or cuda:N (or mps on Apple silicon)"
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SparsityConfigError(
                f"{flag} {spec}: CUDA is not available on this machine (torch {torch.__version__}); use cpu"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise SparsityConfigError(
                f"{flag} {spec}: this machine has {torch.cuda.device_count()} CUDA device(s) (cuda:0 ...)"
            )
        if device.index is None:  # what a tensor moved there reports, so that devices compare equal
            device = torch.device("cuda", torch.cuda.current_device())
    elif device.type == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise SparsityConfigError(f"{flag} {spec}: MPS is not available on this machine; use cpu")
    elif device.type not in ("cpu", "meta"):
        raise SparsityConfigError(f"{flag} {spec}: supported devices are cpu, cuda, cuda:N and mps")
    return device


PRECISIONS = ("bf16", "fp16")


def check_precision(precision: str | None) -> None:
    """Mixed precision for fine-tunes: ``"bf16"``, ``"fp16"`` or ``None`` (full precision)."""
    if precision is not None and precision not in PRECISIONS:
        raise SparsityConfigError(f"precision must be one of {', '.join(PRECISIONS)} or None, got {precision!r}")


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (the CPU for a model without any)."""
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def to_device(value: Any, device: torch.device) -> Any:
    """``value`` with every tensor inside (tuples, lists, dicts) moved to ``device``: a block's
    captured ``(args, kwargs)`` hold hidden states, masks and position embeddings alike."""
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, tuple):
        return tuple(to_device(v, device) for v in value)
    if isinstance(value, list):
        return [to_device(v, device) for v in value]
    if isinstance(value, Mapping):
        return {k: to_device(v, device) for k, v in value.items()}
    return value
