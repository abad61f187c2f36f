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

__all__ = ["LOGGER", "Bar", "Bars", "bar", "bar_columns", "console", "datasets_bars_off", "disable", "enable",
           "showing_progress", "track"]

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


@contextmanager
def datasets_bars_off() -> Iterator[None]:
    """datasets' own bars ("Creating parquet from Arrow format", "Flattening the indices") off
    for the length of a job, then as they were: they are on by default in a fresh interpreter,
    they say nothing about m1data's work, and a library call is quiet. Also a decorator."""
    import datasets

    was_on = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_on:
            datasets.enable_progress_bars()


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


# What a bar needs at any width, in characters: the count (`196157/196157`) and the time left
# (`0:12:34`) are never cut; the description is cut first, then the extra fields, then the bar.
COUNT_WIDTH = 13
TIME_WIDTH = 7
MIN_BAR = 10
MAX_BAR = 40
MIN_FIELDS = 8
MAX_FIELDS = 56
MAX_DESCRIPTION = 32


def bar_columns(fields: tuple[str, ...], width: int) -> list[Any]:
    """The columns of a progress line `width` characters wide. Rich shrinks every column of a
    line that is too long by the same proportion, which at 80 columns cut the count to `36…` and
    the time left to nothing; so here each column gets a fixed share: description, bar,
    done/total and time left always; then the extra `fields` (rate, tokens, cost), as one
    column cut with an ellipsis; the elapsed time only where all of that fits."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
    from rich.table import Column

    def fixed(size: int, **kw: Any) -> Column:
        return Column(no_wrap=True, overflow="ellipsis", min_width=size, max_width=size, **kw)

    # one character to spare, from the description: rich before 14.3 lays a grid out one
    # character wider, which cut the time left to `-:--:-`
    description = max(8, min(MAX_DESCRIPTION, width // 4)) - 1
    free = width - description - COUNT_WIDTH - TIME_WIDTH - 3  # what is left, after the spaces between them and the spare
    bar = MIN_BAR if free >= MIN_BAR + 1 else 0
    free -= bar + 1 if bar else 0
    extra_width = min(free - 1, MAX_FIELDS) if fields and free > 1 + MIN_FIELDS else 0
    free -= extra_width + 1 if extra_width else 0
    elapsed = free >= TIME_WIDTH + 1
    free -= TIME_WIDTH + 1 if elapsed else 0
    if bar:
        bar += max(0, min(MAX_BAR - bar, free))  # what is still free lengthens the bar
    columns: list[Any] = [TextColumn("{task.description}", table_column=fixed(description))]
    if bar:
        columns.append(BarColumn(bar_width=bar, table_column=fixed(bar)))
    columns.append(MofNCompleteColumn(table_column=Column(no_wrap=True, min_width=COUNT_WIDTH, justify="right")))
    if extra_width:
        text = " ".join(f"{{task.fields[{name}]}}" for name in fields)
        columns.append(TextColumn(text, table_column=fixed(extra_width)))
    if elapsed:
        columns.append(TimeElapsedColumn(table_column=Column(no_wrap=True, min_width=TIME_WIDTH)))
    columns.append(TimeRemainingColumn(table_column=Column(no_wrap=True, min_width=TIME_WIDTH)))
    return columns


class Bars:
    """A live group of bars, one per `add`: description, bar, done/total, the named extra fields
    (cost, failures, ...), elapsed and remaining time, laid out for the console's width
    (`bar_columns`). Shown only when `show` and output is on."""

    def __init__(self, *fields: str, show: bool = True, transient: bool = False):
        self.fields = fields
        self._progress: Any = None
        if show and showing_progress():
            from rich.progress import Progress

            self._progress = Progress(*bar_columns(fields, console.width), console=console, transient=transient)

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
