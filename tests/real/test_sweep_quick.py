"""End-to-end `es-plugins sweep --quick` on the packaged SmolLM2 and MiniLM (about 2 minutes)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def test_quick_sweep_on_packaged_models(tmp_path):
    out = tmp_path / "report"
    result = subprocess.run(
        [sys.executable, "-m", "es_plugins", "sweep", "--quick", "--output", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"report: {out.resolve() / 'summary.md'}" in result.stdout
    lm = json.loads((out / "smollm2-perplexity" / "results.json").read_text())
    ft = json.loads((out / "minilm-finetune" / "results.json").read_text())
    # Real pre-trained models: pruning 90 % of SmolLM2's block weights wrecks it, 10 % does not.
    by_level = {round(level["sparsity"], 3): level["mean"] for level in lm["levels"]}
    assert by_level[0.9] > 10 * by_level[0.0] and by_level[0.1] < 1.2 * by_level[0.0]
    assert lm["first_failing"] is not None and 0.0 <= lm["essential_sparsity"] < lm["first_failing"] <= 0.9
    assert 0.5 < ft["dense"] <= 1.0
    for run in ("smollm2-perplexity", "minilm-finetune"):
        for name in ("summary.md", "results.csv", "metric_vs_sparsity.png"):
            assert (out / run / name).is_file()
