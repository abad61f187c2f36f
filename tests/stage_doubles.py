"""Test stages shared by the test modules."""

from __future__ import annotations

from m1data.running.pipeline import Stage, StageResult


class Given(Stage):
    """The first stage of a test pipeline: hands over fixed rows."""

    name = "given"

    def __init__(self, rows):
        self.config = None
        self.rows = rows

    def run(self, rows, ctx) -> StageResult:
        return StageResult(rows=self.rows)
