"""m23K: every hard question the teacher answered correctly, built as the paper did (Table 3).

    load -> dedup -> decontaminate -> difficulty -> traces -> decontaminate_final -> dedup_final
         -> tag -> format

Defaults are the paper's settings: fuzzy ratio 95 on the question stem and option set, students
Qwen2.5-7B/32B-Instruct (greedy, 4,000 tokens; drop when any is right), teacher DeepSeek-R1
(8,000 tokens), MeSH qualifiers by GPT-4o. Sources and eval sets default to the embedded sample so
the build runs offline as shipped; `builders/configs/paper.yaml` is the full-scale configuration.
The LLM stages check their endpoint first and the build stops before them, cleanly, when it is
not there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from m1data.reading.evalsets import EvalInput
from m1data.running.pipeline import Stage
from m1data.stages.dedup import Decontaminate, DecontaminateConfig, DedupConfig, Deduplicate
from m1data.stages.difficulty import DifficultyConfig, DifficultyFilter
from m1data.stages.formatting import FormatConfig, FormatSFT
from m1data.stages.loading import LoadConfig, LoadSources, sample_evals
from m1data.stages.mesh import MeshConfig, MeshTagger
from m1data.stages.mesh_offline import OfflineConfig, OfflineTagger
from m1data.stages.traces import TeacherTraces, TracesConfig


@dataclass
class M23KConfig:
    load: LoadConfig = field(default_factory=LoadConfig)
    evals: list[EvalInput] = field(default_factory=sample_evals)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    decontaminate: DecontaminateConfig = field(default_factory=DecontaminateConfig)
    difficulty: DifficultyConfig = field(default_factory=DifficultyConfig)
    traces: TracesConfig = field(default_factory=TracesConfig)
    tagger: Literal["llm", "offline"] = "llm"
    mesh: MeshConfig = field(default_factory=MeshConfig)
    offline_tagger: OfflineConfig = field(default_factory=OfflineConfig)


def tagger(config: M23KConfig) -> Stage:
    return MeshTagger(config.mesh) if config.tagger == "llm" else OfflineTagger(config.offline_tagger)


def formatter(config: M23KConfig) -> Stage:
    """The SFT format stage, taking the traces stage's `require_reasoning`: rows a teacher meant to
    answer without thinking gave are kept by the one and must not stop the build at the other."""
    return FormatSFT(FormatConfig(require_reasoning=config.traces.require_reasoning))


def pool_stages(config: M23KConfig) -> list[Stage]:
    """The pool before the difficulty filter (what the Random ablations draw from)."""
    return [
        LoadSources(config.load),
        Deduplicate(config.dedup),
        Decontaminate(config.decontaminate, config.evals),
    ]


def stages(config: M23KConfig) -> list[Stage]:
    return [
        *pool_stages(config),
        DifficultyFilter(config.difficulty),
        TeacherTraces(config.traces),
        Decontaminate(config.decontaminate, config.evals, name="decontaminate_final"),
        Deduplicate(config.dedup, name="dedup_final"),
        tagger(config),
        formatter(config),
    ]
