"""Typed configs from YAML (m1data.config): a misspelt key, a value of the wrong type and a YAML
syntax error are each one ConfigError naming the file and the key, raised at load time."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from m1data.config import ConfigError, from_dict, load_config


@dataclass
class Inner:
    threshold: float = 95.0
    ngram: int = 8
    column: str | None = None


@dataclass
class Outer:
    inner: Inner = field(default_factory=Inner)
    names: list[str] = field(default_factory=list)
    rule: Literal["any", "all"] = "any"
    flag: bool = False
    limit: int | None = None


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, message", [
    ('inner:\n  threshold: "high"\n', r"c\.yaml:inner\.threshold: expected a number, got 'high'"),
    ("inner:\n  ngram: 2.5\n", r"c\.yaml:inner\.ngram: expected a whole number, got 2\.5"),
    ("inner:\n  ngram: true\n", r"c\.yaml:inner\.ngram: expected a whole number, got True"),
    ("inner: 5\n", r"c\.yaml:inner: expected a mapping, got 5"),
    ("names: medqa\n", r"c\.yaml:names: expected a list, got 'medqa'"),
    ("names: [medqa, 3]\n", r"c\.yaml:names\[1\]: expected a string, got 3"),
    ("rule: most\n", r"c\.yaml:rule: must be one of 'any', 'all', got 'most'"),
    ("flag: 'yes'\n", r"c\.yaml:flag: expected true or false, got 'yes'"),
    ("limit: ten\n", r"c\.yaml:limit: expected a whole number, got 'ten'"),
    ("inner:\n  treshold: 90\n", r"c\.yaml:inner: unknown key\(s\) treshold"),
])
def test_a_value_of_the_wrong_type_names_the_file_and_key(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_config(Outer, write(tmp_path, text))


def test_values_of_the_right_type_load(tmp_path):
    cfg = load_config(Outer, write(tmp_path, "inner: {threshold: 90, column: q}\nnames: [a]\nrule: all\nlimit: null\n"))
    assert cfg == Outer(inner=Inner(threshold=90, column="q"), names=["a"], rule="all", limit=None)
    assert from_dict(Outer, {"flag": True}).flag is True


def test_a_yaml_syntax_error_is_one_line_with_its_place(tmp_path):
    with pytest.raises(ConfigError, match=r"c\.yaml: not valid YAML at line 2, column 1") as err:
        load_config(Outer, write(tmp_path, "m23k: [\n"))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("text", [
    "inner:\n  ngram: {key}\n",  # a key pasted under the wrong setting
    "inner:\n  threshold: [{key}]\n",
    "rule: {key}\n",
    "inner: {{column: q, api_key_env:{key}}}\n",  # no space after the colon: YAML reads one key
    "inner:\n  {key}: 1\n",
])
@pytest.mark.parametrize("key, where", [
    ("sk-ZZZZsecretZZZZ1234", None),  # shaped like a key: masked wherever it comes from
    ("k3Y9zQ", "M1DATA_TEACHER_KEY"),  # a short one, held in a variable named as a key
    ("Zq7+/x9Abc=", "MY_TEACHER_API_KEY"),
])
def test_a_key_in_the_wrong_place_is_not_in_the_config_error(tmp_path, monkeypatch, text, key, where):
    """A config error quoted the value or key it refused as written: a key pasted under
    `max_tokens:`, or `{api_key_env:sk-...}` (YAML reads that as one key), went to the terminal and
    into CI logs. The message still names the file and the key."""
    if where:
        monkeypatch.setenv(where, key)
    with pytest.raises(ConfigError, match=r"c\.yaml:") as caught:
        load_config(Outer, write(tmp_path, text.format(key=key)))
    assert key not in str(caught.value) and "[redacted]" in str(caught.value)


@pytest.mark.parametrize("block, says", [
    ({"traces": {"temperature": -1}}, "traces.temperature must be a number >= 0, got -1"),
    ({"traces": {"top_p": 2}}, "traces.top_p must be a number in [0, 1], got 2"),
    ({"difficulty": {"max_tokens": 0}}, "difficulty.max_tokens must be a positive integer, got 0"),
    ({"mesh": {"temperature": -0.5}}, "mesh.temperature must be a number >= 0, got -0.5"),
    ({"traces": {"extra_params": {"top_p": 2}}}, "traces.extra_params.top_p must be a number in [0, 1], got 2"),
    ({"difficulty": {"extra_params": {"seed": "x"}}}, "difficulty.extra_params.seed must be an integer, got 'x'"),
    ({"traces": {"extra_params": {1: 2}}}, "traces.extra_params: 1 is no parameter name"),
])
def test_sampling_settings_are_checked_when_the_config_is_read(block, says):
    """`traces.temperature: -1` was refused only when the traces stage sent its first request,
    after the stages before it had run; it is refused as the config is read, by the request's rules."""
    from m1data.builders.m23k import M23KConfig

    with pytest.raises(ConfigError, match=re.escape(says)):
        from_dict(M23KConfig, block)


@pytest.mark.parametrize("name", ["paper", "paper.yaml", "builders/configs/paper.yaml"])
def test_a_shipped_config_is_found_by_its_name_outside_the_repo(name, tmp_path, monkeypatch):
    """A pip install has no builders/configs/ folder: `--config builders/configs/paper.yaml`, as
    the README writes it, was 'no such config file' there; the shipped file is now used."""
    import m1data
    from m1data.builders import config_file

    shipped = Path(m1data.builders.__file__).parent / "configs" / "paper.yaml"
    monkeypatch.chdir(tmp_path)
    assert config_file(name) == shipped
    assert m1data.build_config("m1k", name) == m1data.build_config("m1k", shipped)
    assert config_file("./paper.yaml") == Path("paper.yaml")  # a path to a file here is a path: no file, no config
    (tmp_path / "paper.yaml").write_text("seed: 1\n")  # a file of the user's own by that name comes first
    assert config_file("paper.yaml") == Path("paper.yaml")
    with pytest.raises(ConfigError, match="no such config file"):
        m1data.build_config("m1k", "papr")
