"""One file per published dataset: a short composition of m1data stages with the paper's
settings. Installed as `m1data.builders`.

`BUILDERS` is the one table of them: the CLI's `build` (its choice of names and its help), the
card renderer (pretty name, template) and the export read it, so adding a dataset is one
`Builder` line here and a module beside this file, and no other place lists the datasets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from m1data.builders import ablations, m1k, m23k

from m1data.running.pipeline import Stage

__all__ = ["BUILDERS", "Builder", "M1KConfig", "default_config_path"]

M1KConfig = m1k.M1KConfig


@dataclass(frozen=True)
class Builder:
    """One dataset m1data builds: `stages(config())` is its pipeline; its card is
    ``cards/<card_template>.md.jinja`` with `pretty_name` as its title."""

    name: str
    pretty_name: str
    config: type
    stages: Callable[[Any], list[Stage]]
    card_template: str


BUILDERS: dict[str, Builder] = {
    b.name: b
    for b in (
        Builder("m23k", "m23K", m23k.M23KConfig, m23k.stages, "m23k"),
        Builder("m1k", "m1K", m1k.M1KConfig, m1k.stages, "m1k"),
        # the paper's ablation subsets (Tables 2 and 3) share one template; their names say which draw
        Builder("random-1k", "Random 1K", ablations.AblationConfig, ablations.random_from_pool(1_000), "ablation"),
        Builder("random-23k", "Random 23K", ablations.AblationConfig, ablations.random_from_pool(23_493), "ablation"),
        Builder("hard-random-1k", "Hard Random 1K", ablations.AblationConfig, ablations.from_m23k(()), "ablation"),
        Builder("hard-domain-balanced-1k", "Hard Domain Balanced 1K", ablations.AblationConfig,
                ablations.from_m23k(("domain",)), "ablation"),
    )
}


def config_file(config: str | Path) -> Path:
    """The config file `config` names: the file itself, or, where there is none, the shipped config
    it names (`paper`, `embedded`, with or without `.yaml` or the repo's `builders/configs/`).
    Why: a pip install has no repo, and `--config builders/configs/paper.yaml`, as the README and
    paper.yaml's own header write it, was "no such config file" there."""
    path = Path(config).expanduser()
    shipped = Path(str(resources.files("m1data.builders") / "configs" / f"{path.stem}.yaml"))
    named = str(config) in (path.stem, f"{path.stem}.yaml", f"builders/configs/{path.stem}.yaml")  # not ./paper.yaml
    return shipped if not path.exists() and named and shipped.is_file() else path


def default_config_path() -> Path:
    """The config a build uses when given none: the embedded model (configs/embedded.yaml);
    `m1data.jobs.build_config` reads it."""
    return Path(str(resources.files("m1data.builders") / "configs" / "embedded.yaml"))
