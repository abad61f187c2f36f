"""The ablation subsets of the paper's Tables 2 and 3, each a short variation of m23K / m1K.

- random-23k, random-1k: uniform draws from the pool before the difficulty filter, with teacher
  traces. Verification drops the rows whose trace is wrong, so a draw of exactly n would end short
  of the size the name and the paper give (Table 3: 1,000 and 23,493). So `oversample` times n rows
  are drawn and traced, and n are drawn again, uniformly, from those kept (the `cut` stage): a
  uniform draw of n verified pool rows. Where fewer than n were verified, all are kept, and the cut
  says so and records `short_by` in its manifest;
- hard-random-1k: a uniform draw from m23K;
- hard-domain-balanced-1k: domain -> sample from m23K (m1K adds the dataset level).

The names are given to these compositions in the builder table (m1data.builders.BUILDERS).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

from m1data.builders import m23k

from m1data.errors import UserError
from m1data.running.pipeline import Stage
from m1data.stages.sampling import Sample, SampleConfig
from m1data.stages.traces import TeacherTraces

log = logging.getLogger(__name__)


@dataclass
class AblationConfig:
    m23k: m23k.M23KConfig = field(default_factory=m23k.M23KConfig)
    seed: int = 42
    # random draws: rows traced per row published. 1.25 leaves room for a teacher that verifies 80%
    # (R1 on questions not filtered for difficulty does better); each extra row costs one trace.
    oversample: float = 1.25

    def __post_init__(self) -> None:
        value = self.oversample
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 1:
            raise UserError(f"oversample must be a number of at least 1, not {self.oversample!r}")


def random_from_pool(n: int):
    def stages(config: AblationConfig) -> list[Stage]:
        return [
            *m23k.pool_stages(config.m23k),
            Sample(SampleConfig(n=math.ceil(n * config.oversample), levels=(), seed=config.seed)),
            TeacherTraces(config.m23k.traces),
            m23k.formatter(config.m23k),
            Sample(SampleConfig(n=n, levels=(), seed=config.seed), name="cut"),
        ]

    return stages


def from_m23k(levels: tuple[str, ...]):
    def stages(config: AblationConfig) -> list[Stage]:
        if config.oversample != AblationConfig.oversample:  # a Random draw's setting, taken in silence here
            log.warning(f"oversample {config.oversample} is a setting of the Random draws (random-1k, random-23k), "
                        "not used by this build: it draws from m23K, whose rows are all verified")
        return [*m23k.stages(config.m23k), Sample(SampleConfig(n=1000, levels=levels, seed=config.seed))]

    return stages
