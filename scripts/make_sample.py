"""Write m1data's embedded sample data (m1data/data/sample/) from small fact tables.

Every question in the sample is synthetic: this script writes it from the fact tables in
scripts/sample_facts.yaml (drug -> class / mechanism / adverse effect, organism -> disease,
nutrient -> deficiency sign, nerve -> muscle, hormone -> secreting cells, plus invented
PubMedQA-style studies) through a few question templates per source style. No row is copied
from any real dataset.

The files mimic the native release formats of the four training sources (MedMCQA, MedQA-USMLE
4 options, HEAD-QA English v1.0, PubMedQA PQA-L) and of three eval sets (MMLU clinical_knowledge,
MedQA test, MedMCQA validation), so the loaders, dedup and decontamination run offline. Planted
rows (near-duplicates inside training, eval questions copied or lightly edited from training,
two HEAD-QA questions that need an image, one HEAD-QA question with two identical answers) are
listed in m1data/data/sample/README.md, which this script also writes.

After writing, the script reads the files back with m1data's own loaders and checks that they
drop exactly the planted bad rows, that m1data's dedup and decontamination find exactly the
planted copies, and that no other pair of questions comes close (rapidfuzz).

Run with m1data installed (its venv), from anywhere:

    python scripts/make_sample.py              # rewrite m1data/data/sample/
    python scripts/make_sample.py --check      # regenerate into a temp dir, compare with it

Deterministic (seed 1729). For demos and tests only: not medical advice, not training data.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import random
import re
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import yaml
from rapidfuzz import fuzz, process

from m1data.stages.dedup import decontaminate, deduplicate
from m1data.reading.evalsets import load_eval_any
from m1data.stages.loading import sample_dir, sample_evals, sample_sources
from m1data.reading.readers import LoadResult
from m1data.schema import content_id
from m1data.reading.sources import load_source

SEED = 1729
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "m1data" / "data" / "sample"
FACTS_FILE = Path(__file__).resolve().parent / "sample_facts.yaml"
TEST_PMIDS_FILE = ROOT / "m1data" / "data" / "pubmedqa_test_pmids.txt"

# Sizes (base questions; planted rows come on top).
N_MEDMCQA_TRAIN = 56  # + 4 planted near-duplicates = 60 rows
N_MEDQA_TRAIN = 39  # + 1 planted near-duplicate = 40 rows
N_EVAL_DISTINCT = 13  # + 1 exact copy + 1 light edit of a training question = 15 rows per eval set
HEADQA_EXAMS = {  # exam key -> (category, fact tables used, questions drawn from the tables)
    "Cuaderno_2016_1_B": ("biology", ("nerve", "hormone"), 10),
    "Cuaderno_2016_1_F": ("pharmacology", ("drug",), 10),
    "Cuaderno_2016_1_M": ("medicine", ("organism", "deficiency"), 8),  # + 2 image questions
}
# Eval-set names as m1data.stages.loading.sample_evals() loads them: the planted pairs name their rows
# by the ids m1data gives them.
MEDMCQA_VAL, MEDQA_TEST, MMLU_CK = "medmcqa_validation", "medqa_test", "mmlu_clinical_knowledge"

SIMILAR = 95.0  # the reference's fuzzy-match threshold (rapidfuzz fuzz.ratio >= 95)
MARGIN = 92.0  # unplanted pairs must stay below this, planted pairs at or above SIMILAR
DISTINCT = 90.0  # while writing, a new question should stay below this to every earlier one
LISTED = 85.0  # --check lists the pairs scoring at least this


# =============================================================================================
# The fact tables (scripts/sample_facts.yaml)


@dataclass(frozen=True)
class Story:
    """A clinical vignette: patient intro with an {age} slot, age range, and the findings."""

    patient: str
    ages: tuple[int, int]
    text: str


@dataclass
class Fact:
    """One row of a fact table; `avoid` lists other facts' values that are also true of it."""

    table: str
    key: str
    values: dict[str, str | None]
    avoid: set[str] = field(default_factory=set)
    topic: str = ""
    region: str = ""
    story: Story | None = None
    mech_story: Story | None = None


@dataclass(frozen=True)
class Family:
    """One way of asking about a fact: the field that answers it, the field the fact must have."""

    answer: str
    needs: str | None = None
    medqa_meta: str | None = None


@dataclass
class Facts:
    """Everything sample_facts.yaml holds, in its order (the seeded draws depend on it)."""

    tables: dict[str, list[Fact]]
    subjects: dict[str, str]
    families: dict[tuple[str, str], Family]
    templates: dict[str, dict[tuple[str, str], list[str]]]
    studies: list[dict[str, Any]]
    image_questions: list[dict[str, Any]]
    proper: tuple[str, ...]
    plural: frozenset[str]


FACT_KEYS = {"key", "topic", "region", "avoid", "story", "mech_story"}


def load_story(raw: dict | None) -> Story | None:
    return None if raw is None else Story(raw["patient"], tuple(raw["ages"]), raw["text"])


def load_fact(table: str, spec: dict, raw: dict) -> Fact:
    """A fact of `table`; a misspelt field is an error here rather than a silently empty value."""
    unknown = set(raw) - FACT_KEYS - set(spec["fields"])
    if unknown:
        raise SystemExit(f"{FACTS_FILE}: {table} fact {raw.get('key')!r} has unknown fields {sorted(unknown)}")
    return Fact(table, raw["key"], {name: raw.get(name) for name in spec["fields"]}, set(raw.get("avoid", ())),
                raw.get("topic", spec.get("topic", "")), raw.get("region", ""),
                load_story(raw.get("story")), load_story(raw.get("mech_story")))


