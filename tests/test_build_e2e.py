"""m23K and m1K built end to end on the embedded sample against a scripted OpenAI-compatible
server on 127.0.0.1: students, teacher and MeSH tagger are all real HTTP calls.

The script answers from the ground truth of the sample: students get about a third of the
questions right (those rows must be dropped), the teacher is right on most, wrong on some and
cut off on a few (those must be rejected with their reasons), the tagger names a qualifier code.
"""

from __future__ import annotations

import hashlib
import json
import re

import datasets
import pytest
import yaml
from llm_server import ScriptedServer, chat
from typer.testing import CliRunner

from m1data.cli import app
from m1data.running.pipeline import read_manifests
from m1data.stages.loading import LoadConfig, LoadSources

PREFIX = "Return your final response within \\boxed{}.\n"


def bucket(text: str, n: int) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest(), 16) % n


def truth_by_prompt() -> dict[str, tuple[str, int]]:
    rows = LoadSources(LoadConfig()).run(None, None).rows
    return {r["prompt"]: (r["answer_letter"], len(r["options"])) for r in rows}


SERVED_GGUF = "SmolLM2-135M-Instruct-Q4_1.gguf"


def make_handler(truth, served_model: str = "scripted"):
    """`served_model`: what the teacher's server says it serves (llama-server says the path)."""
    letters = "ABCDEFGHIJ"

    def wrong(letter: str, n: int) -> str:
        return letters[(letters.index(letter) + 1) % n]

    def handler(req):
        text = req.text
        if "## Classification rubrics" in text:
            return chat(f"This is about drug effects.\n**{bucket(text, 5) + 10:02d}**")
        prompt = text.removeprefix(PREFIX)
        right, n = truth[prompt]
        if "Qwen" in req.model:  # students: right on a third of the questions
            guess = right if bucket(prompt, 3) == 0 else wrong(right, n)
            return chat(f"I think it is \\boxed{{{guess}}}.")
        kind = bucket(prompt + "teacher", 10)
        if kind == 0:
            return chat(None, reasoning="Let me think about this for a very long", finish_reason="length",
                        model=served_model)
        answer = wrong(right, n) if kind == 1 else right
        return chat(f"The answer is \\boxed{{{answer}}}.", reasoning=f"Considering each option... {answer} fits.",
                    model=served_model)

    return handler


def write_config(path, url, n):
    endpoint = {"base_url": url, "api_key_env": None, "runtime": {"progress": False}}
    config = {
        "m23k": {
            "difficulty": {
                "students": [
                    {"model": "Qwen/Qwen2.5-7B-Instruct", "base_url": url, "short": "qwen7b"},
                    {"model": "Qwen/Qwen2.5-32B-Instruct", "base_url": url, "short": "qwen32b"},
                ],
                "runtime": {"progress": False},
            },
            "traces": endpoint,
            "mesh": endpoint,
        },
        "sample": {"n": n},
    }
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    truth = truth_by_prompt()
    with ScriptedServer(make_handler(truth, served_model=str(tmp / "models" / SERVED_GGUF))) as server:
        config = write_config(tmp / "config.yaml", server.base_url, n=20)
        run = tmp / "m1k"
        result = CliRunner().invoke(app, ["build", "m1k", "--out", str(run), "--config", str(config)])
        assert result.exit_code == 0, result.output
        first = server.count()
        again = CliRunner().invoke(app, ["build", "m1k", "--out", str(run), "--config", str(config), "--force"])
        assert again.exit_code == 0, again.output
        yield {"run": run, "result": result, "sent": first, "resent": server.count() - first, "truth": truth,
               "config": config}


def result_text(built) -> str:
    return built["result"].output


def manifest(run, stage):
    return next(m for m in read_manifests(run) if m["stage"] == stage)


def test_every_stage_ran_and_the_funnel_adds_up(built):
    stages = [m["stage"] for m in read_manifests(built["run"])]
    assert stages == ["load", "dedup", "decontaminate", "difficulty", "traces", "decontaminate_final",
                      "dedup_final", "tag", "format", "sample"]
    for m in read_manifests(built["run"])[1:]:
        dropped = sum(sum(per.values()) for per in m["drops"].values())
        assert m["rows_in"] == m["rows_out"] + dropped, m["stage"]


