"""es-plugins vs llm-compressor: Wanda and SparseGPT (50 % and 2:4) on the packaged SmolLM2.

    bash benchmarks/peers/setup_llm_compressor.sh          # once: the peer's own venv
    python benchmarks/peers/llm_compressor.py [--rows wanda-50,wanda-2:4,sparsegpt-50,sparsegpt-2:4]
        [--repeats 3] [--calib-samples 32] [--seq-len 512] [--eval-tokens 4096]

Both implementations get the same model (fp32), the same calibration windows and the same
perplexity windows, prepared once here and handed to every case as a file. Every case runs in a
fresh process — ours in the project's .venv, the peer's in its own venv — and the rows are
interleaved (each repeat runs every row of both). The first rows are the dense perplexity in
each environment: they must agree, or the comparison stops. Printed: perplexity, time of the
pruning call, peak RSS of the case process; medians over the repeats, with the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PEER_PYTHON = ROOT / ".venv-peers" / "llm-compressor" / "bin" / "python"
ROWS = ("wanda-50", "wanda-2:4", "sparsegpt-50", "sparsegpt-2:4")
TWO_PASS = "es-plugins, passes=2"  # ours with the peer's schedule (--two-pass): dense statistics per block


def _perplexity(model, blocks, batch_size: int = 2) -> float:
    """exp(mean next-token NLL): the same function, from this file, in both environments."""
    import math

    import torch

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, blocks.shape[0], batch_size):
            batch = blocks[start : start + batch_size]
            logits = model(input_ids=batch).logits[:, :-1].float()
            nll = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1), reduction="sum"
            )
            total, count = total + float(nll), count + batch[:, 1:].numel()
    return math.exp(total / count)


def _peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _zeros(model) -> tuple[int, int, int]:
    """``(zeros in the decoder layers' 2-D weights, their size, zeros elsewhere)``: both sides
    must prune the same weights — the peer's ``ignore=["lm_head"]`` does not match its
    ``"lm_head."`` naming and pruned the tied embedding (a 1.5x worse perplexity) until it
    was spelled ``"re:.*lm_head"``."""
    inside = size = outside = 0
    for name, param in model.named_parameters():
        zeros = int((param == 0).sum())
        if ".layers." in name and param.dim() == 2:
            inside, size = inside + zeros, size + param.numel()
        else:
            outside += zeros
    return inside, size, outside


def _pattern(row: str) -> tuple[str, float, str | None]:
    method, level = row.split("-", 1)
    return (method, 0.5, level) if ":" in level else (method, int(level) / 100, None)


def case(implementation: str, row: str, inputs: str) -> dict:
    """One measurement in this process: load, prune (timed), evaluate."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    data = load_file(inputs)
    model_dir = Path(inputs).with_suffix(".model").read_text()
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, local_files_only=True)
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    calibration, evaluation = data["calibration"], data["evaluation"]
    seconds = 0.0
    outside_before = _zeros(model)[2]
    if row != "dense":
        method, sparsity, pattern = _pattern(row)
        started = time.perf_counter()
        if implementation.startswith("es-plugins"):
            from es_plugins import SparseGPTConfig, WandaConfig, sparsify_

            cls = WandaConfig if method == "wanda" else SparseGPTConfig
            passes = {"es-plugins": None, TWO_PASS: 2}[implementation]
            config = cls(pattern=pattern, passes=passes) if pattern else cls(sparsity, passes=passes)
            sparsify_(model, config, calibration=calibration)
        else:
            from datasets import Dataset
            from llmcompressor import oneshot
            from llmcompressor.modifiers.pruning import SparseGPTModifier, WandaPruningModifier

            cls = WandaPruningModifier if method == "wanda" else SparseGPTModifier
            recipe = cls(
                sparsity=sparsity, mask_structure=pattern or "0:0", targets=["Linear"], ignore=["re:.*lm_head"]
            )
            rows = {"input_ids": calibration.tolist(), "attention_mask": torch.ones_like(calibration).tolist()}
            oneshot(
                model=model,
                dataset=Dataset.from_dict(rows),
                recipe=recipe,
                num_calibration_samples=calibration.shape[0],
                max_seq_length=calibration.shape[1],
                shuffle_calibration_samples=False,
                pipeline="sequential",
                save_compressed=False,
            )
        seconds = time.perf_counter() - started
    inside, size, outside = _zeros(model)
    if outside != outside_before:
        raise SystemExit(f"{implementation} pruned {outside - outside_before} weights outside the decoder layers")
    return {
        "ppl": _perplexity(model, evaluation),
        "seconds": seconds,
        "peak_rss_mib": _peak_rss_mib(),
        "sparsity": inside / size,
    }


