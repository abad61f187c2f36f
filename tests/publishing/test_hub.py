"""The Hub folder is checked by loading it back with `datasets` offline; the upload is checked
against a fake HfApi, the one boundary m1data does not own."""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import datasets
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from m1data.errors import UserError
from m1data.publishing.cardmeta import split_card
from m1data.publishing.hub import (
    merge_configs,
    publish,
    write_hub_folder,
)
from m1data.schema import make_row, rows_to_dataset
from m1data.stages.formatting import to_sft

SENTINEL = "hf_SENTINEL_never_write_me_0123456789"


def built_rows(n: int, source: str = "medqa") -> datasets.Dataset:
    """Rows as a build leaves them: the schema columns plus traces, domain and SFT columns."""
    rows = [
        make_row(
            source=source,
            row_id=f"{source}:{i}",
            question=f"Which drug is first line for condition {i}?",
            options=[f"drug {i}", f"other {i}", f"third {i}", f"fourth {i}"],
            answer_idx=0,
            raw={"n": i},
        )
        for i in range(n)
    ]
    ds = rows_to_dataset(rows)
    ds = ds.add_column("reasoning", [f"Thinking about case {i}." for i in range(n)])
    ds = ds.add_column("teacher_reply", [f"The answer is \\boxed{{{r['answer_letter']}}}" for r in rows])
    ds = ds.add_column("domain", ["Pharmacology" if i % 2 else "Diagnosis" for i in range(n)])
    ds = ds.add_column("domain_code", ["33" if i % 2 else "11" for i in range(n)])
    return to_sft(ds)


@pytest.fixture
def configs():
    return {
        "m23k": {"train": built_rows(40)},
        "m1k": {"train": built_rows(9, "headqa"), "validation": built_rows(3, "pubmedqa")},
    }


@pytest.fixture
def folder(tmp_path, configs):
    return write_hub_folder(tmp_path / "hub", configs, "# Test card\n\nSome prose.\n", {"lengths.png": b"\x89PNG fake"})


def card_metadata(folder: Path) -> dict:
    return split_card((folder / "README.md").read_text(encoding="utf-8"))[0]


# ---------------------------------------------------------------------------------------------
# The folder


def test_folder_layout_and_card_yaml(folder):
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert files == [
        "README.md",
        "data/m1k/train-00000-of-00001.parquet",
        "data/m1k/validation-00000-of-00001.parquet",
        "data/m23k/train-00000-of-00001.parquet",
        "images/lengths.png",
    ]
    meta = card_metadata(folder)
    assert meta["configs"] == [
        {"config_name": "m23k", "default": True, "data_files": [{"split": "train", "path": "data/m23k/train-*.parquet"}]},
        {
            "config_name": "m1k",
            "data_files": [
                {"split": "train", "path": "data/m1k/train-*.parquet"},
                {"split": "validation", "path": "data/m1k/validation-*.parquet"},
            ],
        },
    ]
    info = {e["config_name"]: e for e in meta["dataset_info"]}
    assert {s["name"]: s["num_examples"] for s in info["m1k"]["splits"]} == {"train": 9, "validation": 3}
    assert info["m23k"]["splits"][0]["num_examples"] == 40
    assert (folder / "README.md").read_text(encoding="utf-8").split("---\n", 2)[2].strip().startswith("# Test card")