def test_planted_duplicates_and_contamination_are_removed(built):
    assert manifest(built["run"], "dedup")["drops"]["near_duplicate"] == {"medmcqa": 4, "medqa": 1}
    decon = manifest(built["run"], "decontaminate")
    assert sum(decon["stats"]["by_eval_set"].values()) == 6
    assert set(decon["stats"]["by_eval_set"]) == {"medqa_test", "medmcqa_validation", "mmlu_clinical_knowledge"}
    check = decon["stats"]["ngram_check"]
    assert check["n"] == 8 and check["both"] + check["fuzzy_only"] == 6  # every fuzzy hit is in one column
    # exam boilerplate (n-grams in more than 3 training rows) no longer flags unrelated rows: 47 did before
    assert check["common_ngram_rows"] == 3 and check["fuzzy_only"] == 0 and check["ngram_only"] < check["both"]
    assert "Word n-gram cross-check" in result_text(built)
    card = (built["run"] / "hub" / "README.md").read_text(encoding="utf-8")
    # the share it asked for, and the fuzzy ratio it removed from
    assert re.search(r"\| decontaminate \| 8 \| 3 \| 30% \| 95 \| \d+ \| 6 \| \d+ \| 0 \|", card)


def test_llm_stages_follow_the_script(built):
    difficulty = manifest(built["run"], "difficulty")
    truth = built["truth"]
    rows_in = datasets.Dataset.from_parquet(str(built["run"] / "02_decontaminate" / "rows.parquet"))
    solved = sum(bucket(p, 3) == 0 for p in rows_in["prompt"])
    assert difficulty["drops"] and sum(sum(v.values()) for v in difficulty["drops"].values()) == solved
    traces = manifest(built["run"], "traces")
    assert {"truncated", "wrong_answer"} <= set(traces["drops"])
    kept = datasets.Dataset.from_parquet(str(built["run"] / "04_traces" / "rows.parquet"))
    assert all(truth[p][0] in reply for p, reply in zip(kept["prompt"], kept["teacher_reply"]))


def test_rerun_sends_nothing(built):
    assert built["sent"] > 0 and built["resent"] == 0


def test_hub_folders_load_offline_and_match_the_manifests(built):
    run = built["run"]
    m1k = datasets.load_dataset(str(run / "hub"), split="train")
    sample = manifest(run, "sample")
    assert len(m1k) == sample["rows_out"] == min(20, sample["rows_in"])
    for column in ("id", "user_prompt", "reasoning", "teacher_reply", "domain", "domain_code", "messages", "text"):
        assert column in m1k.column_names
    assert "prompt" not in m1k.column_names  # TRL would read the rows as prompt/completion data
    assert all(t.count("<|im_start|>think\n") == 1 for t in m1k["text"])
    card = (run / "hub" / "README.md").read_text(encoding="utf-8")
    from m1data.publishing.export import hub_folder_dataset

    assert hub_folder_dataset(run / "hub") == "m1k"  # what a later build into the same folder checks
    m23k_rows = manifest(run, "format")["rows_out"]
    table_row = re.search(r"\| after format \|(.*)\|", card).group(1)
    assert table_row.split("|")[-1].strip().replace(",", "") == str(m23k_rows)
    assert json.loads(json.dumps(sample["counts_out"])) == dict(sorted(
        {s: m1k["source"].count(s) for s in set(m1k["source"])}.items()))


def _trl_args(out, **extra):
    from trl import SFTConfig

    return SFTConfig(output_dir=str(out), max_steps=3, per_device_train_batch_size=2, use_cpu=True, bf16=False,
                     logging_steps=1, report_to="none", disable_tqdm=True, dataloader_num_workers=0, **extra)


def test_published_m1k_trains_with_plain_trl(built, tmp_path):
    """What a user types first: load the published folder, hand it to TRL's own SFTTrainer."""
    pytest.importorskip("trl")
    from tiny_model import save_tiny
    from trl import SFTTrainer

    tiny = save_tiny(tmp_path / "tiny")
    ds = datasets.load_dataset(str(built["run"] / "hub"), split="train")
    trainer = SFTTrainer(tiny, train_dataset=ds, args=_trl_args(tmp_path / "out"))
    trainer.train()
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    assert len(losses) == 3 and all(loss > 0 for loss in losses)


