"""Mutation testing of m1data's core modules with mutmut (not run in CI: it takes long).

Why: a test suite can pass while a planted bug goes unnoticed (issue 24 found six such bugs by
hand). mutmut makes many small bugs (`>` to `>=`, a constant changed, a call's argument dropped)
one at a time and runs the tests that cover the function it changed; a mutant the tests do not
fail on *survives*, and each survivor is either harmless (an equivalent change) or a contract
no test pins.

Each module is run on its own, in a scratch copy of the project (`--work`, default
/tmp/m1data-mutation/<module>, e.g. stages_answers), with only its own test files, under a time
cap: mutmut reads its settings from pyproject.toml, so the copy gets a [tool.mutmut] section
naming the one module and its tests. What finished is reported per module (generated, killed, survived, timed out, not
checked when the cap stopped it) in `--work`/summary.json and on stdout, with the survivors' names;
`mutmut show NAME` inside the module's folder prints a survivor's diff.

    pip install -e ".[dev,mutation]"
    python scripts/mutation.py                          # all six modules, 20 minutes each
    python scripts/mutation.py answers dedup --cap 600  # some modules, 10 minutes each
    python scripts/mutation.py answers --resume         # go on where a capped run stopped

Tests that read ../shared/data (real rows) are skipped in the copy unless `--shared-data DIR`
names that folder: they are the slowest and make a run many times longer.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# module -> the test files that exercise it (tests/test_pinned_contracts.py pins contracts of all)
MODULES: dict[str, list[str]] = {
    "stages/answers": ["tests/stages/test_answers.py", "tests/test_pinned_contracts.py"],
    "stages/fuzzy": ["tests/stages/test_dedup.py", "tests/test_pinned_contracts.py"],
    "stages/dedup": ["tests/stages/test_dedup.py", "tests/test_pinned_contracts.py"],
    "stages/difficulty": ["tests/stages/test_difficulty.py", "tests/test_pinned_contracts.py"],
    "stages/sampling": ["tests/stages/test_sampling.py"],
    "llm/cache": ["tests/llm/test_llm_cache.py", "tests/test_pinned_contracts.py"],
}


def module_key(name: str) -> str | None:
    """The MODULES key `name` means: the key itself or its last part (`answers` for
    `stages/answers`, as the docstring and the README write them); None when it is neither."""
    return name if name in MODULES else {key.rsplit("/", 1)[-1]: key for key in MODULES}.get(name)


def mutmut_settings(module: str, tests: list[str]) -> str:
    selection = ", ".join(json.dumps(t) for t in tests)
    return (
        "\n[tool.mutmut]\n"
        'source_paths = ["m1data"]\n'
        f'only_mutate = ["m1data/{module}.py"]\n'
        f"pytest_add_cli_args_test_selection = [{selection}]\n"
        'pytest_add_cli_args = ["-p", "no:cacheprovider", "-q"]\n'
        "timeout_multiplier = 5.0\n"  # a mutant that loops is stopped at 5x its tests' clean time, not 15x
    )


def prepare(module: str, work: Path, shared_data: Path | None, resume: bool) -> Path:
    """A scratch copy of the package and tests with mutmut's settings for `module`; with `resume`,
    the copy an earlier run left (mutmut then runs only the mutants it has no result for)."""
    folder = work / module.replace("/", "_")
    if resume and (folder / "mutants").is_dir():
        return folder
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis")
    shutil.copytree(ROOT / "m1data", folder / "m1data", ignore=ignore)
    shutil.copytree(ROOT / "tests", folder / "tests", ignore=ignore)
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    (folder / "pyproject.toml").write_text(pyproject + mutmut_settings(module, MODULES[module]), encoding="utf-8")
    if shared_data is not None:  # conftest looks for <project>/../shared/data; mutmut runs in <folder>/mutants
        (folder / "shared").mkdir()
        (folder / "shared" / "data").symlink_to(shared_data.resolve())
    return folder


def run_capped(command: list[str], cwd: Path, cap: float, log: Path) -> tuple[int | None, float]:
    """Run `command` in its own process group; after `cap` seconds interrupt it as Ctrl-C does
    (mutmut then stops its workers and keeps every result so far; a kill could cut its results
    file mid-write), and kill the group only if that does not end it. Returns (exit code, or None
    when capped; seconds)."""
    start = time.monotonic()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    # a background job of a non-interactive shell starts with SIGINT ignored, and a child inherits
    # that; with a handler here the child starts with the default and Python's KeyboardInterrupt
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with log.open("ab") as out:
        process = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=True)
        try:
            code: int | None = process.wait(timeout=cap)
        except subprocess.TimeoutExpired:
            code = None
            for sig, grace in ((signal.SIGINT, 120), (signal.SIGTERM, 30), (signal.SIGKILL, None)):
                if sig == signal.SIGINT:
                    process.send_signal(sig)
                else:
                    os.killpg(process.pid, sig)
                try:
                    process.wait(timeout=grace)
                    break
                except subprocess.TimeoutExpired:
                    continue
    return code, time.monotonic() - start


def results(folder: Path, mutmut: str) -> dict[str, list[str]]:
    """{status: [mutant names]} as `mutmut results --all true` lists them (mutants run so far)."""
    listing = subprocess.run([mutmut, "results", "--all", "true"], cwd=folder, capture_output=True, text=True)
    by_status: dict[str, list[str]] = {}
    for line in listing.stdout.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep and name:
            by_status.setdefault(status.strip(), []).append(name)
    return by_status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("modules", nargs="*", default=list(MODULES),
                        help=f"of {', '.join(MODULES)}, or their last part (answers, ...)")
    parser.add_argument("--cap", type=float, default=1200, help="seconds per module (default 1200)")
    parser.add_argument("--max-children", type=int, default=1, help="mutants run in parallel (default 1)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/m1data-mutation"))
    parser.add_argument("--shared-data", type=Path, default=None, help="../shared/data, for the real-row tests")
    parser.add_argument("--resume", action="store_true",
                        help="continue a module's earlier run (its folder in --work) instead of starting afresh")
    args = parser.parse_args(argv)
    unknown = [m for m in args.modules if module_key(m) is None]
    if unknown:
        parser.error(f"unknown module(s) {', '.join(unknown)}; known: {', '.join(MODULES)}")
    args.modules = [module_key(m) for m in args.modules]
    mutmut = shutil.which("mutmut", path=str(Path(sys.executable).parent)) or shutil.which("mutmut")
    if mutmut is None:
        parser.error('mutmut is not installed: pip install -e ".[mutation]"')

    summary_path = args.work / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    for module in args.modules:
        folder = prepare(module, args.work, args.shared_data, args.resume)
        log = folder / "mutmut.log"
        print(f"{module}: running mutmut in {folder} (cap {args.cap:.0f} s, log {log.name})", flush=True)
        code, seconds = run_capped([mutmut, "run", "--max-children", str(args.max_children)], folder, args.cap, log)
        by_status = results(folder, mutmut)
        counts = {status: len(names) for status, names in sorted(by_status.items())}
        summary[module] = {
            "finished": code is not None,
            "exit_code": code,
            "seconds": round(seconds),
            "generated": sum(counts.values()),
            "counts": counts,
            "survived": by_status.get("survived", []),
            "folder": str(folder),
        }
        args.work.mkdir(parents=True, exist_ok=True)
        summary_path.write_text(json.dumps(summary, indent=2))
        state = "finished" if code is not None else "stopped at the cap"
        print(f"{module}: {state} after {seconds:.0f} s; {counts}", flush=True)
    print(f"summary: {summary_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
