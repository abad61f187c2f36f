#!/usr/bin/env bash
# Set up a virtual environment and run the main job: build m1K under runs/m1k (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh "llm,tagger,cards,embedded"
printf '[m1data] main job: m1data build m1k --out runs/m1k\n' >&2
exec .venv/bin/m1data build m1k --out runs/m1k "$@"
