"""The Hub folder is checked by loading it back with `datasets` offline; the upload is checked
against a fake HfApi, the one boundary m1data does not own."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import datasets
import pytest
import yaml

from m1data.formatting import to_sft
from m1data.hub import (
    merge_configs,
    publish,
    publish_command,
    split_card,
    write_hub_folder,
)
from m1data.schema import make_row, rows_to_dataset

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
    return split_card((folder / "README.md").read_text())[0]


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
    assert (folder / "README.md").read_text().split("---\n", 2)[2].strip().startswith("# Test card")


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


def test_rewriting_a_folder_leaves_no_stale_shard(tmp_path, configs):
    rows = configs["m23k"]["train"]
    target = tmp_path / "hub"
    write_hub_folder(target, {"m23k": {"train": rows}}, "# c\n", max_shard_bytes=rows.data.nbytes // 3)
    write_hub_folder(target, {"m23k": {"train": rows}}, "# c\n")
    assert sorted(p.name for p in (target / "data/m23k").iterdir()) == ["train-00000-of-00001.parquet"]


def test_refuses_to_replace_a_folder_it_did_not_write(tmp_path, configs):
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        write_hub_folder(target, configs, "# c\n")
    assert (target / "notes.txt").read_text() == "keep me"


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
    assert body.strip() == "# m1K card"
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
    [(_, (_, operations), _)] = api.named("create_commit")
    readme = next(op for op in operations if op.path_in_repo == "README.md")
    meta, _ = split_card(operation_bytes(readme).decode())
    assert meta["configs"][0]["config_name"] == "m1k" and meta["configs"][0]["default"] is True
    assert plan.deletions == [] and plan.default_config == "m1k"


def test_dry_run_makes_no_call_and_lists_the_plan(m1k_folder, capsys, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", lambda *a, **k: RefusingHfApi())
    plan = publish(m1k_folder, "org/m1", dry_run=True, api=RefusingHfApi())
    assert plan.dry_run and plan.configs == ["m1k"] and plan.commit_url is None
    sizes = {f.path_in_repo: f.size for f in plan.files}
    assert sizes["data/m1k/train-00000-of-00001.parquet"] == (m1k_folder / "data/m1k/train-00000-of-00001.parquet").stat().st_size
    assert set(sizes) == {"README.md", "data/m1k/train-00000-of-00001.parquet", "images/m1k.png"}

    publish_command(m1k_folder, "org/m1", private=False, dry_run=True)
    printed = capsys.readouterr().out
    assert "DRY RUN" in printed and "data/m1k/train-00000-of-00001.parquet" in printed and "m1k" in printed


def test_token_goes_only_to_hfapi_and_is_never_written(tmp_path, m1k_folder, monkeypatch, capsys):
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
    (m1k_folder / "README.md").write_text((m1k_folder / "README.md").read_text() + f"\ntoken: {SENTINEL}\n")
    api = FakeHfApi(tmp_path, [], None)
    with pytest.raises(ValueError, match="contains your Hub token"):
        publish(m1k_folder, "org/m1", api=api)
    assert api.named("create_commit") == []


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
    header = (folder / "README.md").read_text().split("---\n")[1]
    assert isinstance(yaml.safe_load(header), dict)


def test_publish_writes_the_real_repo_id_into_the_cards_quick_start(tmp_path):
    card = '# m1K\n\n```python\nds = load_dataset("<org>/m1K", split="train")\n```\n`trl sft --dataset_name <org>/m1K`\n'
    folder = write_hub_folder(tmp_path / "hub", {"m1k": {"train": built_rows(3)}}, card)
    api = FakeHfApi(tmp_path, [".gitattributes"], None)
    publish(folder, "my-lab/m1K-rebuilt", api=api)
    [(_, (_, operations), _)] = api.named("create_commit")
    readme = next(op for op in operations if op.path_in_repo == "README.md")
    _, body = split_card(operation_bytes(readme).decode())
    assert "<org>/" not in body
    assert body.count("my-lab/m1K-rebuilt") == 2 and 'load_dataset("my-lab/m1K-rebuilt"' in body
