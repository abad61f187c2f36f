"""m1data: rebuild and regenerate the m1 medical reasoning datasets (m23K, m1K).

The names researchers import most are available from the top level::

    from m1data import stratified_sample, decontaminate, extract_answer, MeshTagger
    import m1data; m1data.build("m1k", "runs/m1k")   # the whole job the CLI's `build` runs

They are loaded on first use, so ``import m1data`` stays light (no datasets, numpy or torch
until a name that needs them is touched).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from m1data.caches import use_a_writable_datasets_cache  # noqa: E402 - before anything imports datasets

use_a_writable_datasets_cache()

# public name -> module that defines it
_EXPORTS = {
    "stratified_sample": "m1data.stages.sampling",
    "random_sample": "m1data.stages.sampling",
    "deduplicate": "m1data.stages.dedup",
    "decontaminate": "m1data.stages.dedup",
    "find_duplicates": "m1data.stages.fuzzy",
    "find_contamination": "m1data.stages.fuzzy",
    "extract_answer": "m1data.stages.answers",
    "grade": "m1data.stages.answers",
    "load_source": "m1data.reading.sources",
    "load_eval": "m1data.reading.evalsets",
    "MeshTagger": "m1data.stages.mesh",
    "OfflineTagger": "m1data.stages.mesh_offline",
    "Stage": "m1data.running.pipeline",
    "run_pipeline": "m1data.running.pipeline",
    "build": "m1data.jobs",
    "build_config": "m1data.jobs",
    "BuildResult": "m1data.jobs",
    "resample": "m1data.jobs",
    "publish": "m1data.publishing.hub",
}

__all__ = [
    "BuildResult",
    "MeshTagger",
    "OfflineTagger",
    "Stage",
    "__version__",
    "build",
    "build_config",
    "decontaminate",
    "deduplicate",
    "extract_answer",
    "find_contamination",
    "find_duplicates",
    "grade",
    "load_eval",
    "load_source",
    "publish",
    "random_sample",
    "resample",
    "run_pipeline",
    "stratified_sample",
]

if TYPE_CHECKING:
    from m1data.jobs import BuildResult, build, build_config, resample
    from m1data.publishing.hub import publish
    from m1data.reading.evalsets import load_eval
    from m1data.reading.sources import load_source
    from m1data.running.pipeline import Stage, run_pipeline
    from m1data.stages.answers import extract_answer, grade
    from m1data.stages.dedup import decontaminate, deduplicate
    from m1data.stages.fuzzy import find_contamination, find_duplicates
    from m1data.stages.mesh import MeshTagger
    from m1data.stages.mesh_offline import OfflineTagger
    from m1data.stages.sampling import random_sample, stratified_sample


# submodules the README reaches through the package (`m1data.output.enable()`, `m1data.jobs.run_dedup_file`):
# imported on first use too, as `import m1data.output` would
_SUBMODULES = {"builders", "caches", "cards", "config", "cores", "dedup", "errors", "infer", "jobs", "llm", "output",
               "publishing", "reading", "redact", "running", "sampling", "schema", "stages", "train"}


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"m1data.{name}")  # the import sets the attribute itself
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'm1data' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
