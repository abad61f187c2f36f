"""The source registry: one record per training source m1 used, with every fact m1data states
about it (Hub id, licence and terms, title, home page, citation, the name tables print, the colour
figures draw it in).

Why one home: the row schema (the known sources), the loaders (the Hub id), the dataset card
(licences, citations) and its figures (colours) all read these facts, and a fact typed in two
places drifts. Adding a built-in source is one record here and one format class in m1data.reading.native;
a source added by configuration states its own licence, title and URL (m1data.stages.loading).

Imports nothing, so the schema can read it without loading any machinery.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SOURCE_REGISTRY", "SourceRecord", "pretty_name"]


@dataclass(frozen=True)
class SourceRecord:
    """What m1data knows about one source. `title` is the dataset's full name (the card's
    licence table), `pretty_name` the short one of the paper's tables and the figures' legends;
    `licence` is the short licence name, `terms` the sentence a card quotes."""

    name: str
    pretty_name: str
    title: str
    hub_id: str
    licence: str
    terms: str
    citation: str
    url: str
    colour: str
    hub_config: str | None = None


SOURCE_REGISTRY: dict[str, SourceRecord] = {
    r.name: r
    for r in (
        SourceRecord(
            name="medqa",
            pretty_name="MedQA",
            title="MedQA (USMLE, 4 options)",
            hub_id="GBaker/MedQA-USMLE-4-options",
            licence="MIT",
            terms="MIT licence of the MedQA release.",
            citation='Jin et al., "What Disease does this Patient Have? A Large-scale Open Domain Question '
                     'Answering Dataset from Medical Exams", Applied Sciences, 2021.',
            url="https://github.com/jind11/MedQA",
            colour="#4477aa",
        ),
        SourceRecord(
            name="headqa",
            pretty_name="HeadQA",
            title="HEAD-QA (English)",
            hub_id="openlifescienceai/headqa",
            licence="HEAD-QA terms (research use)",
            terms="Questions written by the Spanish Ministerio de Sanidad, Consumo y Bienestar Social, "
                  "redistributed by the HEAD-QA authors for research under the Ministry's reuse conditions: "
                  "the content must not be distorted, the source must be cited, and the date of the last "
                  "update of the documents must be stated (14 January 2019).",
            citation='Vilares and Gómez-Rodríguez, "HEAD-QA: A Healthcare Dataset for Complex Reasoning", ACL, 2019.',
            url="https://github.com/aghie/head-qa",
            colour="#ee6677",
        ),
        SourceRecord(
            name="medmcqa",
            pretty_name="MedMCQA",
            title="MedMCQA",
            hub_id="openlifescienceai/medmcqa",
            licence="Apache-2.0",
            terms="Apache-2.0, as stated on the openlifescienceai/medmcqa dataset card.",
            citation='Pal, Umapathi and Sankarasubbu, "MedMCQA: A Large-scale Multi-Subject Multi-Choice Dataset '
                     'for Medical domain Question Answering", CHIL (PMLR 174), 2022.',
            url="https://huggingface.co/datasets/openlifescienceai/medmcqa",
            colour="#228833",
        ),
        SourceRecord(
            name="pubmedqa",
            pretty_name="PubMedQA",
            title="PubMedQA (PQA-L)",
            hub_id="qiaojin/PubMedQA",
            hub_config="pqa_labeled",
            licence="MIT",
            terms="MIT licence of the PubMedQA release.",
            citation='Jin et al., "PubMedQA: A Dataset for Biomedical Research Question Answering", EMNLP-IJCNLP, 2019.',
            url="https://github.com/pubmedqa/pubmedqa",
            colour="#ccbb44",
        ),
    )
}


def pretty_name(source: str) -> str:
    """The short name of a source for tables and legends; a source the registry does not hold
    (one added by configuration) keeps its own name."""
    record = SOURCE_REGISTRY.get(source)
    return record.pretty_name if record else source
