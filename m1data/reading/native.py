"""The four training sources' own formats: one small class each, in the shape of a HF packaged
builder: where its rows come from (`hub_id`, `read_native`) and one `parse` that turns a raw
record into the fields of a row (m1data.reading.sources loads them; m1data.reading.evalsets reads the eval splits
of MedMCQA and PubMedQA with the same classes).

Why a module of its own: the eval-set loaders need these parsers and the source loader needs the
eval loaders' column mapping (for files m1data has no loader for); with the formats here, neither
of those two modules imports the other's importer.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

import datasets

from m1data.errors import UserError
from m1data.reading.readers import (
    MalformedFile,
    Parsed,
    Record,
    Scope,
    field,
    key_letter,
    key_text,
    labelled_index,
    letter_index,
    lettered_options,
    load_hub,
    read_json_or_lines,
    read_records,
    record_format,
    same_text,
    text,
    unread_question,
    whole_number,
)
from m1data.reading.registry import SOURCE_REGISTRY
from m1data.schema import LETTERS, RowError, validate


class Source:
    name: ClassVar[str]
    hub_id: ClassVar[str]
    hub_config: ClassVar[str | None] = None
    default_split: ClassVar[str] = "train"

    def parse(self, raw: dict[str, Any]) -> Parsed:
        raise NotImplementedError

    def scope(self, split: str) -> Scope | None:
        """The filter that picks `split`'s records out of a file or Hub split holding more than
        it (PubMedQA's 1,000 labelled questions hold both of its splits), or None: every record
        read is the split's."""
        return None

    def read_native(self, path: Path, split: str) -> Iterator[Record]:
        """Records of a local file, every one of them (`scope` picks the split's); the locator
        is a fallback id for bad rows."""
        for line, raw in read_records(path):
            yield f"{path.name}:{line}", raw, f"{path.name}:{line}"

    def read_files(self, files: Sequence[Path], split: str) -> Iterator[Record]:
        """Records of a source's shards (`m1data.reading.readers.source_files`), as of one file:
        each record's locator names its own file, so ids stay apart."""
        for path in files:
            yield from self.read_native(path, split)

    def hub_rows(self, split: str, local_hint: str | None = None) -> datasets.Dataset:
        hint = local_hint or f"`m1data load {self.name} --path FILE` (or `path:` under sources.{self.name})"
        return load_hub(self.hub_id, self.hub_config, split, local_hint=hint)

    def read_hub(self, split: str, local_hint: str | None = None) -> Iterator[Record]:
        ds = self.hub_rows(split, local_hint)
        for index, raw in enumerate(ds):
            yield f"{split}:{index}", raw, f"{self.hub_id} {split} row {index}"


# how each door is told a MedMCQA file's cop base
_SAY_COP_BASE = ("`m1data load medmcqa --cop-base 1` (or 0), `cop_base: 1` under sources.medmcqa in the build "
                 "config, or load_source(..., cop_base=1); as the eval set, `m1data load-eval medmcqa_validation "
                 "--path FILE --mapping answer_kind=index1` (or index0), `--eval-mapping medmcqa_validation:"
                 "answer_kind=index1`, or `mapping: {answer_kind: index1}` under its eval entry in a build config")


class CopBaseWarning(UserWarning):
    """A MedMCQA file whose `cop` values cannot tell whether they count from 0 or from 1."""


# where a MedMCQA-like file writes a fifth and sixth option (the op5 layouts): no MedMCQA row has one.
# Read as MedMCQA, the option was lost without a word, and a 0-based key on it (4) read as a 1-based file.
_MORE_OPTIONS = ("ope", "opf")


def _written(value: Any) -> bool:
    """A fifth or sixth option is there: not None, an empty cell, or the NaN pandas writes for an
    empty cell of a column that other rows fill (it was counted as an option "nan")."""
    return value not in (None, "") and not (isinstance(value, float) and value != value)


class MedMCQA(Source):
    """Hub and native rows share the fields. On the Hub `cop` is the 0-based index of the right
    option; the original release's files count from 1.

    A local file's base is decided from the evidence of the whole file: only a 0-based file has
    a `cop` of 0 and only a 1-based file a `cop` of 4. Rows that are bad anyway (no question, a
    `cop` that is not a whole number in 0..4, ...) are set aside and dropped with a reason, so no bad row
    can change how the other rows are read. A file with both 0s and 4s is an error that asks for
    `cop_base` (read as decontamination targets, its keys are left unread: `targets_only`); a file
    with neither is read as the Hub's 0-based, with a `CopBaseWarning` that names the assumption
    and how to override it. A warning, not an error: a small 0-based file
    can lack a 0 as a 1-based one can lack a 4, and the Hub's 0-based files, the common case,
    have loaded this way so far. A 1-based row carries `"_cop_base": 1` in its metadata so the
    reading is visible."""

    name = "medmcqa"
    hub_id = SOURCE_REGISTRY["medmcqa"].hub_id

    def __init__(self, cop_base: int | None = None, *, guess_base: bool = True, targets_only: bool = False):
        """`guess_base` False: a file whose cop values cannot show their base is an error, not read
        as the Hub's 0-based with a warning (a scored eval set: every key of a wrong guess is wrong).
        `targets_only`: the rows are decontamination targets, whose keys are never scored, so a file
        whose cop values contradict each other's base (a 0 and a 4) is read with every key unread
        (`_cop_base` None: unscored rows), with a warning, not refused. Why: one out-of-range cop
        stopped the eval set's whole read, and every door's decontamination with it."""
        if cop_base not in (None, 0, 1):
            raise UserError(f"cop_base must be 0 (Hub) or 1 (original release), not {cop_base!r}")
        self.cop_base = cop_base
        self.guess_base = guess_base
        self.targets_only = targets_only

    def read_native(self, path: Path, split: str) -> Iterator[Record]:
        return self.read_files([path], split)

    def read_files(self, files: Sequence[Path], split: str) -> Iterator[Record]:
        """One base for all of a source's shards: decided per shard, a shard with no 0 or 4 was
        read as 0-based beside 1-based ones."""
        records = [record for path in files for record in Source.read_native(self, path, split)]
        origin = files[0] if len(files) == 1 else files[0].parent
        base = self.cop_base if self.cop_base is not None else self.decide_base(origin, records)
        for locator, raw, where in records:
            yield locator, ({**raw, "_cop_base": base} if base != 0 and isinstance(raw, dict) else raw), where

    def decide_base(self, path: Path, records: list[Record]) -> int | None:
        seen: dict[int, list[str]] = {0: [], 4: []}
        for _, raw, where in records:
            if not isinstance(raw, dict) or whole_number(raw.get("cop")) not in (0, 4):
                continue  # cheap filter first: only a 0 or a 4 is evidence
            try:  # well-formed rows only; with no _cop_base, parse reads cop as it is
                parsed = self.parse(raw)
                if parsed.error is not None:
                    continue
                validate(parsed.question.strip(), [o.strip() for o in parsed.options], 0)
            except RowError:
                continue
            cop = parsed.answer_idx
            if cop in seen:
                seen[cop].append(where)
        if seen[0] and seen[4]:
            conflict = (f"cop is 0 on {len(seen[0]):,} rows (first {seen[0][0]}) and 4 on {len(seen[4]):,} rows "
                        f"(first {seen[4][0]}), so the file cannot be read as counting options from 0 (the Hub) or "
                        f"from 1 (the original release)")
            if not self.targets_only:
                raise MalformedFile(path, None, f"{conflict}; say which: {_SAY_COP_BASE}")
            warnings.warn(f"{path}: {conflict}; its questions are decontamination targets, no key read. To score "
                          f"them, say which: {_SAY_COP_BASE}", CopBaseWarning, stacklevel=2)
            return None
        base_matters = any(isinstance(raw, dict) and whole_number(raw.get("cop")) in (1, 2, 3) for _, raw, _ in records)
        if not seen[0] and not seen[4] and base_matters:
            if not self.guess_base:
                raise UserError(f"{path}: no well-formed row has cop 0 or 4, so whether cop counts from 0 (the Hub) "
                                "or from 1 (the original release) cannot be told, and every key of a wrong guess is "
                                f"wrong: say which: {_SAY_COP_BASE}")
            warnings.warn(
                f"{path}: no well-formed row has cop 0 or 4, so the file does not show whether cop counts options "
                "from 0 (the Hub) or from 1 (the original release); read as 0-based, like the Hub. If it counts "
                f"from 1, say so: {_SAY_COP_BASE}", CopBaseWarning, stacklevel=2)
        return 1 if seen[4] else 0

    def parse(self, raw: dict[str, Any]) -> Parsed:
        """The row; once its id is read, a fault leaves the row its id and its question (when that
        was read): the dropped record is found by the id (`m1data lineage`), not by its line, and
        an eval question with a missing option is still a decontamination target. A row without an
        id gets a content id (`collect`), as every loader's does: such a file was refused whole."""
        given = raw.get("id")
        native_id = None if given is None or (isinstance(given, str) and not given.strip()) else key_text(raw, "id")
        try:
            question = text(raw, "question")
        except RowError as err:
            return unread_question(native_id, err)
        try:
            options = [text(raw, key) for key in ("opa", "opb", "opc", "opd")]
        except RowError as err:
            return Parsed(native_id, question, [], -1, error=err)
        extra = [key for key in _MORE_OPTIONS if _written(raw.get(key))]
        if extra:  # kept for matching (an eval question is a target whatever its key)
            key = "cop" if "cop" in raw else "YOUR_KEY_COLUMN"
            problem = RowError("too_many_options", f"MedMCQA rows have four options (opa-opd), this one "
                                                   f"{4 + len(extra)}: read the file through a mapping "
                                                   f"(`--mapping options=opa+opb+opc+opd+{'+'.join(extra)},answer={key}`)")
            return Parsed(native_id, question, options + [str(raw[k]) for k in extra], -1, error=problem)
        cop = raw.get("cop")
        if cop in (None, ""):  # a CSV writes a missing cop as an empty cell
            return Parsed(native_id, question, options, -1, error=RowError("missing_field", "none of cop"))
        number = whole_number(cop)  # 2, "2", and pandas' 2.0 alike
        if number is None:
            return Parsed(native_id, question, options, -1,
                          error=RowError("answer_out_of_range", f"cop {cop!r} is not a whole number"))
        if "_cop_base" in raw and raw["_cop_base"] is None:  # the file's base contradicts itself (`targets_only`)
            return Parsed(native_id, question, options, -1,
                          error=RowError("ambiguous_answer_kind", "the file's cop values count from 0 on some rows "
                                                                  "and from 1 on others"))
        answer_idx = number - int(raw.get("_cop_base", 0))
        return Parsed(native_id=native_id, question=question, options=options, answer_idx=answer_idx)


class MedQA(Source):
    """MedQA-USMLE 4 options; no native id, so rows get a content hash."""

    name = "medqa"
    hub_id = SOURCE_REGISTRY["medqa"].hub_id

    def parse(self, raw: dict[str, Any]) -> Parsed:
        question = text(raw, "question")
        options = lettered_options(field(raw, "options"))
        key = field(raw, "answer_idx")
        if whole_number(key) is not None and key_letter(str(key)) is None:
            # a converted file that counts options: whether from 0 or 1 is a whole file's question
            raise RowError("not_text", f"answer_idx {key!r} is a number, not MedQA's letter; a file that counts "
                                       "options is read through a mapping, which decides from 0 or from 1 on the whole "
                                       "file: `m1data load medqa --mapping answer=answer_idx`, or in a build config "
                                       "`mapping: {answer: answer_idx}` and the file's `licence:` under sources.medqa")
        answer_idx = letter_index(key, len(options))
        check_answer_text(raw, "answer", options, answer_idx)
        return Parsed(native_id=None, question=question, options=options, answer_idx=answer_idx)


def check_answer_text(raw: dict[str, Any], name: str, options: list[str], answer_idx: int) -> None:
    """A record that writes its answer twice, as a letter and as the option's text (MedQA's
    `answer`, HEAD-QA Hub's `Correct Answer`), must name one option: when the two disagree the
    key is broken and either may be wrong, so the row is dropped (answer_mismatch).

    A blank answer is no answer (a CSV or a DataFrame writes a missing one as ""), and an answer
    that is the key's own letter ("B", "(b)"), or that letter and the option's text ("B. Heparin",
    `labelled_index`), agrees with it, as in the eval reader: read as text, both dropped good rows
    as answer_mismatch."""
    answer = raw.get(name)
    if answer is None or (isinstance(answer, str) and not answer.strip()):
        return
    if not isinstance(answer, str):
        raise RowError("not_text", f"{name} is {type(answer).__name__}, not text")
    if same_text(answer, options[answer_idx]) or labelled_index(answer.strip(), options) == answer_idx:
        return
    if key_letter(answer) == LETTERS[answer_idx] and not any(same_text(answer, option) for option in options):
        return
    raise RowError("answer_mismatch", f"{name} {answer!r} is not option {LETTERS[answer_idx]}")


class HeadQA(Source):
    """HEAD-QA English. Native files nest questions under exams; the Hub copy m1 used nests
    {Question, Options, Correct Option} under `data` (a .json of it is a list of such records).
    Questions that need an image are dropped: the text alone cannot be answered."""

    name = "headqa"
    hub_id = SOURCE_REGISTRY["headqa"].hub_id

    def read_native(self, path: Path, split: str) -> Iterator[Record]:
        data = read_json_or_lines(path) if record_format(path) == ".json" else None
        if data is None:  # another format, or the Hub copy's records a line each (`Dataset.to_json`)
            yield from super().read_native(path, split)
            return
        if isinstance(data, list):  # the Hub copy's records, saved as one JSON list
            for number, raw in enumerate(data, start=1):
                yield f"{path.name}:{number}", raw, f"{path.name} item {number}"
            return
        if not isinstance(data, dict) or not isinstance(data.get("exams"), dict):
            raise MalformedFile(path, None, "expected a HEAD-QA file with an 'exams' object "
                                            "(or a list of the Hub copy's records)")
        for exam_key, exam in data["exams"].items():
            # no `data` is no list either: read as empty, the exam's questions vanished without a word
            if not isinstance(exam, dict) or not isinstance(exam.get("data"), list):
                raise MalformedFile(path, None, f"exam {exam_key!r} is not an object with a 'data' list")
            for number, question in enumerate(exam["data"], start=1):
                where = f"{path.name} {exam_key} item {number}"
                if not isinstance(question, dict):
                    yield f"{exam_key}:item{number}", question, where
                    continue
                raw = {"exam": exam_key, "name": exam.get("name"), "category": exam.get("category"),
                       "year": exam.get("year"), **question}
                yield f"{exam_key}:{question.get('qid')}", raw, where  # the row id, even when the row is bad

    def parse(self, raw: Any) -> Parsed:
        if not isinstance(raw, dict):
            raise RowError("not_an_object", f"{type(raw).__name__}, not a HEAD-QA question object")
        if isinstance(raw.get("data"), dict):  # the Hub copy (openlifescienceai)
            inner = raw["data"]
            native_id = None if raw.get("id") is None else key_text(raw, "id")
            try:
                question = text(inner, "Question")
            except RowError as err:
                return unread_question(native_id, err)
            options = lettered_options(field(inner, "Options"))
            answer_idx = letter_index(field(inner, "Correct Option"), len(options))
            check_answer_text(inner, "Correct Answer", options, answer_idx)
            return Parsed(native_id=native_id, question=question, options=options, answer_idx=answer_idx)
        if raw.get("image"):
            raise RowError("needs_image", str(raw["image"]))
        question = text(raw, "qtext")
        aids, options = headqa_answers(field(raw, "answers"))
        right = field(raw, "ra")
        aid = whole_number(right)  # as every index key is read: int() made True answer 1 and 2.5 answer 2
        if aid not in aids:
            raise RowError("answer_out_of_range", f"ra {right!r} not among aids {aids}")
        answer_idx = aids.index(aid)
        exam = raw.get("exam") or raw.get("name")
        native_id = f"{exam}:{key_text(raw, 'qid')}" if exam else None
        return Parsed(native_id=native_id, question=question, options=options, answer_idx=answer_idx)


def headqa_answers(answers: Any) -> tuple[list[int], list[str]]:
    """(aids, texts) of HEAD-QA answers `[{aid, atext}, ...]`, in aid order; anything else is a
    bad row (reason bad_options), never a KeyError. An aid on two answers too: the key `ra` names
    an aid, so it would name both."""
    if not isinstance(answers, list):
        raise RowError("bad_options", f"answers is {type(answers).__name__}, not a list")
    pairs = []
    for number, answer in enumerate(answers, start=1):
        if not isinstance(answer, dict) or "aid" not in answer or "atext" not in answer:
            raise RowError("bad_options", f"answer {number} is not an object with aid and atext")
        aid, atext = answer["aid"], answer["atext"]
        # isdecimal, not isdigit: isdigit() also passes "²", which int() refuses
        if isinstance(aid, bool) or not isinstance(aid, (int, str)) or not str(aid).strip().isdecimal():
            raise RowError("bad_options", f"answer {number} has aid {aid!r}, not a number")
        if not isinstance(atext, str):
            raise RowError("bad_options", f"answer {number} has atext of type {type(atext).__name__}, not text")
        pairs.append((int(aid), atext))
    pairs.sort(key=lambda pair: pair[0])
    twice = sorted({aid for aid, _ in pairs if sum(1 for other, _ in pairs if other == aid) > 1})
    if twice:  # `ra` would name two answers; the first one was taken, silently
        raise RowError("bad_options", f"aid {twice[0]} is on more than one answer")
    return [aid for aid, _ in pairs], [atext for _, atext in pairs]


PUBMEDQA_OPTIONS = ["yes", "no", "maybe"]


def pubmedqa_test_pmids() -> frozenset[str]:
    """The official 500-PMID test split of PubMedQA (PQA-L), shipped with m1data."""
    listing = resources.files("m1data").joinpath("data/pubmedqa_test_pmids.txt").read_text(encoding="utf-8")
    return frozenset(line.strip() for line in listing.splitlines() if line.strip() and not line.startswith("#"))


class PubMedQA(Source):
    """PQA-L. split "train" is the 500 PMIDs outside the official test split (m1's pool),
    "test" the official 500, "all" the 1,000. Files and the Hub hold all 1,000; `scope` picks
    the split's, counting the other split's records and dropping a record with no readable PMID
    (not an object, no PMID) with its reason, whichever the split."""

    name = "pubmedqa"
    hub_id = SOURCE_REGISTRY["pubmedqa"].hub_id
    hub_config = SOURCE_REGISTRY["pubmedqa"].hub_config

    def scope(self, split: str) -> Scope | None:
        if split not in ("train", "test", "all"):
            raise UserError(f"PubMedQA split must be train, test or all, not {split!r}")
        if split == "all":
            return None
        test = pubmedqa_test_pmids()
        return Scope(lambda raw: (_pmid(raw) in test) == (split == "test"),
                     f"PMID {'not ' if split == 'test' else ''}in PubMedQA's official test split")

    def read_native(self, path: Path, split: str) -> Iterator[Record]:
        data = read_json_or_lines(path) if record_format(path) == ".json" else None
        if isinstance(data, dict):
            if data and all(_decision(v) in PUBMEDQA_OPTIONS for v in data.values()):
                raise MalformedFile(path, None, "a file of labels {PMID: yes/no/maybe} (test_ground_truth.json "
                                                "holds the test split's answers, not its questions); give the "
                                                "questions' file, ori_pqal.json: m1data knows the 500 test PMIDs")
            records = (
                (pmid, {"PMID": pmid, **row} if isinstance(row, dict) else row, f"{path.name} key {pmid}")
                for pmid, row in data.items()
            )
        else:  # another format, or the Hub copy's records as a list or a line each
            records = super().read_native(path, split)
        yield from records

    def read_hub(self, split: str, local_hint: str | None = None) -> Iterator[Record]:
        # The Hub config has a single "train" split holding all 1,000 labelled questions.
        ds = self.hub_rows("train", local_hint)
        yield from ((f"train:{i}", raw, f"{self.hub_id} train row {i}") for i, raw in enumerate(ds))

    def parse(self, raw: Any) -> Parsed:
        if not isinstance(raw, dict):
            raise RowError("not_an_object", f"{type(raw).__name__}, not a PubMedQA question object")
        if "pubid" in raw:  # Hub shape
            context = raw.get("context")
            contexts = context.get("contexts") if isinstance(context, dict) else context
            pmid, question_key = key_text(raw, "pubid"), "question"
        else:
            contexts = raw.get("CONTEXTS")
            pmid, question_key = key_text(raw, "PMID"), "QUESTION"
        try:
            question = text(raw, question_key)
        except RowError as err:
            return unread_question(pmid, err)
        decision = _decision(raw.get("final_decision"))
        options = list(PUBMEDQA_OPTIONS)
        if not isinstance(contexts, list) or not all(isinstance(c, str) for c in contexts):
            return Parsed(pmid, question, options, -1, error=RowError(
                "bad_context", f"contexts is {type(contexts).__name__}, not a list of texts"))
        if decision in (None, ""):  # as every loader calls a row without its key (a CSV writes it "")
            return Parsed(pmid, question, options, -1, "\n".join(contexts),
                          error=RowError("missing_field", "none of final_decision"))
        if decision not in PUBMEDQA_OPTIONS:
            return Parsed(pmid, question, options, -1, "\n".join(contexts),
                          error=RowError("answer_out_of_range", f"final_decision {decision!r}"))
        return Parsed(native_id=pmid, question=question, options=options,
                      answer_idx=PUBMEDQA_OPTIONS.index(decision), context="\n".join(contexts))


def _pmid(raw: Any) -> str:
    """A record's PMID as its row id writes it (`key_text`), for the split: read apart, a PMID that
    pandas wrote as a float (12377809.0, an id column with a null in it) was no test PMID, and the
    official test questions went into the training pool. A record with no readable PMID is a bad
    row (RowError): its split cannot be told, and `Scope` drops it with the reason. The PMID is
    `pubid` on the Hub, `PMID` in the native file and `realidx` in MedAgentsBench's copy."""
    if not isinstance(raw, dict):
        raise RowError("not_an_object", f"{type(raw).__name__}, not a PubMedQA question object")
    return key_text(raw, next((name for name in PMID_FIELDS if name in raw), "PMID"))


PMID_FIELDS = ("pubid", "PMID", "realidx")


def _decision(value: Any) -> Any:
    """PubMedQA's `final_decision` as one of yes/no/maybe when it is one in any case or spacing
    ("Yes", " no"), read with the comparison every answer text gets (`same_text`); else as it is."""
    if isinstance(value, str):
        return next((option for option in PUBMEDQA_OPTIONS if same_text(value, option)), value)
    return value


__all__ = [
    "PUBMEDQA_OPTIONS",
    "CopBaseWarning",
    "HeadQA",
    "MedMCQA",
    "MedQA",
    "PubMedQA",
    "Source",
    "check_answer_text",
    "headqa_answers",
    "pubmedqa_test_pmids",
]