def load_facts(path: Path) -> Facts:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    tables = {name: [load_fact(name, spec, raw) for raw in spec["facts"]] for name, spec in data["tables"].items()}
    return Facts(
        tables=tables,
        subjects={name: spec["subject"] for name, spec in data["tables"].items()},
        families={(t, f): Family(**spec) for t, fams in data["families"].items() for f, spec in fams.items()},
        templates={style: {(t, f): stems for t, fams in by_table.items() for f, stems in fams.items()}
                   for style, by_table in data["templates"].items()},
        studies=data["studies"],
        image_questions=data["image_questions"],
        proper=tuple(data["grammar"]["proper"]),
        plural=frozenset(data["grammar"]["plural"]),
    )


FACTS = load_facts(FACTS_FILE)


# =============================================================================================
# Question templates. A "family" is one way of asking about a fact; each (fact, family) is used at
# most once in the whole sample (except planted copies), so unplanted questions never overlap.


def lc(text: str) -> str:
    """Lower-case the first letter for use inside a sentence (keeps acronyms and proper names)."""
    if not text or text.startswith(FACTS.proper) or (len(text) > 1 and text[1].isupper()):
        return text
    return text[0].lower() + text[1:]


def article(text: str) -> str:
    return ("an " if text[0].lower() in "aeiou" else "a ") + text


def fields_of(fact: Fact) -> dict[str, str]:
    """Template fields: each value, lower-cased (`_lc`), and verb agreement for signs and cells."""
    out = {}
    for k in ("sign", "cells"):
        if k in fact.values:
            plural = fact.values[k] in FACTS.plural or "cells" in fact.values[k].split()[:3]
            out[k + "_is"], out[k + "_s"] = ("are", "") if plural else ("is", "s")
    for k, v in fact.values.items():
        if v is not None:
            out[k] = v
            out[k + "_lc"] = lc(v)
    if "muscle_phrase" in out:
        out["Muscle_phrase"] = out["muscle_phrase"][0].upper() + out["muscle_phrase"][1:]
    return out


def usable(fact: Fact, family: str) -> bool:
    """Whether the fact has what the family asks about (a drug without a class gets no class question)."""
    need = FACTS.families[(fact.table, family)].needs
    if need and fact.values.get(need) is None:
        return False
    if family == "story":
        return fact.story is not None
    if family == "mech_story":
        return fact.mech_story is not None
    return True


def distractor_pool(fact: Fact, family: str) -> tuple[list[str], list[str]]:
    """(preferred, other) wrong answers: other facts' values, never one that is also right."""
    key = FACTS.families[(fact.table, family)].answer
    answer = fact.values[key]
    preferred, other = [], []
    for f in FACTS.tables[fact.table]:
        value = f.values.get(key)
        if f is fact or value is None or value == answer:
            continue
        if value in fact.avoid:  # e.g. a second adverse effect of the same drug
            continue
        if fact.table == "drug" and key == "name" and family != "mech_rev":
            adverse = fact.values["adverse"]  # a distractor drug must not cause the asked effect
            if adverse in f.avoid or f.values["adverse"] == adverse:
                continue
        if fact.table == "deficiency" and family == "rev" and fact.values["sign"] in f.avoid:
            continue
        (preferred if fact.region and f.region == fact.region else other).append(value)
    return preferred, other


@dataclass
class Question:
    table: str
    fact: Fact
    family: str
    style: str
    stem: str
    options: list[str]
    answer: int


def make_options(rng: random.Random, fact: Fact, family: str, n: int) -> tuple[list[str], int]:
    """n options: the answer at a random position among shuffled distractors (same region first)."""
    preferred, other = distractor_pool(fact, family)
    rng.shuffle(preferred)
    rng.shuffle(other)
    wrong = (preferred + other)[: n - 1]
    if len(wrong) < n - 1:
        raise SystemExit(f"not enough distractors for {fact.key}/{family}")
    answer = fact.values[FACTS.families[(fact.table, family)].answer]
    position = rng.randrange(n)
    return wrong[:position] + [answer] + wrong[position:], position


def vignette(rng: random.Random, story: Story, question: str) -> str:
    age = rng.randint(*story.ages)
    patient = story.patient.format(age=age)
    if str(age).startswith("8") or age in (11, 18):
        patient = "An" + patient[1:]
    return f"{patient} {story.text} {question}"


def normalise(text: str) -> str:
    """Lower case, punctuation dropped, single spaces: the README's second way of comparing stems."""
    return " ".join(re.sub(r"[^0-9a-z]+", " ", text.lower()).split())


def similarity(a: str, b: str) -> float:
    """The higher fuzz.ratio of the raw and the normalised stems; 0 when the lengths alone keep
    the raw ratio below 80 (far from DISTINCT, and most pairs are skipped this cheaply)."""
    if 200.0 * min(len(a), len(b)) / (len(a) + len(b)) < 80:
        return 0.0
    return max(fuzz.ratio(a, b), fuzz.ratio(normalise(a), normalise(b)))


def write_stem(rng: random.Random, style: str, fact: Fact, family: str, written: list[str]) -> str:
    """The first template (in a seeded order) that stays below DISTINCT to every stem written so
    far, else the least similar one (the final check then reports it)."""
    template_style = "medqa" if family in ("story", "mech_story") else style
    templates = list(FACTS.templates[template_style][(fact.table, family)])
    rng.shuffle(templates)
    candidates = []
    for template in templates:
        if family == "story":
            stem = vignette(rng, fact.story, template)
        elif family == "mech_story":
            stem = vignette(rng, fact.mech_story, template)
        else:
            stem = template.format(**fields_of(fact))
        closest = max((similarity(stem, other) for other in written), default=0.0)
        if closest < DISTINCT:
            return stem
        candidates.append((closest, stem))
    return min(candidates)[1]


def build(rng: random.Random, style: str, fact: Fact, family: str, n_options: int, written: list[str]) -> Question:
    stem = write_stem(rng, style, fact, family, written)
    written.append(stem)
    options, answer = make_options(rng, fact, family, n_options)
    return Question(fact.table, fact, family, style, stem, options, answer)


