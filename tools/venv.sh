#!/usr/bin/env bash
# Create or update the local virtual environment .venv (idempotent, re-run when pyproject changes).
# On a machine without an NVIDIA GPU the CPU build of torch is pinned (constraints-cpu.txt),
# so pip never pulls a multi-GB CUDA stack.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
stamp=.venv/.stamp-install
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints-cpu.txt -nt "$stamp" ]; then
  constraint=()
  if ! command -v nvidia-smi >/dev/null 2>&1; then constraint=(-c constraints-cpu.txt); fi
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q "${constraint[@]}" -e ".[dev,notebooks]"
  touch "$stamp"
fi
# JupyterLab 4 asks every fresh profile "get notified about official Jupyter news?" in a pop-up that covers
# the lessons' widgets: answer "never" for this venv's `jupyter lab` with a default in the application
# settings directory (overrides.d: a learner's own overrides.json and user settings still win).
settings=.venv/share/jupyter/lab/settings/overrides.d
mkdir -p "$settings"
cp tools/jupyterlab-overrides.json "$settings/mdt-teach.json"
