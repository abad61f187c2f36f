#!/usr/bin/env bash
# Set up a virtual environment with everything the tests need, then run them (two pytest workers:
# the suite is safe under pytest-xdist; README, "Tests").
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh "llm,tagger,cards,train,infer,ray,embedded,dev"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# Bytecode caches on (some machines set PYTHONDONTWRITEBYTECODE): without them every test worker
# and every command a test starts compiles m1data again, and pytest rewrites every test
# module's asserts anew (a checkout that has run the tests collects in 5 s a worker, not 10 s).
# __pycache__/ is git-ignored.
unset PYTHONDONTWRITEBYTECODE
# A worker that crashes ends the run, its test reported as failed, instead of being replaced:
# under --dist loadfile, pytest-xdist 3.8 puts the crashed worker's finished files back in the
# queue as empty work that no worker ever reports done, and the run can wait for ever (its issue
# 1378). A CI run hung so, until CI's 90-minute limit, after a worker's segmentation fault.
printf '[m1data] tests: pytest\n' >&2
exec .venv/bin/python -m pytest -n 2 --dist loadfile --max-worker-restart 0 "$@"
