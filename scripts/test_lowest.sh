#!/usr/bin/env bash
# The suite again, in .venv-lowest: m1data installed with the oldest versions of its dependencies
# that pyproject.toml admits (scripts/lowest-versions.txt). Why: pip gives a fresh machine the newest
# of everything, so the main suite never sees the older datasets, polars or typer that a user's own
# environment may hold; a bound nothing tested was a promise (datasets 4.0 refused files whose
# answer column mixes numbers and text; polars 1.0 lacked an argument m1data passed). The tagger,
# train, infer, ray and embedded extras are left out: their tests skip here. Usage: bash
# scripts/test_lowest.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_USER=0  # see setup_env.sh
venv=.venv-lowest
stamp=$venv/m1data-installed
recipe="$(cat pyproject.toml scripts/lowest-versions.txt scripts/test_lowest.sh | sha256sum | cut -c1-16)"
step() { printf '[m1data] %s\n' "$*" >&2; }
if [ ! -x $venv/bin/python ] || [ "$(cat "$stamp" 2> /dev/null)" != "$recipe" ]; then
    step "environment: $venv, the oldest admitted versions (scripts/lowest-versions.txt)"
    python3 -m venv --clear $venv
    if ! { $venv/bin/pip install --quiet --disable-pip-version-check --upgrade pip \
            && $venv/bin/pip install --quiet --disable-pip-version-check \
                -c scripts/lowest-versions.txt -e ".[llm,cards,dev]"; } > $venv/install.log 2>&1; then
        tail -n 30 $venv/install.log >&2
        step "installing the oldest versions failed; full log: $venv/install.log"
        exit 1
    fi
    echo "$recipe" > "$stamp"
fi
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
unset PYTHONDONTWRITEBYTECODE
step "tests: pytest, oldest admitted versions"
exec $venv/bin/python -m pytest -n 2 --dist loadfile "$@"
