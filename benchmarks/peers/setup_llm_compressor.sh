#!/usr/bin/env bash
# Build the peer's own virtual environment for benchmarks/peers/llm_compressor.py — never the
# project's .venv, never in CI. llm-compressor 0.11.0 declares torch<=2.11 and
# compressed-tensors==0.16 (ours pins 0.14): it is installed --no-deps on our torch 2.13.0 (the
# CPU wheel), with the rest of its runtime requirements pinned here; the benchmark's first row
# (dense perplexity in both environments) checks that the two stacks agree.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=${PEER_VENV:-.venv-peers/llm-compressor}
PY=${PYTHON:-python3}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip_q() { "$VENV/bin/python" -m pip install --disable-pip-version-check -q "$@"; }
pip_q "torch==2.13.0"   # first and alone, like scripts/bootstrap.sh: never a CUDA build
pip_q "transformers==4.57.6" "accelerate==1.13.0" "datasets==4.8.4" "compressed-tensors==0.16.0" \
  "loguru==0.7.3" "pyyaml==6.0.3" "requests==2.32.5" "tqdm==4.67.1" "pillow==12.0.0" "nvidia-ml-py==13.580.82" \
  "safetensors==0.8.0" "numpy<2.5"
pip_q --no-deps "llmcompressor==0.11.0"
"$VENV/bin/python" - <<'PY'
import torch, transformers, llmcompressor
from llmcompressor.modifiers.pruning import SparseGPTModifier, WandaPruningModifier  # noqa: F401
assert torch.__version__.startswith("2.13.0"), torch.__version__
print(f"peer venv ready: llmcompressor {llmcompressor.__version__}, torch {torch.__version__}, "
      f"transformers {transformers.__version__}")
PY
