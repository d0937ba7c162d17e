"""Out-of-core pruning: checkpoints larger than memory, read through memory maps and written
tensor by tensor (whole-model methods, :mod:`.tensorwise`) or block by block (calibrated
methods, :mod:`.blockwise`). :func:`es_plugins.prune_checkpoint` picks the driver from the
registry; these are its engines."""

from __future__ import annotations

from typing import Any

from ..._deprecation import warn_renamed
from ...masks.report import SparsityReport
from .blockwise import prune_blockwise
from .files import ShardedCheckpoint
from .tensorwise import is_streamable, prune_tensorwise


def prune_checkpoint(*args: Any, **kwargs: Any) -> SparsityReport:
    """Deprecated spelling of :func:`prune_tensorwise` (the name now belongs to the job
    :func:`es_plugins.prune_checkpoint`): it warns, and goes away in 0.3."""
    warn_renamed("es_plugins.outofcore.prune_checkpoint", "es_plugins.engines.outofcore.prune_tensorwise")
    return prune_tensorwise(*args, **kwargs)


def prune_checkpoint_sequential(*args: Any, **kwargs: Any) -> SparsityReport:
    """Deprecated spelling of :func:`prune_blockwise`: it warns, and goes away in 0.3."""
    warn_renamed(
        "es_plugins.outofcore.sequential.prune_checkpoint_sequential", "es_plugins.engines.outofcore.prune_blockwise"
    )
    return prune_blockwise(*args, **kwargs)


__all__ = ["ShardedCheckpoint", "is_streamable", "prune_blockwise", "prune_tensorwise"]
