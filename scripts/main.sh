#!/usr/bin/env bash
# The main job on the packaged defaults: the essential-sparsity sweep of the real pre-trained
# SmolLM2-135M (BBC News perplexity) and all-MiniLM-L6-v2 (Rotten Tomatoes accuracy after
# fine-tuning), with report and plots. ~13-20 minutes on 2 cores; `bash scripts/main.sh --quick`
# takes ~5. Extra arguments go to `es-plugins sweep`. Re-running resumes finished levels.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec .venv/bin/es-plugins sweep --output runs/essential-sparsity "$@"
