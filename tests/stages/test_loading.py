"""The load stage's eval side: what decontamination is given to match against."""

import json
import subprocess
import sys

import pytest

from m1data.reading.evalsets import EvalInput, load_eval, load_evals
from m1data.reading.readers import MalformedFile
from m1data.reading.sources import load_source
from m1data.stages.dedup import Decontaminate, DecontaminateConfig

STEMS = [
    "A 45-year-old man presents with crushing chest pain radiating to the left arm. Which enzyme rises first?",
    "A 6-year-old girl has periorbital edema and cola-coloured urine two weeks after a sore throat. Diagnosis?",
    "Which nerve is injured in a fracture of the surgical neck of the humerus?",
]
OPTIONS = [["Troponin I", "CK-MB", "LDH", "AST"], ["PSGN", "IgA nephropathy", "Alport syndrome", "MCD"],
           ["Axillary", "Radial", "Ulnar", "Median"]]


def write_eval(path, answers):
    rows = [{"question": q, "options": dict(zip("ABCD", o)), "answer_idx": a} for q, o, a in zip(STEMS, OPTIONS, answers)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_eval_rows_with_unreadable_answers_are_still_decontamination_targets(tmp_path):
    evals = write_eval(tmp_path / "test.jsonl", ["A", "Z", 7])  # two answer keys no one can read
    scored = load_eval("medqa_test", evals)
    assert len(scored.rows) == 1 and scored.reasons() == {"answer_out_of_range": 2}
    targets = load_evals([EvalInput(name="medqa_test", path=str(evals))])["medqa_test"]
    assert sorted(targets["question"]) == sorted(STEMS)

    train = tmp_path / "train.jsonl"  # a training file holding copies of all three eval questions
    train.write_text("\n".join(json.dumps({"id": f"u{i}", "question": q, "opa": o[0], "opb": o[1], "opc": o[2],
                                           "opd": o[3], "cop": 0}) for i, (q, o) in enumerate(zip(STEMS, OPTIONS)))
                     + "\n")
    rows = load_source("medmcqa", train).rows
    stage = Decontaminate(DecontaminateConfig(ngram=0), [EvalInput(name="medqa_test", path=str(evals))])
    result = stage.run(rows, None)
    assert len(result.rows) == 0 and sorted(result.dropped["id"]) == ["medmcqa:u0", "medmcqa:u1", "medmcqa:u2"]


def test_eval_set_with_zero_items_is_an_error(tmp_path, shared_data):
    empty = tmp_path / "test.jsonl"
    empty.write_text("\n".join(json.dumps({"question": " ", "options": {"A": "a", "B": "b"}, "answer_idx": "A"})
                               for _ in range(3)) + "\n")
    with pytest.raises(MalformedFile, match="medqa_test"):
        load_evals([EvalInput(name="medqa_test", path=str(empty))])
    native = json.loads((shared_data / "raw/pubmedqa/ori_pqal.json").read_text(encoding="utf-8"))
    from m1data.reading.sources import pubmedqa_test_pmids

    pool_only = tmp_path / "pool.json"
    pool_only.write_text(json.dumps({k: v for k, v in native.items() if k not in pubmedqa_test_pmids()}))
    with pytest.raises(MalformedFile, match="test split"):
        load_evals([EvalInput(name="pubmedqa_test", path=str(pool_only))])


def test_build_config_sets_the_medmcqa_cop_base(tmp_path):
    from m1data.config import from_dict
    from m1data.stages.loading import LoadConfig, LoadSources

    rows = [{"id": f"u{i}", "question": f"Q{i}?", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": c}
            for i, c in enumerate([1, 2, 3, 4, 0])]
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(MalformedFile, match="cop_base"):
        LoadSources(from_dict(LoadConfig, {"sources": {"medmcqa": {"path": str(path)}}})).run(None, None)
    config = from_dict(LoadConfig, {"sources": {"medmcqa": {"path": str(path), "cop_base": 1}}})
    result = LoadSources(config).run(None, None)
    assert result.rows["answer_text"] == ["a", "b", "c", "d"]
    assert result.stats["sources"]["medmcqa"]["dropped"] == {"answer_out_of_range": 1}


def test_sources_in_a_build_config_as_a_list_and_added_sources_need_a_file_and_licence(tmp_path):
    from m1data.builders.m23k import M23KConfig

    from m1data.config import ConfigError, load_config

    config = tmp_path / "c.yaml"
    config.write_text("load:\n  sources:\n    - {name: medqa}\n"
                      "    - {name: extra_qa, path: extra.csv, licence: CC0-1.0, mapping: {question: Q}}\n")
    sources = load_config(M23KConfig, config).load.sources
    assert list(sources) == ["medqa", "extra_qa"] and sources["extra_qa"].licence == "CC0-1.0"
    for body, message in [
        ("    - {name: extra_qa, path: extra.csv}\n", "needs licence"),
        ("    - {name: extra_qa, licence: MIT}\n", "needs path"),
        ("    - {path: extra.csv, licence: MIT}\n", "needs a name"),
        ("    - {name: medqa}\n    - {name: medqa}\n", "medqa given more than once"),
        ("    - {name: extra_qa, path: x.csv, licence: MIT, licence_url: u}\n", "unknown key(s) licence_url"),
    ]:
        config.write_text("load:\n  sources:\n" + body)
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
            load_config(M23KConfig, config)


def test_an_input_folder_is_fingerprinted_by_its_files(tmp_path):
    """A source or dataset given as a folder (a Hub-layout folder, a folder of source files): an
    edited, added or renamed file inside it changes the stage's fingerprint, so the build loads it
    again instead of reusing rows read from the old files. A file's fingerprint is its digest, as
    before; a name that is neither (a Hub repo id) stays itself."""
    from m1data.running.pipeline import file_digest, input_digest
    from m1data.stages.loading import DatasetInput, LoadDataset

    folder = tmp_path / "hub" / "data"
    folder.mkdir(parents=True)
    (folder / "train-0.parquet").write_bytes(b"first")
    stage = LoadDataset(DatasetInput(str(tmp_path / "hub")))
    seen = {stage.external_fingerprint()}
    (folder / "train-0.parquet").write_bytes(b"edited")
    seen.add(stage.external_fingerprint())
    (folder / "train-1.parquet").write_bytes(b"added")
    seen.add(stage.external_fingerprint())
    (folder / "train-1.parquet").rename(folder / "test-1.parquet")
    seen.add(stage.external_fingerprint())
    assert len(seen) == 4
    assert input_digest(folder / "train-0.parquet") == file_digest(folder / "train-0.parquet")
    assert input_digest("org/m23K") == "org/m23K"


def test_the_embedded_sample_loads_without_warnings():
    """The default build reads only the embedded sample: a warning there (a MedMCQA file whose
    `cop` base cannot be told, say) is noise every first-time user sees, about our own files."""
    import warnings

    from m1data.stages.loading import LoadConfig, LoadSources, sample_evals

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LoadSources(LoadConfig()).run(None, None)
        load_evals(sample_evals())


@pytest.mark.parametrize("url", ["https://me:hfTOKENnever0123456789@huggingface.co/datasets/me/m23k",
                                 "https://me:hfTOKENnever/0123456789@huggingface.co/datasets/me/m23k"])
def test_a_dataset_url_with_credentials_is_refused_showing_none_of_them(tmp_path, url):
    """`m1data build m1k --from-m23k <a git remote's URL>`: datasets' error quoted it, token included."""
    proc = subprocess.run([sys.executable, "-m", "m1data.cli", "build", "m1k", "--out", str(tmp_path / "run"),
                           "--from-m23k", url], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "carries credentials" in proc.stderr, proc.stderr
    assert "hfTOKENnever" not in proc.stdout + proc.stderr and "huggingface.co/datasets/me/m23k" in proc.stderr


@pytest.mark.parametrize("config", [
    "load:\n  sources:\n    medqa: {path: 'https://me:hfTOKENnever0123456789@example.com/medqa.jsonl'}\n",
    "evals:\n  - {name: mine, path: 'https://me:hfTOKENnever0123456789@example.com/eval.jsonl'}\n",
])
def test_a_source_or_eval_url_with_credentials_is_refused_showing_none_of_them(tmp_path, config):
    """A reader's "no such file" error quoted the path, token included."""
    (tmp_path / "c.yaml").write_text(config)
    proc = subprocess.run([sys.executable, "-m", "m1data.cli", "build", "m23k", "--out", str(tmp_path / "run"),
                           "--config", str(tmp_path / "c.yaml"), "--until", "decontaminate"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "carries credentials" in proc.stderr, proc.stderr
    assert "hfTOKENnever" not in proc.stdout + proc.stderr and "example.com" in proc.stderr