class Allocator:
    """Hands out (fact, family) pairs, each at most once, balanced across fact tables."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.used: set[tuple[str, str, str]] = set()
        self.written: list[str] = []

    def take(self, style: str, tables: tuple[str, ...] | None, n: int, n_options: int) -> list[Question]:
        buckets = self._buckets(style, tables)
        order = sorted(buckets)
        self.rng.shuffle(order)
        chosen: list[tuple[Fact, str]] = []
        while len(chosen) < n:
            progressed = False
            for table in order:
                if buckets[table] and len(chosen) < n:
                    chosen.append(buckets[table].pop())
                    progressed = True
            if not progressed:
                raise SystemExit(f"ran out of facts for {style}: wanted {n}, got {len(chosen)}")
        questions = []
        for fact, fam in chosen:
            self.used.add((fact.table, fact.key, fam))
            questions.append(build(self.rng, style, fact, fam, n_options, self.written))
        return questions

    def _buckets(self, style: str, tables: tuple[str, ...] | None) -> dict[str, list[tuple[Fact, str]]]:
        """Per table, the unused (fact, family) pairs the style has templates for, shuffled."""
        buckets: dict[str, list[tuple[Fact, str]]] = {}
        for table, fams in families_for(style).items():
            if tables and table not in tables:
                continue
            pairs = [(f, fam) for f in FACTS.tables[table] for fam in fams
                     if usable(f, fam) and (table, f.key, fam) not in self.used]
            self.rng.shuffle(pairs)
            buckets[table] = pairs
        return buckets


def families_for(style: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for table, family in FACTS.templates[style]:
        out.setdefault(table, []).append(family)
    return out


# =============================================================================================
# Writers (formats as the upstream native releases)


def new_uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def fact_sentence(q: Question) -> str:
    """The explanation MedMCQA rows carry in `exp`."""
    v = q.fact.values
    if q.table == "drug":
        parts = [f"{v['name']} {lc(v['mech'])}."]
        if v["cls"]:
            parts.append(f"It is {article(lc(v['cls']))}.")
        if v["adverse"]:
            parts.append(f"A characteristic adverse effect is {lc(v['adverse'])}.")
        return " ".join(parts)
    if q.table == "organism":
        return f"{v['disease']} is caused by {v['organism']}."
    if q.table == "deficiency":
        return f"Deficiency of {lc(v['nutrient'])} causes {lc(v['sign'])}."
    if q.table == "nerve":
        return f"{v['muscle_phrase'][0].upper() + v['muscle_phrase'][1:]} is supplied by the {lc(v['nerve'])}."
    return f"{v['hormone']} is secreted by the {lc(v['cells'])}."


def medmcqa_record(q: Question, row_id: str, stem: str | None = None, options: list[str] | None = None,
                   answer: int | None = None) -> dict:
    """A MedMCQA row for q, or for an edited copy of it (another stem, options or answer)."""
    stem = q.stem if stem is None else stem
    options = q.options if options is None else options
    answer = q.answer if answer is None else answer
    exp = f"Ans. is '{'abcd'[answer]}' i.e., {options[answer]}. {fact_sentence(q)}"
    return {"id": row_id, "question": stem, "opa": options[0], "opb": options[1], "opc": options[2],
            "opd": options[3], "cop": answer, "choice_type": "single", "exp": exp,
            "subject_name": FACTS.subjects[q.table], "topic_name": q.fact.topic or None}


STOP = {"a", "an", "the", "of", "and", "or", "with", "to", "in", "on", "at", "for", "is", "are", "was", "has",
        "had", "his", "her", "he", "she", "it", "by", "from", "that", "which", "this", "these", "be", "after",
        "before", "when", "who", "following", "there", "no", "not", "than", "over", "into", "both", "each"}


def metamap_phrases(question: str) -> list[str]:
    """A few MetaMap-like phrases: the question cut at punctuation and function words."""
    text = re.sub(r"(\d+)-(year|month|day)-old", r"\1 \2 old", question)
    pieces = re.split(r"[.,;:?](?:\s|$)|[()]|\s(?:and|or|with|after|because of|during|over|for|when|but|which|"
                      r"who|that|is|are|was|has|have|had|shows|develops|reports)\s", text)
    phrases: list[str] = []
    for piece in pieces:
        words = piece.split()
        while words and words[0].lower() in STOP:
            words.pop(0)
        while words and words[-1].lower() in STOP:
            words.pop()
        if words and len(words) <= 6 and " ".join(words) not in phrases:
            phrases.append(" ".join(words))
    return phrases[:12]


def medqa_record(q: Question, stem: str | None = None, options: list[str] | None = None,
                 answer: int | None = None) -> dict:
    """A MedQA row for q, or for an edited copy of it."""
    stem = q.stem if stem is None else stem
    options = q.options if options is None else options
    answer = q.answer if answer is None else answer
    return {"question": stem, "answer": options[answer], "options": dict(zip("ABCD", options)),
            "meta_info": FACTS.families[(q.table, q.family)].medqa_meta, "answer_idx": "ABCD"[answer],
            "metamap_phrases": metamap_phrases(stem)}


def medqa_id(source: str, record: dict) -> str:
    """The id m1data's loader gives a MedQA-shaped row (MedQA has none: a content hash)."""
    return content_id(source, record["question"], list(record["options"].values()))


def write_jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        handle.writelines(json.dumps(record, ensure_ascii=False) + "\n" for record in records)


def write_json(path: Path, data, **kwargs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, **kwargs), encoding="utf-8")


def rotate(options: list[str], answer: int, by: int) -> tuple[list[str], int]:
    """Options reordered for a planted copy, so that only a key with sorted options still matches."""
    n = len(options)
    return options[by:] + options[:by], (answer - by) % n


def headqa_question(qid: int, q: Question) -> dict:
    return {"qid": str(qid), "qtext": q.stem, "ra": str(q.answer + 1),
            "answers": [{"aid": i + 1, "atext": text} for i, text in enumerate(q.options)], "image": ""}


def headqa_image_question(qid: int, image: dict) -> dict:
    return {"qid": str(qid), "qtext": image["qtext"], "ra": str(image["ra"]),
            "answers": [{"aid": i + 1, "atext": t} for i, t in enumerate(image["answers"])], "image": image["image"]}


