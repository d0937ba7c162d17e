"""Selection across ranks for weights sharded with FSDP: this rank's piece of each weight,
and the combine hook (:class:`RankCombine`) with which the one selection function
(:func:`es_plugins.masks.select.keep_largest_masks`) counts over all ranks.
:func:`es_plugins.sparsify_` with ``sharded=True`` uses it."""

from __future__ import annotations

import torch
import torch.distributed as dist

from ..masks import select
from ..masks.state import _local_view


def local_view(param: torch.Tensor) -> torch.Tensor:
    """The part of ``param`` this rank holds: a DTensor's local shard (FSDP2), else ``.data``
    (for FSDP1 with ``use_orig_params=True`` that is the rank's flat piece, maybe empty)."""
    return _local_view(param)


def _all_gather_objects(value, group=None) -> list:
    out = [None] * dist.get_world_size(group)
    dist.all_gather_object(out, value, group=group)
    return out


def _all_sum(value: int, group=None) -> int:
    tensor = torch.tensor([value], dtype=torch.int64)
    dist.all_reduce(tensor, group=group)
    return int(tensor)


class RankCombine(select.LocalCombine):
    """The selection's combine hook across ranks (:func:`es_plugins.masks.select.keep_largest_masks`):
    counts all-reduced, the sample and the bracket all-gathered, tie quotas handed out in rank
    order. The result equals the single-process selection over the full tensors when each
    tensor's global flat order is its pieces in rank order (true for FSDP2's dim-0 shards and
    FSDP1's flat-parameter chunks): only counts, a sample and the ~1 % of scores inside the
    bracket cross ranks — never the model."""

    def __init__(self, group=None):
        self.group = group
        self.shards = dist.get_world_size(group)

    def sum(self, value: int) -> int:
        return _all_sum(value, self.group)

    def cat(self, values: torch.Tensor) -> torch.Tensor:
        return torch.cat(_all_gather_objects(values, self.group))

    def tie_quotas(self, equal, ties: int) -> list[int]:
        """Ties are pruned in (tensor, rank, local index) order: this rank's share per tensor."""
        counts = _all_gather_objects([int(c) for c in equal], self.group)
        in_order = select.spend_in_order([per_rank[i] for i in range(len(equal)) for per_rank in counts], ties)
        return in_order[dist.get_rank(self.group) :: len(counts)]
