"""A command killed with SIGKILL in the middle of writing a chosen file: the crash that a writer
opening its final name for writing turns into a file cut short under that name. Or held there
(`held_writing`), for a second command to run meanwhile.

`killed_writing(pattern, argv)` runs `m1data ARGV` (the installed entry point) in a fresh
interpreter in which the first write to a file whose name matches `pattern` (fnmatch, on the
file name alone) puts half of its bytes on disk and then SIGKILLs the process: no `finally`, no
`except`, no atexit runs, as after `kill -9` or an OOM kill. Files opened through Python's
`open` (joblib, matplotlib, pathlib's write_text, json) are covered; pyarrow's own writer is not.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

PRELUDE = textwrap.dedent(
    """
    import builtins, fnmatch, io, os, signal, sys, time

    _pattern, _hold, _real_open = sys.argv.pop(1), sys.argv.pop(1), io.open

    class _Watched:
        def __init__(self, handle):
            self._handle = handle

        def write(self, data):
            if _hold:  # say so, wait to be let go, then write on as if nothing happened
                self.write = self._handle.write
                _real_open(_hold + ".held", "w").close()
                while not os.path.exists(_hold):
                    time.sleep(0.02)
                return self._handle.write(data)
            self._handle.write(data[: max(1, len(data) // 2)])
            self._handle.flush()
            os.kill(os.getpid(), signal.SIGKILL)

        def writelines(self, lines):
            for line in lines:
                self.write(line)

        def __getattr__(self, name):
            return getattr(self._handle, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._handle.close()

    def _open(file, mode="r", *args, **kwargs):
        handle = _real_open(file, mode, *args, **kwargs)
        named = isinstance(file, (str, os.PathLike)) and fnmatch.fnmatch(os.path.basename(os.fspath(file)), _pattern)
        return _Watched(handle) if named and any(c in mode for c in "wax") else handle

    builtins.open = io.open = _open
    sys.argv[0] = "m1data"
    from m1data.cli import main
    main()
    """
)


def killed_writing(pattern: str, argv: Sequence[object], timeout: float = 300) -> subprocess.CompletedProcess:
    """`m1data ARGV`, SIGKILLed half-way through its first write to a file named like `pattern`
    (it exits normally if it never writes one)."""
    return subprocess.run([sys.executable, "-c", PRELUDE, pattern, "", *map(str, argv)], capture_output=True,
                          text=True, timeout=timeout)


def held_writing(pattern: str, argv: Sequence[object], release: Path) -> subprocess.Popen:
    """`m1data ARGV` started, to be held at its first write to a file named like `pattern`: it
    then creates `release`.held and waits until `release` exists, and goes on."""
    return subprocess.Popen([sys.executable, "-c", PRELUDE, pattern, str(release), *map(str, argv)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)




def renaming_while_held(argv: Sequence[object], folder: Path, partials: int, settle: float = 3.0
                        ) -> tuple[list[str], subprocess.CompletedProcess]:
    """`m1data ARGV` run while this process holds `folder` (`folder_lock`): the names in `folder`
    once the command has written `partials` hidden temporary files there and `settle` seconds
    more have passed (a command that renames them only holding the folder has renamed none), and
    the command itself, finished after the folder is let go."""
    import time

    from m1data.durable import folder_lock

    with folder_lock(folder):
        command = subprocess.Popen([sys.executable, "-c", PRELUDE, "no-such-file", "", *map(str, argv)],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 300
        while (command.poll() is None and time.monotonic() < deadline
               and sum(p.name.startswith(".") and ".tmp" in p.name for p in folder.iterdir()) < partials):
            time.sleep(0.05)
        time.sleep(settle)
        names = sorted(p.name for p in folder.iterdir())
    out, err = command.communicate(timeout=300)
    return names, subprocess.CompletedProcess(command.args, command.returncode, out, err)


__all__ = ["held_writing", "killed_writing", "renaming_while_held"]
