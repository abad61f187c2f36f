"""The ablation subsets of the paper's Tables 2 and 3, each a short variation of m23K / m1K.

- random-23k, random-1k: uniform draws from the pool before the difficulty filter, then teacher
  traces (rows whose trace fails verification are dropped, so a draw can end a little short of n);
- hard-random-1k: a uniform draw from m23K;
- hard-domain-balanced-1k: domain -> sample from m23K (m1K adds the dataset level).

The names are given to these compositions in the builder table (m1data.builders.BUILDERS).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from m1data.builders import m23k

from m1data.running.pipeline import Stage
from m1data.stages.sampling import Sample, SampleConfig
from m1data.stages.traces import TeacherTraces


@dataclass
class AblationConfig:
    m23k: m23k.M23KConfig = field(default_factory=m23k.M23KConfig)
    seed: int = 42


def random_from_pool(n: int):
    def stages(config: AblationConfig) -> list[Stage]:
        return [
            *m23k.pool_stages(config.m23k),
            Sample(SampleConfig(n=n, levels=(), seed=config.seed)),
            TeacherTraces(config.m23k.traces),
            m23k.formatter(config.m23k),
        ]

    return stages


def from_m23k(levels: tuple[str, ...]):
    def stages(config: AblationConfig) -> list[Stage]:
        return [*m23k.stages(config.m23k), Sample(SampleConfig(n=1000, levels=levels, seed=config.seed))]

    return stages