def _run(python: Path | str, implementation: str, row: str, inputs: Path) -> dict:
    proc = subprocess.run(
        [str(python), __file__, "--case", implementation, row, str(inputs)],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"},
    )
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"
        return {"error": tail}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def prepare(folder: Path, calib_samples: int, seq_len: int, eval_tokens: int, seed: int = 0) -> Path:
    """The shared inputs: calibration windows (drawn with ``seed``) and evaluation token ids,
    and the model folder."""
    from safetensors.torch import save_file
    from transformers import AutoTokenizer

    from es_plugins.io.assets import resolve_model_path
    from es_plugins.io.datasets import bbc_news, calibration_blocks, token_blocks

    model_dir = resolve_model_path("packaged:smollm2")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    inputs = folder / f"inputs-{seed}.safetensors"
    save_file(
        {
            "calibration": calibration_blocks(tokenizer, bbc_news("calib"), calib_samples, seq_len, seed=seed),
            "evaluation": token_blocks(tokenizer, bbc_news("eval"), eval_tokens, seq_len),
        },
        str(inputs),
    )
    inputs.with_suffix(".model").write_text(str(model_dir))
    return inputs


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--case":
        print(json.dumps(case(*sys.argv[2:5])))
        return
    sys.path.insert(0, str(HERE.parent))
    from _common import note, table

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--calib-samples", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--eval-tokens", type=int, default=4096)
    parser.add_argument("--peer-python", default=str(PEER_PYTHON), help="the peer venv's interpreter")
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0], help="calibration draws; with several, the per-seed ratio table"
    )
    parser.add_argument("--two-pass", action="store_true", help=f"also run {TWO_PASS!r} (the peer's schedule)")
    parser.add_argument("--variant", default="", help="results file suffix (benchmarks/results/llm_compressor-V.json)")
    args = parser.parse_args()
    rows = args.rows.split(",")
    if any(r not in ROWS for r in rows):
        parser.error(f"--rows: each one of {', '.join(ROWS)}")
    if not Path(args.peer_python).is_file():
        parser.error(f"no peer environment at {args.peer_python}: run bash benchmarks/peers/setup_llm_compressor.sh")
    pythons = {"es-plugins": sys.executable, "llm-compressor": args.peer_python}
    if args.two_pass:
        pythons = {"es-plugins": sys.executable, TWO_PASS: sys.executable, "llm-compressor": args.peer_python}
    note(
        variant=args.variant,
        calibration=f"{args.calib_samples} x {args.seq_len}, seeds {args.seeds}",
        evaluation_tokens=args.eval_tokens,
        model="SmolLM2-135M",
        threads=os.environ.get("BENCH_THREADS", "2"),
    )
    with tempfile.TemporaryDirectory() as tmp:
        inputs = {
            seed: prepare(Path(tmp), args.calib_samples, args.seq_len, args.eval_tokens, seed) for seed in args.seeds
        }
        first = inputs[args.seeds[0]]
        dense = {impl: _run(pythons[impl], impl, "dense", first) for impl in ("es-plugins", "llm-compressor")}
        print(f"dense perplexity: {dense}", flush=True)
        values = [d.get("ppl", float("nan")) for d in dense.values()]
        if not abs(values[0] - values[1]) <= 1e-3 * values[0]:
            raise SystemExit(f"the two environments disagree on the dense model ({values}): no comparison")
        runs: dict[tuple[str, str], list[dict]] = {}
        for _ in range(args.repeats):  # interleaved: drift on a shared machine hits every row alike
            for seed in args.seeds:
                for row in rows:
                    for impl, python in pythons.items():
                        result = {**_run(python, impl, row, inputs[seed]), "seed": seed}
                        runs.setdefault((row, impl), []).append(result)
                        print(f"{row} {impl} seed {seed}: {result}", flush=True)
    print(table(_summary(dense, runs), SUMMARY_COLUMNS))
    if len(args.seeds) > 1:
        print(f"\nPerplexity over {len(args.seeds)} calibration draws, and the paired ratio to the peer's:")
        print(table(_by_seed(runs, rows, [impl for impl in pythons if impl != "llm-compressor"]), SEED_COLUMNS))


SUMMARY_COLUMNS = ["row", "implementation", "perplexity", "pruning s", "peak RSS MiB", "decoder sparsity"]
SEED_COLUMNS = ["row", "implementation", "ppl min-max", "peer ppl min-max", "ratio to peer: mean", "min-max"]


def _summary(dense: dict, runs: dict) -> list[list[str]]:
    """Medians over every repeat and seed."""
    out = [
        ["dense", impl, f"{d['ppl']:.3f}", "-", f"{d['peak_rss_mib']:.0f}", f"{d['sparsity']:.2%}"]
        for impl, d in dense.items()
    ]
    for (row, impl), results in runs.items():
        ok = [r for r in results if "error" not in r]
        if not ok:
            out.append([row, impl, "error", results[0]["error"][:60], "-", "-"])
            continue
        med = lambda key: statistics.median(r[key] for r in ok)  # noqa: E731
        out.append(
            [
                row,
                impl,
                f"{med('ppl'):.3f}",
                f"{med('seconds'):.1f}",
                f"{med('peak_rss_mib'):.0f}",
                f"{med('sparsity'):.2%}",
            ]
        )
    return out


def _by_seed(runs: dict, rows: list[str], ours: list[str]) -> list[list[str]]:
    """Per row: each implementation's perplexity range over the seeds, and its per-seed ratio to
    the peer's perplexity on the same calibration windows (paired: the draw's own difficulty
    cancels)."""
    out = []
    for row in rows:
        peer = {r["seed"]: r["ppl"] for r in runs.get((row, "llm-compressor"), []) if "error" not in r}
        for impl in ours:
            mine = {r["seed"]: r["ppl"] for r in runs.get((row, impl), []) if "error" not in r}
            seeds = sorted(set(mine) & set(peer))
            if not seeds:
                out.append([row, impl, "-", "-", "-", "-"])
                continue
            ratios = [mine[s] / peer[s] for s in seeds]
            out.append(
                [
                    row,
                    impl,
                    f"{min(mine.values()):.2f}-{max(mine.values()):.2f}",
                    f"{min(peer.values()):.2f}-{max(peer.values()):.2f}",
                    f"{statistics.mean(ratios):.4f}",
                    f"{min(ratios):.4f}-{max(ratios):.4f}",
                ]
            )
    return out


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--case":
        main()
    else:
        sys.path.insert(0, str(HERE.parent))
        from _common import run_main

        run_main(main, __file__)