def pubmedqa_entry(study: dict) -> dict:
    methods = (f"We conducted a {study['design']} at {study['site']} (a fictional setting) between "
               f"{study['years'][0]} and {study['years'][1]}. "
               f"{'A total of ' if study['methods'][0].isdigit() else ''}{study['methods']}")
    if study.get("two_paragraphs"):
        contexts = [study["bg"], f"{methods} {study['results']}"]
        labels = ["OBJECTIVE", "RESULTS"]
    else:
        contexts = [study["bg"], methods, study["results"]]
        labels = ["BACKGROUND", "METHODS", "RESULTS"]
    return {"QUESTION": study["q"], "CONTEXTS": contexts, "LABELS": labels, "MESHES": study["meshes"],
            "YEAR": study["year"], "reasoning_required_pred": study["decision"],
            "reasoning_free_pred": study["decision"], "final_decision": study["decision"],
            "LONG_ANSWER": study["conclusion"]}


# =============================================================================================
# Planted edits: each keeps a stem above SIMILAR to its original, the way real near-copies differ.


def edit_whitespace(stem: str) -> str:
    words = stem.split(" ")
    k = len(words) // 2
    return " ".join(words[:k]) + "  " + " ".join(words[k:]) + " "


def edit_case(stem: str) -> str:
    words = stem.split(" ")
    k = max(range(1, len(words)), key=lambda j: (len(words[j]), -j))
    for j in (0, k):
        words[j] = words[j][0].swapcase() + words[j][1:]
    return " ".join(words)


def edit_one_word(stem: str) -> str:
    if " the " in stem:
        return stem.replace(" the ", " ", 1)
    for word in (" in ", " of ", " by "):
        if word in stem:
            return stem.replace(word, f"{word}the ", 1)
    return "The " + lc(stem)


def edit_punctuation(stem: str) -> str:
    return stem[:-1] + " ?" if stem.endswith(":") else stem.rstrip("?") + ":"


def edit_first_letter_and_end(stem: str) -> str:
    stem = stem[0].lower() + stem[1:]
    return stem[:-1] + {":": "?", "?": ":"}.get(stem[-1], stem[-1] + "?")


def edit_age(stem: str) -> str:
    age = re.search(r"(\d+)-(year|month|day)-old", stem)
    return stem.replace(age.group(0), f"{int(age.group(1)) + 2}-{age.group(2)}-old", 1)


# (README wording, edit, how far the options are rotated)
MEDMCQA_EDITS = [("whitespace (double space, trailing space)", edit_whitespace, 0),
                 ("case (two letters)", edit_case, 0),
                 ("one word ('the') dropped or added", edit_one_word, 1),
                 ("punctuation (':' -> ' ?'), options reordered", edit_punctuation, 3)]


# =============================================================================================
# The sample


@dataclass
class Drawn:
    """The questions of every file, drawn in one seeded sequence so that no two overlap."""

    headqa: dict[str, list[Question]]
    medqa_train: list[Question]
    medqa_test: list[Question]
    mmlu: list[Question]
    medmcqa_train: list[Question]
    medmcqa_val: list[Question]


@dataclass
class Report:
    """What the README lists, the planted pairs the check expects (as m1data row ids), counts."""

    planted: dict[str, Any] = field(default_factory=dict)
    dup_pairs: list[tuple[str, str]] = field(default_factory=list)  # (original, copy) in training
    eval_pairs: list[tuple[str, str]] = field(default_factory=list)  # (training row, eval row)
    pubmedqa: dict[str, list[str]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)


README_ORDER = ["medmcqa/train.jsonl", "medqa/train.jsonl", "headqa/train_HEAD_EN.json", "pubmedqa/ori_pqal.json",
                "pubmedqa/test_ground_truth.json", "eval/mmlu/clinical_knowledge_test.csv", "eval/medqa/test.jsonl",
                "eval/medmcqa/validation.jsonl"]  # the files table of the README, eval sets last


def draw(rng: random.Random) -> Drawn:
    """All questions first, eval sets after training (the order fixes which facts each file gets)."""
    alloc = Allocator(rng)
    headqa = {exam: alloc.take("headqa", tables, n, 5) for exam, (_, tables, n) in HEADQA_EXAMS.items()}
    medqa_train = alloc.take("medqa", None, N_MEDQA_TRAIN, 4)
    medqa_test = alloc.take("medqa", None, N_EVAL_DISTINCT, 4)
    mmlu = alloc.take("mmlu", None, N_EVAL_DISTINCT, 4)
    medmcqa_train = alloc.take("medmcqa", None, N_MEDMCQA_TRAIN, 4)
    medmcqa_val = alloc.take("medmcqa", None, N_EVAL_DISTINCT, 4)
    return Drawn(headqa, medqa_train, medqa_test, mmlu, medmcqa_train, medmcqa_val)


@dataclass
class MedMCQATrain:
    """The written MedMCQA training file, and the rows the eval sets copy from."""

    questions: list[Question]
    ids: list[str]
    val_exact: int
    val_edit: int
    mmlu_exact: int


