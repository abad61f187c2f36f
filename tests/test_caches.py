"""Reading rows needs no writable HOME: `import m1data` points datasets' cache at a temp folder of
the user's when ~/.cache/huggingface/datasets cannot be made (m1data/caches.py). HOME is a file
here, in which even root cannot make a folder."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import pytest

from m1data.caches import use_a_writable_datasets_cache

READ = """
import sys
import pyarrow as pa, pyarrow.parquet as pq
import m1data
from m1data.reading.readers import parquet_dataset, read_rows
pq.write_table(pa.Table.from_pylist([{"question": "Which nerve?"}]), sys.argv[1] + "/rows.parquet")
with open(sys.argv[1] + "/rows.jsonl", "w", encoding="utf-8") as handle:
    handle.write('{"question": "Which drug?"}\\n')
print(list(parquet_dataset(sys.argv[1] + "/rows.parquet")["question"]), list(read_rows(sys.argv[1] + "/rows.jsonl")["question"]))
"""


def test_rows_are_read_where_home_cannot_be_written(tmp_path):
    home = tmp_path / "home"
    home.write_text("not a folder")
    (tmp_path / "tmp").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "XDG_"))}
    env.update(HOME=str(home), TMPDIR=str(tmp_path / "tmp"))
    done = subprocess.run([sys.executable, "-c", READ, str(tmp_path)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "['Which nerve?'] ['Which drug?']"
    assert (tmp_path / "tmp" / f"m1data-datasets-cache-{os.getuid()}").is_dir()


def test_a_writable_or_chosen_cache_is_left_alone(tmp_path, monkeypatch):
    environ = {"HF_HOME": str(tmp_path / "hf")}
    use_a_writable_datasets_cache(environ)
    assert environ == {"HF_HOME": str(tmp_path / "hf")}
    (tmp_path / "file").write_text("")
    environ = {"HF_HOME": str(tmp_path / "file" / "hf"), "HF_DATASETS_CACHE": str(tmp_path / "mine")}
    use_a_writable_datasets_cache(environ)
    assert environ["HF_DATASETS_CACHE"] == str(tmp_path / "mine")


def test_an_unwritable_cache_moves_to_the_temp_dir(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    environ = {"HF_HOME": str(tmp_path / "file" / "hf")}
    use_a_writable_datasets_cache(environ)
    assert environ["HF_DATASETS_CACHE"] == str(tmp_path / f"m1data-datasets-cache-{os.getuid()}")
    assert (tmp_path / f"m1data-datasets-cache-{os.getuid()}").stat().st_mode & 0o077 == 0  # the user's alone


@pytest.mark.parametrize("planted", ["open to all", "a link", "another user's"])
def test_a_temp_cache_folder_someone_else_planted_is_not_used(tmp_path, monkeypatch, planted):
    """The fallback's name is known (m1data-datasets-cache-UID in the shared temp dir): a folder
    another user made there first (or a link, or one anyone may write) was used as it was
    (mkdir exist_ok), so the copies of the user's rows went where that user could read or swap
    them. Now such a folder is passed over for a new private one."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    name = tmp_path / f"m1data-datasets-cache-{os.getuid()}"
    if planted == "a link":
        (tmp_path / "elsewhere").mkdir()
        name.symlink_to(tmp_path / "elsewhere")
    else:
        name.mkdir(mode=0o777)
        name.chmod(0o777)
        if planted == "another user's":
            if os.getuid() != 0:
                pytest.skip("making a folder of another user's needs root")
            name.chmod(0o700)
            os.chown(name, 65534, 65534)
    environ = {"HF_HOME": str(tmp_path / "file" / "hf")}
    (tmp_path / "file").write_text("")
    use_a_writable_datasets_cache(environ)
    chosen = environ["HF_DATASETS_CACHE"]
    assert chosen != str(name) and os.path.dirname(chosen) == str(tmp_path)
    found = os.lstat(chosen)
    assert found.st_uid == os.getuid() and found.st_mode & 0o077 == 0 and os.path.isdir(chosen)
