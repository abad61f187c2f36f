"""The project's own error types.

Why a base class: the command line prints a problem the user can fix (a bad file, config, name,
key or endpoint) as one line and exits 2, and must not treat a bug the same way. Everything
m1data raises for such a problem derives from :class:`M1DataError`; anything else is a bug, and
the CLI shows its traceback and asks for a report.
"""

from __future__ import annotations

__all__ = ["M1DataError", "TERMINATED_EXIT", "Terminated", "UserError", "raise_terminated"]


class M1DataError(Exception):
    """A problem with the input, configuration, environment or an endpoint that the user can fix."""


class UserError(M1DataError, ValueError):
    """Bad input or arguments. Also a ValueError, so code that catches ValueError keeps working."""


TERMINATED_EXIT = 143  # 128 + SIGTERM: what a shell, a scheduler or a CI runner expects


class Terminated(BaseException):
    """SIGTERM, raised in the main thread (`raise_terminated` is the handler) so that every
    `with` block and `finally` runs on the way out: the run lock, a temporary file, the embedded
    model's server. A BaseException, not a KeyboardInterrupt: the CLI framework turns those into
    exit 130 (Ctrl-C's code), and SIGTERM's is 143."""


def raise_terminated(signum: int, frame: object) -> None:
    raise Terminated(f"signal {signum}")
