"""Dedup and decontamination under the short path the design names: ``from m1data.dedup import
decontaminate``.

They live in m1data.stages.dedup beside the other stages; this module only gives them the path
researchers are told to import (an import of it failed before: library audit)."""

from m1data.stages.dedup import EvalText, decontaminate, deduplicate, eval_items, match_keys

__all__ = ["EvalText", "decontaminate", "deduplicate", "eval_items", "match_keys"]