def write_medmcqa_train(out: Path, rng: random.Random, questions: list[Question], report: Report) -> MedMCQATrain:
    """60 rows: 56 questions and 4 planted near-duplicates, each placed after its original.

    The originals of planted rows and of eval copies are distinct rows with the longest stems
    (a small edit of a long stem stays above the similarity threshold).
    """
    ids = [new_uuid(rng) for _ in questions]
    records = [medmcqa_record(q, i) for q, i in zip(questions, ids)]
    long_rows = sorted((i for i, q in enumerate(questions) if len(q.stem) >= 50),
                       key=lambda i: (-len(questions[i].stem), i))
    picks = long_rows[:7]
    rng.shuffle(picks)
    planted = []
    for (kind, edit, shift), src in zip(MEDMCQA_EDITS, picks[:4]):
        q = questions[src]
        options, answer = rotate(q.options, q.answer, shift)
        row_id = new_uuid(rng)
        if edit(q.stem) == q.stem:
            raise SystemExit(f"planted edit {kind!r} leaves {q.stem!r} unchanged")
        planted.append((src, medmcqa_record(q, row_id, edit(q.stem), options, answer)))
        report.planted.setdefault("medmcqa_train", []).append(
            {"id": row_id, "kind": kind, "original": ids[src], "stem": edit(q.stem)})
        report.dup_pairs.append((f"medmcqa:{ids[src]}", f"medmcqa:{row_id}"))
    for src, record in sorted(planted, key=lambda p: -p[0]):
        records.insert(rng.randint(src + 1, len(records)), record)
    write_jsonl(out / "medmcqa" / "train.jsonl", records)
    report.counts["medmcqa/train.jsonl"] = len(records)
    return MedMCQATrain(questions, ids, picks[4], picks[5], picks[6])


@dataclass
class MedQATrain:
    """The written MedQA training file, and the rows the eval sets copy from."""

    questions: list[Question]
    records: list[dict]
    base: list[dict]  # the record of each question, in question order
    test_exact: int
    test_edit: int
    mmlu_edit: int

    def line(self, src: int) -> int:
        return self.records.index(self.base[src]) + 1

    def id(self, src: int) -> str:
        return medqa_id("medqa", self.base[src])

    def where(self, src: int) -> str:
        return f"medqa line {self.line(src)} (`{self.id(src)}`)"


def write_medqa_train(out: Path, rng: random.Random, questions: list[Question], report: Report) -> MedQATrain:
    """40 rows: 39 vignettes and a planted near-duplicate (the patient's age changed)."""
    base = [medqa_record(q) for q in questions]
    records = list(base)
    story_rows = [i for i, q in enumerate(questions) if q.family == "story"]
    rng.shuffle(story_rows)
    dup_src, test_exact, test_edit, mmlu_edit = story_rows[:4]
    q = questions[dup_src]
    dup = medqa_record(q, edit_age(q.stem), *rotate(q.options, q.answer, 1))
    records.insert(rng.randint(dup_src + 1, len(records)), dup)
    medqa = MedQATrain(questions, records, base, test_exact, test_edit, mmlu_edit)
    report.planted["medqa_train"] = [{
        "line": records.index(dup) + 1, "id": medqa_id("medqa", dup), "kind": "age changed, options reordered",
        "original_line": medqa.line(dup_src), "original_id": medqa.id(dup_src)}]
    report.dup_pairs.append((medqa.id(dup_src), medqa_id("medqa", dup)))
    write_jsonl(out / "medqa" / "train.jsonl", records)
    report.counts["medqa/train.jsonl"] = len(records)
    return medqa


def write_headqa(out: Path, drawn: dict[str, list[Question]], report: Report) -> None:
    """Three exams; the image questions open the medicine exam, one pharmacology row repeats a
    wrong answer (two identical answer texts)."""
    exams = {}
    for exam, (category, _, _) in HEADQA_EXAMS.items():
        data = []
        if exam.endswith("_M"):
            data = [headqa_image_question(i + 1, image) for i, image in enumerate(FACTS.image_questions)]
        for q in drawn[exam]:
            data.append(headqa_question(len(data) + 1, q))
        if exam.endswith("_F"):
            bad = data[6]
            wrong = [a for a in bad["answers"] if str(a["aid"]) != bad["ra"]]
            wrong[1]["atext"] = wrong[0]["atext"]
            report.planted["headqa_bad"] = {"id": f"headqa:{exam}:{bad['qid']}", "qtext": bad["qtext"],
                                            "duplicated": wrong[0]["atext"]}
        exams[exam] = {"name": exam, "data": data, "category": category, "year": "2016"}
    report.planted["headqa_images"] = [f"headqa:Cuaderno_2016_1_M:{i}" for i in (1, 2)]
    write_json(out / "headqa" / "train_HEAD_EN.json", {"version": "1.0", "language": "en", "exams": exams})
    report.counts["headqa/train_HEAD_EN.json"] = sum(len(e["data"]) for e in exams.values())


def write_pubmedqa(out: Path, rng: random.Random, report: Report) -> None:
    """16 invented studies: 8 under PMIDs of the official test split, 8 under invented PMIDs."""
    test_pmids = sorted(line.strip() for line in TEST_PMIDS_FILE.read_text().splitlines()
                        if line.strip() and not line.startswith("#"))
    chosen_test = rng.sample(test_pmids, 8)
    invented = [str(90000000 + rng.randrange(1, 999999)) for _ in range(8)]
    if set(invented) & set(test_pmids) or len(set(invented)) != 8:
        raise SystemExit("invented PMIDs collide; change the seed")
    studies = list(FACTS.studies)
    rng.shuffle(studies)
    pmids = chosen_test + invented
    order = list(range(16))
    rng.shuffle(order)
    pqal = {pmids[i]: pubmedqa_entry(studies[i]) for i in order}
    write_json(out / "pubmedqa" / "ori_pqal.json", pqal, indent=4)
    truth = {pmid: pqal[pmid]["final_decision"] for pmid in chosen_test}
    write_json(out / "pubmedqa" / "test_ground_truth.json", truth, indent=4)
    report.pubmedqa = {"test": chosen_test, "train": invented}
    report.counts["pubmedqa/ori_pqal.json"] = len(pqal)
    report.counts["pubmedqa/test_ground_truth.json"] = len(truth)


def plant_eval(report: Report, file: str, row: str, kind: str, source: str, pair: tuple[str, str]) -> None:
    report.planted.setdefault("eval", []).append({"file": file, "row": row, "kind": kind, "source": source})
    report.eval_pairs.append(pair)