def test_folder_loads_back_offline(folder, configs, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    for name, splits in configs.items():
        loaded = datasets.load_dataset(str(folder), name=name)
        assert set(loaded) == set(splits)
        for split, original in splits.items():
            assert loaded[split]["id"] == original["id"]
            assert loaded[split].column_names == original.column_names
            assert loaded[split][0]["messages"] == original[0]["messages"]
            assert loaded[split][0]["options"] == original[0]["options"]
    default = datasets.load_dataset(str(folder))
    assert list(default) == ["train"] and len(default["train"]) == 40


def test_large_splits_are_sharded_by_size(tmp_path, configs, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rows = configs["m23k"]["train"]
    out = write_hub_folder(tmp_path / "hub", {"m23k": {"train": rows}}, "# c\n", max_shard_bytes=rows.data.nbytes // 3)
    shards = sorted(p.name for p in (out / "data/m23k").iterdir())
    assert shards == [f"train-0000{i}-of-00004.parquet" for i in range(4)]
    assert datasets.load_dataset(str(out), name="m23k")["train"]["id"] == rows["id"]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(keep=st.sampled_from(["filter", "select", "shuffle"]), every=st.integers(min_value=1, max_value=9))
def test_a_split_that_is_a_view_of_a_larger_table_is_sized_by_its_own_rows(tmp_path, keep, every):
    """A filtered or selected Dataset is an index into its whole table, whose nbytes counts the
    rows it hides: the card's num_bytes and dataset_size must be those of the rows written, as
    `load_dataset` counts them, and the split must not be cut into shards for hidden rows."""
    whole = datasets.Dataset.from_dict({"id": [f"r{i}" for i in range(600)], "text": ["x" * 300] * 600})
    kept = {"filter": lambda: whole.filter(lambda r: int(r["id"][1:]) % every == 0),
            "select": lambda: whole.select(range(0, 600, every)),
            "shuffle": lambda: whole.shuffle(seed=every)}[keep]()
    out = write_hub_folder(tmp_path / f"hub-{keep}-{every}", {"m1k": {"train": kept}}, "# c\n",
                           max_shard_bytes=whole.data.nbytes // 2 + 1)
    loaded = datasets.load_dataset(str(out), name="m1k", split="train")
    assert loaded["id"] == kept["id"]
    [info] = card_metadata(out)["dataset_info"]
    assert info["splits"][0]["num_bytes"] == info["dataset_size"] == loaded.info.splits["train"].num_bytes
    expected_shards = 2 if len(kept) == len(whole) else 1
    assert len(list((out / "data/m1k").iterdir())) == expected_shards


def test_rewriting_a_folder_leaves_no_stale_shard(tmp_path, configs):
    rows = configs["m23k"]["train"]
    target = tmp_path / "hub"
    write_hub_folder(target, {"m23k": {"train": rows}}, "# c\n", max_shard_bytes=rows.data.nbytes // 3)
    write_hub_folder(target, {"m23k": {"train": rows}}, "# c\n")
    assert sorted(p.name for p in (target / "data/m23k").iterdir()) == ["train-00000-of-00001.parquet"]


def _killed_rewrite(target: Path, rows: datasets.Dataset, kill_after_unlinks: int) -> None:
    """Fork a rewrite of `target` with `rows` and SIGKILL it right after its Nth file deletion."""
    import os
    import signal

    pid = os.fork()
    if pid == 0:
        real, unlinked = os.unlink, []

        def unlink(path, *args, **kwargs):
            real(path, *args, **kwargs)
            unlinked.append(path)
            if len(unlinked) == kill_after_unlinks:
                os.kill(os.getpid(), signal.SIGKILL)

        os.unlink = unlink
        try:
            write_hub_folder(target, {"m23k": {"train": rows}}, "# new\n", max_shard_bytes=rows.data.nbytes // 3)
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


@pytest.mark.parametrize("kill_after_unlinks", [1, 2, 3])
def test_a_rewrite_killed_midway_never_leaves_part_of_a_folder(tmp_path, monkeypatch, kill_after_unlinks):
    """The old folder used to be deleted file by file before the new one was renamed in: a kill
    then left a Hub folder with some shards gone, which `load_dataset` read as the whole dataset
    (267 of 400 rows). Now the target is the old folder or the new one, never a part of either,
    and the next write removes what the killed one left beside it."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    datasets.disable_progress_bars()
    old, new = built_rows(30), built_rows(40)
    target = tmp_path / "hub"
    write_hub_folder(target, {"m23k": {"train": old}}, "# old\n", max_shard_bytes=old.data.nbytes // 3)
    _killed_rewrite(target, new, kill_after_unlinks)
    loaded = datasets.load_dataset(str(target), split="train")
    assert list(loaded["id"]) in (list(old["id"]), list(new["id"]))
    shards = sorted(p.name for p in (target / "data/m23k").iterdir())
    assert len(shards) == int(shards[0].split("-of-")[1].split(".")[0])  # every shard of the one it holds
    write_hub_folder(target, {"m23k": {"train": new}}, "# new\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hub"]  # no hidden copy left behind


def test_refuses_to_replace_a_folder_it_did_not_write(tmp_path, configs):
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        write_hub_folder(target, configs, "# c\n")
    assert (target / "notes.txt").read_text(encoding="utf-8") == "keep me"


def test_rejects_bad_names(tmp_path, configs):
    with pytest.raises(ValueError, match="split name"):
        write_hub_folder(tmp_path / "a", {"m1k": {"train-hard": configs["m23k"]["train"]}}, "# c\n")
    with pytest.raises(ValueError, match="config name"):
        write_hub_folder(tmp_path / "b", {"../x": {"train": configs["m23k"]["train"]}}, "# c\n")
    with pytest.raises(ValueError, match="image name"):
        write_hub_folder(tmp_path / "c", configs, "# c\n", {"../x.png": b""})


def test_card_yaml_keys_are_kept_and_configs_rewritten(tmp_path, configs):
    card = "---\nlicense: other\nconfigs:\n- config_name: stale\n---\n# c\n"
    meta = card_metadata(write_hub_folder(tmp_path / "hub", configs, card))
    assert meta["license"] == "other"
    assert [c["config_name"] for c in meta["configs"]] == ["m23k", "m1k"]


# ---------------------------------------------------------------------------------------------
# Publishing against a fake HfApi


REMOTE_CARD = """---
license: mit
pretty_name: Somebody else's
configs:
- config_name: other
  default: true
  data_files:
  - split: train
    path: data/other/train-*.parquet
- config_name: m1k
  data_files:
  - split: train
    path: data/m1k/train-*.parquet
dataset_info:
- config_name: other
  splits:
  - name: train
    num_examples: 5
- config_name: m1k
  splits:
  - name: train
    num_examples: 999
---
# Their card
"""


class FakeHfApi:
    """Records every call and serves a canned remote repo: its files and its README."""

    def __init__(self, tmp_path: Path, remote_files: list[str], remote_card: str | None):
        self.tmp_path = tmp_path
        self.remote_files = list(remote_files) + (["README.md"] if remote_card is not None else [])
        self.remote_card = remote_card
        self.calls: list[tuple[str, tuple, dict]] = []

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", (repo_id,), kwargs))
        return SimpleNamespace(repo_id=repo_id)

    def repo_info(self, repo_id, **kwargs):
        self.calls.append(("repo_info", (repo_id,), kwargs))
        return SimpleNamespace(sha="abc123", siblings=[SimpleNamespace(rfilename=f) for f in self.remote_files])

    def hf_hub_download(self, repo_id, filename, **kwargs):
        self.calls.append(("hf_hub_download", (repo_id, filename), kwargs))
        path = self.tmp_path / "remote_README.md"
        path.write_text(self.remote_card)
        return str(path)

    def create_commit(self, repo_id, operations, **kwargs):
        operations = list(operations)
        self.calls.append(("create_commit", (repo_id, operations), kwargs))
        return SimpleNamespace(commit_url=f"https://hub.invalid/{repo_id}/commit/1", oid="1")

    def named(self, name):
        return [c for c in self.calls if c[0] == name]


class RefusingHfApi:
    """Any attribute access is a network call a dry run must not make."""

    def __getattr__(self, name):
        raise AssertionError(f"dry run called HfApi.{name}")


def operation_bytes(op) -> bytes:
    content = op.path_or_fileobj
    return content if isinstance(content, bytes) else Path(content).read_bytes()


def committed_card(api) -> tuple[dict, str]:
    """The README.md of the one commit made, split into its metadata and its body."""
    [(_, (_, operations), _)] = api.named("create_commit")
    readme = next(op for op in operations if op.path_in_repo == "README.md")
    return split_card(operation_bytes(readme).decode())


def published_card_body(tmp_path, card: str, repo_id: str) -> str:
    """The body of `card` as `publish` commits it to a new repo `repo_id`, beside three rows."""
    folder = write_hub_folder(tmp_path / "hub", {"m1k": {"train": built_rows(3)}}, card)
    api = FakeHfApi(tmp_path, [".gitattributes"], None)
    publish(folder, repo_id, api=api)
    return committed_card(api)[1]


@pytest.fixture
def m1k_folder(tmp_path):
    return write_hub_folder(tmp_path / "hub", {"m1k": {"train": built_rows(7)}}, "# m1K card\n", {"m1k.png": b"\x89PNG"})


def test_publish_merges_with_configs_on_the_repo(tmp_path, m1k_folder):
    remote_files = [
        "data/other/train-00000-of-00001.parquet",
        "data/m1k/train-00000-of-00002.parquet",
        "data/m1k/train-00001-of-00002.parquet",
        "images/other.png",
        ".gitattributes",
    ]
    api = FakeHfApi(tmp_path, remote_files, REMOTE_CARD)
    plan = publish(m1k_folder, "org/m1", api=api, private=True)

    [(_, (repo_id,), kwargs)] = api.named("create_repo")
    assert repo_id == "org/m1" and kwargs == {"repo_type": "dataset", "private": True, "exist_ok": True}
    [(_, (_, operations), commit_kwargs)] = api.named("create_commit")
    assert commit_kwargs["repo_type"] == "dataset" and commit_kwargs["parent_commit"] == "abc123"
    assert api.named("hf_hub_download")[0][2]["revision"] == "abc123"

    added = {op.path_in_repo: op for op in operations if type(op).__name__ == "CommitOperationAdd"}
    deleted = sorted(op.path_in_repo for op in operations if type(op).__name__ == "CommitOperationDelete")
    assert sorted(added) == ["README.md", "data/m1k/train-00000-of-00001.parquet", "images/m1k.png"]
    assert deleted == ["data/m1k/train-00000-of-00002.parquet", "data/m1k/train-00001-of-00002.parquet"]
    assert not [p for p in deleted if not p.startswith("data/m1k/")]

    meta, body = split_card(operation_bytes(added["README.md"]).decode())
    assert body.strip().endswith("\n# m1K card") and "also holds config(s) `other`" in body
    configs = {c["config_name"]: c for c in meta["configs"]}
    assert list(configs) == ["other", "m1k"]
    assert configs["other"]["default"] is True and "default" not in configs["m1k"]
    assert configs["m1k"]["data_files"] == [{"split": "train", "path": "data/m1k/train-*.parquet"}]
    info = {e["config_name"]: e for e in meta["dataset_info"]}
    assert info["other"]["splits"][0]["num_examples"] == 5
    assert info["m1k"]["splits"][0]["num_examples"] == 7
    assert meta["pretty_name"] == "Somebody else's"  # keys only the remote card has are kept

    assert plan.configs == ["other", "m1k"] and plan.default_config == "other"
    assert plan.replaced_configs == ["m1k"] and plan.kept_remote_configs == ["other"]
    assert plan.commit_url.endswith("/commit/1") and not plan.dry_run


def test_publish_to_a_new_repo_uses_our_configs(tmp_path, m1k_folder):
    api = FakeHfApi(tmp_path, [".gitattributes"], None)
    plan = publish(m1k_folder, "org/new", api=api)
    assert api.named("hf_hub_download") == []
    meta, _ = committed_card(api)
    assert meta["configs"][0]["config_name"] == "m1k" and meta["configs"][0]["default"] is True
    assert plan.deletions == [] and plan.default_config == "m1k"


class ReadOnlyHfApi(FakeHfApi):
    """A dry run may read the repo (to say what it would replace) but never write to it."""

    def create_repo(self, *args, **kwargs):
        raise AssertionError("dry run called HfApi.create_repo")

    def create_commit(self, *args, **kwargs):
        raise AssertionError("dry run called HfApi.create_commit")


def test_dry_run_writes_nothing_and_says_exactly_what_it_replaces(tmp_path, m1k_folder, capsys, monkeypatch):
    """Changed on purpose (issue 11, item 9): the dry run used to make no call at all, so its plan
    could not say what would be replaced. It now reads the repo and card, and writes nothing."""
    import huggingface_hub

    remote = ["data/other/train-00000-of-00001.parquet", "data/m1k/train-00000-of-00002.parquet",
              "data/m1k/train-00001-of-00002.parquet"]
    api = ReadOnlyHfApi(tmp_path, remote, REMOTE_CARD)
    plan = publish(m1k_folder, "org/m1", dry_run=True, api=api)
    assert plan.dry_run and plan.commit_url is None and plan.remote_read
    assert plan.configs == ["other", "m1k"] and plan.replaced_configs == ["m1k"]
    assert plan.deletions == ["data/m1k/train-00000-of-00002.parquet", "data/m1k/train-00001-of-00002.parquet"]
    sizes = {f.path_in_repo: f.size for f in plan.files}
    assert sizes["data/m1k/train-00000-of-00001.parquet"] == (m1k_folder / "data/m1k/train-00000-of-00001.parquet").stat().st_size
    assert set(sizes) == {"README.md", "data/m1k/train-00000-of-00001.parquet", "images/m1k.png"}

    monkeypatch.setattr(huggingface_hub, "HfApi", lambda *a, **k: api)
    from typer.testing import CliRunner

    from m1data.cli import app

    printed = CliRunner().invoke(app, ["publish", str(m1k_folder), "--repo-id", "org/m1", "--dry-run"]).output
    assert "DRY RUN" in printed and "data/m1k/train-00000-of-00001.parquet" in printed
    assert "replaced: m1k" in printed and "- data/m1k/train-00001-of-00002.parquet" in printed


def test_token_goes_only_to_hfapi_and_is_never_written(tmp_path, m1k_folder, monkeypatch, capsys, shown_output):
    import huggingface_hub

    monkeypatch.setenv("HF_TOKEN", SENTINEL)
    api = FakeHfApi(tmp_path, ["data/m1k/train-00000-of-00001.parquet"], REMOTE_CARD)
    received = []

    def make_api(*args, **kwargs):
        received.append(kwargs.get("token"))
        return api

    monkeypatch.setattr(huggingface_hub, "HfApi", make_api)
    plan = publish(m1k_folder, "org/m1", token=SENTINEL)
    assert received == [SENTINEL]

    [(_, (_, operations), kwargs)] = api.named("create_commit")
    for op in operations:
        if hasattr(op, "path_or_fileobj"):
            assert SENTINEL.encode() not in operation_bytes(op)
    recorded = json.dumps([(name, args[0], kwargs) for name, args, kwargs in api.calls], default=str)
    assert SENTINEL not in recorded
    for path in m1k_folder.rglob("*"):
        if path.is_file():
            assert SENTINEL.encode() not in path.read_bytes()
    out = capsys.readouterr()
    assert SENTINEL not in out.out + out.err + plan.describe() + repr(plan)


def test_refuses_to_upload_a_file_holding_the_token(tmp_path, m1k_folder, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", SENTINEL)
    (m1k_folder / "README.md").write_text((m1k_folder / "README.md").read_text(encoding="utf-8") + f"\ntoken: {SENTINEL}\n")
    api = FakeHfApi(tmp_path, [], None)
    with pytest.raises(ValueError, match="contains your Hub token"):
        publish(m1k_folder, "org/m1", api=api)
    assert api.named("create_commit") == []


@pytest.mark.parametrize("api_kind", ["readable", "offline"])
def test_a_dry_run_says_the_publish_would_refuse_a_secret(tmp_path, m1k_folder, monkeypatch, api_kind):
    """The dry run searched for local paths only: a folder holding the Hub token or an API key got
    a clean plan, and the publish then refused it. It now says so, naming what it holds, never the
    value; offline too."""
    monkeypatch.setenv("HF_TOKEN", SENTINEL)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-audit-0123456789abcdef")
    card = m1k_folder / "README.md"
    for text, said in ((f"\ntoken: {SENTINEL}\n", "README.md contains your Hub token"),
                       ("\nkey: sk-audit-0123456789abcdef\n", "README.md contains the value of OPENAI_API_KEY")):
        original = card.read_text(encoding="utf-8")
        card.write_text(original + text, encoding="utf-8")
        api = ReadOnlyHfApi(tmp_path, [], None) if api_kind == "readable" else OfflineHfApi(tmp_path, [], None)
        shown = publish(m1k_folder, "org/m1", dry_run=True, api=api).describe()
        assert f"REFUSED: a publish would stop, refusing to upload: {said}" in shown
        assert SENTINEL not in shown and "sk-audit" not in shown
        card.write_text(original, encoding="utf-8")
    assert "REFUSED" not in publish(m1k_folder, "org/m1", dry_run=True, api=ReadOnlyHfApi(tmp_path, [], None)).describe()


def test_publish_needs_a_hub_folder(tmp_path):
    with pytest.raises(FileNotFoundError):
        publish(tmp_path, "org/m1", dry_run=True)


def test_merge_keeps_our_default_when_theirs_has_none():
    ours = [{"config_name": "m1k", "default": True, "data_files": []}]
    theirs = [{"config_name": "m23k", "data_files": [{"split": "train", "path": "x"}]}]
    merged = merge_configs(ours, theirs)
    assert [c["config_name"] for c in merged] == ["m23k", "m1k"]
    assert merged[1]["default"] is True and merged[0] == theirs[0]
    # a remote config literally named "default" is the repo's default: ours gives way
    merged = merge_configs(ours, [{"config_name": "default", "data_files": []}])
    assert "default" not in merged[1]


def test_folder_card_is_plain_yaml(folder):
    header = (folder / "README.md").read_text(encoding="utf-8").split("---\n")[1]
    assert isinstance(yaml.safe_load(header), dict)


def test_refuses_to_upload_any_configured_api_key(tmp_path, monkeypatch):
    """Not only the Hub token: the value of every key variable the run's config names, and of any
    *_API_KEY in the environment, stops the upload; the message names the variable, not the value."""
    run = tmp_path / "run"
    (run / "04_traces").mkdir(parents=True)
    (run / "04_traces" / "manifest.json").write_text(json.dumps(
        {"stage": "traces", "index": 4, "config": {"api_key_env": "MY_TEACHER_SECRET"}}))
    teacher_key, openai_key = "tk-teacher-0123456789abcdef", "sk-openai-0123456789abcdef"
    monkeypatch.setenv("MY_TEACHER_SECRET", teacher_key)
    monkeypatch.setenv("OPENAI_API_KEY", openai_key)
    monkeypatch.delenv("HF_TOKEN", raising=False)

    cases = [(teacher_key, "MY_TEACHER_SECRET", "README.md"), (openai_key, "OPENAI_API_KEY", "images/k.png")]
    for value, name, where in cases:
        folder = write_hub_folder(run / "hub", {"m1k": {"train": built_rows(3)}}, "# card\n", {"k.png": b"\x89PNG"})
        target = folder / where
        target.write_bytes(target.read_bytes() + f"\nleaked: {value}\n".encode())
        api = FakeHfApi(tmp_path, [], None)
        with pytest.raises(ValueError, match=name) as err:
            publish(folder, "org/m1", api=api)
        assert value not in str(err.value) and where in str(err.value)
        assert api.named("create_commit") == []


# ---------------------------------------------------------------------------------------------
# Publishing over a repo that already holds data (a repo kept in a local folder, so that what a
# commit leaves behind is loaded back with `datasets` itself)


class LocalRepoApi:
    """The HfApi calls publish makes, served from a folder holding the repo's real files."""

    def __init__(self, repo: Path):
        self.repo = repo
        self.calls: list[tuple[str, tuple, dict]] = []
        self.exists = repo.exists()

    def files(self) -> list[str]:
        return sorted(p.relative_to(self.repo).as_posix() for p in self.repo.rglob("*") if p.is_file())

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", (repo_id,), kwargs))
        self.repo.mkdir(parents=True, exist_ok=True)
        (self.repo / ".gitattributes").write_text("*.parquet filter=lfs\n")
        self.exists = True

    def repo_info(self, repo_id, **kwargs):
        self.calls.append(("repo_info", (repo_id,), kwargs))
        if not self.exists:
            from huggingface_hub.errors import RepositoryNotFoundError

            http = importlib.import_module("httpx2" if importlib.util.find_spec("httpx2") else "httpx")  # hub's client
            url = f"https://huggingface.co/api/datasets/{repo_id}"
            raise RepositoryNotFoundError("404", response=http.Response(404, request=http.Request("GET", url)))
        return SimpleNamespace(sha="sha1", siblings=[SimpleNamespace(rfilename=f) for f in self.files()])

    def hf_hub_download(self, repo_id, filename, **kwargs):
        self.calls.append(("hf_hub_download", (repo_id, filename), kwargs))
        return str(self.repo / filename)

    def create_commit(self, repo_id, operations, **kwargs):
        self.calls.append(("create_commit", (repo_id, list(operations)), kwargs))
        for op in operations:
            target = self.repo / op.path_in_repo
            if type(op).__name__ == "CommitOperationDelete":
                target.unlink()
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(operation_bytes(op))
        return SimpleNamespace(commit_url=f"https://hub.invalid/{repo_id}/commit/2", oid="2")

    def named(self, name):
        return [c for c in self.calls if c[0] == name]


def pushed_repo(tmp_path, *, with_card: bool) -> Path:
    """A repo as `push_to_hub` (or a hand upload) leaves it: data/train-*.parquet, and either no
    README or one without `configs:`; `datasets` finds its data by file-name conventions."""
    repo = tmp_path / "remote"
    (repo / "data").mkdir(parents=True)
    built_rows(5, "pubmedqa").to_parquet(str(repo / "data/train-00000-of-00001.parquet"))
    if with_card:
        (repo / "README.md").write_text("---\nlicense: mit\n---\n# Their data\n")
    return repo


@pytest.mark.parametrize("with_card", [False, True])
def test_data_found_by_file_conventions_stays_reachable(tmp_path, m1k_folder, monkeypatch, with_card):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    repo = pushed_repo(tmp_path, with_card=with_card)
    before = datasets.load_dataset(str(repo), split="train")["id"]
    api = LocalRepoApi(repo)
    plan = publish(m1k_folder, "org/mixed", api=api)
    assert plan.kept_remote_configs == ["default"] and plan.replaced_configs == [] and plan.deletions == []
    assert "default" in plan.describe() and plan.unreachable == []
    assert datasets.load_dataset(str(repo), split="train")["id"] == before  # their default is still the default
    assert datasets.load_dataset(str(repo), name="m1k", split="train")["id"] == built_rows(7)["id"]
    assert "data/train-00000-of-00001.parquet" in api.files()


def test_publishing_m1k_over_an_m23k_repo_keeps_m23k(tmp_path, monkeypatch):
    """Each build's config is named after its dataset, so m1K lands beside m23K, not over it."""
    from m1data.publishing.export import export_run
    from m1data.running.pipeline import Stage, StageResult, run_pipeline

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    class Given(Stage):
        name = "format"
        reads_rows = True
        config = None

        def __init__(self, rows):
            self.rows = rows

        def run(self, rows, ctx):
            return StageResult(rows=self.rows)

    folders = {}
    for name, n in (("m23k", 12), ("m1k", 4)):
        run_pipeline([Given(built_rows(n))], tmp_path / name)
        folders[name] = export_run(name, tmp_path / name, tmp_path / name / "hub")
    assert card_metadata(folders["m1k"])["configs"][0]["config_name"] == "m1k"
    custom = export_run("m1k", tmp_path / "m1k", tmp_path / "custom", config_name="m1k-v2")
    assert card_metadata(custom)["configs"][0]["config_name"] == "m1k-v2"

    api = LocalRepoApi(tmp_path / "remote")
    publish(folders["m23k"], "org/m1", api=api)
    assert [c[0] for c in api.calls][:2] == ["repo_info", "create_repo"]  # a new repo: created after reading
    plan = publish(folders["m1k"], "org/m1", api=api)
    assert plan.deletions == [] and plan.replaced_configs == []
    assert plan.kept_remote_configs == ["m23k", "m23k-prompt-completion"]  # both views of m23K stay
    assert len(datasets.load_dataset(str(api.repo), name="m23k", split="train")) == 12
    assert len(datasets.load_dataset(str(api.repo), name="m1k", split="train")) == 4
    assert len(datasets.load_dataset(str(api.repo), split="train")) == 12  # m23K stays the default

    # the README is now m1K's card: its quick start must load m1K's rows, and it must say that it
    # does not describe m23K, which `load_dataset(repo)` returns
    readme = (api.repo / "README.md").read_text(encoding="utf-8")
    call = re.search(r'load_dataset\("org/m1"(?P<args>[^)]*)\)', readme)
    name = re.search(r'name="([^"]+)"', call["args"])
    assert name and len(datasets.load_dataset(str(api.repo), name=name[1], split="train")) == 4
    assert "--dataset_config m1k " in readme
    assert "also holds config(s) `m23k`, `m23k-prompt-completion`" in readme
    assert "without `name=` returns `m23k`" in readme
    plan = publish(folders["m1k"], "org/m1", api=api)  # published again: one note, not two
    assert (api.repo / "README.md").read_text(encoding="utf-8").count("also holds config(s)") == 1

    # the shared repo's card says m1data_build: m1k (the last publisher), its default is m23K's: drawing
    # m1K again from it reads its m23k config by name (it was refused, or read its default config)
    from m1data.stages.loading import DatasetInput, LoadDataset

    from m1data.publishing.cardmeta import join_card

    meta, body = split_card((api.repo / "README.md").read_text(encoding="utf-8"))
    meta["configs"] = [{**c, "default": c["config_name"] == "m1k"} for c in meta["configs"]]  # m1K published first
    (api.repo / "README.md").write_text(join_card(meta, body), encoding="utf-8")
    assert meta["m1data_build"] == "m1k" and len(datasets.load_dataset(str(api.repo), split="train")) == 4
    result = LoadDataset(DatasetInput(str(api.repo))).run(None, None)
    assert sorted(result.rows["id"]) == sorted(built_rows(12)["id"])


def test_publish_deletes_only_shards_it_wrote(tmp_path, m1k_folder):
    remote = ["data/m1k/train-00000-of-00003.parquet", "data/m1k/notes.md", "data/m1k/README.txt"]
    api = FakeHfApi(tmp_path, remote, REMOTE_CARD)
    plan = publish(m1k_folder, "org/m1", api=api)
    assert plan.deletions == ["data/m1k/train-00000-of-00003.parquet"]
    [(_, (_, operations), _)] = api.named("create_commit")
    deleted = [op.path_in_repo for op in operations if type(op).__name__ == "CommitOperationDelete"]
    assert deleted == ["data/m1k/train-00000-of-00003.parquet"]

    # a file somebody else put where our config reads would be mixed into it: refuse, change nothing
    api = FakeHfApi(tmp_path, ["data/m1k/train-theirs.parquet"], REMOTE_CARD)
    with pytest.raises(ValueError, match="data/m1k/train-theirs.parquet"):
        publish(m1k_folder, "org/m1", api=api)
    assert api.named("create_commit") == [] and api.named("create_repo") == []

    # a same-named config laid out by another tool: replaced, its files kept and listed as unreachable
    theirs = "---\nconfigs:\n- config_name: m1k\n  data_files: m1k/train-*.parquet\n---\n"
    api = FakeHfApi(tmp_path, ["m1k/train-00000-of-00001.parquet"], theirs)
    plan = publish(m1k_folder, "org/m1", api=api)
    assert plan.replaced_configs == ["m1k"] and plan.deletions == []
    assert plan.unreachable == ["m1k/train-00000-of-00001.parquet"]
    assert "m1k/train-00000-of-00001.parquet" in plan.describe()


def test_a_malformed_remote_card_is_a_clear_error_before_anything_changes(tmp_path, m1k_folder):
    api = FakeHfApi(tmp_path, [], "---\nconfigs: [unclosed\nlicense: mit\n---\n# x\n")
    with pytest.raises(ValueError, match="org/m1.*README.md") as err:
        publish(m1k_folder, "org/m1", api=api)
    assert "YAML" in str(err.value)
    assert api.named("create_repo") == [] and api.named("create_commit") == []


def test_publish_writes_the_real_repo_id_into_the_cards_quick_start(tmp_path):
    card = '# m1K\n\n```python\nds = load_dataset("<org>/m1K", split="train")\n```\n`trl sft --dataset_name <org>/m1K`\n'
    body = published_card_body(tmp_path, card, "my-lab/m1K-rebuilt")
    assert "<org>/" not in body
    assert body.count("my-lab/m1K-rebuilt") == 2 and 'load_dataset("my-lab/m1K-rebuilt"' in body


def test_publish_fills_the_repo_id_into_a_card_rendered_without_one(tmp_path):
    from m1data.publishing.cardmeta import REPO_ID_MARK

    card = (f"---\npretty_name: m1K\n---\n# m1K\n\n{REPO_ID_MARK}\n```python\nds = load_dataset(\"m1K\", split=\"train\")\n"
            "```\n`trl sft --dataset_name m1K --assistant_only_loss true`; `load_dataset(\"m1K\", name=\"m1k-pc\")`\n"
            "m1K is the small training set; `m1K-style` stays.\n")
    body = published_card_body(tmp_path, card, "my-lab/m1K-rebuilt")
    assert REPO_ID_MARK not in body and "<!--" not in body
    assert 'load_dataset("my-lab/m1K-rebuilt", split="train")' in body
    assert 'load_dataset("my-lab/m1K-rebuilt", name="m1k-pc")' in body
    assert "--dataset_name my-lab/m1K-rebuilt --assistant_only_loss" in body
    assert "m1K is the small training set; `m1K-style` stays." in body  # prose is not a repo id


@pytest.mark.parametrize("where", ["card", "rows"])
def test_publish_refuses_a_folder_holding_a_local_path_and_a_dry_run_lists_it(tmp_path, where, capsys):
    clone = str(Path(__file__).resolve().parents[2])
    path = f"{clone}/runs/m1k/SmolLM2-135M-Instruct-Q4_1.gguf"
    rows = built_rows(3)
    card = "# m1K card\n"
    if where == "card":
        card += f"| teacher | `{path}` | traces |\n"
    else:
        rows = rows.add_column("teacher_served_model", ["", path, ""])
    folder = write_hub_folder(tmp_path / "hub", {"m1k": {"train": rows}}, card)
    api = FakeHfApi(tmp_path, [".gitattributes"], None)
    with pytest.raises(ValueError, match="refusing to upload: .*is an absolute local path") as err:
        publish(folder, "org/m1K", api=api)
    assert path in str(err.value)
    assert api.named("create_repo") == [] and api.named("create_commit") == []

    plan = publish(folder, "org/m1K", api=ReadOnlyHfApi(tmp_path, [".gitattributes"], None), dry_run=True)
    expected = ("README.md" if where == "card" else "data/m1k/train-00000-of-00001.parquet (column "
                "'teacher_served_model', row 1)") + f": {path}"
    assert plan.local_paths == [expected]
    assert "REFUSED: the folder holds 1 absolute local path(s)" in plan.describe() and expected in plan.describe()


def test_a_clean_folder_publishes_and_its_dry_run_reports_no_path(tmp_path, m1k_folder):
    plan = publish(m1k_folder, "org/m1K", api=ReadOnlyHfApi(tmp_path, [".gitattributes"], None), dry_run=True)
    assert plan.local_paths == [] and "REFUSED" not in plan.describe()


class OfflineHfApi(ReadOnlyHfApi):
    def repo_info(self, repo_id, **kwargs):
        raise ConnectionError("Name or service not known")


def test_a_dry_run_that_cannot_read_the_repo_does_not_say_it_exists(tmp_path, m1k_folder):
    plan = publish(m1k_folder, "org/m1", api=OfflineHfApi(tmp_path, [], None), dry_run=True)
    text = plan.describe()
    assert "exists" not in text and "will be created" not in text and "not known" in text
    assert "the repo could not be read (ConnectionError: Name or service not known)" in text


@pytest.mark.parametrize("dry_run", [True, False])
def test_a_malformed_repo_id_is_refused_before_any_call(m1k_folder, dry_run):
    with pytest.raises(UserError, match="'bad id!!' is not a Hub repo id"):
        publish(m1k_folder, "bad id!!", api=RefusingHfApi(), dry_run=dry_run)


# ---------------------------------------------------------------------------------------------
# The Hub's error messages: huggingface_hub quotes the URL and the server's error body. A server
# (or proxy, or mirror named by HF_ENDPOINT) that echoes request headers puts the token there;
# a dry run printed it in its plan, a real publish in an internal error's traceback.


@pytest.fixture
def echoing_hub():
    """A real HTTP server on 127.0.0.1 that answers every request with a 401 whose body quotes
    the request's headers; yields its URL with `user:password@` in it."""
    import http.server
    import threading

    class Echo(http.server.BaseHTTPRequestHandler):
        def _answer(self):
            body = json.dumps({"error": f"unauthorized; you sent {dict(self.headers)}"}).encode()
            self.send_response(401)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_HEAD = _answer

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://hubuser:{HUB_PASSWORD}@127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


HUB_PASSWORD = "hubPASSWORD0123456789"


@pytest.mark.parametrize("with_userinfo", [False, True])
def test_hub_errors_that_echo_the_token_are_masked(m1k_folder, echoing_hub, monkeypatch, with_userinfo):
    import base64

    from huggingface_hub import HfApi

    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # the suite runs offline
    monkeypatch.delenv("HF_TOKEN", raising=False)
    endpoint = echoing_hub if with_userinfo else echoing_hub.replace(f"hubuser:{HUB_PASSWORD}@", "")
    api = HfApi(endpoint=endpoint, token=SENTINEL)
    basic = base64.b64encode(f"hubuser:{HUB_PASSWORD}".encode()).decode()

    plan = publish(m1k_folder, "org/m1", dry_run=True, api=api, token=SENTINEL)
    shown = plan.describe()
    assert "401" in shown and "you sent" in shown  # the server's answer is still shown
    with pytest.raises(UserError, match="the Hub refused org/m1") as err:
        publish(m1k_folder, "org/m1", api=api, token=SENTINEL)
    for text in (shown, str(err.value)):
        assert SENTINEL not in text and HUB_PASSWORD not in text and basic not in text, text
    assert err.value.__cause__ is None and err.value.__suppress_context__  # no traceback quotes it either


def test_offline_mode_is_one_line_naming_no_credentials(m1k_folder, echoing_hub, monkeypatch):
    """huggingface_hub's offline refusal quotes the URL it would have called, HF_ENDPOINT's
    `user:password@` included."""
    import huggingface_hub.constants
    from huggingface_hub import HfApi

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(UserError, match="offline") as err:
        publish(m1k_folder, "org/m1", api=HfApi(endpoint=echoing_hub, token=SENTINEL), token=SENTINEL)
    assert HUB_PASSWORD not in str(err.value) and "127.0.0.1" in str(err.value)


ECHOED_TOKEN = "MirrorTokenAbCdEf0123456789xyzQ"  # not shaped like hf_...: masked only as this token's value


@pytest.fixture(params=["malformed", "well-formed"])
def token_card_hub(request):
    """A real HTTP server on 127.0.0.1 that serves repo org/m1 with a card quoting the token it was
    sent, as a mirror that echoes its request headers would: in the card's YAML header (malformed
    or well-formed, with a config named after the token) and its text; yields (URL, card kind)."""
    import http.server
    import threading

    sha = "a" * 40

    class Echo(http.server.BaseHTTPRequestHandler):
        def _answer(self):
            token = self.headers.get("authorization", "").removeprefix("Bearer ")
            headers = {"content-type": "application/json"}
            if self.path.startswith("/api/datasets/org/m1"):
                body = json.dumps({"id": "org/m1", "sha": sha, "siblings": [{"rfilename": "README.md"}]})
            elif "/resolve/" in self.path:
                header = (f"configs: [broken\npretty_name: {token}" if request.param == "malformed" else
                          f"pretty_name: {token}\nconfigs:\n- config_name: c-{token}\n  data_files: d/{token}/*.parquet")
                body = f"---\n{header}\n---\n# {token}\n"
                headers = {"content-type": "text/plain", "x-repo-commit": sha, "etag": f'"{request.param}"'}
            else:
                self.send_response(404)
                self.end_headers()
                return
            self.send_response(200)
            for name, value in {**headers, "content-length": str(len(body.encode()))}.items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body.encode())

        do_GET = do_HEAD = _answer

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", request.param
    server.shutdown()
    server.server_close()


def test_a_card_quoting_the_token_puts_it_in_no_message_plan_or_cache(m1k_folder, token_card_hub, tmp_path, monkeypatch):
    """The repo's card, as a mirror echoing its request headers serves it, holds the Hub token. A
    malformed YAML header's error quoted its lines, token included (the command line's last guard
    masks HF_TOKEN's value, not a saved login's); a dry run listed the config named after it as
    kept; and the card stayed in huggingface_hub's download cache."""
    import huggingface_hub.constants
    from huggingface_hub import HfApi

    endpoint, card = token_card_hub
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # the suite runs offline
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_TOKEN", ECHOED_TOKEN)  # HfApi sends it, as the command line's does
    api = HfApi(endpoint=endpoint)
    shown = []
    for dry_run in (True, False):
        if card == "well-formed" and dry_run:
            plan = publish(m1k_folder, "org/m1", api=api, dry_run=True)
            assert "kept from the repo: c-***" in plan.describe()
            shown.append(plan.describe() + repr(plan))
            continue
        expected = "malformed YAML header" if card == "malformed" else "merged README.md contains your Hub token"
        with pytest.raises(UserError, match=expected) as err:
            publish(m1k_folder, "org/m1", api=api, dry_run=dry_run)
        shown.append(str(err.value))
    assert not [text for text in shown if ECHOED_TOKEN in text]
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and ECHOED_TOKEN.encode() in p.read_bytes()]


def test_refuses_a_token_that_parquet_compression_hides_from_a_byte_search(tmp_path, monkeypatch):
    """Snappy stores a string that repeats part of an earlier one as a back-reference, so a
    secret inside a parquet page need not appear as one run of bytes: the last check reads the
    values too."""
    import random

    monkeypatch.delenv("HF_TOKEN", raising=False)
    rng = random.Random(0)
    words = ["nerve", "muscle", "artery", "vein", SENTINEL[3:20]]  # a piece of the token, repeated before it
    texts = [" ".join(rng.choice(words) for _ in range(200)) for _ in range(50)] + [f"reply: {SENTINEL}"]
    folder = write_hub_folder(tmp_path / "hub", {"m1k": {"train": datasets.Dataset.from_dict({"text": texts})}},
                              "# card\n")
    [shard] = folder.glob("data/m1k/*.parquet")
    assert SENTINEL.encode() not in shard.read_bytes()  # what made the byte search miss it
    api = FakeHfApi(tmp_path, [], None)
    with pytest.raises(UserError, match="contains your Hub token") as err:
        publish(folder, "org/m1", api=api, token=SENTINEL)
    assert SENTINEL not in str(err.value) and "text" in str(err.value)
    assert api.named("create_commit") == []


def _key_forms(key: str) -> dict[str, str]:
    """How a key may sit in a folder written before m1data masked these forms (a server's error
    quoting it percent-encoded, a JSON-escaped copy, an echoed Basic credential)."""
    import base64
    from urllib.parse import quote

    return {"percent-encoded": quote(key, safe=""), "escaped": json.dumps(key)[1:-1].replace("/", "\\/"),
            "basic": "Basic " + base64.b64encode(f"me:{key}".encode()).decode()}


KEY_WITH_SPECIALS = "sk-pr0j/Key+with=special/chars0123"


@pytest.mark.parametrize("form", ["percent-encoded", "escaped", "basic"])
@pytest.mark.parametrize("where", ["parquet", "card"])
def test_refuses_a_key_written_in_a_form_redact_masks(tmp_path, monkeypatch, form, where):
    """The last check searched only the key as it is: a folder written before the encoded forms were
    masked, holding one, went up."""
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("M1DATA_PUBLISH_API_KEY", KEY_WITH_SPECIALS)
    written = _key_forms(KEY_WITH_SPECIALS)[form]
    assert KEY_WITH_SPECIALS not in written
    rows = {"text": ["an answer", f"error: 401 bad key {written}" if where == "parquet" else "fine"]}
    folder = write_hub_folder(tmp_path / "hub", {"m1k": {"train": datasets.Dataset.from_dict(rows)}}, "# card\n")
    if where == "card":
        card = folder / "README.md"
        card.write_text(card.read_text(encoding="utf-8") + f"error: echoed {written}\n", encoding="utf-8")
    api = FakeHfApi(tmp_path, [], None)
    shown = "README.md" if where == "card" else r"\.parquet \(column 'text', row 1\)"
    with pytest.raises(UserError, match=f"{shown} contains the value of M1DATA_PUBLISH_API_KEY") as err:
        publish(folder, "org/m1", api=api, token="hf_unrelated_token_0123456789abcdef")
    assert written not in str(err.value) and api.named("create_commit") == []


@pytest.mark.parametrize("repo_id", [f"https://me:{SENTINEL}@huggingface.co/datasets/me/x",
                                     f"https://{SENTINEL}@huggingface.co/datasets/me/x",
                                     f"https://me:{SENTINEL}/x@huggingface.co/datasets/me/x"])
def test_a_repo_url_with_the_token_in_it_is_refused_showing_none_of_it(m1k_folder, repo_id):
    """A git remote's URL pasted as --repo-id: the validation message quoted it, token included."""
    for dry_run in (True, False):
        with pytest.raises(UserError, match="credentials") as err:
            publish(m1k_folder, repo_id, dry_run=dry_run, api=RefusingHfApi())
        assert SENTINEL not in str(err.value) and SENTINEL[3:12] not in str(err.value)


def test_a_repo_keeping_other_configs_gets_a_header_for_all_of_them():
    """A repo keeps the configs of other builds: its header's licence, size and sources must
    cover their rows too, not only ours (a sample build's apache-2.0 and n<1K over m23K's
    MedMCQA rows)."""
    from m1data.publishing.hub import merge_metadata

    def info(name, n):
        return {"config_name": name, "splits": [{"name": "train", "num_examples": n}]}

    def entry(name, default=False):
        return {"config_name": name, **({"default": True} if default else {}),
                "data_files": [{"split": "train", "path": f"data/{name}/train-*.parquet"}]}

    theirs = {"license": "other", "license_name": "m1-source-licences", "size_categories": ["10K<n<100K"],
              "source_datasets": ["extended|openlifescienceai/medmcqa"], "tags": ["medical"],
              "configs": [entry("m23k", True)], "dataset_info": [info("m23k", 23_493)]}
    ours = {"license": "apache-2.0", "size_categories": ["n<1K"], "source_datasets": ["original"],
            "tags": ["medical", "synthetic"], "configs": [entry("m1k", True)], "dataset_info": [info("m1k", 33)]}
    merged = merge_metadata(ours, theirs)
    assert merged["license"] == "other" and merged["license_name"] == "m1-source-licences"
    assert merged["size_categories"] == ["10K<n<100K"]
    assert merged["source_datasets"] == ["extended|openlifescienceai/medmcqa", "original"]
    assert merged["tags"] == ["medical", "synthetic"]
    # replacing our own config only: our header as it is
    alone = merge_metadata(ours, {**ours, "license": "mit", "size_categories": ["1K<n<10K"]})
    assert alone["license"] == "apache-2.0" and alone["size_categories"] == ["n<1K"]


def test_two_writes_of_one_folder_at_once_both_finish_and_leave_one_whole(tmp_path):
    """Two exports into one Hub folder at once (two builds given the same --hub-out): each moved
    the folder aside and renamed its own in, unguarded, so when the second renamed its folder in
    while the first was between its two renames, the first failed with an ENOTEMPTY traceback
    (an 'internal error'), its old copy left behind. Now the swaps take turns: both finish, and
    the folder is the whole one written last."""
    import os
    import threading

    first, second = built_rows(30), built_rows(12, "headqa")
    target = tmp_path / "hub"
    write_hub_folder(target, {"m23k": {"train": built_rows(5)}}, "# before\n")
    paused_r, paused_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the first writer, held between moving the old folder aside and renaming its own in
        real = Path.rename

        def rename(self, to):
            if self.name.startswith(".hub.staging-"):
                os.write(paused_w, b"x")
                os.read(go_r, 1)
            return real(self, to)

        Path.rename = rename
        try:
            write_hub_folder(target, {"m23k": {"train": first}}, "# first\n")
        except BaseException as err:
            (tmp_path / "child-error.txt").write_text(f"{type(err).__name__}: {err}")
            os._exit(1)
        os._exit(0)
    os.read(paused_r, 1)
    errors = []

    def write_second():
        try:
            write_hub_folder(target, {"m23k": {"train": second}}, "# second\n")
        except BaseException as err:
            errors.append(err)

    writer = threading.Thread(target=write_second)
    writer.start()
    writer.join(2.0)  # it finishes now unless it waits for the first
    os.write(go_w, b"x")
    _, status = os.waitpid(pid, 0)
    writer.join(60)
    child_error = (tmp_path / "child-error.txt").read_text() if (tmp_path / "child-error.txt").exists() else ""
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, child_error
    assert not errors, errors
    assert (target / "README.md").read_text().count("# second") == 1
    assert list(datasets.load_dataset(str(target), split="train")["id"]) == list(second["id"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hub"]


SHORT_KEY = "k3Y9zQ"


@pytest.mark.parametrize("where", ["parquet", "card", "url-encoded header"])
def test_refuses_a_short_key_standing_as_a_whole_token(tmp_path, monkeypatch, where):
    """A key of 4 to 7 characters was skipped by the last check (MIN_SECRET_LENGTH), though every
    writer masks it where it stands as a whole token: a folder holding it so went up."""
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("M1DATA_SHORT_API_KEY", SHORT_KEY)
    quoted = {"parquet": f"401 bad key {SHORT_KEY}.", "card": "fine", "url-encoded header": f"sent Bearer%20{SHORT_KEY}"}
    rows = {"text": ["an answer", quoted[where]]}
    card = f"# card\nkey: {SHORT_KEY}\n" if where == "card" else "# card\n"
    folder = write_hub_folder(tmp_path / "hub", {"m1k": {"train": datasets.Dataset.from_dict(rows)}}, card)
    api = FakeHfApi(tmp_path, [], None)
    with pytest.raises(UserError, match="contains the value of M1DATA_SHORT_API_KEY") as err:
        publish(folder, "org/m1", api=api, token="hf_unrelated_token_0123456789abcdef")
    assert SHORT_KEY not in str(err.value) and api.named("create_commit") == []


@pytest.mark.parametrize("key", [SHORT_KEY, "EMPTY", "abc"])
def test_a_short_key_inside_a_word_a_placeholder_or_three_characters_do_not_stop_a_publish(tmp_path, monkeypatch, key):
    """Only where a writer would have masked it: not inside a longer word (`k3Y9zQeta`), not a
    placeholder a local server is given (`EMPTY`, a word of any text), nothing under 4 characters."""
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("M1DATA_SHORT_API_KEY", key)
    rows = {"text": [f"the {key}eta wave and x{key}", f"EMPTY abc {key}_1"]}
    folder = write_hub_folder(tmp_path / "hub", {"m1k": {"train": datasets.Dataset.from_dict(rows)}},
                              f"# card\nsee {key}eta\n")
    api = FakeHfApi(tmp_path, [], None)
    publish(folder, "org/m1", api=api, token="hf_unrelated_token_0123456789abcdef")
    assert len(api.named("create_commit")) == 1


# ---------------------------------------------------------------------------------------------
# The saved login: huggingface_hub's `get_token` takes only a missing token file for "not logged
# in"; where HOME is a file (HOME=/dev/null for a service account) reading <home>/.cache/... raised
# NotADirectoryError out of publish, a traceback.


@pytest.fixture
def token_path(tmp_path, monkeypatch):
    """Points huggingface_hub's saved-login path at `tmp_path / <given>`; HF_TOKEN unset."""
    import huggingface_hub.constants

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)

    def point_at(relative: str) -> Path:
        path = tmp_path / relative
        monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(path))
        return path

    return point_at


def test_a_home_that_is_a_file_means_no_saved_login(tmp_path, m1k_folder, token_path, monkeypatch):
    import huggingface_hub.constants

    (tmp_path / "home").write_text("")
    token_path("home/.cache/huggingface/token")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # the real HfApi, no network
    plan = publish(m1k_folder, "org/m1", dry_run=True)
    assert "offline" in plan.remote_error
    with pytest.raises(UserError, match="the Hub refused org/m1: .*offline"):
        publish(m1k_folder, "org/m1")


def test_a_saved_login_that_cannot_be_read_is_one_line_naming_it(m1k_folder, token_path):
    path = token_path("hf/token")
    path.mkdir(parents=True)  # something is there, but not a token m1data could read
    with pytest.raises(UserError, match=f"cannot read the saved Hub token {re.escape(str(path))}: Is a directory"):
        publish(m1k_folder, "org/m1", dry_run=True, api=RefusingHfApi())


def test_a_saved_login_is_still_used(tmp_path, m1k_folder, token_path):
    token_path("hf/token").parent.mkdir()
    (tmp_path / "hf" / "token").write_text(SENTINEL)
    card = m1k_folder / "README.md"
    card.write_text(card.read_text(encoding="utf-8") + f"\ntoken: {SENTINEL}\n")
    with pytest.raises(UserError, match="contains your Hub token"):
        publish(m1k_folder, "org/m1", api=FakeHfApi(tmp_path, [], None))


# ---------------------------------------------------------------------------------------------
# The last check at scale: Arrow picks the strings that may hold a secret (`secrets_hint`), the
# exact `holds_secret` runs on those only.

FAKE_LONG_KEY = "sk-FAKE/test+key=0123456789"  # a made-up key with characters every encoding changes
FAKE_SHORT_KEY = "k3Y9zQ"


def _nested_table(cells: list[str]) -> Any:
    """A table whose strings are `cells`, spread over a plain, a list, a list-of-struct and a
    struct-with-a-list column (the shapes of `messages` and `metadata`), a few rows each."""
    import pyarrow as pa

    rows = [cells[i:i + 6] + [""] * (6 - len(cells[i:i + 6])) for i in range(0, len(cells), 6)] or [[""] * 6]
    return pa.table({
        "text": [r[0] for r in rows],
        "tags": [[r[1], None] if i % 2 else [r[1]] for i, r in enumerate(rows)],
        "messages": [[{"role": "user", "content": r[2]}, {"role": r[3], "content": None}] for r in rows],
        "metadata": [None if not any(r[4:]) and i % 3 == 2 else {"note": r[4], "parts": [r[5], "x"]}
                     for i, r in enumerate(rows)],
    })


def _plain_check(path: Path, secrets: dict[str, bytes]) -> list[tuple[str, str]]:
    """(where, label) of every string `holds_secret` flags, searched string by string: the check
    before Arrow's hint."""
    from m1data.publishing.hub import _file_strings
    from m1data.redact import holds_secret

    texts = {label: secret.decode() for label, secret in secrets.items()}
    found = []
    for where, text in _file_strings(path):
        label = next((label for label, secret in texts.items() if holds_secret(text, secret)), None)
        if label is not None:
            found.append((where, label))
    return found


_CELL = st.text(alphabet="ab XYZ019-_./:%=+\\\"é\n", max_size=16)


@settings(max_examples=60, deadline=None)
@given(cells=st.lists(st.tuples(_CELL, _CELL, st.integers(min_value=0), st.sampled_from(["long", "short", None])),
                      min_size=1, max_size=20))
def test_the_hinted_secret_check_flags_exactly_what_the_plain_loop_flags(cells):
    """Arrow's hint must never hide a string the exact check flags: a key in any form redact
    masks, at any position of any string of a nested column, is found as by the string-by-string
    loop, with the same place and the same variable named."""
    import tempfile

    import pyarrow.parquet as pq
    from key_echo import every_written_form

    from m1data.publishing.hub import _strings_holding_secrets

    keys = {"long": FAKE_LONG_KEY, "short": FAKE_SHORT_KEY}
    secrets = {"the value of A_API_KEY": FAKE_LONG_KEY.encode(), "the value of B_API_KEY": FAKE_SHORT_KEY.encode()}
    texts = []
    for before, after, pick, which in cells:
        forms = every_written_form(keys[which]) if which else [""]
        texts.append(f"{before}{forms[pick % len(forms)]}{after}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.parquet"
        pq.write_table(_nested_table(texts), path)
        assert sorted(_strings_holding_secrets(path, secrets)) == sorted(_plain_check(path, secrets))


def test_the_exact_secret_check_runs_only_on_the_strings_arrow_picks(tmp_path, monkeypatch):
    """`holds_secret` on every string of every row took 7-11 s per 100K rows of traces before
    each upload with a key configured; it now sees only the strings that may hold a key."""
    from urllib.parse import quote

    import m1data.redact

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("M1DATA_PUBLISH_API_KEY", FAKE_LONG_KEY)
    innocent = [f"answer {i}: the dose is 5 mg/kg, see https://example.org/a%2Fb" for i in range(50)]
    leak = f"error: 401 bad key {quote(FAKE_LONG_KEY, safe='')}"
    rows = {"text": [*innocent[:30], leak, *innocent[30:]], "tags": [["t", i] for i in innocent + ["x"]]}
    folder = write_hub_folder(tmp_path / "hub", {"m1k": {"train": datasets.Dataset.from_dict(rows)}}, "# card\n")
    seen: list[str] = []
    exact = m1data.redact.holds_secret

    def counting(text: str, secret: str) -> bool:
        seen.append(text)
        return exact(text, secret)

    monkeypatch.setattr(m1data.redact, "holds_secret", counting)
    with pytest.raises(UserError, match=r"\(column 'text', row 30\) contains the value of M1DATA_PUBLISH_API_KEY"):
        publish(folder, "org/m1", api=FakeHfApi(tmp_path, [], None), token="hf_unrelated_token_0123456789abcdef")
    assert leak in seen and not set(innocent) & set(seen), len(seen)


def test_only_the_card_its_data_and_its_images_are_uploaded(tmp_path, m1k_folder):
    """Every file of the folder was uploaded: a `.env` put beside the data went to the Hub too."""
    (m1k_folder / ".env").write_text("DB_PASSWORD=hunter2\n")
    (m1k_folder / "notes.txt").write_text("mine\n")
    (m1k_folder / "data/m1k/.ipynb_checkpoints").mkdir()
    (m1k_folder / "data/m1k/.ipynb_checkpoints/x.txt").write_text("x\n")
    api = FakeHfApi(tmp_path, [], None)
    plan = publish(m1k_folder, "org/m1", api=api)
    [(_, (_, operations), _)] = api.named("create_commit")
    assert sorted(op.path_in_repo for op in operations) == [
        "README.md", "data/m1k/train-00000-of-00001.parquet", "images/m1k.png"]
    assert plan.left_out == [".env", "data/m1k/.ipynb_checkpoints/x.txt", "notes.txt"]
    assert "not uploaded: .env" in plan.describe()


@pytest.mark.parametrize("damage", ["no shard", "empty shard", "fewer rows", "no image"])
def test_a_folder_missing_data_is_refused_before_anything_is_sent(tmp_path, damage):
    """A folder whose shard was gone was published, its card counting rows `load_dataset` could
    not find; a 0-byte shard stopped the publish with pyarrow's traceback."""
    folder = write_hub_folder(tmp_path / "hub", {"m1k": {"train": built_rows(7)}},
                              "# m1K card\n\n![Lengths](images/m1k.png)\n", {"m1k.png": b"\x89PNG"})
    [shard] = folder.glob("data/m1k/*.parquet")
    if damage == "no shard":
        shard.unlink()
    elif damage == "empty shard":
        shard.write_bytes(b"")
    elif damage == "fewer rows":
        built_rows(5).to_parquet(str(shard))
    else:
        (folder / "images/m1k.png").unlink()
    said = {"no shard": "split 'train' has no data file", "empty shard": "not a readable parquet file",
            "fewer rows": "has 5 rows in its files but its card says 7", "no image": "shows images/m1k.png"}[damage]
    for dry_run in (True, False):
        api = FakeHfApi(tmp_path, [], None)
        with pytest.raises(UserError, match=said):
            publish(folder, "org/m1", api=api, dry_run=dry_run)
        assert api.calls == []


def test_a_card_rendered_for_one_repo_loads_the_repo_it_is_published_to(tmp_path):
    """A build given --repo-id my-org/m1K, published to other-org/copy: its examples still loaded
    my-org/m1K (only cards rendered without a repo id were filled in)."""
    from m1data.publishing.cardmeta import repo_id_mark

    card = (f"---\npretty_name: m1K\n---\n# m1K\n\n{repo_id_mark('my-org/m1K')}\n"
            '```python\nds = load_dataset("my-org/m1K", name="m1k", split="train")\n```\n'
            "`trl sft --dataset_name my-org/m1K --dataset_config m1k`\n")
    body = published_card_body(tmp_path, card, "other-org/copy")
    assert "my-org" not in body and "<!--" not in body
    assert 'load_dataset("other-org/copy", name="m1k"' in body
    assert "--dataset_name other-org/copy --dataset_config" in body


def test_a_card_the_hub_refuses_is_one_line_saying_nothing_was_committed(tmp_path, m1k_folder):
    """huggingface_hub checks README.md's YAML with the Hub (validate-yaml) inside create_commit
    and raises ValueError: it was shown as m1data's internal error, with a traceback."""

    class Refusing(LocalRepoApi):
        def create_commit(self, repo_id, operations, **kwargs):
            raise ValueError("Invalid metadata in README.md.\n- \"license_link\" must be a URL")

    with pytest.raises(UserError, match=r"refused the card's YAML header, so nothing was committed; org/new was "
                                        r"created for it and is left empty: .*license_link"):
        publish(m1k_folder, "org/new", api=Refusing(tmp_path / "remote"))
    with pytest.raises(UserError, match=r"so nothing was committed: ValueError"):  # a repo that was there
        publish(m1k_folder, "org/new", api=Refusing(tmp_path / "remote"))


def test_a_split_listed_as_several_paths_is_counted_whole(tmp_path):
    """`data_files: [a.parquet, b.parquet]` is one train split to `datasets`; each path was checked
    against the split's whole count ("has 20 rows but its card says 40") (review)."""
    from m1data.publishing.cardmeta import join_card

    folder = write_hub_folder(tmp_path / "hub", {"m1k": {"train": built_rows(8)}}, "# m1K card\n")
    [shard] = folder.glob("data/m1k/*.parquet")
    built_rows(8).select(range(3)).to_parquet(str(folder / "data/m1k/a.parquet"))
    built_rows(8).select(range(3, 8)).to_parquet(str(folder / "data/m1k/b.parquet"))
    shard.unlink()
    meta, body = split_card((folder / "README.md").read_text(encoding="utf-8"))
    meta["configs"][0]["data_files"] = ["data/m1k/a.parquet", "data/m1k/b.parquet"]
    (folder / "README.md").write_text(join_card(meta, body), encoding="utf-8")
    assert len(datasets.load_dataset(str(folder), name="m1k", split="train")) == 8
    plan = publish(folder, "org/m1", api=FakeHfApi(tmp_path, [], None))
    assert {f.path_in_repo for f in plan.files} == {"README.md", "data/m1k/a.parquet", "data/m1k/b.parquet"}
