"""m1data's own errors cross process boundaries intact (a Ray task pickles what it raises)."""

from __future__ import annotations

import errno
import pickle
import sqlite3
from pathlib import Path

import pytest

from m1data.errors import StorageError, UserError, storage_message
from m1data.llm.cache import CacheError
from m1data.reading.readers import MalformedFile
from m1data.schema import RowError


@pytest.mark.parametrize("err", [
    MalformedFile("train.jsonl", 3, "not JSON"),
    CacheError(Path("llm_cache.sqlite"), sqlite3.DatabaseError("file is not a database")),
    RowError("answer_out_of_range", "key 7 of 4 options"),
    StorageError(storage_message(OSError(errno.ENOSPC, "No space left on device"), "rows.parquet")),
    UserError("one line"),
], ids=lambda err: type(err).__name__)
def test_an_error_survives_pickling_as_itself(err):
    """Pickling rebuilt an error by calling its class with its message: MalformedFile (three
    arguments) and CacheError failed, so a malformed file read in a Ray task reached the driver as
    Ray's UnserializableException (found by tests/running/test_distributed.py's layout property)."""
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is type(err) and str(back) == str(err) and vars(back) == vars(err)
