"""Writes renamed into place are on disk before the rename, and the rename before the write
returns (`m1data.durable`). What a power cut does is not testable here; what is tested is that
every file a rename publishes was fsynced under its temporary name first, and that a failure
before the rename leaves the old file and no temporary one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from test_pipeline import DropSome, Make

from m1data.durable import fsync_tree, write_atomic
from m1data.running.pipeline import run_pipeline

pytestmark = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="names fsynced files through /proc")


@pytest.fixture
def fsynced(monkeypatch):
    """The paths os.fsync was called on, in order, as they were named at the time of the call."""
    seen: list[str] = []
    real = os.fsync

    def recording(fd):
        seen.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real(fd)

    monkeypatch.setattr(os, "fsync", recording)
    return seen


def test_write_atomic_replaces_the_file_and_leaves_nothing_beside_it(tmp_path, fsynced):
    target = tmp_path / "builds.json"
    target.write_text("old")
    write_atomic(target, '{"builds": []}\n')
    assert target.read_text() == '{"builds": []}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["builds.json"]
    assert fsynced == [str(tmp_path / f".builds.json.{os.getpid()}.tmp"), str(tmp_path)]  # data, then the rename


@pytest.mark.parametrize("where", ["write", "fsync"])
def test_a_write_that_fails_before_its_rename_leaves_the_old_file_and_no_temporary_one(tmp_path, monkeypatch, where):
    target = tmp_path / "metrics.json"
    target.write_bytes(b"old")

    def fails(*args):
        raise KeyboardInterrupt  # a kill in the middle of the write

    if where == "fsync":
        monkeypatch.setattr(os, "fsync", fails)
    else:
        monkeypatch.setattr("builtins.open", _open_that_fails_on_write(open))
    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, b"new content")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def _open_that_fails_on_write(real_open):
    class Half:
        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def write(self, data):
            self.handle.write(data[: len(data) // 2])  # half of it reaches the file, then the kill
            raise KeyboardInterrupt

    def opening(path, mode="r", *args, **kwargs):
        return Half(real_open(path, mode, *args, **kwargs)) if "w" in mode else real_open(path, mode, *args, **kwargs)

    return opening


def test_fsync_tree_syncs_every_file_and_folder_under_it(tmp_path, fsynced):
    (tmp_path / "data" / "m1k").mkdir(parents=True)
    (tmp_path / "data" / "m1k" / "train-00000.parquet").write_bytes(b"x")
    (tmp_path / "README.md").write_text("card")
    fsync_tree(tmp_path)
    assert set(fsynced) == {str(tmp_path / "README.md"), str(tmp_path / "data"), str(tmp_path / "data" / "m1k"),
                            str(tmp_path / "data" / "m1k" / "train-00000.parquet"), str(tmp_path)}
    assert fsynced[-1] == str(tmp_path)


def test_a_stage_folder_is_on_disk_before_it_is_renamed_in_one_fsync_per_file(tmp_path, fsynced):
    """The stage's files were renamed into place (the `.tmp` folder swapped in) without an fsync:
    after a power cut the folder could be there with an empty manifest.json or rows.parquet."""
    run_pipeline([Make(), DropSome()], tmp_path)
    for stage in ("00_make", "01_drop"):
        for name in ("rows.parquet", "dropped.parquet", "manifest.json"):
            assert str(tmp_path / f"{stage}.tmp" / name) in fsynced  # under the name it had before the rename
        # the rename, made durable after it and before the next stage starts
        after = len(fsynced) - fsynced[::-1].index(str(tmp_path / f"{stage}.tmp"))  # (its last fsync: the tree's)
        assert fsynced[after] == str(tmp_path)
    assert str(tmp_path / f".builds.json.{os.getpid()}.tmp") in fsynced
    per_row = [p for p in fsynced if "rows.parquet" in p]
    assert len(per_row) == 2  # once per file, not per row

    fsynced.clear()
    run_pipeline([Make(), DropSome()], tmp_path, force=True)  # a rewrite swaps the folder the same way
    assert str(tmp_path / "01_drop.tmp" / "manifest.json") in fsynced


def test_the_hub_folder_is_on_disk_before_it_is_swapped_in(tmp_path, fsynced):
    import datasets

    from m1data.publishing.hub import write_hub_folder

    rows = datasets.Dataset.from_dict({"id": ["a", "b"], "question": ["q1", "q2"]})
    write_hub_folder(tmp_path / "hub", {"m1k": {"train": rows}}, "# card\n")
    staged = [Path(p) for p in fsynced if Path(p).name == "README.md"]
    assert len(staged) == 1 and staged[0].parent.name.startswith(".hub.staging-")
    assert any(p.endswith(".parquet") and ".hub.staging-" in p for p in fsynced)
    assert fsynced[-1] == str(tmp_path)  # the rename into place, durable before the write returns
