"""File sizes of a pruned model, ours beside the baseline, on the packaged MiniLM.

Baseline: what users ship today — the plain ``save_pretrained`` safetensors and the plain
``optimum-cli export onnx`` file, where zeros are stored densely. Ours: the compressed-tensors
checkpoint (``es-plugins compress``) and the ONNX file with sparse initializers. Every
compressed file is loaded back and compared bit for bit with the pruned weights.

    .venv/bin/python benchmarks/export_sizes.py
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import run_main, table  # noqa: E402

from es_plugins.cli import main as es_cli  # noqa: E402
from es_plugins.io.assets import packaged_model_dir  # noqa: E402
from es_plugins.io.checkpoint import load_hf_model  # noqa: E402
from es_plugins.masks.targets import resolve_targets  # noqa: E402

LEVELS = {
    "30 %": ["--sparsity", "0.3"],
    "50 %": ["--sparsity", "0.5"],
    "2:4": ["--method", "nm", "--pattern", "2:4"],
    "90 %": ["--sparsity", "0.9"],
}
MIB = 2**20


def _quiet(argv: list[str]) -> None:
    saved = sys.stdout
    sys.stdout = open(os.devnull, "w")
    try:
        assert es_cli(argv) == 0
    finally:
        sys.stdout.close()
        sys.stdout = saved


def main() -> None:
    from optimum.exporters.onnx import main_export

    from es_plugins.export.onnx_report import compare_with_pytorch
    from es_plugins.export.onnx_sparse import compress_onnx
    from es_plugins.export.onnx_weights import load_onnx
    from es_plugins.io.compressed import save_compressed

    src = packaged_model_dir("minilm")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for label, options in LEVELS.items():
            pruned = root / f"pruned-{label[:2]}"
            _quiet(["prune", "--model", str(src), str(pruned), *options])
            model = load_hf_model(pruned)
            plain = (pruned / "model.safetensors").stat().st_size
            packed = root / f"compressed-{label[:2]}"
            packed.mkdir()
            (packed / "config.json").write_text((pruned / "config.json").read_text())
            summary = save_compressed(model, packed)
            reloaded = load_hf_model(packed).state_dict()
            exact = all(t.equal(reloaded[k]) for k, t in model.state_dict().items())
            onnx_dir = root / f"onnx-{label[:2]}"
            main_export(
                str(pruned),
                output=str(onnx_dir),
                task="feature-extraction",
                opset=17,
                local_files_only=True,
                do_validation=False,
            )
            sparse_onnx = compress_onnx(onnx_dir / "model.onnx", root / f"sparse-{label[:2]}.onnx")
            onnx_exact = compare_with_pytorch(
                load_onnx(root / f"sparse-{label[:2]}.onnx"),
                dict(model.named_parameters()),
                [t.name for t in resolve_targets(model)],
            ).ok
            rows.append((label, plain, summary, exact, sparse_onnx, onnx_exact))

    print("\nPackaged MiniLM-L6 (22.7M parameters; 10.6M in the pruned encoder Linear layers), fp32, sizes in MiB")
    print(
        table(
            [
                [
                    label,
                    f"{plain / MIB:.2f}",
                    f"{summary.file_bytes / MIB:.2f}",
                    f"{summary.file_bytes / plain:.3f}",
                    f"{summary.targets_ratio:.3f}x",
                    f"{sparse_onnx.dense_file_bytes / MIB:.2f}",
                    f"{sparse_onnx.compressed_file_bytes / MIB:.2f}",
                    f"{sparse_onnx.ratio:.3f}",
                    f"{'yes' if exact and onnx_exact else 'NO'} ({summary.format})",
                ]
                for label, plain, summary, exact, sparse_onnx, onnx_exact in rows
            ],
            [
                "pruned",
                "plain .safetensors MiB",
                "compressed-tensors MiB",
                "ratio",
                "pruned layers",
                "plain .onnx MiB",
                "sparse-init .onnx MiB",
                "ratio",
                "exact",
            ],
        )
    )
    print(
        "ratio = ours / baseline file; 'pruned layers' = compressed bytes of the pruned weights / their dense "
        "bytes (floor 0.5 + 1/32 at 50 %). The token embedding (11.7M of 22.7M parameters) is not pruned, "
        "which bounds the whole-file ratio."
    )


if __name__ == "__main__":
    run_main(main, __file__)
