"""``compare_masks`` and ``near_zero``: the jobs of ``es-plugins compare-masks`` and
``es-plugins zeros``, with the same arguments; each may also write a report folder."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from ..analysis.plots import plot_near_zero, plot_similarity
from ..analysis.similarity import MaskSimilarity, check_comparable, mask_similarity
from ..analysis.zeros import NearZeroStats, near_zero_stats
from ..errors import SparsityConfigError, check_choice
from ..io.assets import resolve_model_path
from ..io.checkpoint import load_hf_model
from ..io.output import check_output, write_folder_atomically
from ..masks.state import MASKS_FILENAME, SparsityState
from ..masks.targets import resolve_targets


def load_masks(path: str | Path) -> SparsityState:
    """A masks file, or the masks file in a folder (a pruned checkpoint, a lottery round)."""
    p = Path(path)
    return SparsityState.load(p / MASKS_FILENAME if p.is_dir() else p)


def compare_masks(
    a: str | Path, b: str | Path, *, output: str | Path | None = None, overwrite: bool = False
) -> MaskSimilarity:
    """Cosine, IoU and Hamming similarity of two mask sets (files, or folders holding
    ``sparsity_masks.safetensors``); with ``output``, also a JSON file and a per-layer plot
    in that new folder.

    Raises:
        MaskMismatchError: the two sets do not cover the same layers with the same shapes.
    """
    if output:
        check_output(output, inputs=[a, b], overwrite=overwrite, flag="--output")
    masks_a, masks_b = load_masks(a).masks, load_masks(b).masks
    check_comparable(masks_a, masks_b)
    similarity = mask_similarity(masks_a, masks_b)
    if output:

        def write(out: Path) -> None:
            (out / "mask_similarity.json").write_text(json.dumps(similarity.to_dict(), indent=2))
            plot_similarity(similarity, out / "mask_similarity.png", f"{Path(a).name} vs {Path(b).name}")

        write_folder_atomically(
            output, write, inputs=[a, b], overwrite=overwrite, command="compare-masks", flag="--output"
        )
    return similarity


def near_zero(
    models: list[str],
    *,
    threshold: float = 0.01,
    mode: str = "relative",
    exclude_masked: bool = False,
    output: str | Path | None = None,
    overwrite: bool = False,
) -> dict[str, NearZeroStats]:
    """Near-zero weight statistics of each checkpoint in ``models`` (``|w| < threshold``,
    absolute or relative to the layer's mean ``|w|``); with ``output``, also JSON, CSV and a
    plot across checkpoints in that new folder.

    ``exclude_masked`` leaves out the weights a checkpoint's masks file prunes (they are zero
    by construction, not by training)."""
    check_choice("mode", mode, ("absolute", "relative"))
    sources = [resolve_model_path(spec) for spec in models]
    if output:
        check_output(output, inputs=sources, overwrite=overwrite, flag="--output")
    stats: dict[str, NearZeroStats] = {}
    for spec, source in zip(models, sources):
        model = load_hf_model(source)
        masks = None
        if exclude_masked:
            if not (source / MASKS_FILENAME).is_file():
                raise SparsityConfigError(f"--exclude-masked: {spec} has no {MASKS_FILENAME}")
            masks = SparsityState.load(source / MASKS_FILENAME, model).masks
        stats[spec] = near_zero_stats(resolve_targets(model), threshold, mode, masks)
    if output:
        data = {spec: s.to_dict() for spec, s in stats.items()}

        def write(out: Path) -> None:
            (out / "near_zero.json").write_text(json.dumps(data, indent=2))
            with open(out / "near_zero.csv", "w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(["checkpoint", "layer", "fraction"])
                for spec, s in stats.items():
                    writer.writerow([spec, "overall", s.overall])
                    writer.writerows([spec, name, frac] for name, frac in s.fractions().items())
            plot_near_zero(
                {spec: s.overall for spec, s in stats.items()},
                out / "near_zero.png",
                f"near-zero weights (|w| < {threshold:g}, {mode})",
            )

        write_folder_atomically(output, write, inputs=sources, overwrite=overwrite, command="zeros", flag="--output")
    return stats


__all__ = ["compare_masks", "load_masks", "near_zero"]