def test_published_m1k_assistant_only_loss_masks_the_prompt(built, tmp_path):
    pytest.importorskip("trl")
    from tiny_model import save_tiny, trained_labels
    from trl import SFTTrainer

    from m1data.stages.formatting import render_chat

    tiny = save_tiny(tmp_path / "tiny")
    ds = datasets.load_dataset(str(built["run"] / "hub"), split="train")
    trainer = SFTTrainer(tiny, train_dataset=ds, args=_trl_args(tmp_path / "out", assistant_only_loss=True))
    tokenizer = trainer.processing_class
    for row, example in zip(ds, trainer.train_dataset):
        ids, labels = example["input_ids"], trained_labels(trainer, example)
        n_masked = labels.index(next(label for label in labels if label != -100))
        assert all(label != -100 for label in labels[n_masked:])  # one trained span, to the end
        assert tokenizer.decode(ids[:n_masked]) == render_chat(row["messages"][:1], add_generation_prompt=True)
        assert tokenizer.decode(ids[n_masked:]) == row["messages"][1]["content"] + "<|im_end|>\n"


def test_published_prompt_completion_config_trains_completion_only(built, tmp_path):
    pytest.importorskip("trl")
    from tiny_model import save_tiny, trained_labels
    from trl import SFTTrainer

    from m1data.stages.formatting import PROMPT_COMPLETION_SUFFIX

    hub = str(built["run"] / "hub")
    names = datasets.get_dataset_config_names(hub)
    default = datasets.load_dataset(hub, split="train")
    view_name = next(n for n in names if n.endswith(PROMPT_COMPLETION_SUFFIX))
    view = datasets.load_dataset(hub, name=view_name, split="train")
    assert view["id"] == default["id"]
    assert [[*p, *c] for p, c in zip(view["prompt"], view["completion"])] == default["messages"]
    trainer = SFTTrainer(save_tiny(tmp_path / "tiny"), train_dataset=view, args=_trl_args(tmp_path / "out"))
    assert trainer.completion_only_loss
    assert all(-100 in trained_labels(trainer, example) for example in trainer.train_dataset)
    trainer.train()


def test_offline_build_stops_before_the_students(tmp_path):
    """No endpoint running: the offline stages complete and the build says what it needs."""
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"m23k": {"difficulty": {"students": [
        {"model": "Qwen/Qwen2.5-7B-Instruct", "base_url": "http://127.0.0.1:9/v1"}]}}}))
    result = CliRunner().invoke(app, ["build", "m1k", "--out", str(tmp_path / "run"), "--config", str(config)])
    assert result.exit_code == 1, result.output  # stopped is not finished (0 only with --allow-partial)
    assert [m["stage"] for m in read_manifests(tmp_path / "run")] == ["load", "dedup", "decontaminate"]
    assert "stopped before stage 'difficulty'" in result.output.replace("\n", " ")


def test_resample_from_an_existing_m23k(built, tmp_path):
    m23k = built["run"] / "08_format" / "rows.parquet"
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"sample": {"n": 5, "seed": 7}}))
    result = CliRunner().invoke(app, ["build", "m1k", "--from-m23k", str(m23k), "--out", str(tmp_path / "run"),
                                      "--config", str(config)])
    assert result.exit_code == 0, result.output
    drawn = datasets.load_dataset(str(tmp_path / "run" / "hub"), split="train")
    pool = set(datasets.Dataset.from_parquet(str(m23k))["id"])
    assert len(drawn) == 5 and set(drawn["id"]) <= pool
    # the card carries its source's teacher, students and decontamination forward
    card = (tmp_path / "run" / "hub" / "README.md").read_text(encoding="utf-8")
    assert "| teacher | `deepseek-reasoner` | upstream: traces |" in card
    assert "medqa_test" in card and "| upstream: decontaminate |" not in card
    assert re.search(r"\| medqa_test \| 2 \|", card)  # the upstream build's hits on that eval set


