"""The first stage of every build: load the raw sources into one validated Dataset.

Bad rows become `dropped` rows with their reason, so the funnel shows them next to
every later drop. Also the embedded sample: small native-format files shipped with m1data so a
build runs offline with no configuration at all; its eval files are listed here too (`sample_evals`),
next to its sources, while what an eval input is and how it loads belong to `m1data.reading.evalsets`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import datasets

from m1data.errors import UserError
from m1data.reading.evalsets import EvalInput
from m1data.reading.sources import load_source
from m1data.running.distributed import parallel_map
from m1data.running.pipeline import (
    RunContext,
    Stage,
    StageFailed,
    StageResult,
    drop_counts,
    input_digest,
    source_counts,
)
from m1data.redact import refuse_url_credentials
from m1data.schema import DEFAULT_SEED, ROW_FEATURES


def sample_dir() -> Path:
    return Path(str(resources.files("m1data").joinpath("data/sample")))


def sample_sources() -> dict[str, SourceInput]:
    root = sample_dir()
    return {
        "medqa": SourceInput(path=str(root / "medqa/train.jsonl")),
        "headqa": SourceInput(path=str(root / "headqa/train_HEAD_EN.json")),
        "medmcqa": SourceInput(path=str(root / "medmcqa/train.jsonl")),
        "pubmedqa": SourceInput(path=str(root / "pubmedqa/ori_pqal.json")),
    }


def sample_evals() -> list[EvalInput]:
    root = sample_dir() / "eval"
    return [
        EvalInput(name="medqa_test", path=str(root / "medqa/test.jsonl")),
        EvalInput(name="medmcqa_validation", path=str(root / "medmcqa/validation.jsonl")),
        EvalInput(name="mmlu_clinical_knowledge", path=str(root / "mmlu/clinical_knowledge_test.csv")),
    ]


@dataclass
class SourceInput:
    """Where one source comes from: a local native file or a folder of its shards (`split` picks
    one split's where the folder holds several), or (path None) the Hub id m1 used. `cop_base`
    (MedMCQA only): 0 or 1 when a local file's `cop` values cannot tell.

    A source m1data has no loader for is a file (or a folder of them) and a column `mapping` (question, options,
    answer, id, context; see `m1data.reading.sources.load_mapped`), with the `licence` its rows are
    under (required: the card states it) and optionally a `title`, `hub_id`, `url`, `citation`
    and `terms` for the card. `name` is set from the key under `sources:` (or given in the list
    form)."""

    path: str | None = None
    split: str | None = None
    cop_base: int | None = None
    name: str | None = None
    mapping: dict[str, Any] | None = None
    licence: str | None = None
    title: str | None = None
    hub_id: str | None = None
    url: str | None = None
    citation: str | None = None
    terms: str | None = None

    def __post_init__(self) -> None:
        refuse_url_credentials(self.path, f"sources.{self.name}: path" if self.name else "a source's path")


@dataclass
class LoadConfig:
    """`sources` maps a name to its input; in YAML it may also be a list of entries with a
    `name` each (handy for added sources). A name m1data has no loader for must give `path`
    and `licence` (see `SourceInput`)."""

    sources: dict[str, SourceInput] | list[SourceInput] = field(default_factory=sample_sources)  # a dict after init
    seed: int = DEFAULT_SEED

    def __post_init__(self) -> None:
        self.sources = _named_sources(self.sources)


def _named_sources(sources: dict[str, SourceInput] | list[Any]) -> dict[str, SourceInput]:
    """The sources keyed by name, each checked: a list form becomes a mapping, and a source with
    no built-in loader must say where its file is and under which licence its rows are."""
    from m1data.config import ConfigError, from_dict
    from m1data.reading.sources import SOURCES, check_source_name

    if isinstance(sources, list):
        entries = [from_dict(SourceInput, e, f"sources[{i}]") if isinstance(e, dict) else e
                   for i, e in enumerate(sources)]
        if any(e.name is None for e in entries):
            raise ConfigError("sources: every entry of the list needs a name")
        names = [e.name for e in entries]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ConfigError(f"sources: {', '.join(twice)} given more than once")
        sources = {e.name: e for e in entries}
    named: dict[str, SourceInput] = {}
    for name, spec in sources.items():
        spec = from_dict(SourceInput, spec, f"sources.{name}") if isinstance(spec, dict) else spec
        if spec.name not in (None, name):
            raise ConfigError(f"sources.{name}: name {spec.name!r} differs from its key")
        try:
            check_source_name(name)
        except ValueError as err:
            raise ConfigError(f"sources: {err}") from None
        if name not in SOURCES or spec.mapping is not None:
            missing = [k for k in ("path", "licence") if not getattr(spec, k)]
            if missing:
                raise ConfigError(f"sources.{name}: a source without a built-in loader needs {' and '.join(missing)} "
                                  "(its file, and the licence its rows are under, which the card states)")
        spec.name = name
        named[name] = spec
    return named


class LoadSources(Stage):
    name = "load"
    reads_rows = True  # the sources' files, not a stage's rows

    def __init__(self, config: LoadConfig):
        self.config = config

    def external_fingerprint(self) -> str:
        return ",".join(input_digest(s.path) if s.path else str(s.path) for s in self.config.sources.values())

    def columns_after(self, before: frozenset[str] | None) -> frozenset[str]:
        return frozenset(ROW_FEATURES)  # every source is read into the row schema

    def run(self, rows: datasets.Dataset | None, ctx: RunContext) -> StageResult:
        parts, dropped_parts, stats = [], [], {}
        names = list(self.config.sources)
        for name, result in zip(names, parallel_map(ctx, self.load_one, names), strict=True):
            parts.append(result.rows)
            dropped_parts.append(result.dropped)
            stats[name] = {"loaded": len(result.rows), "dropped": result.reasons(),
                           **({"out_of_scope": result.out_of_scope} if result.out_of_scope else {})}
        kept = datasets.concatenate_datasets(parts) if parts else datasets.Dataset.from_dict({}, features=ROW_FEATURES)
        dropped = datasets.concatenate_datasets(dropped_parts) if dropped_parts else None
        return StageResult(rows=kept, dropped=dropped, stats={"sources": stats})

    def account(self, rows: datasets.Dataset | None, result: StageResult) -> None:
        """A reader's terms (`account_read`), and the counts the manifest reports per source
        (`stats.sources`: rows loaded, dropped by reason; what `load` prints and the funnel's raw
        count reads) are those of the rows handed on. Records left out of scope are counted by
        the reader (`out_of_scope`), which has no rows for them."""
        super().account(rows, result)
        kept = source_counts(result.rows)
        dropped = {(reason, source): n for reason, per in drop_counts(result.dropped).items()
                   for source, n in per.items()}
        reported = result.stats.get("sources", {})
        said = {(reason, name): n for name, st in reported.items() for reason, n in st["dropped"].items()}
        for name in sorted({*kept, *reported}):
            loaded = reported.get(name, {}).get("loaded", 0)
            if loaded != kept.get(name, 0):
                raise StageFailed(f"stage {self.name!r} reports {loaded:,} {name} rows loaded but hands on "
                                  f"{kept.get(name, 0):,}")
        if said != dropped:
            raise StageFailed(f"stage {self.name!r} reports {sum(said.values()):,} rows dropped "
                              f"but its dropped rows are {sum(dropped.values()):,}")

    def load_one(self, name: str):  # type: ignore[no-untyped-def]
        """One source, read and normalised: a unit of work a Ray task can run on its own."""
        spec = self.config.sources[name]
        return load_source(name, spec.path, split=spec.split, seed=self.config.seed, cop_base=spec.cop_base,
                           mapping=spec.mapping)


@dataclass
class DatasetInput:
    """A dataset that already exists: a Hub-layout folder, a .parquet/.jsonl file, or a Hub id."""

    path: str
    config: str | None = None
    split: str = "train"


class LoadDataset(Stage):
    """First stage of a re-sampling build (`m1data build m1k --from-m23k ...`)."""

    name = "load_dataset"
    reads_rows = True  # an existing dataset's rows

    def __init__(self, config: DatasetInput):
        refuse_url_credentials(config.path, "--from-m23k")  # before anything runs (m1data.redact)
        self.config = config

    def external_fingerprint(self) -> str:
        return input_digest(self.config.path)

    def run(self, rows: datasets.Dataset | None, ctx: RunContext) -> StageResult:
        from m1data.publishing.cardmeta import hub_folder_dataset
        from m1data.reading.readers import read_dataset

        folder = Path(self.config.path).expanduser()
        name = self.config.config or _m23k_config(folder)
        built = hub_folder_dataset(folder) if folder.is_dir() and name is None else None
        if built is not None and built != "m23k":  # an m1K drawn again was taken for an m23K, exit 0
            raise UserError(f"{folder} holds m1data's {built} export (its card's m1data_build), not an m23K; "
                            "give the m23K's Hub-layout folder (a build of both writes it to hub-m23k)")
        ds = read_dataset(self.config.path, name, self.config.split, what="an m23K")
        return StageResult(rows=ds, stats={"from": self.config.path})


def _m23k_config(where: Path) -> str | None:
    """"m23k" when a Hub-layout folder's card, or a Hub repo, has a config of that name. Why: m1K
    and m23K published to one repo share one card, whose `m1data_build` and default config may be
    the m1K's, so such a folder was refused, or its default config, the m1K, read as the m23K."""
    from m1data.publishing.cardmeta import CARD_FILE, split_card

    if where.is_dir():
        card = where / CARD_FILE
        configs = split_card(card.read_text(encoding="utf-8"))[0].get("configs") if card.is_file() else None
        names = {c.get("config_name") for c in configs if isinstance(c, dict)} if isinstance(configs, list) else set()
    elif where.exists() or str(where).count("/") != 1 or str(where).startswith((".", "/", "~")):  # rows; no repo id
        return None
    else:
        try:  # a repo id's configs (read_dataset says what is wrong with a name that is none)
            names = set(datasets.get_dataset_config_names(str(where)))
        except Exception:
            return None
    return "m23k" if "m23k" in names else None


__all__ = [
    "DatasetInput",
    "LoadConfig",
    "LoadDataset",
    "LoadSources",
    "SourceInput",
    "sample_dir",
    "sample_evals",
    "sample_sources",
]
