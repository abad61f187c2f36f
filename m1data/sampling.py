"""The sampler under the short path the design names: ``from m1data.sampling import stratified_sample``.

It lives in m1data.stages.sampling beside the other stages; this module only gives it the path
researchers are told to import (an import of it failed before: library audit)."""

from m1data.stages.sampling import PoolTooSmall, SampleConfig, random_sample, stratified_sample

__all__ = ["PoolTooSmall", "SampleConfig", "random_sample", "stratified_sample"]