def test_resample_from_a_published_folder_keeps_provenance(built, tmp_path):
    """A published folder (its card's YAML) is enough to carry the teacher and eval sets forward.
    The m23K's folder, that is: the m1K's is refused (it was drawn from again as an m23K, exit 0,
    after a run folder's hint named `hub` alone)."""
    import shutil

    from m1data.publishing.cardmeta import split_card

    run = tmp_path / "both"
    shutil.copytree(built["run"], run)
    m23k = CliRunner().invoke(app, ["build", "m23k", "--out", str(run), "--config", str(built["config"]),
                                    "--hub-out", str(run / "hub-m23k")])  # every stage's manifest matches: none runs
    assert m23k.exit_code == 0, m23k.output
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"sample": {"n": 5, "seed": 7}}))
    hint = CliRunner().invoke(app, ["build", "m1k", "--from-m23k", str(run), "--out", str(tmp_path / "no")])
    said = "".join(hint.output.split())  # (the lines as the terminal wraps them, spaces and all, joined)
    assert hint.exit_code == 2 and f"itsHub-layoutfolders:{run / 'hub'}(m1k),{run / 'hub-m23k'}(m23k)" in said
    refused = CliRunner().invoke(app, ["build", "m1k", "--from-m23k", str(run / "hub"), "--out", str(tmp_path / "no"),
                                       "--config", str(config)])
    said = " ".join(f"{refused.output} {refused.exception}".split())
    assert refused.exit_code != 0 and "holds m1data's m1k export (its card's m1data_build), not an m23K" in said
    result = CliRunner().invoke(app, ["build", "m1k", "--from-m23k", str(run / "hub-m23k"),
                                      "--out", str(tmp_path / "run"), "--config", str(config)])
    assert result.exit_code == 0, result.output
    card = (tmp_path / "run" / "hub" / "README.md").read_text(encoding="utf-8")
    meta, _ = split_card(card)
    roles = {(m["role"], m["model"]) for m in meta["m1data_provenance"]["models"]}
    assert ("teacher", "deepseek-reasoner") in roles and ("student", "Qwen/Qwen2.5-7B-Instruct") in roles
    assert meta["m1data_provenance"]["decontamination"] == {"medmcqa_validation": 2, "medqa_test": 2,
                                                            "mmlu_clinical_knowledge": 2}
    assert "| teacher | `deepseek-reasoner` | upstream: traces |" in card


def test_card_of_a_build_describes_every_column_and_publishes_nothing_local(built):
    card = (built["run"] / "hub" / "README.md").read_text(encoding="utf-8")
    assert "not one of the columns m1data writes" not in card and "Added by the build" not in card
    assert "127.0.0.1" not in card and "/work/" not in card and str(built["run"]) not in card
    assert "Length of the `reasoning` column" in card
    assert "[redacted]" not in card  # nothing secret in this build, and statistics are not secrets
    assert "runtime=" not in card and "progress=" not in card  # how fast a stage ran is not a setting of the data


def test_the_hub_folder_names_the_served_model_by_file_name_and_says_it_is_the_sample(built):
    """The teacher's server reported its model by an absolute path (as llama-server does): no
    path reaches the folder, the file name does; and a build from the embedded sample says so
    first, with the sample's licence."""
    from m1data.publishing.cardmeta import split_card
    from m1data.publishing.hub import local_paths_inside

    traces = manifest(built["run"], "traces")  # recorded as the file name at the source, not only on export
    assert list(traces["stats"]["served_models"]) == [SERVED_GGUF]
    from m1data.running.pipeline import load_stage_rows, stage_dirname

    traced = load_stage_rows(built["run"] / stage_dirname(traces["index"], "traces"))
    assert set(traced["teacher_served_model"]) == {SERVED_GGUF}
    hub = built["run"] / "hub"
    assert local_paths_inside(hub) == []
    rows = datasets.load_dataset(str(hub), name="m1k", split="train")
    assert set(rows["teacher_served_model"]) == {SERVED_GGUF}
    card = (hub / "README.md").read_text(encoding="utf-8")
    assert f"`{SERVED_GGUF}`" in card and str(built["run"].parent) not in card
    metadata, body = split_card(card)
    assert body.lstrip().startswith("# m1K\n\n> **Built from m1data's embedded sample: synthetic questions")
    assert metadata["license"] == "apache-2.0" and "<org>" not in card
    assert "abstracts of published papers" not in card and "### Answer letters" in card


