from pathlib import Path

import pytest
from m1data.builders import BUILDERS, m1k

from m1data.config import ConfigError, load_config

PAPER = Path(__file__).resolve().parents[1] / "builders" / "configs" / "paper.yaml"


def test_paper_config_is_the_papers_settings():
    config = load_config(m1k.M1KConfig, PAPER)
    m23k = config.m23k
    assert set(m23k.load.sources) == {"medqa", "headqa", "medmcqa", "pubmedqa"}
    assert all(s.path is None for s in m23k.load.sources.values())  # the Hub ids m1 used
    assert [s.model for s in m23k.difficulty.students] == ["Qwen/Qwen2.5-7B-Instruct", "Qwen/Qwen2.5-32B-Instruct"]
    assert (m23k.difficulty.max_tokens, m23k.traces.max_tokens, m23k.dedup.threshold) == (4000, 8000, 95.0)
    assert m23k.traces.model == "deepseek-reasoner" and m23k.mesh.model == "gpt-4o"
    assert config.sample.n == 1000 and config.sample.levels == ("domain", "source")


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_every_builder_composes_with_unique_stage_names(name):
    builder = BUILDERS[name]
    names = [s.name for s in builder.stages(builder.config())]
    assert names[0] == "load" and len(set(names)) == len(names)


@pytest.mark.parametrize("name", sorted(BUILDERS))
@pytest.mark.parametrize("require", [True, False])
def test_the_format_stage_takes_the_traces_stages_choice_of_reasoning(name, require):
    builder = BUILDERS[name]
    config = builder.config()
    traces = config.traces if hasattr(config, "traces") else config.m23k.traces
    traces.require_reasoning = require
    formats = [s for s in builder.stages(config) if s.name == "format"]
    assert formats and all(s.config.require_reasoning is require for s in formats)


def test_misspelt_config_key_is_an_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("m23k:\n  difficulty:\n    max_tokenz: 10\n")
    with pytest.raises(ConfigError, match="max_tokenz"):
        load_config(m1k.M1KConfig, path)


@pytest.mark.parametrize(("section", "match"), [
    ("dedup: {threshold: 0.95}", r"m23k\.dedup: threshold 0\.95 is on a 0-1 scale"),
    ("decontaminate: {threshold: 0}", r"m23k\.decontaminate: threshold must be in \(0, 100\]"),
    ("decontaminate: {ngram: -1}", r"m23k\.decontaminate: ngram must be 0 \(off\) or a word n-gram size, got -1"),
    ("decontaminate: {ngram_max_train_rows: 0}", r"m23k\.decontaminate: ngram_max_train_rows must be at least 1"),
    ("decontaminate: {ngram_min_share: 30}", r"m23k\.decontaminate: ngram_min_share must be in \(0, 1\]"),
    ("decontaminate: {ngram_min_share: 0}", r"m23k\.decontaminate: ngram_min_share must be in \(0, 1\]"),
])
def test_matcher_settings_are_checked_when_the_config_is_read(tmp_path, section, match):
    """Not when the stage runs, after the sources were loaded (or, for `ngram`, after the fuzzy match)."""
    path = tmp_path / "c.yaml"
    path.write_text(f"m23k:\n  {section}\n")
    with pytest.raises(ConfigError, match=match):
        load_config(m1k.M1KConfig, path)


def test_every_builder_has_a_card_template_and_a_pretty_name():
    from m1data.cards import available_cards

    for builder in BUILDERS.values():
        assert builder.card_template in available_cards(), builder.name
        assert builder.pretty_name and builder.name == builder.pretty_name.lower().replace(" ", "-"), builder.name


def test_build_help_and_choice_of_names_come_from_the_table():
    from typer.testing import CliRunner

    from m1data.cli import app

    shown = CliRunner().invoke(app, ["build", "--help"], terminal_width=400)
    assert shown.exit_code == 0, shown.output
    assert ", ".join(BUILDERS) in shown.output
    refused = CliRunner().invoke(app, ["build", "m2k", "--out", "unused"])
    assert refused.exit_code == 2 and ", ".join(BUILDERS) in refused.output


@pytest.mark.parametrize("oversample", [0.9, True, float("nan"), "2"])
def test_a_random_draw_refuses_an_oversample_that_cannot_reach_its_size(oversample):
    from m1data.builders.ablations import AblationConfig
    from m1data.errors import UserError

    with pytest.raises(UserError, match="oversample must be a number of at least 1"):
        AblationConfig(oversample=oversample)


def test_a_random_draw_traces_more_rows_than_it_keeps():
    from m1data.builders.ablations import AblationConfig, random_from_pool

    stages = random_from_pool(1_000)(AblationConfig(oversample=1.5))
    draws = {s.name: s.config.n for s in stages if s.name in ("sample", "cut")}
    assert draws == {"sample": 1_500, "cut": 1_000} and [s.name for s in stages][-1] == "cut"


def test_a_draw_from_m23k_says_it_does_not_use_oversample(caplog):
    from m1data.builders.ablations import AblationConfig, from_m23k

    from_m23k(())(AblationConfig())
    assert not caplog.records
    from_m23k(())(AblationConfig(oversample=2))
    assert "oversample 2 is a setting of the Random draws" in caplog.text