def write_mmlu(out: Path, rng: random.Random, questions: list[Question], medmcqa: MedMCQATrain,
               medqa: MedQATrain, report: Report) -> None:
    """13 distinct + an exact copy of a MedMCQA training question + a light edit of a MedQA
    training vignette ('most likely' -> 'most probable'), headerless CSV."""
    rows = [[q.stem, *q.options, "ABCD"[q.answer]] for q in questions]
    q = medmcqa.questions[medmcqa.mmlu_exact]
    options, answer = rotate(q.options, q.answer, 1)
    exact = [q.stem, *options, "ABCD"[answer]]
    q2 = medqa.questions[medqa.mmlu_edit]
    light = [q2.stem.replace("most likely", "most probable", 1), *q2.options, "ABCD"[q2.answer]]
    placed = [(exact, "exact copy (options reordered)", f"medmcqa:{medmcqa.ids[medmcqa.mmlu_exact]}",
               f"medmcqa id `{medmcqa.ids[medmcqa.mmlu_exact]}`"),
              (light, "light edit ('most likely' -> 'most probable')", medqa.id(medqa.mmlu_edit),
               medqa.where(medqa.mmlu_edit))]
    for row, *_ in placed:
        rows.insert(rng.randint(0, len(rows)), row)
    for row, kind, train_id, source in placed:
        plant_eval(report, "eval/mmlu/clinical_knowledge_test.csv", f"line {rows.index(row) + 1}", kind, source,
                   (train_id, content_id(MMLU_CK, row[0], row[1:5])))
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    (out / "eval" / "mmlu").mkdir(parents=True, exist_ok=True)
    (out / "eval" / "mmlu" / "clinical_knowledge_test.csv").write_text(buffer.getvalue(), encoding="utf-8")
    report.counts["eval/mmlu/clinical_knowledge_test.csv"] = len(rows)


def write_medqa_test(out: Path, rng: random.Random, questions: list[Question], medqa: MedQATrain,
                     report: Report) -> None:
    """13 distinct + an exact copy (options reordered) + a light edit (two words changed)."""
    records = [medqa_record(q) for q in questions]
    q = medqa.questions[medqa.test_exact]
    exact = medqa_record(q, q.stem, *rotate(q.options, q.answer, 3))
    q2 = medqa.questions[medqa.test_edit]
    light = medqa_record(q2, q2.stem.replace("of the following", "of these", 1))
    placed = [(exact, "exact copy (options reordered)", medqa.test_exact),
              (light, "light edit ('of the following' -> 'of these')", medqa.test_edit)]
    for record, _, _ in placed:
        records.insert(rng.randint(0, len(records)), record)
    for record, kind, src in placed:
        plant_eval(report, "eval/medqa/test.jsonl", f"line {records.index(record) + 1}", kind, medqa.where(src),
                   (medqa.id(src), medqa_id(MEDQA_TEST, record)))
    write_jsonl(out / "eval" / "medqa" / "test.jsonl", records)
    report.counts["eval/medqa/test.jsonl"] = len(records)


def write_medmcqa_validation(out: Path, rng: random.Random, questions: list[Question], medmcqa: MedMCQATrain,
                             report: Report) -> None:
    """13 distinct + an exact copy (options reordered) + a light edit (case and punctuation).

    The first distinct row has its answer first (`cop` 0), as some row of any 0-based file of a
    fair size does: without one, the loader cannot tell the file's `cop` base and warns
    (CopBaseWarning) in every default build."""
    first = questions[0]
    records = [medmcqa_record(first, new_uuid(rng), None, *rotate(first.options, first.answer, first.answer)),
               *(medmcqa_record(q, new_uuid(rng)) for q in questions[1:])]
    q = medmcqa.questions[medmcqa.val_exact]
    exact = medmcqa_record(q, new_uuid(rng), q.stem, *rotate(q.options, q.answer, 2))
    q2 = medmcqa.questions[medmcqa.val_edit]
    light = medmcqa_record(q2, new_uuid(rng), edit_first_letter_and_end(q2.stem))
    for record, kind, src in ((exact, "exact copy (options reordered)", medmcqa.val_exact),
                              (light, "light edit (case of the first letter, final ':' and '?' swapped)",
                               medmcqa.val_edit)):
        records.insert(rng.randint(0, len(records)), record)
        plant_eval(report, "eval/medmcqa/validation.jsonl", f"id `{record['id']}`", kind,
                   f"medmcqa id `{medmcqa.ids[src]}`", (f"medmcqa:{medmcqa.ids[src]}", f"{MEDMCQA_VAL}:{record['id']}"))
    write_jsonl(out / "eval" / "medmcqa" / "validation.jsonl", records)
    report.counts["eval/medmcqa/validation.jsonl"] = len(records)


def make(out: Path) -> Report:
    """Write every file of the sample and its README; the order of the seeded draws is fixed."""
    rng = random.Random(SEED)
    drawn = draw(rng)
    report = Report()
    medmcqa = write_medmcqa_train(out, rng, drawn.medmcqa_train, report)
    medqa = write_medqa_train(out, rng, drawn.medqa_train, report)
    write_headqa(out, drawn.headqa, report)
    write_pubmedqa(out, rng, report)
    write_medmcqa_validation(out, rng, drawn.medmcqa_val, medmcqa, report)
    write_medqa_test(out, rng, drawn.medqa_test, medqa, report)
    write_mmlu(out, rng, drawn.mmlu, medmcqa, medqa, report)
    report.counts = {name: report.counts[name] for name in README_ORDER}
    write_readme(out, report)
    return report



# =============================================================================================
# Self-check, through m1data itself: what the loaders drop, what dedup and decontamination find,
# and that no unplanted pair of stems comes close.


@dataclass
class Loaded:
    """The sample as m1data reads it, keyed by the file each result came from."""

    train: dict[str, LoadResult]  # source name -> result
    evals: dict[str, LoadResult]  # eval-set name -> result
    files: dict[str, list[LoadResult]]  # sample-relative file -> every result read from it


