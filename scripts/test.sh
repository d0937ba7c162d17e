#!/usr/bin/env bash
# The test command: installs everything itself, runs the quality gates (ruff, mypy), then the
# whole suite (slow real-model tests and the docstring examples included).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not slow"`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# Quality gates first (seconds): lint, formatting and types; config in pyproject.toml.
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
