"""Eval-set loaders: the decontamination targets and the scoring sets of Table 1.

Eval rows use the training row schema with `source` set to the eval-set name. Their options are
shuffled per row from (seed, id) on every path, named set or any file, exactly like training
rows: many eval files list the options in an order that gives the answer away (GPQA puts the
right answer first; MedMCQA validation's key is 34% A), and a model that always says A must
not score above chance. Scoring compares the model's letter with the row's own (shuffled) key.
After loading, a set whose answer letters are still badly skewed raises `AnswerSkewWarning`
(see `answer_skew`). Duplicate option texts are allowed here: an eval question is a
decontamination target whatever its quality.

Most eval files share a shape (question, options, answer), spelled differently. One reader
(`QuestionReader`) with a `ColumnMapping` covers them; by default it guesses the columns from the
common spellings. It strips the letters a file wrote into its options ("A. x") once, before the
shuffle, and decides what the answer column holds (text, letter, 0- or 1-based index) once per
file. The named sets add where the rows come from and what identifies their files
(`SetIdentity`).

Every door (`decontaminate --eval`, `infer --eval-sets`, a build's eval list, the Python
`decontaminate()` given `EvalInput`s) names eval sets the same way, `EvalInput.parse`, and reads
them through the same function, `load_eval_input`; `load_evals` turns them into the
decontamination targets: every question with text, scorable or not.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import re
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa

from m1data.errors import UserError
from m1data.reading.native import HeadQA, MedMCQA, PubMedQA
from m1data.reading.readers import (
    LoadResult,
    MalformedFile,
    Parsed,
    Record,
    Scope,
    check_some_rows_read,
    collect,
    column_options,
    context_text,
    key_letter,
    key_text,
    labelled_index,
    labelled_key,
    lettered_options,
    load_hub,
    option_texts,
    options_in_question,
    read_csv,
    pandas_records,
    read_json_or_lines,
    read_records,
    record_format,
    record_stem,
    same_text,
    source_files,
    strip_option_letters,
    text,
    whole_number,
)
from m1data.reading.registry import SOURCE_REGISTRY
from m1data.schema import (DEFAULT_SEED, LETTERS, RowError, ambiguous_answer, column_values, integer_key,
                           integer_keys, option_label)

MMLU_MEDICAL = (
    "anatomy",
    "clinical_knowledge",
    "college_biology",
    "college_medicine",
    "medical_genetics",
    "professional_medicine",
)
OPTION_COLUMNS = ("opa", "opb", "opc", "opd", "ope", "opf")
SKEW_Z = 4.0
EMBEDDED_CHOICES = re.compile(r"\n\s*Answer Choices:\s*(\([A-Z]\).*)\Z", re.DOTALL)


class AnswerSkewWarning(UserWarning):
    """A loaded eval set whose right answers sit on one letter far more often than chance."""


class UnmatchedEvalWarning(UserWarning):
    """Eval records with no question text that could be read: they are not decontamination targets."""


def answer_skew(rows: datasets.Dataset, z: float = SKEW_Z) -> str | None:
    """Why the set's answer letters look skewed, or None.

    Rule: under a fair per-row shuffle, a row with n options has its answer on each of its
    letters with probability 1/n, so letter L is expected E = sum(1/n) times with variance
    V = sum(1/n * (1 - 1/n)) over the rows that have an L. A letter seen more than E + z*sqrt(V)
    times (z = 4: a fair set trips it about once in 30,000 letters) is reported. Sets of a few
    rows cannot trip it, which is right: three A's in a row prove nothing.
    """
    expected: Counter[str] = Counter()
    variance: Counter[str] = Counter()
    for options in column_values(rows, "options"):
        p = 1 / len(options) if options else 0.0
        for letter in LETTERS[: len(options)]:
            expected[letter] += p
            variance[letter] += p * (1 - p)
    observed = Counter(column_values(rows, "answer_letter"))
    for letter in sorted(expected):
        if variance[letter] and observed[letter] > expected[letter] + z * math.sqrt(variance[letter]):
            return (f"answer {letter} on {observed[letter]:,} of {len(rows):,} rows "
                    f"({observed[letter] / len(rows):.0%}; a fair shuffle gives about {expected[letter]:.0f})")
    return None


# "Question:", "## Question:", "**Question:**", "**Question**:" (Markdown headings and bold, as
# harness prompts write them)
QUESTION_LABEL = re.compile(r"\A\s*(?:#{1,4}\s*)?(?:\*\*)?(?:question|q)(?:\*\*)?\s*:(?:\*\*)?\s*", re.IGNORECASE)


# Instructions on how to answer, which prompts put before or after a question: "Choose the best
# answer.", "Select one:", "Answer with the option's letter ...", "Think step by step ...", "...
# within \boxed{}.", "The last line of your response should be ...", and before it "The following
# are multiple choice questions (with answers) about anatomy.", "Answer the following question:".
# Only words about answering: "Choose the drug of choice." is a question, and stays.
_ANSWER_WORD = r"(?:answers?|options?|choices?|responses?|alternatives?)"
# the rest of a format instruction's sentence: no sentence end in it (so no question after it is
# taken with it), a word's apostrophe, a quoted 'Answer: X' whole
_REST = r"""(?:[^\n'".?!]|[.?!](?!\s)|(?<=\w)'(?=\w)|'[^'\n.?!]{0,40}'|"[^"\n.?!]{0,40}")*?"""
_CHOOSE = (r"(?:please\s+)?(?:choose|select|pick|mark|circle|tick|identify|indicate|give|find)\s+(?:one\b|all\s+that\s+apply|"
           r"(?:(?:the|an?|one|your)\s+)?(?:(?:single|one|only)\s+)?(?:(?:best|correct|right|true|appropriate|"
           r"most\s+(?:appropriate|likely|suitable|correct|accurate))\s+)?" + _ANSWER_WORD
           + r"\b(?:\(s\))?(?:\s+(?:below|given|(?:from|among)\s+(?:the\s+)?(?:following|given|" + _ANSWER_WORD + r")(?:\s+"
           + _ANSWER_WORD + r")?(?:\s+(?:below|given))?))?(?:\s+directly)?(?:\s+without\s+any\s+[\w\s]{0,40}?)?)"
           r"|(?:please\s+)?(?:answer|respond|reply)\s+(?:only\s+|just\s+)?with\s+(?:only\s+|just\s+)?"
           r"(?:[a-j](?:\s*,\s*(?:or\s+)?|\s+or\s+)){1,9}[a-j]"
           r"|(?:please\s+)?(?:only\s+)?(?:answer|respond|reply|output|give|write|return|provide)\s+(?:only\s+|just\s+)?"
           r"(?:with\s+)?(?:only\s+|just\s+)?(?:(?:the|a|one)\s+)?"
           r"(?:single\s+)?(?:(?:option'?s?|correct|answer)\s+)?letter\b(?:\s+of\s+(?:the\s+)?(?:correct|right|best)\s+"
           + _ANSWER_WORD + r")?(?:\s*\([^()\n]{0,30}\))?(?:\s+(?:only|(?:from|among)\s+the\s+(?:given\s+)?"
           r"(?:options|choices|answers)(?:\s+directly)?))?")
_STEPS = (r"(?:(?:let'?s|let\s+us|please)\s+)?(?:think|reason|work|solve\s+(?:it|them|this))\b(?:\s+(?:it|this|through|"
          r"out|in|a)){0,3}\s+step[\s-]+by[\s-]+step\b(?:\s+(?:fashion|manner|way))?(?:\s+before\s+(?:answering|you\s+"
          r"answer)|,?\s+(?:starting|beginning)\s+(?:by|with)\s+[^\n.?!]{0,80}?|,?\s+(?:and\s+)?(?:then\s+)?(?:finish|put|"
          r"give|end|write|output|return)\b" + _REST + ")?")
_FORMAT = (r"(?:(?:the\s+)?last\s+line\s+of\s+your\s+(?:response|answer)|(?:and\s+)?(?:then\s+)?finish\s+your\s+answer"
           r"\s+with|output\s+(?:only\s+)?(?:a|one)\s+single\s+option|(?:please\s+)?(?:and\s+)?(?:put|return|write|give|"
           r"provide|place|present)\b[^\n.?!]{0,80}?\\boxed\{\})" + _REST)
_INSTRUCTION_TEXT = "(?:" + "|".join((_CHOOSE, _STEPS, _FORMAT)) + ")"
# a harness's opening: "The following are multiple choice questions (with answers) about anatomy.",
# "Answer the following question:", "Given the following medical question and candidate answers,
# choose the best answer."; a few words of topic at most, so no vignette is taken for one
_TOPIC = r"(?:\s*\([^()\n]{0,30}\))?(?:\s+(?:about|on|in|from|of)\s+[\w-]+(?:[\s_]+[\w-]+){0,4})?"
_INSTRUCTION_BEFORE = re.compile(
    r"\A\s*+(?:(?:(?:the\s+following\s+(?:is|are)|(?:please\s+)?answer\s+the\s+following)\s+(?:an?\s+)?(?:[\w-]+\s+){0,3}?"
    r"questions?" + _TOPIC + r"|(?:please\s+)?answer\s+the\s+(?:[\w-]+\s+){0,2}?questions?\s+below"
    r"|(?:please\s+)?read\s+the\s+following\s+(?:[\w-]+\s+){0,2}?questions?(?:\s+carefully)?,?\s+and\s+" + _CHOOSE
    + r"|given\s+the\s+following\s+(?:[\w-]+\s+){0,2}?questions?(?:\s+and\s+(?:[\w-]+\s+)?"
    r"(?:answers|options|choices))?,\s*" + _CHOOSE + "|" + _CHOOSE + r")(?:[.:]\s+|\s*\n\s*)"
    r"|(?:" + _STEPS + "|" + _FORMAT + r")(?:\.\s+|\s*\n\s*))", re.IGNORECASE)  # these hold colons: "format: 'Answer: X'"
# after the question: an instruction or an answer cue ("Final answer:", "Answer (A, B, C or D):",
# "### Answer", "Answer: Let's think step by step."), as a line, a sentence, after the question's
# last word where a capitalised verb starts it (fill-in-the-blank stems end unpunctuated), or
# after a comma ("..., put your final answer within \boxed{}")
_INSTRUCTION_AFTER = re.compile(
    r"(?:\A|\n|(?<=[.?!:])[ \t]++|(?<=\S)[ \t]++(?=(?-i:Please|Choose|Select|Pick|Answer|Respond|Reply|Indicate|Identify"
    r"|Mark|Circle|Tick|Give|Find|Think|Let|Output|Return|Put)\b)|(?<=,)[ \t]++(?=(?:and\s+)?(?:put|return|please)\b))"
    r"\s*+(?:" + _INSTRUCTION_TEXT + r"|(?:please\s+)?answer\s+the\s+(?:following|above)\s+(?:[\w-]+\s+){0,2}?questions?"
    r"|a\s*:|(?:#{1,4}\s*)?(?:\*\*)?(?:the\s+)?(?:correct\s+|final\s+|best\s+)?answer(?:\s+is)?(?:\s*\([^()\n]{0,30}\))?"
    r"(?:\*\*)?\s*:?(?:\*\*)?"
    r"(?:\s*let'?s\s+think\s+step\s+by\s+step)?)\s*[.:!]?\Z", re.IGNORECASE)
_INSTRUCTION_TAIL = 400  # characters at a question's end where an instruction is looked for
_ROUNDS = 4  # instructions one after another, taken off in turn


def question_stem(question: str, options: list[str]) -> str:
    """The question without the prompt around it: a leading "Question:" label, an instruction
    before or after it ("Choose the best answer.": 85 of 135 verbatim MMLU copies and 255 of 300
    MedMCQA ones ending so stayed), a last line that only cues the answer ("Answer:": 21 of 300
    verbatim MedMCQA copies ending so stayed), and a trailing
    "Answer Choices: (A) ... (B) ..." list (MedXpertQA writes its choices into the question) or
    lines listing the options (`_strip_option_lines`). The options are rendered from `options` in
    shuffled order, so a second, lettered copy in the stem would contradict them; a list is
    removed only when its letters are exactly A.. for this row's options. Decontamination
    compares stems: "Question: " before a short MMLU question kept 6 of 135 verbatim copies.
    `metadata` keeps the original question."""
    return _without_listed_options(_without_prompt_words(question), options)


def _without_listed_options(question: str, options: list[str], may_list: bool | None = None) -> str:
    """`question_stem` of a question without prompt words around it: its trailing list of options
    taken off, then the prompt words that stood before the list. ``may_list``: whether a line of
    the question starts with an option's label (`_MAY_LIST_OPTIONS`), if already known."""
    match = EMBEDDED_CHOICES.search(question) if "Answer Choices" in question else None
    if match and re.findall(r"\(([A-Z])\)", match.group(1)) == list(LETTERS[:len(options)]):
        return _without_prompt_words(question[: match.start()].rstrip())
    stem = _strip_option_lines(question, options)
    if stem == question and options and (may_list if may_list is not None else _may_list(question)):
        stem = _without_reordered_list(question, options)
    return stem if stem == question else _without_prompt_words(stem)  # an instruction before the list


# where a question may write a list of options: a line that starts with a label, or "(A)" (RE2 and re alike)
_MAY_LIST_OPTIONS = r"(?m)^[ \t]*\(?[A-Za-z][.):]|\(A\)"


def _may_list(question: str) -> bool:
    return re.search(_MAY_LIST_OPTIONS, question) is not None


def _without_reordered_list(question: str, options: list[str]) -> str:
    """The stem of a question that lists this row's options in another order than its options
    column (`options_in_question`: "A. x" a line each, or "(A) x (B) y"); else the question. Why:
    a copy that keeps the eval question's lettered list but shuffles its options column, as m1's
    prompts shuffle them, kept the list in its stem, and 133 of 200 real MedQA copies (192 of 200
    MedMCQA) stayed (audit)."""
    inline = options_in_question(question)
    if inline is None or len(inline[1]) != len(options):
        return question
    def flat(texts: Sequence[str]) -> list[str]:
        return sorted(" ".join(text.split()).casefold() for text in texts)
    return inline[0] if flat(inline[1]) == flat(options) else question


# Where `_without_prompt_words` or the "Answer Choices" list can change a question, written looser (for
# RE2, which pyarrow runs over a whole column at once): each alternative is implied by a pattern
# above (\P{L}* for any spacing and punctuation, a word's start for the words after it), and the
# letters that Python's IGNORECASE folds to an ASCII one and RE2's does not (ı, İ) send a
# question to the full reading. `question_stems` relies on it; a test checks the folds.
_MAY_HAVE_PROMPT_WORDS = (  # three patterns, not one: joined, they outgrew RE2's fast automaton (0.2 s -> 20 s)
    r"^\P{L}*(?i:the\P{L}+(?:following|last)|please|answer|choose|select|pick|mark|circle|tick|identify|indicate|give"
    r"|find|respond|reply|q|given|think|reason|work|solve|let|last|and|then|finish|output|put|return|write|provide|place"
    r"|present|read|only)",
    r"(?i:answers?|answer\P{L}+is|options?|choices?|responses?|alternatives?|one|below|given|following|apply|directly"
    r"|questions?)\P{L}*$|(?:^|\P{L})(?i:a)\P{L}*$",
    r"(?i:letter|option\(s\)|without\P{L}+any|(?:answer|respond|reply)\P{L}+(?:(?:only|just)\P{L}+)?with|step\P{L}+by\P{L}+step|last\P{L}+line|finish\P{L}+your"
    r"|single\P{L}+option|boxed|answer(?:\P{L}+is)?\P{L}*\()|Answer Choices|[\x{130}\x{131}]",
)


def question_stems(questions: Sequence[Any], options: Sequence[Sequence[str] | None]) -> list[Any]:
    """`question_stem` of each question with its options (what is no str stays as it is): the
    same stems, faster. Prompt words are looked for in the whole column at once
    (`_MAY_HAVE_PROMPT_WORDS`), and only the questions that may have them are read one by one.
    Why: read one by one, 196K benchmark rows took 3.0 s, most of what the dedup stage adds to the
    matcher."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if len(questions) != len(options):
        raise ValueError(f"{len(questions)} questions and {len(options)} option lists: one each")
    texts = [q if isinstance(q, str) else None for q in questions]
    try:
        column = pa.array(texts, pa.large_string())
        may = functools.reduce(pc.or_, [pc.match_substring_regex(column, p) for p in _MAY_HAVE_PROMPT_WORDS]).to_pylist()
        may_list = pc.match_substring_regex(column, _MAY_LIST_OPTIONS).to_pylist()
    except (pa.ArrowException, UnicodeEncodeError):  # a lone surrogate: no UTF-8, so each is read in full
        may = may_list = [True] * len(texts)
    out = []
    for question, opts, prompted, listed in zip(questions, options, may, may_list):
        if not isinstance(question, str):
            out.append(question)
        elif prompted:
            out.append(question_stem(question, list(opts or ())))
        else:  # unflagged: _without_prompt_words(question) is question
            out.append(_without_listed_options(question, list(opts or ()), bool(listed)))
    return out


def _without_prompt_words(question: str) -> str:
    """The question without instructions before it, then a "Question:" label, and without answer
    cues and instructions after it; the question as it is where nothing else would remain. Why
    several: harness prompts stack them ("The following are multiple choice questions ... Think
    step by step ...\n\nQuestion: ..."), and a copy wrapped in one escaped with every sentence left."""
    for _ in range(_ROUNDS):
        shorter = _INSTRUCTION_BEFORE.sub("", question, count=1)
        if shorter == question or not shorter.strip():
            break
        question = shorter
    question = QUESTION_LABEL.sub("", question, count=1) or question
    for _ in range(_ROUNDS):
        body = question.rstrip()  # searched without its trailing spaces: a run of them made the search cubic
        end = _INSTRUCTION_AFTER.search(body, max(0, len(body) - _INSTRUCTION_TAIL))
        if end is None or not body[: end.start()].strip():
            break
        question = body[: end.start()].rstrip()
    return question


# "Options:" / "Answer choices:" / "### Options:" / "**Options:**" before a list of options, or the words alone on
# their line; not a question's own last word ("... the best treatment options\nA. x": "options" is
# the stem's)
OPTIONS_HEADING = (r"(?:(?:(?<!\S)#{1,4}[ \t]*)?(?:\*\*)?(?:answer\s+)?(?:choices|options)(?:\*\*)?\s*:(?:\*\*)?"
                   r"|(?<=\n)[ \t]*(?:#{1,4}[ \t]*)?(?:\*\*)?(?:answer\s+)?(?:choices|options)(?:\*\*)?[ \t]*(?=\r?\n))")


def _strip_option_lines(question: str, options: list[str]) -> str:
    """The stem without its end when that is this row's options in order, each after its letter
    ("A. x", "(A) x", "A) x", "A: x"), a line each or on one line (spacing, case and line breaks
    inside a text as they come), after an "Options:" heading and before an "Answer:" line if
    there; else the question as it is. LLM evaluation prompts and prompt-formatted copies of eval sets write
    questions so: decontamination then compared the stem and its options twice with a training
    copy's stem, and kept 9 of 10 verbatim copies of MedQA test questions. Only the row's own
    option texts are taken away, and a stem must remain."""
    if not _ends_with_last_option(question, options):
        return question  # most questions (cheap, before a regex made for this row)
    listed = [option_label(letter) + r"\s*" + r"\s+".join(map(re.escape, option.split()))
              for letter, option in zip(LETTERS, options)]
    block = re.compile(r"\s(?:\s*" + OPTIONS_HEADING + r")?\s*" + r"\s+".join(listed)
                       + r"(?:\s+(?:the\s+)?(?:correct\s+)?answer(?:\s+is)?\s*:?)?\s*\Z", re.IGNORECASE)
    match = block.search(question)
    stem = question[: match.start()].rstrip() if match else ""
    return stem or question


def _ends_with_last_option(question: str, options: list[str]) -> bool:
    """Whether the last option's text follows its letter near the question's end (then perhaps an
    "Answer:" line). Why this look first: an option's text alone ("D", "5") is near the end of
    most questions, and the regex built for each such row took the stage's decontamination of
    196K benchmark rows from 2 s to 16 s."""
    if not options or len(options) > len(LETTERS):
        return False
    last = " ".join(options[-1].split()).casefold()
    tail = question[-2 * len(options[-1]) - 40:]
    if tail.isascii():  # no label followed by the option's text, which the loop below needs: no list
        flat = " ".join(tail.split()).casefold()
        if not any(label + last in flat for label in _label_texts(LETTERS[len(options) - 1])):
            return False
    for label in _label_of(LETTERS[len(options) - 1]).finditer(tail):
        after = " ".join(tail[label.end():].split()).casefold()
        if last and (after == last or after.startswith(last + " ")):
            return True
    return False


@functools.cache
def _label_texts(letter: str) -> tuple[str, ...]:
    """What `_label_of` matches in ASCII text, case folded, spacing collapsed: "(d)", "(d) ", "d.", ..."""
    return tuple(label + space for label in (f"({letter.casefold()})", *(letter.casefold() + p for p in ".):"))
                 for space in ("", " "))


@functools.cache
def _label_of(letter: str) -> re.Pattern[str]:
    return re.compile(option_label(letter) + r"\s*", re.IGNORECASE)


ANSWER_KINDS = ("text", "letter", "index0", "index1")


@dataclass(frozen=True)
class ColumnMapping:
    """Which columns hold what; None means "guess from the usual spellings".

    `answer_kind` says how the answer column names the right option: "text" (the option's
    text, alone or after its letter: "B. Heparin"), "letter", "index0" or "index1" (a 0- or
    1-based position). None decides it from the whole file (`decide_answer_kind`)."""

    question: str | None = None
    options: str | tuple[str, ...] | None = None
    answer: str | None = None
    id: str | None = None
    context: str | None = None
    answer_kind: str | None = None

    def __post_init__(self) -> None:
        if self.answer_kind not in (None, *ANSWER_KINDS):
            raise UserError(f"answer_kind must be one of {'|'.join(ANSWER_KINDS)}, not {self.answer_kind!r}")
        options = self.options
        if isinstance(options, str) and "+" in options:  # the command line's `opa+opb+opc+opd`, at every door
            options = options.split("+")
        if isinstance(options, (list, tuple)):
            options = tuple(c.strip() if isinstance(c, str) else c for c in options)
            if not options or not all(isinstance(c, str) and c for c in options):
                raise UserError(f"options: expected column names (a list, or joined with '+'), got {self.options!r}")
            object.__setattr__(self, "options", options)

    def check_columns(self, raws: list[Any], where: str | Path) -> None:
        """Every column the mapping names is in some record of the file. Why: a misspelt context
        (`context=contxt`) left every row without its abstract, and an option column the file does
        not have (`options=A+B+C+E`) cut that option from every row, both without a word, where a
        misspelt question or id column stops the load."""
        named = [(key, column) for key in ("question", "answer", "id", "context") if (column := getattr(self, key))]
        options = (self.options,) if isinstance(self.options, str) else self.options or ()
        named += [("options", column) for column in options]
        seen: set[str] = set()
        for raw in raws:
            if isinstance(raw, dict):
                seen.update(raw)
        missing = [f"{column!r} ({key})" for key, column in named if column not in seen]
        if raws and missing:
            raise MalformedFile(where, None, f"the mapping names {', '.join(missing)}, which no record has; "
                                             f"the records' columns are {', '.join(sorted(map(str, seen)))}")


MAPPING_KEYS = ("question", "options", "answer", "id", "context", "answer_kind")


def column_mapping(mapping: dict[str, Any] | ColumnMapping | None, where: str) -> ColumnMapping:
    """The `ColumnMapping` of the dict every door writes (`--mapping` on the command line, `mapping:`
    under a config's source or eval entry, a Python dict): one check for all of them, so a key a
    door would accept is accepted by every door. Unknown keys are an error naming them; several
    option columns come as a list (YAML, Python) or joined with `+` (`opa+opb`, any door)."""
    if isinstance(mapping, ColumnMapping):
        return mapping
    mapping = dict(mapping or {})
    unknown = sorted(set(mapping) - set(MAPPING_KEYS))
    if unknown:
        raise UserError(f"mapping for {where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(MAPPING_KEYS)}")
    try:
        return ColumnMapping(**mapping)
    except UserError as err:
        raise UserError(f"mapping for {where}: {err}") from None


def _first(raw: dict[str, Any], names: tuple[str, ...]) -> str | None:
    return next((n for n in names if n in raw and raw[n] not in (None, "")), None)


def _letter_columns(raw: dict[str, Any]) -> list[str]:
    """Columns named A, B, C, ... (a hand-made CSV `question,A,B,C,D,answer`), up to the last one
    the record has: an empty C between B and D is an empty option, not the end of the options."""
    if "A" not in raw or "B" not in raw:
        return []
    return _up_to_last_present(raw, LETTERS)


def _up_to_last_present(raw: dict[str, Any], names: Sequence[str]) -> list[str]:
    """`names` up to the last one `raw` fills, for `column_options` to read (an empty one before it is a hole)."""
    last = max((i for i, name in enumerate(names) if raw.get(name) not in (None, "")), default=-1)
    return list(names[: last + 1])


GPQA_COLUMNS = ("Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2", "Incorrect Answer 3")
# The usual spellings of an answer column, preferred in this order: an index or a letter before
# `answer`, which MedAgentsBench fills with the option's text beside its `answer_idx`.
ANSWER_COLUMNS = ("answer_idx", "answer_index", "cop", "answer", "label", "answerKey", "Correct Answer")
# Where a file may write its answer a second time, beside a key in another column, besides
# `answer` (MedAgentsBench's option text beside `answer_idx`, MMLU-Pro's letter beside
# `answer_index`: `_check_answer_text`): the row schema's `answer_text` and `answer_letter` (a file
# m1data wrote, read back: unread, a letter contradicting the key was trained on at the source door
# while the eval door dropped the row) and GPQA's `Correct Answer` beside a converted file's own
# options and key (`_gpqa_layout`).
# Other files use these names for other things (an explanation, a number), so they count only
# where they name one option (`_named_option`).
ALSO_BESIDE_KEY = ("answer_text", "answer_letter", "Correct Answer")
ID_COLUMNS = ("realidx", "id", "question_id", "Record ID", "pubid")
CONTEXT_COLUMNS = ("context", "contexts", "CONTEXTS")  # PubMedQA's abstract: before the question in the prompt


def _gpqa_layout(raw: dict[str, Any], spec: str | tuple[str, ...] | None) -> bool:
    """GPQA's layout: the right answer in `Correct Answer`, the wrong ones in `Incorrect Answer
    1-3`. Read so only when all four columns are there and the mapping names no options: a
    hand-made `Question,A,B,C,D,Correct Answer` holds a letter in `Correct Answer`, an ordinary
    answer column (read as GPQA, every row was keyed to option A). Nor when the record has its
    own `options` or `choices`: a GPQA file converted for a harness keeps the four columns beside
    the options it shuffled and keys those (`answer` "C"); read by the four columns and checked
    against that key, 10 of 12 right rows were dropped as answer_mismatch. Its `Correct Answer`
    is then an answer written beside the key (`ALSO_BESIDE_KEY`). A null `options` is none."""
    return (spec is None and all(c in raw for c in GPQA_COLUMNS)
            and raw.get("options") is None and raw.get("choices") is None)


def _file_answer_column(raws: list[Any]) -> str | None:
    """The file's answer column: the first usual spelling (`ANSWER_COLUMNS`) that any record fills.

    Chosen once per file, like the answer kind: chosen per row, a row with an empty `answer_idx`
    fell back to its `answer` text and made a whole letter-keyed file look mixed."""
    def filled(name: str) -> bool:
        return any(isinstance(raw, dict) and raw.get(name) not in (None, "") for raw in raws)

    return next((name for name in ANSWER_COLUMNS if filled(name)), None)


# every column a record may write its options in, besides `options`: what `_raw_options` reads unmapped
OPTION_LAYOUT_COLUMNS = ("choices", *OPTION_COLUMNS, *LETTERS, *GPQA_COLUMNS)


def written_options(raw: dict[str, Any]) -> list[str]:
    """The option texts a record writes (letters and all) in any layout the eval readers take
    unmapped: an `options` or `choices` cell, one column per option (`opa..opf`, `A..`), GPQA's
    columns. The one reading for eval files and for the rows the dedup stages compare: those read
    only `options`, and a MedMCQA-layout row (`opa..opd`) was compared on its stem alone, so
    "All of the following are true except:" removed questions whose options differed (audit)."""
    return _raw_options(raw, None)


def _raw_options(raw: dict[str, Any], spec: str | tuple[str, ...] | None) -> list[str]:
    """The option texts as the file writes them (letters and all)."""
    if isinstance(spec, tuple):
        return column_options(raw, spec)
    if _gpqa_layout(raw, spec):  # the right answer first, then the others
        return option_texts([raw[c] for c in GPQA_COLUMNS])
    if spec is None and "options" not in raw and "choices" in raw:
        spec = "choices"
    if spec is None and "options" not in raw:
        columns = _up_to_last_present(raw, OPTION_COLUMNS) or _letter_columns(raw)
        return column_options(raw, columns)
    return lettered_options(raw.get(spec or "options"))  # a CSV cell of them too (`options_cell`)


def answer_kinds(value: Any, options: list[str], written: list[str] | None = None) -> set[str]:
    """The kinds under which `value` names one of `options` (`written`: the texts as the file
    wrote them, letters included, so an answer "B. x" is still the text of option "x"). A text
    key may carry the option's letter too ("B. x" where option B is "x", `labelled_index`)."""
    key = _key_text(value)
    if key is None:
        return set()
    kinds = set()
    if key and (any(same_text(key, o) for o in [*options, *(written or ())])
                or labelled_index(key, options) is not None):
        kinds.add("text")
    number = whole_number(value)
    if number is not None:
        if 0 <= number < len(options):
            kinds.add("index0")
        if 1 <= number <= len(options):
            kinds.add("index1")
    elif (letter := key_letter(key)) and letter in LETTERS[: len(options)]:
        kinds.add("letter")
    return kinds


def answer_readings(value: Any, options: list[str], written: list[str] | None = None) -> dict[str, int | None]:
    """`answer_kinds` with the option each kind reads the key as, where more than one kind fits
    (None where one alone does: nothing to compare). What `decide_answer_kind` needs to tell a
    file whose readings differ from one whose readings all name the same option."""
    kinds = answer_kinds(value, options, written)
    if len(kinds) < 2:
        return dict.fromkeys(kinds)
    return {kind: _index_as(value, options, kind, written) for kind in kinds}


def _key_text(value: Any) -> str | None:
    """An answer key as the text it compares as: a whole float as its integer (2.0 -> "2", see
    `integer_key`, numpy's numbers too); None for what cannot be a key (a bool, a list, None)."""
    if isinstance(value, str):
        return value.strip()
    number = integer_key(value)
    if number is not None:
        return str(number)
    return str(value) if isinstance(value, float) else None


def read_answer(value: Any, options: list[str], kind: str, written: list[str] | None = None) -> int:
    """The index of the option `value` names, read as `kind`; a key that is not of that kind is a
    bad row. The same reading as `answer_kinds`, for the one kind decided: testing every kind
    again compared each letter key with every option's text, an eighth of loading a pool."""
    index = _index_as(value, options, kind, written)
    if index is None:
        if kind == "text":
            _check_labelled_key(value, options)
        raise RowError("answer_out_of_range", f"answer {value!r} is not an option's {_KIND_WORDS[kind]} "
                                              f"({len(options)} options)")
    return index


def _index_as(value: Any, options: list[str], kind: str, written: list[str] | None) -> int | None:
    key = _key_text(value)
    if not key:
        return None
    if kind == "text":
        return next((i for candidates in (options, written or []) for i, option in enumerate(candidates)
                     if same_text(key, option)), labelled_index(key, options))
    number = whole_number(value)
    if kind == "letter":
        letter = key_letter(key) if number is None else None
        return LETTERS.index(letter) if letter and letter in LETTERS[: len(options)] else None
    if number is None:
        return None
    index = number - (1 if kind == "index1" else 0)
    return index if 0 <= index < len(options) else None


def _check_labelled_key(value: Any, options: list[str]) -> None:
    """A text key written with a letter that is not its option's ("A. Vitamin C" where option C
    is "Vitamin C") is a broken key: neither half can be trusted (answer_mismatch, as for a key
    that disagrees with the answer text written beside it, `_check_answer_text`)."""
    labelled = labelled_key(str(value).strip())
    if labelled is None:
        return
    letter, rest = labelled
    named = next((LETTERS[i] for i, option in enumerate(options) if same_text(rest, option)), None)
    if named is not None:
        raise RowError("answer_mismatch", f"answer {value!r} names option {letter} by its letter and option "
                                          f"{named} by its text")


_KIND_WORDS = {"text": "text", "letter": "letter", "index0": "0-based index", "index1": "1-based index"}


def decide_answer_kind(evidence: list[dict[str, int | None]], column: str) -> tuple[str | None, str]:
    """(kind, problem) for a whole file, from each row's `answer_readings`: one reading for every row.

    The kind is the only one every row's key fits (rows whose key fits no kind are bad anyway
    and do not vote). A 0- or 1-based index is told apart like MedMCQA's `cop`: a 0 shows 0-based,
    a key equal to the option count 1-based. Where no kind fits every row (mixed), or more than one
    does (no 0 and no top index; numeric or single-letter option texts) and they name another
    option on some row, the file cannot tell and a guess would be silently wrong on every row:
    `problem` says so and asks for `answer_kind`. Since the true kind fits every row, a kind
    decided here is the true one, or one that reads every row as the true one does (options
    written "Option A", "Option B" keyed "Option B": as text and as "Option B", a letter key)."""
    voting = [kinds for kinds in evidence if kinds]
    if not voting:
        return None, ""
    fits = set(ANSWER_KINDS).intersection(*voting)
    if len(fits) > 1 and all(len({readings[kind] for kind in fits}) == 1 for readings in voting):
        return next(kind for kind in ANSWER_KINDS if kind in fits), ""  # every reading names the same option
    ask = (f"say which with answer_kind={'|'.join(ANSWER_KINDS)} in the file's mapping (`--mapping answer_kind=text` "
           "on `m1data load` or `m1data load-eval`, `--eval-mapping NAME:answer_kind=text` on `m1data decontaminate` "
           "or `m1data infer`, `mapping: {answer_kind: text}` under its source or eval entry in a build config)")
    if not fits:
        seen = sorted({kind for kinds in voting for kind in kinds})
        return None, (f"answer column {column!r} is read one way on some rows and another way on others "
                      f"(kinds seen: {', '.join(seen)}); {ask}")
    if len(fits) == 1:
        return fits.pop(), ""
    why = "no key is 0 or the number of options" if fits == {"index0", "index1"} else "the option texts look like keys"
    return None, f"answer column {column!r} can be read as {' or '.join(sorted(fits))} on every row ({why}); {ask}"


@dataclass(frozen=True)
class _Fields:
    native_id: str | None
    question: str
    context: str
    options: list[str]  # letters stripped
    written: list[str]  # as the file wrote them
    answer: Any  # the raw key (None: no answer column)
    answer_column: str | None
    answer_text: Any  # the `answer` column when the key is in another one (MedAgentsBench), else None
    beside: tuple[Any, ...]  # the `ALSO_BESIDE_KEY` columns' values when the key is in another column
    error: RowError | None


@dataclass(frozen=True)
class QuestionReader:
    """Reads one eval (or mapped source) record into `Parsed` through a `ColumnMapping`.

    Call `for_records` with the file's records first: it decides the answer column and its kind
    once for the whole file, so no row's key is read one way and its neighbour's another. A reader used on
    single records without it decides from that record alone."""

    mapping: ColumnMapping = ColumnMapping()
    kind: str | None = None
    problem: str = ""  # why the file's answer kind cannot be decided; every row is then unscored
    answer_column: str | None = None  # the file's answer column (`for_records`), when the mapping names none

    def fields(self, raw: Any) -> _Fields:
        mapping = self.mapping
        if not isinstance(raw, dict):
            raise RowError("not_an_object", f"{type(raw).__name__}, not a question object")
        # A fault after the question leaves it readable: the row is dropped but stays a
        # decontamination target (Parsed.error), with whatever else could be read. An unreadable
        # id or context too: the row then gets a content id, and a copy of it is still caught.
        errors: list[RowError] = []
        native_id, context, written, options = None, "", [], []
        answer = column = answer_text = None
        beside: tuple[Any, ...] = ()
        try:
            native_id = self._native_id(raw)
        except RowError as err:
            errors.append(err)
        try:
            question = self._question(raw)
        except RowError as err:  # dropped under the row's own id, as `unread_question` says why
            if native_id is None:
                raise
            return _Fields(native_id, "", "", [], [], None, None, None, (), err)
        try:
            context = self._context(raw)
        except RowError as err:
            errors.append(err)
        try:
            written = _raw_options(raw, mapping.options)
            inline = options_in_question(question) if not written and mapping.options is None else None
            if inline is not None:  # a prompt-formatted copy: "...\nA. x\nB. y"
                question, written = inline
            options = strip_option_letters(written)
            answer, column = self._answer_key(raw)
            answer_text = raw.get("answer") if column != "answer" else None
            beside = tuple(raw[name] for name in ALSO_BESIDE_KEY if name != column and name in raw)
        except RowError as err:
            errors.append(err)
        return _Fields(native_id, question, context, options, written, answer, column,
                       answer_text, beside, errors[0] if errors else None)

    def _question(self, raw: dict[str, Any]) -> str:
        names = ("question", "Question", "QUESTION", "qtext")
        # an empty question is that (empty_question), not a file without a question column
        column = self.mapping.question or _first(raw, names) or next((n for n in names if n in raw), None)
        if column is None:
            raise RowError("missing_field", "no question column")
        return text(raw, column)

    def _native_id(self, raw: dict[str, Any]) -> str | None:
        """The row's own id; a blank or null one is none (the row gets a content id), mapped or
        guessed alike: a mapped blank id was the id "mine:", the next "mine:#2"."""
        id_col = self.mapping.id or _first(raw, ID_COLUMNS)
        value = None if id_col is None else raw.get(id_col)
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        return key_text(raw, id_col)

    def _context(self, raw: dict[str, Any]) -> str:
        """The passage a question is asked on, guessed from the usual spellings as the other
        columns are: text, a list of paragraphs, or the Hub's PubMedQA {"contexts": [...],
        "labels", "meshes"}. Why guessed: unmapped, a file's `context` was never read, so a
        PubMedQA test copy with its abstract matched nothing, and a mapped source's prompts lost it."""
        column = self.mapping.context or _first(raw, CONTEXT_COLUMNS)
        return context_text(raw.get(column), column) if column else ""

    def _answer_key(self, raw: dict[str, Any]) -> tuple[Any, str]:
        """(key, column) of the row's answer; a row without one is a bad row (missing_field)."""
        if self.mapping.answer is None and _gpqa_layout(raw, self.mapping.options):
            return 0, "Correct Answer"  # GPQA: the right answer is the first option
        column = self.mapping.answer or self.answer_column or _first(raw, ANSWER_COLUMNS)
        if column is None or raw.get(column) in (None, ""):
            raise RowError("missing_field", f"no answer ({column or 'no answer column'})")
        return raw[column], column

    def kinds(self, raw: Any) -> dict[str, int | None]:
        """The answer kinds this record's key fits, with their readings (`answer_readings`;
        empty for a record that cannot vote)."""
        try:
            found = self.fields(raw)
        except RowError:
            return {}
        if found.answer is None:  # no options or no key read
            return {}
        if self.mapping.answer is None and _gpqa_layout(raw, self.mapping.options):
            return {"index0": None}
        return answer_readings(found.answer, found.options, found.written)

    def for_records(self, raws: list[Any]) -> QuestionReader:
        """This reader with the answer column and kind decided from all of `raws` (unless the
        mapping names them)."""
        reader = dataclasses.replace(self, answer_column=self.mapping.answer or _file_answer_column(raws))
        if self.mapping.answer_kind is not None:
            return dataclasses.replace(reader, kind=self.mapping.answer_kind, problem="")
        votes = [reader.kinds(raw) for raw in raws]
        kind, problem = decide_answer_kind(votes, reader.answer_column or "answer")
        settled = reader.settled_by_written_answers(raws, votes) if problem else None
        if settled is not None:
            kind, problem = settled, ""
        return dataclasses.replace(reader, kind=kind, problem=problem)

    def settled_by_written_answers(self, raws: list[Any], votes: list[dict[str, int | None]]) -> str | None:
        """Of the kinds that fit every row's key, the one whose reading names, on every row that
        writes its answer again beside the key, the option that answer names (`_named_option`);
        None where no row does so, or not exactly one kind agrees with all that do. Why: a MedQA
        test file keyed 1..3 (no 0, no 4) was refused as undecidable though its `answer` named
        the option on every row, and so was a short file m1data wrote. Every row that says must
        agree, so one broken row leaves the file undecided rather than decided wrong."""
        voting = [kinds for kinds in votes if kinds]
        fits = set(ANSWER_KINDS).intersection(*voting) if voting else set()
        agree, said = set(fits), False
        for raw in raws if len(fits) > 1 else ():
            try:
                found = self.fields(raw)
            except RowError:
                continue
            if found.error is not None or found.answer is None:
                continue
            for value in (found.answer_text, *found.beside):
                named = _named_option(value, found)
                if named is not None:
                    said = True
                    agree &= {kind for kind in fits
                              if _index_as(found.answer, found.options, kind, found.written) == named}
        return agree.pop() if said and len(agree) == 1 else None

    def __call__(self, raw: Any) -> Parsed:
        found = self.fields(raw)
        answer_idx, error = -1, found.error
        if error is None:
            try:
                answer_idx = self._answer(found)
            except RowError as err:
                error = err
        return Parsed(
            native_id=found.native_id,
            question=question_stem(found.question, found.options),
            options=found.options,
            answer_idx=answer_idx,
            context=found.context,
            error=error,
        )

    def _answer(self, found: _Fields) -> int:
        if self.problem:
            raise RowError("ambiguous_answer_kind", self.problem)
        kind = self.kind or self.mapping.answer_kind
        if kind is None:  # a single record: decide from it alone
            kind, problem = decide_answer_kind([answer_readings(found.answer, found.options, found.written)],
                                               found.answer_column or "answer")
            if problem:
                raise RowError("ambiguous_answer_kind", problem)
            if kind is None:
                raise RowError("answer_out_of_range", f"answer {found.answer!r} for {len(found.options)} options")
        index = read_answer(found.answer, found.options, kind, found.written)
        if kind != "text":
            _check_answer_text(found, index)
        for value in found.beside:  # where one names another option, the key is broken
            named = _named_option(value, found)
            if named is not None and named != index:
                raise RowError("answer_mismatch", f"{value!r} beside the key names option {LETTERS[named]}, not "
                                                  f"{LETTERS[index]}, which {found.answer_column} {found.answer!r} names")
        return index


def _named_option(value: Any, found: _Fields) -> int | None:
    """The one option an answer written beside the key names, by its text (with or without its
    letter) or by its letter; None where it names none (an explanation, a number) or could name
    two ("B" where option A's text is "B" and option B is another)."""
    if not isinstance(value, str) or not value.strip():
        return None
    key = value.strip()
    named = {i for i, option in enumerate(found.options)
             if same_text(key, option) or (i < len(found.written) and same_text(key, found.written[i]))}
    labelled, letter = labelled_index(key, found.options), key_letter(key)
    if labelled is not None:
        named.add(labelled)
    if letter is not None and letter in LETTERS[: len(found.options)]:
        named.add(LETTERS.index(letter))
    return named.pop() if len(named) == 1 else None


def _check_answer_text(found: _Fields, index: int) -> None:
    """A row that writes its answer twice, as a key (answer_idx "B") and as the option's text
    (answer "Heparin", as MedAgentsBench does), must name one option. When the two disagree the
    key is broken and neither reading can be trusted: the row is not scored or trained on
    (answer_mismatch); an eval question stays a decontamination target. A letter (MMLU-Pro writes
    one beside answer_index) must be the key's own letter. The rule is the source loaders'
    (`m1data.reading.native.check_answer_text`), so a file reads alike at every door: blank is no
    answer; an answer that is not text (not_text) or a text that names no option (answer_mismatch)
    contradicts the key as much as another option's text does. Ignored, such a row was scored
    by its key, silently."""
    value = found.answer_text
    if value is None or (isinstance(value, str) and not value.strip()):
        return
    if not isinstance(value, str):
        raise RowError("not_text", f"answer is {type(value).__name__}, not text")
    kinds = answer_kinds(value, found.options, found.written)
    if "text" in kinds:
        key = value.strip()
        if (same_text(key, found.options[index]) or same_text(key, found.written[index])
                or labelled_index(key, found.options) == index):
            return
    elif "letter" in kinds and key_letter(value) == LETTERS[index]:
        return
    named = _index_as(value, found.options, "text", found.written) if "text" in kinds else None
    what = f"is the text of option {LETTERS[named]}, not of option" if named is not None else "is not option"
    raise RowError("answer_mismatch", f"answer {value!r} {what} {LETTERS[index]}, which "
                                      f"{found.answer_column} {found.answer!r} names")


def make_parser(mapping: ColumnMapping = ColumnMapping()) -> QuestionReader:
    """A reader for records in `mapping`'s columns (see `QuestionReader`)."""
    return QuestionReader(mapping)


def for_records(parse: Callable[[Any], Parsed], raws: list[Any]) -> Callable[[Any], Parsed]:
    """`parse` made ready for these records: readers that decide per file (answer kinds) do so;
    a plain function is returned as it is."""
    prepare = getattr(parse, "for_records", None)
    return prepare(raws) if prepare is not None else parse


def answer_kind_problem(parse: Callable[[Any], Parsed]) -> str:
    """Why `parse` (prepared by `for_records`) could not decide the file's answer kind, or ""."""
    return getattr(parse, "problem", "")


@dataclass(frozen=True)
class Layout:
    """One shape a named set's file may come in: the columns that identify it, the answer column,
    and how to read it. Checking the columns first is what stops a wrong file (a GPQA CSV given as
    MedQA) from being read by the generic guesses. The answer column is not needed for a record
    to fit: a question whose key is missing is still a decontamination target (an unscored row)."""

    columns: tuple[str, ...]
    answer: str | None = None
    parse: Callable[[Any], Parsed] = field(default_factory=make_parser)

    def fits(self, raw: Any) -> bool:
        return isinstance(raw, dict) and all(c in raw for c in self.columns)

    def complete(self, raw: Any) -> bool:
        return self.fits(raw) and (self.answer is None or self.answer in raw)

    def __str__(self) -> str:
        return "{" + ", ".join((*self.columns, *([self.answer] if self.answer else []))) + "}"


def _reader_layout(columns: tuple[str, ...], answer: str, **mapping: Any) -> Layout:
    return Layout(columns, answer, make_parser(ColumnMapping(answer=answer, **mapping)))


@dataclass(frozen=True)
class LayoutParser:
    """Parse with the layout a record fits (the first whose answer column it has too, else the
    first it fits); a record that fits none is a bad row (reason wrong_layout), and a file where
    no record fits is the wrong file."""

    name: str
    layouts: tuple[Layout, ...]
    answer_kind: str | None = None  # what the user says of the file's keys (`load_eval`), else decided per file

    def layout(self, raw: Any) -> Layout | None:
        fitting = [layout for layout in self.layouts if layout.fits(raw)]
        return next((layout for layout in fitting if layout.complete(raw)), fitting[0] if fitting else None)

    def for_records(self, raws: list[Any]) -> LayoutParser:
        """Each layout's reader prepared on the records that fit it (answer kinds per file)."""
        told = tuple(_told(layout, self.answer_kind) for layout in self.layouts)
        chosen = [self.layout(raw) for raw in raws]
        layouts = tuple(
            dataclasses.replace(layout, parse=for_records(layout.parse, [r for r, c in zip(raws, chosen) if c is own]))
            for layout, own in zip(told, self.layouts)
        )
        return dataclasses.replace(self, layouts=layouts)

    @property
    def problem(self) -> str:
        return next((answer_kind_problem(layout.parse) for layout in self.layouts
                     if answer_kind_problem(layout.parse)), "")

    def __call__(self, raw: Any) -> Parsed:
        layout = self.layout(raw)
        if layout is not None:
            return layout.parse(raw)
        if not isinstance(raw, dict):
            raise RowError("not_an_object", f"{type(raw).__name__}, not a question object")
        columns = ", ".join(list(raw)[:8]) + (", ..." if len(raw) > 8 else "")
        raise RowError("wrong_layout", f"columns {{{columns}}} fit no {self.name} layout")


def _told(layout: Layout, kind: str | None) -> Layout:
    """`layout` reading its keys as `kind` where its reader decides the kind from the file; a
    layout whose keys have one kind by definition (MMLU-Pro's 0-based `answer_index`) keeps it."""
    parse = layout.parse
    if kind is None or not isinstance(parse, QuestionReader) or parse.mapping.answer_kind is not None:
        return layout
    return dataclasses.replace(layout, parse=dataclasses.replace(
        parse, mapping=dataclasses.replace(parse.mapping, answer_kind=kind)))


def layout_parser(name: str, layouts: tuple[Layout, ...], answer_kind: str | None = None) -> LayoutParser:
    return LayoutParser(name, layouts, answer_kind)


def expected_layouts(layouts: tuple[Layout, ...]) -> str:
    return "records with columns " + " or ".join(str(layout) for layout in layouts)


def _collect(name: str, records, parse=None, *, where: str | Path = "", expected: str = "",
             scope: Scope | None = None) -> LoadResult:
    """Rows of one eval set, options shuffled per row from (seed, id) like every loader's.
    Whether the set has enough in it is checked by the public loaders (`require_items`).
    `scope`: the split or scope filter `records` went through (`collect` accounts for it)."""
    records = list(records)
    if isinstance(parse, QuestionReader):
        parse.mapping.check_columns([raw for _, raw, _ in records], where or name)
    parse = for_records(parse or make_parser(), [raw for _, raw, _ in records])
    result = collect(name, records, parse, seed=DEFAULT_SEED, unique_options=False, scope=scope, fallback=make_parser())
    result.origin, result.expected = str(where or name), expected
    result.problem = answer_kind_problem(parse)
    skew = answer_skew(result.rows)
    if skew:
        warnings.warn(f"{name}: answer letters are skewed: {skew}", AnswerSkewWarning, stacklevel=2)
    return result


def require_items(result: LoadResult, name: str, *, scoring: bool = True) -> LoadResult:
    """An eval set that is empty is the wrong file (or a wrong filter), never a set to skip.

    For scoring, the set needs rows with a usable answer key. For decontamination
    (`scoring=False`) it needs questions with text, whatever their answers' state."""
    if scoring:
        if result.problem:
            raise MalformedFile(result.origin or name, None, result.problem)
        return check_some_rows_read(result, result.origin or name, name, expected=result.expected)
    if len(result.targets()) == 0:
        hint = f"; expected {result.expected}" if result.expected else ""
        first = f" (first bad one: {result.dropped[0]['reason']} {result.dropped[0]['detail']})" \
            if len(result.dropped) else ""
        raise MalformedFile(result.origin or name, None, f"no {name} question with text in it{first}{hint}")
    return result


def _named(name: str, records, layouts: tuple[Layout, ...], where: str | Path, *, expected: str = "",
           scope: Scope | None = None, answer_kind: str | None = None) -> LoadResult:
    records = list(scope.filter(records) if scope is not None else records)
    result = _collect(name, records, layout_parser(name, layouts, answer_kind), where=where,
                      expected=expected or expected_layouts(layouts), scope=scope)
    check_identity(name, records, result)
    return result


def _local(path: str | Path, split: str | None = None) -> Iterator[Record]:
    """Records of a local .jsonl / .json / .csv / .tsv / .parquet file, located by line; or of a
    folder of a set's files (a Hub snapshot's `data/` shards), read in name order as one file and
    narrowed to `split`'s where it holds several splits (`source_files`, as for a source)."""
    files = source_files(path, split)
    for file in files:
        for line, raw in read_records(file):
            yield f"{line}" if len(files) == 1 else f"{file.name}:{line}", raw, f"{file.name}:{line}"


def _hub(name: str, hub_id: str, config: str | None, split: str) -> Iterator[Record]:
    hint = f"`m1data load-eval {name} --path FILE` (or `--eval {name}=FILE`)"
    ds = load_hub(hub_id, config, split, local_hint=hint)
    for index, raw in enumerate(ds):
        yield f"{index}", raw, f"{hub_id} {split} row {index}"


# ---------------------------------------------------------------------------------------------
# Named eval sets


MEDAGENTSBENCH = _reader_layout(("question", "options"), "answer_idx")
MEDMCQA = Layout(("question", "opa", "opb", "opc", "opd"), "cop", MedMCQA().parse)
# The common converted copies: {question, choices: [...] or options, answer}, answer an index, a
# letter or the option's text (decided per file); `SetIdentity` still checks whose file it is.
CONVERTED = (
    _reader_layout(("question", "choices"), "answer", options="choices"),
    _reader_layout(("question", "options"), "answer", options="options"),
)
MMLU = (
    MEDAGENTSBENCH,
    _reader_layout(("question", "choices"), "answer", options="choices"),
    _reader_layout(("question", "options"), "answer", options="options"),
)
# MMLU-Pro's `answer_index` counts from 0 by definition: said here, so a file whose option texts
# are numbers (a subset of its health questions, say) is not undecidable, when the named set
# takes no mapping to say it.
MMLU_PRO = (_reader_layout(("question", "options"), "answer_index", answer_kind="index0"), MEDAGENTSBENCH)
GPQA = (Layout(("Question", "Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2", "Incorrect Answer 3")),)
MEDBULLETS = (_reader_layout(("question", "opa", "opb", "opc", "opd"), "answer_idx"), MEDAGENTSBENCH)


@dataclass(frozen=True)
class ContextThenQuestion:
    """Reads a record whose question field holds PubMedQA's contexts, then the question on its
    last line (MedAgentsBench writes `"\n".join(CONTEXTS) + "\n" + QUESTION`), as the native
    file's row: the contexts go to `context` and the last line is the question. The row then has
    the native row's question, context, prompt and id (the PMID, `realidx`), and decontamination
    compares it on the same text (context, then question: `m1data.stages.dedup.match_keys`)."""

    parse: Callable[[Any], Parsed]

    def for_records(self, raws: list[Any]) -> ContextThenQuestion:
        return ContextThenQuestion(for_records(self.parse, raws))

    @property
    def problem(self) -> str:
        return answer_kind_problem(self.parse)

    def __call__(self, raw: Any) -> Parsed:
        parsed = self.parse(raw)
        context, _, question = parsed.question.rpartition("\n")
        return dataclasses.replace(parsed, question=question, context=context)


PUBMEDQA = (
    Layout(("QUESTION", "CONTEXTS"), "final_decision", PubMedQA().parse),
    Layout(("pubid", "question", "context"), "final_decision", PubMedQA().parse),
    Layout(("realidx", "question", "options"), "answer_idx",
           ContextThenQuestion(make_parser(ColumnMapping(answer="answer_idx", id="realidx")))),
)

# Fields that only one family of eval files carries (upstream release or its common converted
# copies). A record with another family's fields is from another set: a MedQA row (meta_info)
# given as medmcqa_validation, say.
FAMILY_FIELDS: dict[str, frozenset[str]] = {
    "medqa": frozenset({"meta_info", "metamap_phrases"}),
    "medmcqa": frozenset({"cop", "subject_name", "topic_name", "choice_type", "exp"}),
    "mmlu": frozenset({"subject"}),
    "mmlu_pro": frozenset({"category", "src", "cot_content", "answer_index", "question_id"}),
    "medbullets": frozenset({"link", "explanation", "reason"}),
    "pubmedqa": frozenset({"final_decision", "CONTEXTS", "QUESTION", "pubid", "answer_rationale", "LONG_ANSWER"}),
    "gpqa": frozenset({"Correct Answer", "Incorrect Answer 1", "Record ID"}),
}


@dataclass(frozen=True)
class SetIdentity:
    """What identifies a named set's file beyond its columns: its family's fields and the number
    of options its questions have."""

    family: str
    option_counts: tuple[int, ...]

    def describe(self) -> str:
        counts = " or ".join(str(n) for n in self.option_counts)
        return f"{counts} options per question"

    def foreign_fields(self, raw: Any) -> list[str]:
        if not isinstance(raw, dict):
            return []
        return sorted(f for family, fields in FAMILY_FIELDS.items() if family != self.family
                      for f in fields if f in raw)


IDENTITIES: dict[str, SetIdentity] = {
    "medmcqa_validation": SetIdentity("medmcqa", (4,)),
    "medqa_test": SetIdentity("medqa", (4, 5)),
    "pubmedqa_test": SetIdentity("pubmedqa", (3,)),
    **{f"mmlu_{s}": SetIdentity("mmlu", (4,)) for s in MMLU_MEDICAL},
    "mmlu_pro_health": SetIdentity("mmlu_pro", tuple(range(3, 11))),
    "gpqa_diamond": SetIdentity("gpqa", (4,)),
    "medbullets_op4": SetIdentity("medbullets", (4,)),
    "medbullets_op5": SetIdentity("medbullets", (5,)),
}


def check_identity(name: str, records: list[Record], result: LoadResult) -> None:
    """A named set accepts only its own files: most records must carry no other set's fields, and
    most questions must have the set's number of options; otherwise the file is another set's
    (issue 24: a MedQA file was accepted as medmcqa_validation). One line names what was expected."""
    identity = IDENTITIES.get(name)
    if identity is None or not records:
        return
    expected = f"expected a {name} file ({result.expected}; {identity.describe()})"
    foreign = [(where, identity.foreign_fields(raw)) for _, raw, where in records]
    foreign = [(where, fields) for where, fields in foreign if fields]
    if 2 * len(foreign) > len(records):
        where, fields = foreign[0]
        raise MalformedFile(result.origin or name, None,
                            f"not a {name} file: {len(foreign):,} of {len(records):,} records carry another set's "
                            f"fields (first {where}: {', '.join(fields)}); {expected}")
    counts = Counter(len(options) for options in result.targets()["options"] if options)
    wrong = sum(n for count, n in counts.items() if count not in identity.option_counts)
    if 2 * wrong > sum(counts.values()):
        common = counts.most_common(1)[0][0]
        raise MalformedFile(result.origin or name, None,
                            f"not a {name} file: {wrong:,} of {sum(counts.values()):,} questions have another "
                            f"number of options (most have {common}); {expected}")


def _mmlu_csv(path: Path) -> Iterator[Record]:
    """hendrycks/test CSVs: no header, `question,A,B,C,D,answer`."""
    for line, cells in read_csv(path, header=False, width=6):
        yield f"{line}", {"question": cells[0], "options": cells[1:5], "answer": cells[5]}, f"{path.name}:{line}"


def load_mmlu(subject: str, path: str | Path | None = None, answer_kind: str | None = None) -> LoadResult:
    name = f"mmlu_{subject}"
    if path is None:
        return _named(name, _hub(name, "cais/mmlu", subject, "test"), MMLU, "cais/mmlu")  # a kind goes with a file
    path = _mmlu_path(Path(path), subject)
    records = list(_mmlu_csv(path) if path.is_file() and record_format(path) == ".csv" else _local(path, "test"))
    return _named(name, records, MMLU, path, scope=_subject_scope(records, subject, path), answer_kind=answer_kind)


def _mmlu_path(path: Path, subject: str) -> Path:
    """Where `subject`'s questions are in a folder: hendrycks/test's `<subject>_test.csv`, else a
    folder of the subject's split shards (cais/mmlu's snapshot: `<subject>/test-*.parquet`), given
    as the subject's folder or the snapshot's. A folder of `*_test.csv` files without this
    subject's is still an error naming the file: read as shards, its other subjects' questions
    became this one's."""
    if not path.is_dir():
        return path
    own = path / f"{subject}_test.csv"
    if own.exists() or any(path.glob("*_test.csv")):
        return own
    if (path / subject).is_dir():
        return path / subject
    if any(p.is_dir() and not p.name.startswith(".") for p in path.iterdir()):
        raise MalformedFile(path, None, f"no {subject}_test.csv and no {subject} folder in it")
    return path


def _subject_scope(records: list[Record], subject: str, path: Path) -> Scope | None:
    """The records of one MMLU subject: a file of several (MedAgentsBench's mmlu) gives each
    subject its own rows, and the other subjects' are counted as out of scope; a file whose
    records carry no `subject` is one subject's (None: all kept). In a file of several, a
    record whose subject is missing or not text is malformed and dropped with the reason: kept,
    it was a question of every subject."""
    subjects = {raw["subject"] for _, raw, _ in records if isinstance(raw, dict) and isinstance(raw.get("subject"), str)}
    if not subjects:
        return None
    if subject not in subjects:
        raise MalformedFile(path, None, f"no mmlu_{subject} questions in it (its subjects: "
                                        f"{', '.join(sorted(subjects))})")

    def of_subject(raw: Any) -> bool:
        if not isinstance(raw, dict):
            return True  # the reader drops it (not_an_object)
        return text(raw, "subject") == subject

    return Scope(of_subject, f"another MMLU subject than {subject}")


def _check_mmlu_medical_path(path: str | Path | None) -> None:
    """"mmlu_medical" reads six subjects from one path: a folder of their `<subject>_test.csv`
    files or a file whose records carry a `subject` (MedAgentsBench's mmlu). A file without
    one is a single subject's: read as all six, it gave six sets of the same questions, each
    under another subject's name."""
    if path is None or not Path(path).is_file():
        return  # the Hub, a folder, or a missing file (load_eval says so)
    path = Path(path)
    records = _mmlu_csv(path) if record_format(path) == ".csv" else _local(path)
    if not any(isinstance(raw, dict) and isinstance(raw.get("subject"), str) for _, raw, _ in records):
        raise UserError(f"mmlu_medical: {path} holds one subject's questions (its records name no subject); give "
                        f"mmlu_medical a folder of the six <subject>_test.csv files, or this file under its "
                        f"subject's name ({', '.join(f'mmlu_{s}' for s in MMLU_MEDICAL)})")


def _health_scope() -> Scope:
    """MMLU-Pro's health questions: the other categories are counted as out of scope; a record
    whose category is missing or not text cannot be told apart and is dropped with the reason."""
    def is_health(raw: Any) -> bool:
        if not isinstance(raw, dict):
            raise RowError("not_an_object", f"{type(raw).__name__}, not a question object")
        return text(raw, "category") == "health"

    return Scope(is_health, "an MMLU-Pro category other than health")


def load_mmlu_pro_health(path: str | Path | None = None) -> LoadResult:
    if path is None:
        records = _hub("mmlu_pro_health", "TIGER-Lab/MMLU-Pro", None, "test")
        return _named("mmlu_pro_health", records, MMLU_PRO, "TIGER-Lab/MMLU-Pro", scope=_health_scope())
    return _named("mmlu_pro_health", _local(path, "test"), MMLU_PRO, path, scope=_health_scope())


def load_gpqa_diamond(path: str | Path | None = None) -> LoadResult:
    if path is None:
        records = _hub("gpqa_diamond", "Idavidrein/gpqa", "gpqa_diamond", "train")
    else:
        records = _local(path, "train")
    return _named("gpqa_diamond", records, GPQA, path or "Idavidrein/gpqa")


def load_pubmedqa_test(path: str | Path | None = None) -> LoadResult:
    source = PubMedQA()
    hint = "`m1data load-eval pubmedqa_test --path FILE` (or `--eval pubmedqa_test=FILE`)"
    # the 500 test questions are a scope of the Hub's one split, `train` (pqa_labeled)
    records = source.read_hub("test", hint) if path is None else source.read_files(source_files(path, "train"), "test")
    return _named("pubmedqa_test", records, PUBMEDQA, path or source.hub_id, scope=source.scope("test"),
                  expected="PubMedQA questions of the official 500-PMID test split, " + expected_layouts(PUBMEDQA))


def load_medmcqa_validation(path: str | Path | None = None, answer_kind: str | None = None, *,
                            guess_base: bool = True, targets_only: bool = False) -> LoadResult:
    """The Hub's 0-based `cop`, or a local file: the Hub layout (its `cop` base decided like the
    training loader's, or told: answer_kind index0 or index1; `guess_base` False: never guessed;
    `targets_only`: a base the file contradicts leaves every key unread, `MedMCQA`)
    or MedAgentsBench's converted rows."""
    if path is None:
        records = _hub("medmcqa_validation", SOURCE_REGISTRY["medmcqa"].hub_id, None, "validation")
    else:
        cop_base = {"index0": 0, "index1": 1}.get(answer_kind or "")
        reader = MedMCQA(cop_base, guess_base=guess_base, targets_only=targets_only)
        records = reader.read_files(source_files(path, "validation"), "validation")
    return _named("medmcqa_validation", records, (MEDMCQA, MEDAGENTSBENCH, *CONVERTED),
                  path or SOURCE_REGISTRY["medmcqa"].hub_id, answer_kind=answer_kind)


def load_medqa_test(path: str | Path | None = None, answer_kind: str | None = None) -> LoadResult:
    if path is None:
        records = _hub("medqa_test", SOURCE_REGISTRY["medqa"].hub_id, None, "test")
    else:
        records = _local(path, "test")
    return _named("medqa_test", records, (MEDAGENTSBENCH, *CONVERTED), path or SOURCE_REGISTRY["medqa"].hub_id,
                  answer_kind=answer_kind)


def _local_only(name: str, layouts: tuple[Layout, ...]):
    def load(path: str | Path | None = None, answer_kind: str | None = None) -> LoadResult:
        if path is None:
            raise UserError(f"{name} has no Hub copy m1data knows; pass --path to its CSV")
        return _named(name, _local(path), layouts, path, answer_kind=answer_kind)

    return load


EVAL_SETS: dict[str, Callable[..., LoadResult]] = {
    "medmcqa_validation": load_medmcqa_validation,
    "medqa_test": load_medqa_test,
    "pubmedqa_test": load_pubmedqa_test,
    **{f"mmlu_{s}": (lambda path=None, answer_kind=None, s=s: load_mmlu(s, path, answer_kind)) for s in MMLU_MEDICAL},
    "mmlu_pro_health": load_mmlu_pro_health,
    "gpqa_diamond": load_gpqa_diamond,
    "medbullets_op4": _local_only("medbullets_op4", MEDBULLETS),
    "medbullets_op5": _local_only("medbullets_op5", MEDBULLETS),
}


# The sets whose key is one kind by definition: an answer_kind would misread it, or go unused.
FIXED_KEYS = {"pubmedqa_test": "its decisions (yes, no, maybe)", "gpqa_diamond": "its `Correct Answer` column",
              "mmlu_pro_health": "its 0-based `answer_index`"}


def check_answer_kind(name: str, answer_kind: str, path: str | Path | None) -> None:
    """Refuse a kind told to a named set where it would be ignored or misread: without a file (the
    Hub's rows have a kind of their own: told index1, cais/mmlu's 0-based keys were read 1-based),
    for a set whose key is one kind by definition, or other than an index for MedMCQA's `cop`."""
    ColumnMapping(answer_kind=answer_kind)  # one check of the value
    as_file = (f"a file of that set whose keys cannot tell is read as a file: `m1data load-eval FILE --mapping "
               f"answer_kind={answer_kind}`, or `--eval NAME=FILE --eval-mapping NAME:answer_kind={answer_kind}`")
    if path is None:
        raise UserError(f"{name}: answer_kind goes with a local file (--path); the Hub's rows have their own")
    if name in FIXED_KEYS:
        raise UserError(f"{name} takes no answer_kind: its key is {FIXED_KEYS[name]}; {as_file}")
    if name == "medmcqa_validation" and answer_kind not in ("index0", "index1"):
        raise UserError(f"medmcqa_validation's cop is an index: answer_kind index0 or index1, not {answer_kind}; "
                        "a file in another layout (question, options, answer) whose keys cannot tell is read as a "
                        f"file of your own: `m1data load-eval FILE --mapping answer_kind={answer_kind}`, or `--eval "
                        f"NAME=FILE --eval-mapping NAME:answer_kind={answer_kind}`")


def load_eval(name: str, path: str | Path | None = None, *, scoring: bool = True,
              answer_kind: str | None = None) -> LoadResult:
    """Load a named eval set (from the Hub, or from `path` in its native format). `scoring=False`
    loads it as decontamination targets: a set whose answer keys are all unreadable still counts.
    `answer_kind` says how a file's keys name their option where its keys cannot tell (numbers
    that fit 0- and 1-based alike: `decide_answer_kind`), as a file's mapping says it; the
    advice for such a file named this mapping, which a named set refused."""
    if name not in EVAL_SETS:
        if Path(name).exists():  # the message below says "or pass a file", which is load_eval_file's to read
            raise UserError(f"{name} is a file, not an eval set name: read it with "
                            "m1data.reading.evalsets.load_eval_file (or load_eval_any, which takes either)")
        raise UserError(f"unknown eval set {name!r}; choose from {', '.join(EVAL_SETS)} or pass a file")
    path = None if path is None else Path(path).expanduser()
    if path is not None and not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if answer_kind is not None:
        check_answer_kind(name, answer_kind, path)
        return require_items(EVAL_SETS[name](path, answer_kind=answer_kind), name, scoring=scoring)
    if name == "medmcqa_validation":  # the training loader guesses a cop base, saying so; a score may not, and
        # targets need none: their keys are never scored
        reading = {"guess_base": False} if scoring else {"targets_only": True}
        return require_items(load_medmcqa_validation(path, **reading), name, scoring=scoring)
    return require_items(EVAL_SETS[name](path), name, scoring=scoring)


def load_eval_file(
    path: str | Path,
    mapping: ColumnMapping | None = None,
    *,
    name: str | None = None,
    scoring: bool = True,
) -> dict[str, LoadResult]:
    """Any JSON / JSONL / CSV / TSV / parquet file of questions, or a folder of one set's files (a
    Hub snapshot's shards, `source_files`), keyed by eval-set name.

    m1's own eval file `{set_name: [{question, options, answer_idx, answer}, ...]}` holds several
    sets and gives one entry per set; any other file gives one entry named `name` (default: the
    file's parent folder and stem, e.g. `medxpertqa-r/test`; a folder's parent and name, `medqa/data`).
    `mapping` None (or a ColumnMapping of Nones): every column guessed.
    """
    path = Path(path).expanduser()
    mapping = ColumnMapping() if mapping is None else mapping
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    parse = make_parser(mapping)
    if path.is_file() and record_format(path) == ".json":
        data = read_json_or_lines(path)  # None: one object a line, records read below as any file's
        if (isinstance(data, dict) and data and all(isinstance(v, list) for v in data.values())
                and pandas_records(data) is None):  # pandas' orient "split" holds lists too
            return {
                set_name: require_items(_collect(
                    set_name, ((f"{i}", r, f"{path.name} {set_name} item {i}") for i, r in enumerate(items, 1)),
                    parse, where=path,
                ), set_name, scoring=scoring)
                for set_name, items in data.items()
            }
        if _headqa_layout(data):
            return {name or file_set_name(path): _headqa_file(path, name or file_set_name(path), scoring)}
    set_name = name or file_set_name(path)
    if path.is_dir():  # one set's shards, each record located by its file
        records = files_questions(source_files(path, choose="give one split's files (a file, or a folder of one "
                                                            "split's shards)"), mapping)
    else:
        records = question_records(path, mapping)
    return {set_name: require_items(_collect(set_name, records, parse, where=path), set_name, scoring=scoring)}


def _headqa_layout(data: Any) -> bool:
    """HEAD-QA's own file: exams by name, each an object with a `data` list (not a pandas frame
    with an `exams` column, nor rows that hold an `exams` field)."""
    exams = data.get("exams") if isinstance(data, dict) else None
    return (isinstance(exams, dict) and bool(exams) and pandas_records(data) is None
            and all(isinstance(exam, dict) and isinstance(exam.get("data"), list) for exam in exams.values()))


def _headqa_file(path: Path, name: str, scoring: bool) -> LoadResult:
    """A file in HEAD-QA's own layout (questions under `exams`), read as `m1data load headqa` reads
    it. Why: HEAD-QA's test split is an eval set of its own to a user who trains on its train
    split, and its own file was refused as "expected a JSON list of objects"."""
    reader = HeadQA()
    return require_items(_collect(name, reader.read_native(path, "test"), reader.parse, where=path,
                                  expected="HEAD-QA's exams"), name, scoring=scoring)


def question_records(path: Path, mapping: ColumnMapping = ColumnMapping()) -> Iterator[Record]:
    """The records of a file of questions in no named set's layout, located by line: read as
    MMLU's files are when it has their headerless layout (``_headerless_mmlu``) and no mapping
    names its columns, else as its format reads. Eval files and mapped sources both read so."""
    return _mmlu_csv(path) if mapping == ColumnMapping() and _headerless_mmlu(path) else _local(path)


def files_questions(files: Sequence[Path], mapping: ColumnMapping = ColumnMapping()) -> Iterator[Record]:
    """The `question_records` of several files read as one (a folder's, `source_files`), each record
    located by its file and line, so a source's or an eval set's shards keep their rows apart."""
    for file in files:
        for _, raw, where in question_records(file, mapping):
            yield where, raw, where


def _headerless_mmlu(path: Path) -> bool:
    """A CSV in hendrycks/test's MMLU layout (``_mmlu_csv``): no header, six cells a line, the last an
    answer letter. Read with a header, such a file saved under a name of its own (``--eval
    mmlu=FILE``) lost its first question to the column names and then every question ("no
    question column"). A header's first cell is a column name, not a question of three words or
    more, and its last names the answer column, where an MMLU line has one letter (or a broken
    key of one character)."""
    if record_format(path) != ".csv":
        return False
    first = next(read_csv(path, header=False), None)
    if first is None:
        return False
    cells = first[1]
    return len(cells) == 6 and len(cells[0].split()) >= 3 and len(cells[5].strip()) <= 1


def known_eval_set(name: str) -> bool:
    """A set m1data reads by its name: one of EVAL_SETS, or mmlu_medical (its six MMLU subjects)."""
    return name in EVAL_SETS or name == "mmlu_medical"


def load_eval_any(name_or_path: str, path: str | Path | None = None, *, scoring: bool = True,
                  mapping: dict[str, Any] | ColumnMapping | None = None) -> dict[str, LoadResult]:
    """A named set, "mmlu_medical" (all six MMLU subjects), or a file (see `load_eval` for `scoring`);
    `mapping` (a file's columns and answer kind, `column_mapping`): a named set is read in its own
    layouts, so its mapping may say only its keys' `answer_kind` (`load_eval`)."""
    kind = _named_answer_kind(name_or_path, mapping) if known_eval_set(name_or_path) else None
    if name_or_path == "mmlu_medical":
        _check_mmlu_medical_path(path)
        return {f"mmlu_{s}": load_eval(f"mmlu_{s}", path, scoring=scoring, answer_kind=kind) for s in MMLU_MEDICAL}
    if name_or_path in EVAL_SETS:
        return {name_or_path: load_eval(name_or_path, path, scoring=scoring, answer_kind=kind)}
    if Path(name_or_path).expanduser().exists():
        if path is not None:
            raise UserError(f"{name_or_path} is a file and is loaded as it is; --path goes with an eval-set name "
                             f"(see `m1data eval-sets`), not with a file")
        return load_eval_file(name_or_path, column_mapping(mapping, name_or_path), scoring=scoring)
    raise UserError(f"{name_or_path!r} is neither a known eval set ({', '.join(EVAL_SETS)}, mmlu_medical) nor a file")


def _named_answer_kind(name: str, mapping: dict[str, Any] | ColumnMapping | None) -> str | None:
    """The answer kind a named set's mapping says; any column it names is an error."""
    told = column_mapping(mapping, name)
    if dataclasses.replace(told, answer_kind=None) != ColumnMapping():
        raise UserError(f"{name} is read in its own layouts; its mapping may say only answer_kind (a mapping of "
                        "columns goes with a file: FILE, or a name of your choosing with its file)")
    return told.answer_kind


# ---------------------------------------------------------------------------------------------
# The eval sets of a build


@dataclass
class EvalInput:
    """An eval set: a known name (with an optional local path), a file of any known shape, or a
    name of the user's choosing for a file (`name="mine", path="mine.jsonl"`)."""

    name: str
    path: str | None = None
    mapping: dict[str, Any] | None = None
    """A file's columns and answer kind (`column_mapping`), for a file no guess reads right."""

    def __post_init__(self) -> None:
        from m1data.redact import refuse_url_credentials

        refuse_url_credentials(self.path or self.name, "eval set")

    @property
    def local_file(self) -> str | None:
        """The file this entry reads: its path, or its name when a file is given alone; None for a
        known set read from the Hub (`load_eval_input` reads each entry so)."""
        if self.path is not None:
            return self.path
        return None if known_eval_set(self.name) else self.name

    def check(self) -> None:
        """A known set, or a file that is there: a build checks its entries when it is put
        together, so a misspelt name stops it before it loads and deduplicates the sources, not
        after."""
        if self.path is None and not known_eval_set(self.name) and not Path(self.name).exists():
            raise UserError(f"eval set {self.name!r}: not a known set ({', '.join([*EVAL_SETS, 'mmlu_medical'])}) "
                            "and no such file")
        if self.path is not None and not Path(self.path).exists():
            raise UserError(f"eval set {self.name!r}: {self.path}: no such file")
        if self.mapping is not None and known_eval_set(self.name):
            kind = _named_answer_kind(self.name, self.mapping)
            if kind is not None:
                check_answer_kind(self.name, kind, self.path)
        elif self.mapping is not None:
            column_mapping(self.mapping, self.name)

    @property
    def entry_name(self) -> str:
        """What a command line calls this entry by (`--eval-mapping NAME:...`): its NAME as in
        `NAME=FILE`, or the stem of a file given alone (typing its path twice is error-prone)."""
        return self.name if self.path is not None else record_stem(self.name)

    @classmethod
    def parse(cls, spec: str) -> EvalInput:
        """`NAME`, `FILE` or `NAME=FILE`, as every door writes an eval set (`decontaminate --eval`,
        `infer --eval-sets`, a build config's eval list)."""
        spec = spec.strip()
        name, eq, path = spec.partition("=")
        if not eq or Path(spec).expanduser().exists():  # a file whose name holds "=" is a file
            return cls(os.path.expanduser(spec))  # `~/x.csv`: a config has no shell to expand it
        if not name.strip() or not path.strip():
            raise UserError(f"eval set {spec!r}: expected NAME, FILE or NAME=FILE")
        return cls(name.strip(), os.path.expanduser(path.strip()))


def file_set_name(path: str | Path) -> str:
    """The name of the set a file given alone holds: its folder and stem (`mmlu/anatomy_test`), so
    two folders' `test.jsonl` are two sets; the folder is the resolved one ("x.csv" in the current
    folder is not "/x")."""
    folder = Path(path).resolve().parent.name
    return f"{folder}/{record_stem(path)}" if folder else record_stem(path)


def _called(entry: EvalInput) -> tuple[str, ...]:
    """What a mapping may call an entry: `entry_name`, and for a file given alone the name its
    results carry too (`file_set_name`), which the stats and messages show."""
    if entry.path is not None or known_eval_set(entry.name):
        return (entry.entry_name,)
    return tuple(dict.fromkeys((entry.entry_name, file_set_name(entry.name))))  # one name for a file in "/"


def with_mappings(entries: Sequence[EvalInput], mappings: dict[str, dict[str, Any]]) -> list[EvalInput]:
    """`entries` with each of `mappings` (entry name -> a file's columns and answer kind) on the
    entry it names (`EvalInput.entry_name`), for the command-line doors that name eval sets in one
    option and their columns in another (`decontaminate --eval`, `infer --eval-sets`): the same
    `mapping` a build config's eval entry carries, read by `load_eval_input` like it. A name that
    is no entry's, or is several entries', is an error naming the entries; a mapping's keys are
    checked here, before any eval set or training row is read."""
    names = [" or ".join(_called(entry)) for entry in entries]
    for name, mapping in mappings.items():
        count = sum(name in _called(entry) for entry in entries)
        if count != 1:
            problem = "names no eval entry" if count == 0 else f"names {count} eval entries"
            raise UserError(f"mapping for {name!r} {problem} (the entries: {', '.join(names) or 'none'}; a file "
                            "given alone is named by its stem, or its folder/stem)")
        column_mapping(mapping, name)
    for entry in entries:  # "odd" and "d/odd" both given for one file: one of them would be dropped, silently
        given = [name for name in _called(entry) if name in mappings]
        if len(given) > 1:
            raise UserError(f"mappings for {' and '.join(map(repr, given))} name one eval entry; give one")
    out = []
    for entry in entries:  # entry by entry: two files of one stem are two entries, each with its own mapping
        mapping = next((mappings[name] for name in _called(entry) if name in mappings), None)
        out.append(entry if mapping is None else dataclasses.replace(entry, mapping=mapping))
    return out


def load_eval_input(spec: EvalInput, *, scoring: bool = True) -> dict[str, LoadResult]:
    """The one reading of an eval entry, used by every door: a named set (from the Hub or its
    file), "mmlu_medical", a file, or a name of the user's choosing with a file. `scoring=False`
    reads decontamination targets (every question with text). A file of loaded eval rows
    (`loaded_eval_rows`) is taken as it is."""
    loaded_rows = loaded_eval_rows(spec, scoring=scoring)
    if loaded_rows is not None:
        return loaded_rows
    name, path = spec.name, spec.path
    if known_eval_set(name) or path is None:
        return load_eval_any(name, path, scoring=scoring, mapping=spec.mapping)
    loaded = load_eval_file(path, column_mapping(spec.mapping, name), scoring=scoring)
    if len(loaded) != 1:
        raise UserError(f"{path} holds {len(loaded)} eval sets ({', '.join(loaded)}); give it without a name "
                        f"so each keeps its own")
    return {name: next(iter(loaded.values()))}


def loaded_eval_rows(spec: EvalInput, *, scoring: bool = True) -> dict[str, LoadResult] | None:
    """The entry's file as it is when it holds eval rows already loaded (`m1data load-eval`'s
    OUT: every column of the row schema), else None. Read again as a raw file, its options were
    shuffled a second time and its ids prefixed twice (`medqa_test:medqa_test:...`), so `infer
    --eval-sets medqa_test=LOADED.jsonl` asked other prompts than `run_infer` given the same file
    (read as it is) and than the raw file it was loaded from. A known set's name must be the
    rows' own (`source`); a mapping says the file is raw, and it is read so."""
    from m1data.reading.readers import read_rows
    from m1data.schema import DROPPED_FEATURES, ROW_FEATURES, dropped_record, rows_to_dataset

    file = spec.local_file
    if file is None or spec.mapping is not None or Path(file).suffix not in (".jsonl", ".parquet"):
        return None
    if not Path(file).is_file():
        return None  # the loaders say it, in their words
    rows = read_rows(file)
    if len(rows) == 0 or not set(ROW_FEATURES) <= set(rows.column_names):
        return None
    sources = sorted(set(column_values(rows, "source")))
    known = spec.name in EVAL_SETS
    if known and sources != [spec.name]:
        raise UserError(f"eval set {spec.name!r}: {file} holds loaded rows of {', '.join(sources)}, not of "
                        f"{spec.name}; name it {sources[0]}={file}, or give it alone")
    if spec.path is not None:
        name = spec.name
    else:
        name = file_set_name(file)
    ok, unscored, bad = [], [], []
    for i, row in enumerate(rows):
        problem = _loaded_key_problem(row)
        if problem is not None:
            bad.append(dropped_record(name, str(row.get("id") or i), problem, row))
        (unscored if problem is not None or row["answer_idx"] in (None, -1) else ok).append(i)
    # the answers taken out of the whole file, then split: both parts keep one type per column. Taken out
    # of the unscored part alone, a key column that a letter had made text-typed stayed so in the scored
    # part, the unscored part's was typed anew (int), and joining them (`LoadResult.targets`, which
    # decontamination reads) failed: "The features can't be aligned"
    if unscored:
        taken = set(unscored)
        rows = _answers_taken_out(rows, [i in taken for i in range(len(rows))])
    rows = integer_keys(rows)  # pandas' whole floats (2.0) as the indices they are, in both parts
    result = LoadResult(rows=rows.select(ok), dropped=rows_to_dataset(bad, DROPPED_FEATURES),
                        unscored=rows.select(unscored) if unscored else None, origin=str(file))
    return {name: require_items(result, name, scoring=scoring)}


def unscorable_keys_taken_out(rows: datasets.Dataset) -> tuple[datasets.Dataset, list[RowError | None]]:
    """(rows, each row's problem): a row whose key cannot be scored (`_loaded_key_problem`) loses
    its answer (`_answers_taken_out`). For eval rows given as a Dataset (`m1data.infer.score`), read
    as the same rows in a file are (`loaded_eval_rows`): int() read a key 1.7 or True as B, and a
    key its own answer_letter or answer_text contradicted was scored against the option it named."""
    problems = [_loaded_key_problem(row) for row in rows]
    if any(problems):
        rows = _answers_taken_out(rows, [problem is not None for problem in problems])
    return integer_keys(rows), problems


# the answer of an unscored row, as the loaders write it (`unscored_row`)
_NO_ANSWER = {"answer_idx": -1, "answer_letter": "", "answer_text": ""}


def _answers_taken_out(rows: datasets.Dataset, which: list[bool]) -> datasets.Dataset:
    """`rows` with the answer of each row `which` marks taken out (`_NO_ANSWER`). Why: `infer`
    reads a set's targets, unscored rows included, and scored a row left unscored for a
    contradicted key against the option that key named. A column keeps its type where that type
    holds the blank as it is (`_holds_blank`: an int32 key from a .parquet): typed anew from its
    values, the unscored rows no longer joined the scored ones (`LoadResult.targets`). Any other
    is typed anew: cast back to its own type, a bool column's -1 was True again, option B."""
    order = rows.column_names
    for column, blank in _NO_ANSWER.items():
        if column in order:
            values = [blank if taken else value for taken, value in zip(which, column_values(rows, column))]
            kept = rows.features[column] if _holds_blank(rows.features[column], blank) else None
            rows = rows.remove_columns(column).add_column(column, values, feature=kept)
    return rows.select_columns(order)


def _holds_blank(feature: Any, blank: int | str) -> bool:
    """Whether a column of type `feature` holds `blank` as it is: a signed integer type -1, a
    string type "" (a bool or float column does not)."""
    if not isinstance(feature, datasets.Value):
        return False
    kind = feature.pa_type
    if isinstance(blank, str):
        return pa.types.is_string(kind) or pa.types.is_large_string(kind)
    return pa.types.is_signed_integer(kind)


def _loaded_key_problem(row: dict[str, Any]) -> RowError | None:
    """Why a loaded row's key cannot be scored: not an index of its options, or one that its own
    `answer_letter` or `answer_text` contradicts; None for a good key or the -1 (or null) of a row
    loaded without one. Why: such rows were taken as they were, a contradicted key scored silently
    against another option, and a letter in `answer_idx` ended in a traceback."""
    given, options = row["answer_idx"], row["options"] or []
    key = integer_key(given)  # pandas' 2.0 is 2; 1.7, True or "1" is no index
    if given is None or key == -1:
        return None
    if key is None:
        return RowError("not_an_index", f"answer_idx {given!r} is not an option's index")
    if not 0 <= key < len(options):
        return RowError("answer_out_of_range", f"answer_idx {key} for {len(options)} options")
    letter, written = row.get("answer_letter"), row.get("answer_text")
    if letter and letter != LETTERS[key]:
        return RowError("answer_mismatch", f"answer_letter {letter!r} is not {LETTERS[key]}, which answer_idx {key} names")
    if written and not same_text(str(written), options[key]):
        return RowError("answer_mismatch", f"answer_text {written!r} is not option {LETTERS[key]} ({options[key]!r}), "
                                           f"which answer_idx {key} names")
    return ambiguous_answer([str(o) for o in options], key)  # as a row read from a file is dropped


def load_evals(evals: list[EvalInput | str]) -> dict[str, datasets.Dataset]:
    """Eval-set name -> every question of the set that has text, for decontamination.

    A dropped eval row (an unreadable answer key, say) is still a question a training row
    must not copy, so it is matched too (its `answer_idx` is -1: `unscored_counts` counts them);
    a set with no question at all is an error (from the loader), never a set that silently
    matches nothing. Entries are `EvalInput`s or their text form (`EvalInput.parse`)."""
    loaded: dict[str, datasets.Dataset] = {}
    specs = [EvalInput.parse(spec) if isinstance(spec, str) else spec for spec in evals]
    check_once(specs)
    for spec in specs:
        for set_name, result in load_eval_input(spec, scoring=False).items():
            if set_name in loaded:  # two files alone that come out under one name
                raise UserError(f"eval set {set_name!r} is given twice; give each set once (NAME=FILE names a file)")
            warn_unmatched(set_name, result)
            loaded[set_name] = result.targets()
    return loaded


def check_once(specs: Sequence[EvalInput]) -> None:
    """No eval set named twice (a known set, or a NAME of NAME=FILE), said before anything is read.
    Why: the second replaced the first without a word, so a build checked only one of two
    files under one name, and its card listed the one it had not read."""
    names = [spec.name for spec in specs if spec.path is not None or known_eval_set(spec.name)]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise UserError(f"eval set {twice[0]!r} is given twice; give each set once (NAME=FILE names a file)")


def warn_unmatched(name: str, result: LoadResult) -> None:
    """Warn (`UnmatchedEvalWarning`) about the records of an eval set that are no
    decontamination targets: no question text could be read from them (not an object, no
    question column, ...). A training row copying one of them cannot be caught, and the dropped
    table that holds their reasons is not shown by the callers of `load_evals`."""
    targets = set(column_values(result.unscored, "id")) if result.unscored is not None and len(result.unscored) else set()
    for why, count in result.out_of_scope.items():
        if count < len(result.targets()):  # a few out of a file that is the set (a mistyped PMID); not a superset's
            warnings.warn(f"{name}: {count:,} records are not decontamination targets, being out of the set's "
                          f"scope: {why}", UnmatchedEvalWarning, stacklevel=3)
    unmatched = [record for record in result.dropped if record["id"] not in targets]
    if unmatched:
        first = unmatched[0]
        warnings.warn(f"{name}: {len(unmatched):,} of {len(result.targets()) + len(unmatched):,} records were not "
                      f"read as questions (a reason each, as a source's rows), and are not decontamination targets "
                      f"(first: {first['reason']} {first['detail']})", UnmatchedEvalWarning, stacklevel=3)


def unscored_counts(eval_sets: dict[str, datasets.Dataset]) -> dict[str, int]:
    """Per set, the targets whose answer key could not be read (matched, never scored)."""
    counts = {name: sum(1 for i in column_values(ds, "answer_idx") if i < 0) for name, ds in eval_sets.items()
              if "answer_idx" in ds.column_names}
    return {name: n for name, n in counts.items() if n}


__all__ = [
    "ANSWER_KINDS",
    "EVAL_SETS",
    "IDENTITIES",
    "MMLU_MEDICAL",
    "AnswerSkewWarning",
    "ColumnMapping",
    "EvalInput",
    "QuestionReader",
    "UnmatchedEvalWarning",
    "answer_kinds",
    "answer_readings",
    "answer_skew",
    "column_mapping",
    "decide_answer_kind",
    "load_eval",
    "load_eval_any",
    "load_eval_file",
    "check_once",
    "known_eval_set",
    "load_eval_input",
    "load_evals",
    "loaded_eval_rows",
    "read_answer",
    "unscorable_keys_taken_out",
    "unscored_counts",
    "with_mappings",
]
