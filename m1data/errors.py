"""The project's own error types.

Why a base class: the command line prints a problem the user can fix (a bad file, config, name,
key or endpoint) as one line and exits 2, and must not treat a bug the same way. Everything
m1data raises for such a problem derives from :class:`M1DataError`; anything else is a bug, and
the CLI shows its traceback and asks for a report.
"""

from __future__ import annotations

__all__ = ["M1DataError", "UserError"]


class M1DataError(Exception):
    """A problem with the input, configuration, environment or an endpoint that the user can fix."""


class UserError(M1DataError, ValueError):
    """Bad input or arguments. Also a ValueError, so code that catches ValueError keeps working."""