def load_sample(out: Path) -> Loaded:
    """Read `out` the way a build reads the embedded sample (m1data.stages.loading's file list), plus the
    PubMedQA test split, so every question in the sample is seen."""
    def here(path: str) -> tuple[str, Path]:
        relative = Path(path).relative_to(sample_dir()).as_posix()
        return relative, out / relative

    loaded = Loaded({}, {}, {})
    for name, spec in sample_sources().items():
        relative, path = here(spec.path)
        loaded.train[name] = load_source(name, path, split=spec.split)
        loaded.files.setdefault(relative, []).append(loaded.train[name])
    evals = [(spec.name, spec.path) for spec in sample_evals()]
    evals.append(("pubmedqa_test", sample_sources()["pubmedqa"].path))
    for name, sample_path in evals:
        relative, path = here(sample_path)
        for set_name, result in load_eval_any(name, path).items():
            loaded.evals[set_name] = result
            loaded.files.setdefault(relative, []).append(result)
    return loaded


def check_counts(loaded: Loaded, report: Report) -> None:
    """Every written row is read back, as a row or as a dropped one."""
    for relative, results in loaded.files.items():
        read = sum(len(r.rows) + len(r.dropped) for r in results)
        if read != report.counts[relative]:
            raise SystemExit(f"{relative}: wrote {report.counts[relative]} rows, m1data read {read}")


def check_dropped(loaded: Loaded, report: Report) -> None:
    """The loaders drop exactly the planted bad HEAD-QA rows, for the planted reasons."""
    expected = {i: "needs_image" for i in report.planted["headqa_images"]}
    expected[report.planted["headqa_bad"]["id"]] = "duplicate_options"
    dropped = {r["id"]: r["reason"] for result in [*loaded.train.values(), *loaded.evals.values()]
               for r in result.dropped}
    if dropped != expected:
        raise SystemExit(f"the loaders dropped {dropped}, expected {expected}")


def check_pipeline_finds_planted(loaded: Loaded, report: Report) -> None:
    """m1data's dedup and decontamination (default keys, threshold 95) find exactly the planted copies."""
    rows = datasets.concatenate_datasets([r.rows for r in loaded.train.values()])
    _, removed = deduplicate(rows)
    found = {frozenset(p) for p in zip(removed["match_id"], removed["id"])}
    if found != {frozenset(p) for p in report.dup_pairs}:
        raise SystemExit(f"dedup found {sorted(map(sorted, found))}, planted {report.dup_pairs}")
    evals = {name: r.rows for name, r in loaded.evals.items()}
    _, removed = decontaminate(rows, evals)
    found = {frozenset(p) for p in zip(removed["id"], removed["eval_id"])}
    if found != {frozenset(p) for p in report.eval_pairs}:
        raise SystemExit(f"decontamination found {sorted(map(sorted, found))}, planted {report.eval_pairs}")


def all_stems(loaded: Loaded) -> tuple[list[str], list[str]]:
    """(row id, question stem) of every question, dropped ones included (read from their raw record)."""
    ids, stems = [], []
    for result in [*loaded.train.values(), *loaded.evals.values()]:
        ids += result.rows["id"]
        stems += result.rows["question"]
        for record in result.dropped:
            raw = json.loads(record["metadata"])
            ids.append(record["id"])
            stems.append(raw.get("qtext") or raw.get("question") or raw.get("QUESTION"))
    return ids, stems


def close_pairs(ids: list[str], stems: list[str]) -> list[tuple[float, float, str, str]]:
    """(raw ratio, normalised ratio, id, id) of every pair of stems scoring at least LISTED."""
    raw = process.cdist(stems, stems, scorer=fuzz.ratio, dtype=np.float64, workers=1)
    normal = [normalise(s) for s in stems]
    norm = process.cdist(normal, normal, scorer=fuzz.ratio, dtype=np.float64, workers=1)
    i, j = np.triu_indices(len(stems), k=1)
    keep = np.maximum(raw[i, j], norm[i, j]) >= LISTED
    pairs = [(float(raw[a, b]), float(norm[a, b]), ids[a], ids[b]) for a, b in zip(i[keep], j[keep])]
    return sorted(pairs, reverse=True)


def check_similar_pairs(pairs: list[tuple[float, float, str, str]], report: Report) -> None:
    """Planted pairs score at least SIMILAR raw and normalised; every other pair stays below MARGIN."""
    expected = {frozenset(p) for p in [*report.dup_pairs, *report.eval_pairs]}
    found = {frozenset(p[2:]) for p in pairs if max(p[0], p[1]) >= MARGIN}
    weak = {frozenset(p[2:]) for p in pairs if min(p[0], p[1]) < SIMILAR}
    if found != expected or expected & weak:
        for p in pairs:
            if max(p[0], p[1]) >= MARGIN or frozenset(p[2:]) in expected:
                print(f"{p[0]:6.1f} {p[1]:6.1f}  {p[2]}  {p[3]}")
        raise SystemExit(f"similar pairs: missing {len(expected - found)}, unexpected {len(found - expected)}, "
                         f"planted below {SIMILAR}: {len(expected & weak)}")


def check(out: Path, report: Report) -> list[tuple[float, float, str, str]]:
    """Run every check on the files in `out`; the closest pairs of stems, for --check to list."""
    loaded = load_sample(out)
    check_counts(loaded, report)
    check_dropped(loaded, report)
    check_pipeline_finds_planted(loaded, report)
    pairs = close_pairs(*all_stems(loaded))
    check_similar_pairs(pairs, report)
    return pairs


def tree_differences(made: Path, committed: Path) -> list[str]:
    """What `diff -r made committed` would report, one line per file."""
    def files(root: Path) -> set[Path]:
        return {p.relative_to(root) for p in root.rglob("*") if p.is_file()}

    a, b = files(made), files(committed)
    out = [f"only in the new sample: {p}" for p in sorted(a - b)]
    out += [f"missing from the new sample: {p}" for p in sorted(b - a)]
    out += [f"differs: {p}" for p in sorted(a & b) if (made / p).read_bytes() != (committed / p).read_bytes()]
    return out


