"""m1K: 1,000 rows of m23K drawn domain -> dataset -> sample (paper Table 3, reference s.8).

Either the whole m23K pipeline followed by the sampler, or (`resample_stages`) the sampler alone
over an m23K that already exists: a Hub-layout folder, a parquet/jsonl file or a Hub repo id.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from m1data.builders import m23k

from m1data.running.pipeline import Stage
from m1data.stages.sampling import Sample, SampleConfig


@dataclass
class M1KConfig:
    m23k: m23k.M23KConfig = field(default_factory=m23k.M23KConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)


def stages(config: M1KConfig) -> list[Stage]:
    return [*m23k.stages(config.m23k), Sample(config.sample)]


def resample_stages(m23k_path: str, sample: SampleConfig) -> list[Stage]:
    """m1K from an m23K that already exists, without re-running anything before the sampler."""
    from m1data.stages.loading import DatasetInput, LoadDataset

    return [LoadDataset(DatasetInput(path=m23k_path)), Sample(sample)]
