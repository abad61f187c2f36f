"""The project's own error types.

Why a base class: the command line prints a problem the user can fix (a bad file, config, name,
key or endpoint) as one line and exits 2, and must not treat a bug the same way. Everything
m1data raises for such a problem derives from :class:`M1DataError`; anything else is a bug, and
the CLI shows its traceback and asks for a report.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from typing import Any

__all__ = ["M1DataError", "STORAGE_ERRNOS", "StorageError", "TERMINATED_EXIT", "Terminated", "UserError",
           "raise_terminated", "storage_cause", "storage_errors", "storage_message"]


class M1DataError(Exception):
    """A problem with the input, configuration, environment or an endpoint that the user can fix."""

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as its message and attributes, whatever its `__init__` takes. Why: an error
        raised in a Ray task is pickled back to the driver, and the default rebuilds it by calling
        the class with its message; `MalformedFile(path, line, problem)` then failed, and a
        malformed source file read on Ray came out as Ray's UnserializableException."""
        return _rebuilt, (type(self), self.args, self.__dict__)


def _rebuilt(cls: type[M1DataError], args: tuple[Any, ...], state: dict[str, Any]) -> M1DataError:
    err = cls.__new__(cls, *args)
    err.args = args
    err.__dict__.update(state)
    return err


class UserError(M1DataError, ValueError):
    """Bad input or arguments. Also a ValueError, so code that catches ValueError keeps working."""


# What the storage says when it, not m1data, is the problem, with what the user can do about it.
_STORAGE_ADVICE = {
    errno.ENOSPC: "free some space, or write elsewhere",
    errno.EDQUOT: "free some of your quota, or write elsewhere",
    errno.EFBIG: "raise the file size limit (ulimit -f), or write elsewhere",
    errno.EROFS: "write elsewhere, or mount it read-write",
    errno.EACCES: "check its permissions, or write elsewhere",
    errno.EPERM: "check its permissions, or write elsewhere",
    errno.EIO: "check the disk (it reported an I/O error)",
    errno.ENOTDIR: "a part of the path is a file, not a folder: write elsewhere",  # (OUT under a file: a traceback)
}
STORAGE_ERRNOS = frozenset(_STORAGE_ADVICE)


class StorageError(M1DataError, OSError):
    """The storage refused a write (disk full, quota, read-only, no permission, I/O error). Why an
    error of its own: it is the user's to fix, not a bug, so the CLI says it in one line, naming
    what was being written, instead of a traceback that does not name the file (pyarrow's does not)."""


@contextlib.contextmanager
def storage_errors(what: str | os.PathLike[str]) -> Iterator[None]:
    """Turn an error of the storage (`storage_cause`) raised while writing `what` into a
    StorageError that names it and says what to do; any other error passes unchanged."""
    try:
        yield
    except M1DataError:
        raise
    except Exception as err:
        cause = storage_cause(err)
        if cause is None:
            raise
        raise StorageError(storage_message(cause, what)) from err


def storage_cause(err: BaseException) -> OSError | None:
    """The storage OSError (`STORAGE_ERRNOS`) behind `err`: itself, or one it was raised from or
    while handling (`datasets` wraps a full disk in its own DatasetGenerationError)."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError) and current.errno in STORAGE_ERRNOS:
            return current
        seen.add(id(current))
        if current.__cause__ is not None or current.__suppress_context__:
            current = current.__cause__
        else:
            current = current.__context__
    return None


def storage_message(err: OSError, what: str | os.PathLike[str] | None = None, doing: str = "write") -> str:
    """One line for a storage OSError: what could not be written (used), why, and what to do."""
    target = os.fspath(what) if what is not None else err.filename
    reason = os.strerror(err.errno) if err.errno is not None else str(err)
    code = errno.errorcode.get(err.errno or 0, "")
    return (f"cannot {doing} {target or 'a file'}: {reason} ({code}); "
            f"{_STORAGE_ADVICE.get(err.errno, 'check the disk')}, then run the same command again "
            "(what was finished before is kept)")


TERMINATED_EXIT = 143  # 128 + SIGTERM: what a shell, a scheduler or a CI runner expects


class Terminated(BaseException):
    """SIGTERM, raised in the main thread (`raise_terminated` is the handler) so that every
    `with` block and `finally` runs on the way out: the run lock, a temporary file, the embedded
    model's server. A BaseException, not a KeyboardInterrupt: the CLI framework turns those into
    exit 130 (Ctrl-C's code), and SIGTERM's is 143."""


def raise_terminated(signum: int, frame: object) -> None:
    raise Terminated(f"signal {signum}")
