"""Sweep report folder: JSON + CSV results, a Markdown summary and PNG plots."""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from pathlib import Path
from typing import Any, Mapping

from ..io.output import atomic_write_text
from .plots import plot_layer_sparsity, plot_similarity, plot_sweep
from .similarity import MaskSimilarity
from .sweep import SweepResult


def _fmt(value: float | None, pct: bool = False) -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and math.isnan(value):
        return "NaN (flagged)"
    return f"{value:.1%}" if pct else f"{value:.4g}"


def _uncertainty_lines(result: SweepResult) -> list[str]:
    """The bootstrap's intervals and the noise of the dense value, in the summary's words."""
    u = result.uncertainty
    if u is None:
        return []
    if u.essential_interval is None and u.knee_interval is None:
        return [f"- intervals: none — {u.resampled}; return a Measurement from the task, or run several --seeds"]

    def bounds(pair: tuple[float, float] | None) -> str:
        return "–" if pair is None else f"[{pair[0]:.1%}, {pair[1]:.1%}]"

    lines = [
        f"- {u.confidence:.0%} bootstrap intervals ({u.replicates} resamples of {u.resampled}): essential "
        f"sparsity {bounds(u.essential_interval)}, knee {bounds(u.knee_interval)} (over the evaluated levels)",
    ]
    if u.noise is not None and u.noise_at is not None:
        size = f" on {u.size:,.0f} {u.unit}" if u.size else ""
        lines.append(
            f"- noise: standard error of the difference from dense at {u.noise_at:.1%}: {u.noise:.4g}{size}; "
            f"tolerance {u.slack:.4g} ({'below' if u.noisy else 'at least'} twice the noise)"
        )
    return lines


def write_sweep_report(
    folder: str | Path,
    result: SweepResult,
    title: str,
    command: str,
    layer_sparsity: Mapping[str, float] | None = None,
    similarity: MaskSimilarity | None = None,
    meta: Mapping[str, Any] | None = None,
    similarity_label: str = "two mask sets",
) -> Path:
    """Write ``results.json``, ``results.csv``, ``summary.md`` and plots into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = {"title": title, "command": command, **result.to_dict(), "meta": dict(meta or {})}
    if layer_sparsity:
        data["layer_sparsity_at_essential"] = dict(layer_sparsity)
    if similarity is not None:
        data["mask_similarity"] = similarity.to_dict()
    atomic_write_text(folder / "results.json", json.dumps(data, indent=2, allow_nan=True))

    config = result.config
    table = io.StringIO(newline="")  # the whole file, then one atomic write
    writer = csv.writer(table)
    writer.writerow(
        ["sparsity", "seed", config.metric, "level_mean", "level_std", "within_tolerance", "refined", "flagged_nan"]
    )
    for level in result.levels:
        within = config.within(level.mean, result.dense)
        for seed, value in sorted(level.values.items()):
            writer.writerow([level.sparsity, seed, value, level.mean, level.std, within, level.refined, level.flagged])
    atomic_write_text(folder / "results.csv", table.getvalue())

    plots = {"metric vs sparsity": plot_sweep(result, folder / "metric_vs_sparsity.png", title)}
    if layer_sparsity:
        at = result.essential_sparsity or 0.0
        plots["per-layer sparsity"] = plot_layer_sparsity(
            layer_sparsity, folder / "per_layer_sparsity.png", f"{title}: per-layer sparsity at {at:.1%} (global OMP)"
        )
    if similarity is not None:
        plots["mask similarity"] = plot_similarity(
            similarity, folder / "mask_similarity.png", f"{title}: mask similarity"
        )

    direction = "higher" if config.higher_is_better else "lower"
    lines = [
        f"# {title}",
        "",
        f"Command: `{command}`",
        "",
        f"- metric: **{config.metric}** ({direction} is better); dense = {_fmt(result.dense)}",
        f"- tolerance: {config.tolerance:g} {config.tolerance_kind}"
        + (" (the paper's 1 %)" if (config.tolerance, config.tolerance_kind) == (0.01, "relative") else ""),
        f"- **essential sparsity: {_fmt(result.essential_sparsity, True)}** — largest level of the contiguous "
        f"within-tolerance run from dense; first failing level: {_fmt(result.first_failing, True)} "
        f"(resolution {config.resolution:.1%})",
        "- knee (Kneedle, max distance below the chord of the normalised degradation curve): "
        f"{_fmt(result.knee, True)}",
        *_uncertainty_lines(result),
        f"- seeds: {list(config.seeds)}; evaluations run: {result.evaluations} (others reused from an earlier run)"
        if result.evaluations < sum(len(lv.values) for lv in result.levels)
        else f"- seeds: {list(config.seeds)}; evaluations: {result.evaluations}",
        "",
        f"| sparsity | {config.metric} mean | sd | within tolerance | note |",
        "|---|---|---|---|---|",
    ]
    for level in result.levels:
        note = ", ".join(x for x in ("refined" if level.refined else "", "NaN flagged" if level.flagged else "") if x)
        lines.append(
            f"| {level.sparsity:.2%} | {_fmt(level.mean)} | {level.std:.3g} | "
            f"{'yes' if config.within(level.mean, result.dense) else 'no'} | {note} |"
        )
    for note in (meta or {}).get("notes", []):
        lines += ["", f"> **Note:** {note}"]
    if result.points:
        backend = (meta or {}).get("backend", "local")
        workers = sorted({p.worker for p in result.points if p.error is None})
        lines += [
            "",
            f"Points: {len(result.points)} ({backend} backend, {len(workers)} worker process(es)); refinement "
            f"rounds this run: {result.rounds}; median wall time per point "
            f"{statistics.median(p.seconds for p in result.points):.2f} s (per point in results.json).",
        ]
        for point in result.failed:
            lines.append(f"- failed: sparsity {point.sparsity:.2%} seed {point.seed}: {point.error}")
    if similarity is not None:
        overall = similarity.overall
        lines += [
            "",
            f"Mask similarity ({similarity_label}): cosine {overall.cosine:.4f} "
            f"(chance {overall.chance['cosine']:.4f}), "
            f"IoU {overall.iou:.4f}, Hamming {overall.hamming:.4f}",
        ]
    lines += ["", *[f"![{name}]({path.name})" for name, path in plots.items()], ""]
    atomic_write_text(folder / "summary.md", "\n".join(lines))
    return folder
