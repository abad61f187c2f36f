# Sourced by scripts/setup_env.sh and scripts/test_lowest.sh: `install_cpu_torch VENV LOG` puts
# torch TORCH_VERSION into VENV, the CPU build where there is one, pip's output appended to LOG.
#
# Why: torch's Linux wheels on PyPI are CUDA builds: `torch==2.13.0` from PyPI pulls 19 CUDA wheels
# with it (cuDNN, cuBLAS, NCCL, triton, ...: gigabytes). The CPU build is `2.13.0+cpu`, on
# PyTorch's own index. A wheel folder or mirror that pip is already configured with (pip.conf)
# and that has it is tried first, so a machine that cannot reach download.pytorch.org still
# installs; a machine with neither gets PyPI's build, saying so. Elsewhere (macOS) PyPI's wheel
# is the CPU build, and there is no +cpu one. Installed first, torch satisfies every later
# package that depends on it.
TORCH_VERSION=2.13.0

install_cpu_torch() {
    local pip=("$1/bin/pip" install --quiet --disable-pip-version-check) log="$2"
    if [ "$(uname -s)" != Linux ]; then
        "${pip[@]}" "torch==$TORCH_VERSION" >> "$log" 2>&1
    elif ! "${pip[@]}" "torch==$TORCH_VERSION+cpu" >> "$log" 2>&1 \
            && ! "${pip[@]}" --extra-index-url https://download.pytorch.org/whl/cpu "torch==$TORCH_VERSION+cpu" >> "$log" 2>&1; then
        printf '[m1data] %s\n' "torch: no CPU build reachable (download.pytorch.org, pip.conf); PyPI's, a CUDA build (gigabytes)" >&2
        "${pip[@]}" "torch==$TORCH_VERSION" >> "$log" 2>&1
    fi
}
