#!/usr/bin/env bash
# The suite again, with the oldest dependency versions pyproject.toml admits. Why: pip gives a fresh
# machine the newest of everything, so the main suite never sees the older datasets, polars or trl
# that a user's own environment may hold; a bound nothing tested was a promise (datasets 4.0
# refused files whose answer column mixes numbers and text; polars 1.0 lacked an argument m1data
# passed; the train recipes need a TrainingArguments field of transformers 5.23).
#
#   bash scripts/test_lowest.sh [pytest args]           .venv-lowest: m1data's own dependencies and
#       its llm, cards and dev extras at scripts/lowest-versions.txt (the other extras' tests skip)
#   bash scripts/test_lowest.sh --extras [pytest args]  .venv-lowest-extras: the tagger, train,
#       infer and ray extras at scripts/lowest-extras.txt, everything else at its newest
#
# Two environments, because the extras' floors lift shared packages over the core ones: transformers
# 5.23 needs huggingface_hub 1.31, which needs click 8.4.2.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_USER=0  # see setup_env.sh
source scripts/cpu_torch.sh
if [ "${1:-}" = --extras ]; then
    shift
    venv=.venv-lowest-extras pins=scripts/lowest-extras.txt extras=llm,cards,dev,tagger,train,infer,ray torch=yes
else
    venv=.venv-lowest pins=scripts/lowest-versions.txt extras=llm,cards,dev torch=no
fi
step() { printf '[m1data] %s\n' "$*" >&2; }
# One set-up of an environment at a time, as in setup_env.sh: two runs started together would both
# make it anew and run pip into it at once. The lock is on the pins file and is let go before the tests.
exec 9< "$pins"
if command -v flock > /dev/null && ! flock -n 9; then
    step "waiting for another set-up of $venv to finish"
    flock 9
fi
stamp=$venv/m1data-installed
recipe="$(cat pyproject.toml "$pins" scripts/test_lowest.sh scripts/cpu_torch.sh | sha256sum | cut -c1-16)"
failed() { tail -n 30 $venv/install.log >&2; step "$1; full log: $venv/install.log"; exit 1; }
if [ ! -x $venv/bin/python ] || [ "$(cat "$stamp" 2> /dev/null)" != "$recipe" ]; then
    step "environment: $venv, the oldest admitted versions ($pins)"
    "${M1DATA_PYTHON:-python3}" -m venv --clear $venv  # M1DATA_PYTHON: see setup_env.sh
    : > $venv/install.log
    $venv/bin/pip install --quiet --disable-pip-version-check --upgrade pip >> $venv/install.log 2>&1 \
        || failed "upgrading pip failed"
    if [ $torch = yes ]; then
        install_cpu_torch $venv $venv/install.log || failed "installing torch failed"
    fi
    $venv/bin/pip install --quiet --disable-pip-version-check -c "$pins" -e ".[$extras]" >> $venv/install.log 2>&1 \
        || failed "installing the oldest versions failed"
    echo "$recipe" > "$stamp"
fi
exec 9<&-
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
unset PYTHONDONTWRITEBYTECODE
# --max-worker-restart 0: see scripts/test.sh
step "tests: pytest, oldest admitted versions ($pins)"
exec $venv/bin/python -m pytest -n 2 --dist loadfile --max-worker-restart 0 "$@"