def write_readme(out: Path, report: Report) -> None:
    """The sample's README: what each file holds and where the planted rows are."""
    p = report.planted
    counts = "\n".join(f"| `{name}` | {n} |" for name, n in report.counts.items())
    dups = "\n".join(f"| `{d['id']}` | {d['kind']} | `{d['original']}` |" for d in p["medmcqa_train"])
    mq = p["medqa_train"][0]
    eval_rows = "\n".join(f"| `{d['file']}` | {d['row']} | {d['kind']} | {d['source']} |" for d in p["eval"])
    bad = p["headqa_bad"]
    text = f"""# m1data sample data (synthetic)

A small sample of each raw source m1 used, in each source's NATIVE release format, so that the
README's main job and the tests run offline. **Every question here is synthetic**: written by
`scripts/make_sample.py` from small fact tables (drug -> class / mechanism / adverse effect,
organism -> disease, nutrient -> deficiency sign, nerve -> muscle, hormone -> secreting cells) through
a few question templates per source style, and from a table of invented studies for PubMedQA. No
row is copied from MedMCQA, MedQA, HEAD-QA, PubMedQA, MMLU or any other dataset.

**For offline demos and tests only. Not medical advice, and not for training models**: the
questions are templated and repetitive, the clinical vignettes are simplified, and the PubMedQA
abstracts describe studies that never took place (fictional hospitals, made-up numbers).

**Licence:** Apache-2.0, m1data's own: the rows were written for m1data, so no source dataset's
terms apply to them.

Regenerate (deterministic, seed {SEED}; needs m1data installed, the fact tables are scripts/sample_facts.yaml) from the repository root:

    python scripts/make_sample.py          # rewrites this folder
    python scripts/make_sample.py --check  # checks with m1data's loaders, compares with the committed files

## Files

| file | rows |
|---|---|
{counts}

- `medmcqa/train.jsonl`: one JSON object per line with `id` (uuid4), `question`, `opa`..`opd`, `cop`
  (0-3, index of the right option, as in the Hub copy `openlifescienceai/medmcqa`), `choice_type`,
  `exp`, `subject_name`, `topic_name`.
- `medqa/train.jsonl`: the shape of MedQA's `data_clean/questions/US/4_options/phrases_no_exclude_*.jsonl`
  (`question`, `answer`, `options` A-D, `meta_info`, `answer_idx`, `metamap_phrases`).
- `headqa/train_HEAD_EN.json`: HEAD-QA v1.0 English, three exams (`Cuaderno_2016_1_B` biology,
  `Cuaderno_2016_1_F` pharmacology, `Cuaderno_2016_1_M` medicine), 10 questions each, 5 answers each.
- `pubmedqa/ori_pqal.json`: PQA-L shape, 16 invented studies. 8 are filed under PMIDs of the official
  500-PMID test split (`m1data/data/pubmedqa_test_pmids.txt`): {", ".join(report.pubmedqa["test"])}.
  Those PMIDs are real PubMed ids, but the text filed under them here is invented and has nothing
  to do with the real articles. The other 8 PMIDs are made up (above 90,000,000, beyond the range
  PubMed has assigned): {", ".join(report.pubmedqa["train"])}; they form the training pool,
  so `load_source("pubmedqa", ...)` gives 8 train rows.
- `pubmedqa/test_ground_truth.json`: `{{PMID: yes/no/maybe}}` for the 8 test-split PMIDs (this
  sample's labels, not the official ones).
- `eval/mmlu/clinical_knowledge_test.csv` (headerless `question,A,B,C,D,answer`),
  `eval/medqa/test.jsonl` (MedQA shape), `eval/medmcqa/validation.jsonl` (MedMCQA shape):
  decontamination targets.

## Planted rows

Bad HEAD-QA rows, which the loader must drop with a reason (so HEAD-QA loads 27 rows):

- needs an image: `{p["headqa_images"][0]}`, `{p["headqa_images"][1]}`
  (`image` = `./data/MIR/Cuaderno_2016_1_M.images/img1.png`, `img2.png`).
- two identical answer texts ("{bad["duplicated"]}"): `{bad["id"]}`.

Near-duplicates inside MedMCQA train (each placed after its original; same options):

| planted id | edit | original id |
|---|---|---|
{dups}

Near-duplicate inside MedQA train (MedQA has no ids; ids are the content hashes the loader derives):
line {mq["line"]} (`{mq["id"]}`) repeats line {mq["original_line"]} (`{mq["original_id"]}`) with the
patient's age changed by two years and the options reordered.

Eval questions taken from the training sample (decontamination must find these 6; all other eval
questions ask about different facts or ask in a different way):

| eval file | row | kind | training source |
|---|---|---|---|
{eval_rows}

Every other pair of questions in the sample scores below 95 with `rapidfuzz.fuzz.ratio` on the
question stem, raw and after lower-casing and stripping punctuation (`--check` prints the closest
pairs). Fact tables are medically conventional textbook associations; each question's distractors
are checked against a list of other facts that are also true of the answer.
"""
    (out / "README.md").write_text(text, encoding="utf-8")


# =============================================================================================


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the sample folder (default: m1data's)")
    parser.add_argument("--check", action="store_true",
                        help="write into a temp dir and compare with --out (exit 1 on any difference); "
                             "also lists the most similar question pairs")
    args = parser.parse_args()
    if not args.check:
        report = make(args.out)
        check(args.out, report)
        for name, n in report.counts.items():
            print(f"{n:4d}  {args.out / name}")
        return
    with tempfile.TemporaryDirectory(prefix="m1data-sample-") as tmp:
        report = make(Path(tmp))
        for raw, norm, a, b in check(Path(tmp), report)[:25]:
            print(f"{raw:6.1f} {norm:6.1f}  {a}  {b}")
        differences = tree_differences(Path(tmp), args.out)
    for line in differences:
        print(line)
    if differences:
        sys.exit(f"{args.out}: {len(differences)} file(s) differ from what make_sample.py writes")
    print(f"{args.out}: identical to what make_sample.py writes ({len(report.counts) + 1} files)")


if __name__ == "__main__":
    main()