@pytest.mark.parametrize("subset, expect_stage", [("random-1k", "traces"), ("hard-domain-balanced-1k", "sample")])
def test_ablation_subsets_build(built, tmp_path, subset, expect_stage):
    truth = built["truth"]
    with ScriptedServer(make_handler(truth)) as server:
        config = write_config(tmp_path / "c.yaml", server.base_url, n=1)
        data = yaml.safe_load(config.read_text(encoding="utf-8"))
        config.write_text(yaml.safe_dump({"m23k": data["m23k"], "seed": 3}))
        run = tmp_path / "run"
        result = CliRunner().invoke(app, ["build", subset, "--out", str(run), "--config", str(config)])
    assert result.exit_code == 0, result.output
    stages = [m["stage"] for m in read_manifests(run)]
    assert "sample" in stages and expect_stage in stages
    if subset == "random-1k":  # drawn from the pool before the difficulty filter
        assert "difficulty" not in stages and stages.index("sample") < stages.index("traces")
    rows = datasets.load_dataset(str(run / "hub"), split="train")
    assert len(rows) == manifest(run, stages[-1])["rows_out"] > 0


@pytest.mark.parametrize("oversample", [1, 2])
def test_a_random_draw_ends_at_its_size_after_verification(tmp_path, oversample):
    """The teacher fails a fifth of the questions here: a draw of exactly n ends short of n, one of
    2n traced rows cut to n does not, and the cut takes verified rows only."""
    from m1data.builders import ablations
    from m1data.jobs import build_config
    from m1data.running.pipeline import load_stage_rows, run_pipeline, stage_dirname

    with ScriptedServer(make_handler(truth_by_prompt())) as server:
        data = yaml.safe_load(write_config(tmp_path / "c.yaml", server.base_url, n=1).read_text(encoding="utf-8"))
        config = build_config("random-1k", {"m23k": data["m23k"], "seed": 3, "oversample": oversample})
        stages = ablations.random_from_pool(20)(config)
        rows = run_pipeline(stages, tmp_path / "run")
    names = [s.name for s in stages]
    traced = load_stage_rows(tmp_path / "run" / stage_dirname(names.index("traces"), "traces"))
    cut = manifest(tmp_path / "run", "cut")
    if oversample == 1:
        assert len(traced) < 20 and len(rows) == len(traced) and cut["stats"]["short_by"] == 20 - len(traced)
    else:
        assert len(traced) > 20 and len(rows) == 20 and cut["stats"]["short_by"] == 0
        assert set(rows["id"]) <= set(traced["id"]) and sum(cut["drops"]["not_sampled"].values()) == len(traced) - 20


# ---------------------------------------------------------------------------------------------
# A source the project has never seen, added by configuration alone

NEW_SOURCE_CSV = """Stem,Choice 1,Choice 2,Choice 3,Choice 4,Key,Ref
"A nurse gives furosemide {i}. Which electrolyte must be watched most closely, case {i}?",Potassium,Calcium,Iron,Zinc,A,n{i}
"After hip replacement {i}, which position must the patient avoid, case {i}?",Abduction,Flexion beyond 90 degrees,Supine,Extension,B,h{i}
"""


def test_a_build_with_a_source_added_in_the_config(tmp_path):
    from m1data.publishing.cardmeta import split_card
    from m1data.stages.loading import sample_sources

    csv = tmp_path / "nursing_boards.csv"
    lines = NEW_SOURCE_CSV.splitlines()
    csv.write_text("\n".join([lines[0], *(line.format(i=i) for i in range(8) for line in lines[1:])]) + "\n")
    added = {"name": "nursing_boards", "path": str(csv), "licence": "CC-BY-4.0", "title": "Nursing boards practice",
             "url": "https://example.org/nursing-boards",
             "mapping": {"question": "Stem", "options": ["Choice 1", "Choice 2", "Choice 3", "Choice 4"],
                         "answer": "Key", "id": "Ref"}}
    sources = [{"name": name, "path": spec.path} for name, spec in sample_sources().items()] + [added]
    truth = {r["prompt"]: (r["answer_letter"], len(r["options"]))
             for r in LoadSources(LoadConfig(sources=sources)).run(None, None).rows}
    with ScriptedServer(make_handler(truth)) as server:
        config = write_config(tmp_path / "config.yaml", server.base_url, n=20)
        data = yaml.safe_load(config.read_text(encoding="utf-8"))
        data["m23k"]["load"] = {"sources": sources}
        config.write_text(yaml.safe_dump(data["m23k"]))  # an m23k build reads the m23k part at the top level
        run = tmp_path / "run"
        result = CliRunner().invoke(app, ["build", "m23k", "--out", str(run), "--config", str(config)])
    assert result.exit_code == 0, result.output
    load = manifest(run, "load")
    assert load["counts_out"]["nursing_boards"] == 16
    header = next(line for line in result.output.splitlines() if line.startswith("| stage |"))
    assert "| nursing_boards |" in header  # its own funnel column
    hub = datasets.load_dataset(str(run / "hub"), split="train")
    ids = [i for i in hub["id"] if i.startswith("nursing_boards:")]
    assert ids and all(re.fullmatch(r"nursing_boards:[nh]\d", i) for i in ids)  # ids from the mapped id column
    _, body = split_card((run / "hub" / "README.md").read_text(encoding="utf-8"))
    licences = body.split("## Licences", 1)[1]
    assert re.search(r"\| \[Nursing boards practice\]\(https://example.org/nursing-boards\) \| [1-9]\d* \| CC-BY-4.0 \|",
                     licences), licences
    assert "| nursing_boards |" in body.split("## Licences", 1)[0]  # the funnel in the card has the column too


