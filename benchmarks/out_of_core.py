"""Out-of-core pruning vs loading the model: wall time and peak anonymous memory (RssAnon) against
checkpoint size, on synthetic sharded Llama checkpoints (random weights, 1-16 GB, bf16 and fp32).

Rows per checkpoint, each in a fresh process:
  - baseline: ``AutoModelForCausalLM.from_pretrained`` + in-memory global OMP 50 % + ``save_pretrained``
    (skipped for a checkpoint over 40 % of RAM: it holds the model, its masks and the save's copies)
  - ours, OMP 50 % global, out of core (``es-plugins prune --low-memory`` path)
  - ours, 2:4, out of core
  - ours, Wanda 50 % with 4 x 128 calibration tokens, block by block
Each case runs with ``CASE_THREADS`` = 2 torch threads (out of core, the chunk passes run on
that many workers) after the imports (transformers and the checkpoint's model class: a fixed
cost that does not grow with the checkpoint). With ``--cold`` the page cache is dropped before
each case and the results go to ``out_of_core-cold.json``. Every row ends with ``os.sync()``
(its output on disk, as the CLI's atomic publish fsyncs) and starts after one (no row pays for
an earlier row's writeback); the floor row copies the shards (a sequential read plus write)
under the same rule. Peak RssAnon is sampled every 2 ms from a thread and reported above the
process's level before the case started (imports excluded); file-backed pages of the
memory-mapped shards are not anonymous memory. Checkpoints are written to --workdir one at a
time and deleted after use. The growth table fits time ~ size^k per case, and the floor's own
k beside it: where the floor leaves the page cache for the disk (16 GB of input and output on
a 24 GB machine) it grows faster than linearly itself.

Usage: python benchmarks/out_of_core.py [--sizes 1 2 4 8] [--dtypes bfloat16 float32] [--repeats 1]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import math
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from _common import note, run_isolated, run_main, table  # noqa: E402

HIDDEN, INTERMEDIATE, VOCAB, HEADS = 2048, 5632, 32000, 16
FLOOR = "floor: sequential read + write of the shards"
BASELINE = "baseline: from_pretrained + prune + save"
BASELINE_RAM_SHARE = 0.4  # the baseline holds the model, its masks and a save's copies
CASE_THREADS = 2  # torch threads of each case; out of core, the chunk passes run on that many workers
CASES = (
    FLOOR,
    BASELINE,
    "ours: OMP 50% out of core",
    "ours: 2:4 out of core",
    "ours: Wanda 50% block by block",
)


def layer_count(gigabytes: float, dtype: torch.dtype) -> int:
    per_layer = 4 * HIDDEN * HIDDEN + 3 * HIDDEN * INTERMEDIATE + 2 * HIDDEN
    fixed = 2 * VOCAB * HIDDEN + HIDDEN
    bytes_per = torch.finfo(dtype).bits // 8
    return max(1, round((gigabytes * 1e9 / bytes_per - fixed) / per_layer))


def write_checkpoint(folder: Path, layers: int, dtype: torch.dtype, shard_bytes: int = 1 << 30) -> int:
    """A sharded Llama checkpoint written tensor by tensor (never the whole model in memory)."""
    from safetensors.torch import save_file
    from transformers import LlamaConfig

    folder.mkdir(parents=True)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        intermediate_size=INTERMEDIATE,
        num_hidden_layers=layers,
        num_attention_heads=HEADS,
        num_key_value_heads=HEADS,
        max_position_embeddings=256,
        tie_word_embeddings=False,
        torch_dtype=str(dtype)[6:],
    )
    config.architectures = ["LlamaForCausalLM"]
    config.save_pretrained(folder)
    shapes = {"model.embed_tokens.weight": (VOCAB, HIDDEN)}
    for i in range(layers):
        p = f"model.layers.{i}."
        shapes.update({p + f"self_attn.{n}_proj.weight": (HIDDEN, HIDDEN) for n in "qkvo"})
        shapes.update(
            {
                p + "mlp.gate_proj.weight": (INTERMEDIATE, HIDDEN),
                p + "mlp.up_proj.weight": (INTERMEDIATE, HIDDEN),
                p + "mlp.down_proj.weight": (HIDDEN, INTERMEDIATE),
            }
        )
        shapes.update({p + "input_layernorm.weight": (HIDDEN,), p + "post_attention_layernorm.weight": (HIDDEN,)})
    shapes.update({"model.norm.weight": (HIDDEN,), "lm_head.weight": (VOCAB, HIDDEN)})
    generator = torch.Generator().manual_seed(0)
    planned: list[list[str]] = [[]]  # names per shard, planned from the shapes alone
    size = 0
    for name, shape in shapes.items():
        nbytes = math.prod(shape) * torch.finfo(dtype).bits // 8
        if size and size + nbytes > shard_bytes:
            planned.append([])
            size = 0
        planned[-1].append(name)
        size += nbytes
    weight_map, total = {}, 0
    for index, names in enumerate(planned):  # one shard in memory at a time
        file = f"model-{index + 1:05d}-of-{len(planned):05d}.safetensors"
        shard = {}
        for name in names:
            shape = shapes[name]
            value = torch.ones(shape) if len(shape) == 1 else torch.randn(shape, generator=generator) * 0.02
            shard[name] = value.to(dtype)
        save_file(shard, str(folder / file), metadata={"format": "pt"})
        weight_map.update({name: file for name in shard})
        total += sum(t.numel() * t.element_size() for t in shard.values())
        del shard
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2)
    )
    return total


def case(name: str, src: str, dst: str) -> dict:
    """One row, in this (fresh) process."""
    from es_plugins import NMConfig, OMPConfig, SparsityPlan, WandaConfig, sparsify_
    from es_plugins.engines.memory import PeakAnonSampler, stable_allocator
    from es_plugins.engines.outofcore import prune_blockwise, prune_tensorwise
    from es_plugins.io.hf_config import model_class, read_config

    stable_allocator()
    torch.set_num_threads(CASE_THREADS)
    from transformers import AutoModelForCausalLM  # noqa: F401  (imported before the measurement)

    model_class(Path(src), read_config(Path(src)))  # its module (modeling_llama) too: imports, as above

    out = Path(dst)
    out.mkdir()
    calibration = torch.randint(0, VOCAB, (4, 128), generator=torch.Generator().manual_seed(0))
    profiler = cProfile.Profile() if os.environ.get("ES_PLUGINS_PROFILE") else None
    if profiler is not None:
        profiler.enable()
    start = time.perf_counter()
    with PeakAnonSampler() as sampler:
        if name == FLOOR:  # what any out-of-core pass must do at least: read every shard, write it once
            for shard in sorted(Path(src).glob("*.safetensors")):
                shutil.copyfile(shard, out / shard.name)
        elif name.startswith("baseline"):
            model = AutoModelForCausalLM.from_pretrained(src, dtype="auto")
            sparsify_(model, OMPConfig(0.5))
            model.save_pretrained(out)
            del model
        elif "OMP" in name:
            prune_tensorwise(src, out, SparsityPlan(OMPConfig(0.5)))
        elif "2:4" in name:
            prune_tensorwise(src, out, SparsityPlan(NMConfig("2:4")))
        else:
            prune_blockwise(src, out, SparsityPlan(WandaConfig(0.5)), calibration)
        os.sync()  # every row's output reaches the disk inside its time (as the CLI's atomic publish does)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_anon": sampler.added, "profile": _top_functions(profiler) if profiler else []}


def _top_functions(profiler: cProfile.Profile, count: int = 8) -> list[tuple[str, float]]:
    """The functions with the most time of their own (cProfile), for ``--profile``."""
    profiler.disable()
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    own = sorted(((tt, f"{Path(file).name}:{line}({name})") for (file, line, name), (_, _, tt, _, _) in stats.items()))
    return [(label, round(seconds, 2)) for seconds, label in reversed(own[-count:])]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--case":
        print(json.dumps(case(*sys.argv[2:5])))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[1, 2, 4, 8], help="checkpoint sizes in GB")
    parser.add_argument("--dtypes", nargs="+", default=["bfloat16", "float32"])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--workdir", default=None, help="where checkpoints are written (default: a temp dir)")
    parser.add_argument(
        "--cases", nargs="+", default=list(CASES), choices=CASES, help="rows to run (default: all; the floor always)"
    )
    parser.add_argument(
        "--profile", action="store_true", help="also print each row's functions with the most time of their own"
    )
    parser.add_argument(
        "--cold", action="store_true", help="drop the page cache before each case (needs root; else reported warm)"
    )
    args = parser.parse_args()
    cases = [FLOOR] + [c for c in args.cases if c != FLOOR]
    before = os.getloadavg()
    timings: dict[str, list[tuple[float, float]]] = {c: [] for c in cases}
    work = Path(args.workdir or tempfile.mkdtemp(prefix="es-plugins-ooc-"))
    rows = []
    for dtype_name in args.dtypes:
        dtype = getattr(torch, dtype_name)
        for gigabytes in args.sizes:
            src = work / f"llama-{gigabytes:g}gb-{dtype_name}"
            total = write_checkpoint(src, layer_count(gigabytes, dtype), dtype)
            results: dict[str, list[dict]] = {name: [] for name in cases}
            skipped = {BASELINE} if total > BASELINE_RAM_SHARE * _memory_bytes() else set()
            for _ in range(args.repeats):  # interleaved: every case once per round
                for name in cases:
                    if name in skipped:  # it loads the whole model: past the RAM it would swap or be killed
                        results[name].append(
                            {"error": f"skipped: loads the model, over {BASELINE_RAM_SHARE:.0%} of RAM"}
                        )
                        continue
                    dst = work / "out"
                    shutil.rmtree(dst, ignore_errors=True)
                    os.sync()  # no row pays for the previous row's (or the checkpoint's) writeback
                    cache = _drop_page_cache() if args.cold else "warm"
                    if args.profile:
                        os.environ["ES_PLUGINS_PROFILE"] = "1"
                    results[name].append({**run_isolated(__file__, "--case", name, str(src), str(dst)), "cache": cache})
                    for label, seconds in results[name][-1].get("profile", []):
                        print(f"  {name}, {total / 1e9:.2f} GB: {seconds:7.2f} s  {label}", flush=True)
            shutil.rmtree(work / "out", ignore_errors=True)
            shutil.rmtree(src)
            floor_runs = [r["seconds"] for r in results[FLOOR] if "error" not in r]
            floor = statistics.median(floor_runs) if floor_runs else float("nan")
            for name, all_runs in results.items():
                runs = [r for r in all_runs if "error" not in r]
                if not runs:
                    rows.append(
                        [
                            dtype_name,
                            f"{total / 1e9:.2f} GB",
                            name,
                            "skipped" if all_runs[0]["error"].startswith("skipped") else "error",
                            all_runs[0]["error"][:70],
                            "-",
                            "-",
                        ]
                    )
                    continue
                peaks = [r["peak_anon"] / total for r in runs]
                seconds = statistics.median(r["seconds"] for r in runs)
                timings[name].append((total, seconds))
                rows.append(
                    [
                        dtype_name,
                        f"{total / 1e9:.2f} GB",
                        name,
                        f"{seconds:.1f} s",
                        f"{seconds / floor:.2f}x",
                        f"{statistics.median(peaks):.3f}x ({min(peaks):.3f}-{max(peaks):.3f})",
                        f"{statistics.median(r['peak_anon'] for r in runs) / 2**20:.0f} MiB",
                    ]
                )
            print(table(rows[-len(cases) :], HEADER, name="latest"), flush=True)
    print()
    cache = "cold page cache (dropped before each case)" if args.cold else "warm page cache"
    print(f"{cache}; {args.repeats} repeat(s); load average before/after {before} / {os.getloadavg()}")
    note(
        cache=cache,
        threads=f"{CASE_THREADS} per isolated case (torch.set_num_threads)",
        variant="cold" if args.cold else "",
    )
    print(table(rows, HEADER, name="all"))
    floor_k = _exponent(timings[FLOOR]) if len(timings[FLOOR]) >= 2 else float("nan")
    growth = [
        [name, f"{_exponent(points):.2f}", f"{_exponent(points) - floor_k:+.2f}"]
        for name, points in timings.items()
        if len(points) >= 2
    ]
    if growth:
        print("\ngrowth exponent k (time ~ size^k, least squares over the sizes run):")
        print(table(growth, ["case", "k", "k - floor's k"], name="growth"))


def _exponent(points: list[tuple[float, float]]) -> float:
    xs = [math.log(size) for size, _ in points]
    ys = [math.log(seconds) for _, seconds in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def _memory_bytes() -> int:
    """Physical memory (MemTotal)."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 1 << 62


def _drop_page_cache() -> str:
    """Write back, then drop clean pages: a cold read (root only)."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return "cold"
    except OSError:
        return "warm"


HEADER = ["dtype", "checkpoint", "case", "wall time (median)", "x floor", "peak RssAnon / weights", "peak RssAnon"]

if __name__ == "__main__":
    run_main(main, __file__)
