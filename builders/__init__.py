"""One file per published dataset: a short composition of m1data stages with the paper's
settings. Installed as `m1data.builders`.

Every builder exposes `CONFIG` (its typed config class) and `stages(config)`.
"""

import dataclasses
from importlib import resources
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml
from m1data.builders import ablations, m1k, m23k

from m1data.config import from_dict, load_config

M1KConfig = m1k.M1KConfig

BUILDERS = {
    "m23k": m23k,
    "m1k": m1k,
    **{name: SimpleNamespace(CONFIG=ablations.AblationConfig, stages=fn) for name, fn in ablations.SUBSETS.items()},
}


def default_config_path() -> Path:
    """The config a build uses when given none: the embedded model (configs/embedded.yaml)."""
    return Path(str(resources.files("m1data.builders") / "configs" / "embedded.yaml"))


def load_builder_config(cls: type, path: str | Path | None) -> Any:
    """`path` over the builder's (paper) defaults; without `path`, the embedded config. That file
    is written for m1K (`m23k:` and `sample:`); another builder takes the parts its config has
    (m23K: the `m23k` section itself; the ablations: `m23k`)."""
    if path is not None:
        return load_config(cls, path)
    source = default_config_path()
    data = yaml.safe_load(source.read_text())
    names = {f.name for f in dataclasses.fields(cls)}
    if "m23k" not in names:
        data = data["m23k"]
    return from_dict(cls, {k: v for k, v in data.items() if k in names}, where=str(source))
