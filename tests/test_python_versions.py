"""The oldest Python that pyproject.toml's requires-python admits can import what m1data uses
from the standard library (the suite itself runs on one interpreter, which says nothing about an
older one). Checked with that interpreter where this machine has one (on PATH or under pyenv);
skipped otherwise. The check reads the source, so the old interpreter needs no packages."""

from __future__ import annotations

import glob
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIRS = ["m1data", "builders", "train", "infer", "cards", "scripts", "tests"]

# Run by the old interpreter over the source: every stdlib `from M import N`, `import M` and
# `M.attr` (M imported by name) that it cannot resolve, one per line.
SCAN = r'''
import ast, importlib, pathlib, sys
stdlib = set(sys.stdin.read().split())  # the newer interpreter's: a module the old one lacks is stdlib too
missing = []
for root in sys.argv[1:]:
    for path in sorted(pathlib.Path(root).rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        modules = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module.split(".")[0] in stdlib:
                try:
                    module = importlib.import_module(node.module)
                except ImportError:
                    missing.append(f"{path}:{node.lineno}: import {node.module}")
                    continue
                for alias in node.names:
                    if alias.name != "*" and not hasattr(module, alias.name):
                        try:
                            importlib.import_module(f"{node.module}.{alias.name}")
                        except ImportError:
                            missing.append(f"{path}:{node.lineno}: from {node.module} import {alias.name}")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] in stdlib:
                        try:
                            modules[alias.asname or alias.name] = importlib.import_module(alias.name)
                        except ImportError:
                            missing.append(f"{path}:{node.lineno}: import {alias.name}")
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules:
                if not hasattr(modules[node.value.id], node.attr):
                    missing.append(f"{path}:{node.lineno}: {node.value.id}.{node.attr}")
print("\n".join(missing))
'''


def _oldest_supported() -> tuple[int, int]:
    # read as text: tomllib is itself 3.11+, and this file is scanned too
    found = re.search(r'^requires-python = ">=3\.(\d+)"$', (ROOT / "pyproject.toml").read_text(encoding="utf-8"), re.M)
    assert found, "pyproject.toml: expected requires-python = \">=3.N\""
    return 3, int(found[1])


def interpreter(version: tuple[int, int]) -> str | None:
    """A working python3.N: on PATH, or a pyenv install (whose shim on PATH may refuse to run)."""
    name = f"python{version[0]}.{version[1]}"
    pyenv = os.path.expanduser(os.environ.get("PYENV_ROOT", "~/.pyenv"))
    candidates = [path for folder in os.environ.get("PATH", "").split(os.pathsep) if (path := os.path.join(folder, name))]
    candidates += sorted(glob.glob(os.path.join(pyenv, "versions", f"{version[0]}.{version[1]}.*", "bin", name)))
    for candidate in candidates:
        try:
            said = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True,
                                  text=True, timeout=30)
        except OSError:
            continue
        if said.returncode == 0 and said.stdout.strip() == str(version):
            return candidate
    return None


def test_the_oldest_supported_python_has_every_stdlib_name_m1data_imports():
    version = _oldest_supported()
    python = interpreter(version)
    if python is None:
        pytest.skip(f"no Python {version[0]}.{version[1]} on this machine")
    scanned = subprocess.run([python, "-I", "-c", SCAN, *PACKAGE_DIRS], cwd=ROOT, capture_output=True, text=True,
                             input=" ".join(sorted(sys.stdlib_module_names)), timeout=300, check=True)
    assert scanned.stdout.strip() == "", f"Python {version[0]}.{version[1]} lacks:\n{scanned.stdout}"
