"""OMP vs lottery-ticket masks on the packaged MiniLM: cosine similarity per IMP round, beside
the chance level of two random masks of the same densities — the paper's ">96 % up to ~50 %".

Runs examples/lth_vs_omp_minilm.py (each round fine-tunes on Rotten Tomatoes sentences, prunes a
fraction of the remaining weights by global magnitude and rewinds the survivors to the
pre-trained values) and records its table.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import note, run_main, table  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "lth_vs_omp_minilm.py"


def main() -> None:
    spec = importlib.util.spec_from_file_location("lth_vs_omp_minilm", EXAMPLE)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    argv = sys.argv[1:] or ["--prune-fraction", "0.1", "--rounds", "7"]
    note(example_args=" ".join(argv), seed=0)
    rows = example.main(argv)
    print(
        table(
            [
                [r["round"], f"{r['sparsity']:.2%}", f"{r['cosine']:.4f}", f"{r['chance']:.4f}", f"{r['iou']:.4f}"]
                for r in rows
            ],
            ["IMP round", "sparsity", "cosine (LTH vs OMP)", "cosine of random masks", "IoU"],
        )
    )


if __name__ == "__main__":
    run_main(main, __file__)
