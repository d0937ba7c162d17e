"""Out-of-core pruning: checkpoints larger than memory, read through memory maps and written
tensor by tensor (whole-model methods, :mod:`.prune`) or block by block (calibrated methods,
:mod:`.sequential`)."""

from .files import ShardedCheckpoint
from .prune import is_streamable, prune_checkpoint

__all__ = ["ShardedCheckpoint", "is_streamable", "prune_checkpoint"]
