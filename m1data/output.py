"""What m1data says while it works (messages and progress bars), and who decides that it is shown.

A library call is quiet: modules log through `logging.getLogger(__name__)` (every logger sits
under "m1data"), and with logging left unconfigured only warnings reach the user, the standard
way (Python's last-resort handler prints them to stderr). Bars are off. The CLI calls `enable()`
at start-up, which prints INFO messages through a handler on the "m1data" logger and turns bars
on; a script can call it too, or configure logging itself (then leave `enable` out, or records
print twice) and call `enable(verbose=False)` only for the bars.

Messages and bars share one console on stderr, looked up at each write (so pytest and typer's
CliRunner capture it), which lets a message logged while a bar is live print above the bar
instead of through it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from rich.console import Console

__all__ = ["LOGGER", "Bar", "Bars", "bar", "console", "disable", "enable", "showing_progress", "track"]

LOGGER = "m1data"
console = Console(stderr=True)  # no file given: rich resolves sys.stderr at every write

_T = TypeVar("_T")
_state = {"progress": False}


class _ConsoleHandler(logging.Handler):
    """One record, one soft-wrapped line on the shared console: a long path stays one line to
    copy, and `[brackets]` in a message are text, not markup. Warnings say so, in yellow."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            style = None
            if record.levelno >= logging.WARNING:
                text = f"{record.levelname.lower()}: {text}"
                style = "red" if record.levelno >= logging.ERROR else "yellow"
            console.print(text, style=style, markup=False, highlight=False, soft_wrap=True)
        except Exception:  # noqa: BLE001 (logging's contract: a failing handler reports, never raises)
            self.handleError(record)


def enable(verbose: bool = True, progress: bool = True) -> None:
    """Show m1data's messages on stderr (INFO and up; warnings and errors only when not
    `verbose`) and, with `progress`, its progress bars. Calling it again only changes the level."""
    logger = logging.getLogger(LOGGER)
    if not any(isinstance(h, _ConsoleHandler) for h in logger.handlers):
        logger.addHandler(_ConsoleHandler())
    logger.setLevel(logging.INFO if verbose else logging.WARNING)
    _state["progress"] = progress


def disable() -> None:
    """Back to a library's default: no handler of ours, no level set, no bars."""
    logger = logging.getLogger(LOGGER)
    for handler in [h for h in logger.handlers if isinstance(h, _ConsoleHandler)]:
        logger.removeHandler(handler)
    logger.setLevel(logging.NOTSET)
    _state["progress"] = False


def showing_progress() -> bool:
    return _state["progress"]


class Bar:
    """One progress bar. Every method is a no-op when the bar is not shown, so callers never test."""

    def __init__(self, progress: Any = None, task: Any = None):
        self._progress = progress
        self._task = task

    def advance(self, steps: float = 1, **fields: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, advance=steps, **fields)

    def update(self, *, completed: float | None = None, total: float | None = None, **fields: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=completed, total=total, **fields)


class Bars:
    """A live group of bars, one per `add`: description, bar, done/total, the named extra fields
    (cost, failures, ...), elapsed and remaining time. Shown only when `show` and output is on."""

    def __init__(self, *fields: str, show: bool = True, transient: bool = False):
        self.fields = fields
        self._progress: Any = None
        if show and showing_progress():
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            extra = [TextColumn(f"{{task.fields[{name}]}}") for name in fields]
            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), *extra,
                                      TimeElapsedColumn(), TimeRemainingColumn(), console=console,
                                      transient=transient)

    def __enter__(self) -> Bars:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def add(self, description: str, total: float | None, completed: float = 0, **fields: str) -> Bar:
        if self._progress is None:
            return Bar()
        values = {name: "" for name in self.fields} | fields
        return Bar(self._progress, self._progress.add_task(description, total=total, completed=completed, **values))


@contextmanager
def bar(description: str, total: float | None, *, completed: float = 0, fields: tuple[str, ...] = (),
        show: bool = True, transient: bool = False) -> Iterator[Bar]:
    """One bar for the length of a `with` block (see `Bars`)."""
    with Bars(*fields, show=show, transient=transient) as bars:
        yield bars.add(description, total, completed)


def track(items: Iterable[_T], description: str, total: float | None = None, *, show: bool = True,
          transient: bool = True) -> Iterator[_T]:
    """Yield `items`, advancing a bar (gone when done) as each is consumed."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with bar(description, total, show=show, transient=transient) as progress:
        for item in items:
            yield item
            progress.advance()
