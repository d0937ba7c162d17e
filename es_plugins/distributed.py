"""Distributed helpers (torch.distributed only): mask checksums and a cross-rank check."""

from __future__ import annotations

import hashlib

import torch
import torch.distributed as dist

from .errors import MaskMismatchError, SparsityConfigError
from .masks import select
from .methods import entry_for, method_names
from .methods.magnitude import magnitude_score
from .state import SparsityState, _local_view
from .targets import resolve_targets


def masks_checksum(state: SparsityState) -> int:
    """A 60-bit digest of the masks (names, shapes, bits): equal masks, equal checksum."""
    digest = hashlib.sha256()
    for name in sorted(state.masks):
        mask = state.masks[name].detach().to("cpu").contiguous()
        digest.update(name.encode())
        digest.update(str(tuple(mask.shape)).encode())
        digest.update(mask.numpy().tobytes())
    return int.from_bytes(digest.digest()[:8], "big") >> 4


def assert_identical_across_ranks(state: SparsityState, group=None) -> int:
    """All-reduce min and max of the checksum; raise if any rank holds different masks."""
    checksum = masks_checksum(state)
    if not (dist.is_available() and dist.is_initialized()):
        return checksum
    values = torch.tensor([checksum, -checksum], dtype=torch.int64)
    dist.all_reduce(values, op=dist.ReduceOp.MIN, group=group)
    if int(values[0]) != checksum or int(-values[1]) != checksum:
        raise MaskMismatchError(f"rank {dist.get_rank()}: masks differ across ranks (checksum {checksum})")
    return checksum


# --------------------------------------------------------------------- sharded (FSDP) pruning
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


class _RankCombine(select.LocalCombine):
    """Threshold-search combiner across ranks: counts all-reduced, sample and bracket gathered."""

    def __init__(self, group=None):
        self.group = group
        self.shards = dist.get_world_size(group)

    def sum(self, value: int) -> int:
        return _all_sum(value, self.group)

    def cat(self, values: torch.Tensor) -> torch.Tensor:
        return torch.cat(_all_gather_objects(values, self.group))


def distributed_keep_largest(scores, numels, k: int, group=None) -> list[torch.Tensor]:
    """:func:`es_plugins.masks.select.keep_largest_masks` over tensors sharded across ranks.

    ``scores``/``numels`` describe this rank's flat pieces. The result equals the single-process
    selection over the full tensors when each tensor's global flat order is its pieces in rank
    order (true for FSDP2's dim-0 shards and FSDP1's flat-parameter chunks): only counts, a
    sample and the ~1 % of scores inside the bracket cross ranks — never the model.
    """
    total = _all_sum(sum(numels), group)
    if k <= 0 or k >= total:
        fill = k <= 0
        return [torch.full((n,), fill, dtype=torch.bool) for n in numels]
    t, ties_total = select.kth_smallest_threshold(scores, numels, k, combine=_RankCombine(group))
    # Ties are pruned in (tensor, rank, local index) order: hand out per-rank quotas.
    counts = _all_gather_objects(select.count_equal(scores, numels, t), group)
    rank = dist.get_rank(group)
    quotas = []
    for index in range(len(numels)):
        for r, per_rank in enumerate(counts):
            take = min(per_rank[index], ties_total)
            ties_total -= take
            if r == rank:
                quotas.append(take)
    return select.write_masks(scores, numels, t, quotas)


def sparsify_sharded_(model, plan, group=None) -> SparsityState:
    """Global or per-layer OMP of a sharded model (FSDP2 ``fully_shard`` or FSDP1 with
    ``use_orig_params=True``): exact global count, masks stay sharded with their parameters
    (keyed by parameter name, shaped like this rank's local shard)."""
    if not entry_for(plan.method).shardable:
        shardable = [name for name in method_names() if entry_for(name).shardable]
        raise SparsityConfigError(f"sharded pruning supports {', '.join(shardable)}; got {plan.method.name!r}")
    targets = resolve_targets(model, plan.targets)
    views = [local_view(t.param) for t in targets]
    scores = [magnitude_score(v) for v in views]
    numels = [v.numel() for v in views]
    sparsity = plan.method.sparsity
    if plan.method.scope == "global":
        k = round(sparsity * _all_sum(sum(numels), group))
        flat = distributed_keep_largest(scores, numels, k, group)
    else:
        flat = [
            distributed_keep_largest([fn], [n], round(sparsity * _all_sum(n, group)), group)[0]
            for fn, n in zip(scores, numels)
        ]
    masks = {t.name: m.view(v.shape).to(v.device) for t, m, v in zip(targets, flat, views)}
    state = SparsityState.from_plan(masks, plan, targets, sharded=True)
    state.apply_(model)
    return state