def test_a_build_against_servers_that_echo_the_key_writes_it_nowhere(tmp_path, monkeypatch, capfd):
    """A whole build (students, teacher, LLM tagger, Hub folder) whose servers quote the key back in
    every way they can (m1data.tests key_echo): it is in no stage folder, reply cache, manifest,
    card, Hub file or output line. A 6-character key quoted URL-encoded (`Bearer%20k3Y9zQ`) reached
    the students' reply cache and the difficulty stage's dropped rows."""
    from key_echo import echoing, leaked

    truth, key = truth_by_prompt(), "k3Y9zQ"
    scripted = make_handler(truth)

    def answer(req) -> str:  # the scripted build's answer, without its reasoning; a code to the tagger's re-ask
        if req.text.startswith("Reply with the two-digit code"):
            return "**12**"
        return scripted(req).body["choices"][0]["message"]["content"] or ""

    monkeypatch.setenv("M1DATA_ECHO_KEY", key)
    with ScriptedServer(echoing(answer)) as server:
        config = write_config(tmp_path / "config.yaml", server.base_url, n=20)
        settings = yaml.safe_load(config.read_text())
        for role in (*settings["m23k"]["difficulty"]["students"], settings["m23k"]["traces"], settings["m23k"]["mesh"]):
            role["api_key_env"] = "M1DATA_ECHO_KEY"
        config.write_text(yaml.safe_dump(settings))
        result = CliRunner().invoke(app, ["build", "m1k", "--out", str(tmp_path / "run"), "--config", str(config)])
        assert result.exit_code == 0, result.output
        assert {r.headers.get("authorization") for r in server.requests} == {f"Bearer {key}"}
    assert (tmp_path / "run" / "hub" / "README.md").is_file()
    out, err = capfd.readouterr()
    assert leaked(key, tmp_path, result.output + out + err) == []


def test_each_stage_says_which_columns_its_rows_have(built):
    """`Stage.columns_after` is what a build reads to stop at once when the sampler names a
    column no stage gives: it must be what each stage's rows really hold, stage by stage."""
    from m1data.jobs import _builder, build_settings
    from m1data.running.pipeline import load_stage_rows, stage_dirname

    config, _ = build_settings("m1k", built["config"], None, None)
    have = None
    for index, stage in enumerate(_builder("m1k").stages(config)):
        have = stage.columns_after(have)
        rows = load_stage_rows(built["run"] / stage_dirname(index, stage.name))
        assert have == frozenset(rows.column_names), stage.name


def test_a_sampler_level_no_stage_gives_stops_the_build_before_it_starts(built, tmp_path):
    config = yaml.safe_load(built["config"].read_text())
    config["sample"]["levels"] = ["domian", "source"]
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(app, ["build", "m1k", "--out", str(tmp_path / "run"), "--config", str(path)])
    said = " ".join(result.output.split())
    assert result.exit_code == 2 and "stage 'sample' needs the column 'domian'" in said, result.output
    assert "domain," in said and "nothing was run" in said and not (tmp_path / "run" / "00_load").exists()
