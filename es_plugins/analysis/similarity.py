"""Similarity of binary keep-masks: the paper's cosine, plus IoU and Hamming distance.

For keep-masks A and B: cosine = |A∩B| / sqrt(|A|·|B|), IoU = |A∩B| / |A∪B|, Hamming =
fraction of positions that differ. Two independent random masks of densities a and b score
about sqrt(a·b) (cosine), ab/(a+b-ab) (IoU) and a(1-b)+b(1-a) (Hamming): that chance level is
reported beside every number, since a high cosine means little at high density.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import torch

from ..errors import MaskMismatchError
from ..masks.naming import match_names


@dataclass(frozen=True)
class PairStats:
    numel: int
    kept_a: int
    kept_b: int
    both: int

    @property
    def union(self) -> int:
        return self.kept_a + self.kept_b - self.both

    @property
    def cosine(self) -> float:
        denom = math.sqrt(self.kept_a * self.kept_b)
        return self.both / denom if denom else float("nan")

    @property
    def iou(self) -> float:
        return self.both / self.union if self.union else float("nan")

    @property
    def hamming(self) -> float:
        return (self.union - self.both) / self.numel if self.numel else float("nan")

    @property
    def chance(self) -> dict[str, float]:
        a, b = self.kept_a / self.numel, self.kept_b / self.numel
        union = a + b - a * b
        return {
            "cosine": math.sqrt(a * b),
            "iou": a * b / union if union else float("nan"),
            "hamming": a * (1 - b) + b * (1 - a),
        }

    def to_dict(self) -> dict:
        return {
            "numel": self.numel,
            "density_a": self.kept_a / self.numel,
            "density_b": self.kept_b / self.numel,
            "cosine": self.cosine,
            "iou": self.iou,
            "hamming": self.hamming,
            "chance": self.chance,
        }


@dataclass(frozen=True)
class MaskSimilarity:
    layers: dict[str, PairStats]
    overall: PairStats

    def to_dict(self) -> dict:
        return {"overall": self.overall.to_dict(), "layers": {n: s.to_dict() for n, s in self.layers.items()}}

    def format_table(self) -> str:
        width = max([len("layer")] + [len(n) for n in self.layers])
        head = f"{'layer':<{width}}  {'cosine':>7}  {'chance':>7}  {'IoU':>6}  {'Hamming':>7}"
        rows = [head, "-" * len(head)]
        for name, s in [*self.layers.items(), ("overall", self.overall)]:
            if name == "overall":
                rows.append("-" * len(head))
            rows.append(
                f"{name:<{width}}  {s.cosine:>7.4f}  {s.chance['cosine']:>7.4f}  {s.iou:>6.4f}  {s.hamming:>7.4f}"
            )
        return "\n".join(rows)


def check_comparable(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> None:
    """Refuse mask sets whose similarity is undefined: cosine and IoU divide by the kept
    weights, so a layer (or a set) that keeps nothing gives nan, not a finding.

    Raises:
        MaskMismatchError: naming the set and the layers that keep no weight.
    """
    for label, masks in (("A", a), ("B", b)):
        empty = [name for name, mask in masks.items() if mask.numel() and not bool(mask.any())]
        if empty:
            raise MaskMismatchError(
                f"mask set {label} keeps no weight in {len(empty)} layer(s) ({', '.join(empty[:3])}): their cosine "
                "and IoU are undefined; compare masks that keep something in every layer"
            )


def mask_similarity(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> MaskSimilarity:
    """Per-layer and overall similarity of two keep-mask sets over the same weights.

    The sets may name the weights differently (a base checkpoint's CLI masks vs a Trainer
    checkpoint's, under a task head or PEFT): B is matched to A's names one to one
    (:func:`es_plugins.masks.naming.match_names`); layers are listed in A's order. A layer that
    keeps nothing in either set scores nan (``compare-masks`` refuses such sets:
    :func:`check_comparable`).
    """
    if set(a) != set(b):
        mapping = match_names(
            {n: tuple(m.shape) for n, m in b.items()},
            {n: tuple(m.shape) for n, m in a.items()},
            what="mask set B does not match mask set A",
        )
        b = {mapping[n]: m for n, m in b.items()}
        if len(b) != len(a):
            raise MaskMismatchError(f"mask sets differ: only in A {sorted(set(a) - set(b))[:5]}")
    layers = {}
    for name in a:
        ma, mb = a[name].to(torch.bool), b[name].to(device=a[name].device, dtype=torch.bool)
        if ma.shape != mb.shape:
            raise MaskMismatchError(f"mask {name!r}: shape {tuple(ma.shape)} vs {tuple(mb.shape)}")
        layers[name] = PairStats(ma.numel(), int(ma.sum()), int(mb.sum()), int((ma & mb).sum()))
    overall = PairStats(*(sum(getattr(s, f) for s in layers.values()) for f in ("numel", "kept_a", "kept_b", "both")))
    return MaskSimilarity(layers, overall)
