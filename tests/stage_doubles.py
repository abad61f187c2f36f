"""Test stages shared by the test modules."""

from __future__ import annotations

from dataclasses import dataclass

import datasets

from m1data.running.pipeline import Stage, StageResult, dropped_rows


class Given(Stage):
    """The first stage of a test pipeline: hands over fixed rows."""

    name = "given"
    reads_rows = True

    def __init__(self, rows):
        self.config = None
        self.rows = rows

    def run(self, rows, ctx) -> StageResult:
        return StageResult(rows=self.rows)


@dataclass
class FaultConfig:
    fault: str  # lose, repeat or both


class LosesTrack(Stage):
    """A stage with an accounting bug (`fault`): it loses its last row, keeps it twice, or keeps
    and drops it. Row-parallel, so a distributed executor runs it block by block."""

    name = "faulty"
    row_parallel = True

    def __init__(self, fault: str):
        self.config = FaultConfig(fault)

    def run(self, rows, ctx) -> StageResult:
        last = rows.select([len(rows) - 1])
        if self.config.fault == "lose":
            return StageResult(rows=rows.select(range(len(rows) - 1)))
        if self.config.fault == "repeat":
            return StageResult(rows=datasets.concatenate_datasets([rows, last]))
        return StageResult(rows=rows, dropped=dropped_rows(last.select_columns(["id", "source"]), "too_easy"))
