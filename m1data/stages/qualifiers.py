"""The 76 MeSH qualifiers ("domains"), their hierarchy and the tagging rubric: the data every
tagger reads, and the `domain_code`/`domain` columns every tagger writes.

Why a module of its own: the LLM tagger (m1data.stages.mesh) and the offline taggers
(m1data.stages.mesh_offline) both need them, and the offline ones must not import the LLM stack to get
them. The qualifiers are NLM's file shipped in m1data/data/mesh/, coded "00".."75" in file order
(reference s.7).
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType

import datasets

from m1data.errors import UserError
from m1data.running.pipeline import add_columns

__all__ = [
    "DOMAIN_COLUMNS",
    "Qualifier",
    "add_domain_columns",
    "domain_counts",
    "load_qualifiers",
    "qualifier_by_code",
    "qualifier_by_name",
    "qualifier_children",
    "qualifier_subtree",
    "rubric",
]

DOMAIN_COLUMNS = ("domain_code", "domain")


@dataclass(frozen=True)
class Qualifier:
    """One MeSH qualifier. `code` is its two-digit position in the NLM file, which is what the
    model is asked to answer with (names have spaces and ampersands; codes parse cleanly)."""

    code: str
    name: str
    abbreviation: str
    scope_note: str


def _data_file(name: str) -> Path:
    return Path(str(resources.files("m1data") / "data" / "mesh" / name))


@cache
def _qualifiers() -> tuple[Qualifier, ...]:
    path = _data_file("qualifier_scope_note.tsv")
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        rows = [row for row in reader if row.get("Name")]
    return tuple(
        Qualifier(f"{i:02d}", row["Name"].strip(), row["Abbreviation"].strip(), row["Scope Notes"].strip())
        for i, row in enumerate(rows)
    )


def load_qualifiers() -> list[Qualifier]:
    """The 76 qualifiers, coded "00".."75" in file order (reference s.7)."""
    return list(_qualifiers())


@cache
def qualifier_by_code() -> Mapping[str, Qualifier]:
    """Code ("07") -> qualifier. Read-only: the mapping is cached for every caller (the taggers
    name their domains from it), so a caller's `pop` or `clear` would change every later result."""
    return MappingProxyType({q.code: q for q in _qualifiers()})


def qualifier_by_name(name: str) -> Qualifier | None:
    """The qualifier a name or abbreviation means, in the forms PubMed and MeSH write them: any
    case ("drug effects"), with the slash a heading writes before it ("/drug effects", as in
    "Neoplasms/drug effects"), "and" for "&", hyphens for spaces, its two-letter abbreviation
    ("DE", in capitals: "in" or "me" is no qualifier); None for any other text."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, not {type(name).__name__}")
    text = name.strip().strip("/.*").strip()
    if len(text) == 2 and text.isalpha() and text.isupper():
        return next((q for q in _qualifiers() if q.abbreviation == text), None)
    return _by_name_key().get(_name_key(text))


_HIERARCHY_TYPOS = {"adminstration and dosage": "administration and dosage"}  # data/mesh/README.md


def _name_key(name: str) -> str:
    words = name.lower().replace("&", " and ").replace("-", " ").split()
    return _HIERARCHY_TYPOS.get(" ".join(words), " ".join(words))


@cache
def _by_name_key() -> Mapping[str, Qualifier]:
    return MappingProxyType({_name_key(q.name): q for q in _qualifiers()})


@cache
def qualifier_children() -> Mapping[str, frozenset[str]]:
    """Code -> codes of its direct children in NLM's qualifier hierarchy (a qualifier can sit
    under several parents, e.g. "adverse effects" under pharmacology and therapeutic use).

    Used to score a tagger against coarse human labels: a question filed under "pharmacology"
    is rightly tagged "pharmacokinetics" too."""
    children: dict[str, set[str]] = {q.code: set() for q in _qualifiers()}
    stack: list[tuple[int, str]] = []
    for line in _data_file("qualifier_hierarchy.txt").read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        depth = (len(line) - len(line.lstrip(" "))) // 2
        name = line.strip().removeprefix("- ").strip()
        qualifier = qualifier_by_name(name)
        if qualifier is None:
            raise UserError(f"qualifier_hierarchy.txt names an unknown qualifier {name!r}")
        while stack and stack[-1][0] >= depth:
            stack.pop()
        if stack:
            children[stack[-1][1]].add(qualifier.code)
        stack.append((depth, qualifier.code))
    return MappingProxyType({code: frozenset(kids) for code, kids in children.items()})  # cached: read-only


def qualifier_subtree(code: str) -> frozenset[str]:
    """`code` and every qualifier below it in the hierarchy."""
    _names([code])
    seen = {code}
    todo = [code]
    while todo:
        for child in qualifier_children()[todo.pop()]:
            if child not in seen:
                seen.add(child)
                todo.append(child)
    return frozenset(seen)


@cache
def rubric() -> str:
    """The classification rubric, one `### name / * Code / * Description` entry per qualifier."""
    entries = [f"### {q.name}\n* Code: {q.code}\n* Description: {q.scope_note}" for q in _qualifiers()]
    return "\n\n".join(entries)


def add_domain_columns(ds: datasets.Dataset, codes: Sequence[str]) -> datasets.Dataset:
    """`domain_code` ("07") and `domain` (the qualifier's name, as in the paper's Table 4)."""
    codes = list(codes)
    if len(codes) != len(ds):
        raise UserError(f"{len(codes):,} codes for {len(ds):,} rows: give one code per row")
    return add_columns(ds, {"domain_code": (codes, datasets.Value("string")),
                            "domain": (_names(codes), datasets.Value("string"))})


def domain_counts(codes: Sequence[str]) -> dict[str, int]:
    counts = Counter(_names(codes))
    return dict(sorted(counts.items()))


def _names(codes: Sequence[str]) -> list[str]:
    """Each code's qualifier name; a code that is not one of "00".."75" (an int 7, "7", "99") is
    named in one line rather than a bare KeyError."""
    names = qualifier_by_code()
    unknown = [c for c in codes if c not in names]
    if unknown:
        raise UserError(f"not a qualifier code: {unknown[0]!r} (codes are the strings '00'..'75')")
    return [names[c].name for c in codes]
