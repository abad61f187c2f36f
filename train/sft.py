"""Supervised fine-tuning of Qwen2.5-Instruct on m1K / m23K (or any m1data build) with TRL.

The recipes in `train/recipes/` carry s1's hyperparameters (reference s.9); any `SFTConfig` field
or script argument can be overridden on the command line after the recipe.

# One GPU (a smoke run; 7B at 32K tokens needs the FSDP setup below)
```bash
python -m m1data.train.sft --recipe train/recipes/m1-7B-1K.yaml \\
    --dataset runs/m1K/hub --output_dir runs/m1-7B-1K-smoke --max_steps 10
```

# m1-7B-1K / m1-7B-23K / m1-32B-1K on 8 GPUs (FSDP; global batch stays 16)
```bash
accelerate launch --config_file train/accelerate_fsdp.yaml -m m1data.train.sft \\
    --recipe train/recipes/m1-7B-1K.yaml --dataset <org>/m1K
accelerate launch --config_file train/accelerate_fsdp.yaml -m m1data.train.sft \\
    --recipe train/recipes/m1-7B-23K.yaml --dataset <org>/m23K
accelerate launch --config_file train/accelerate_fsdp.yaml -m m1data.train.sft \\
    --recipe train/recipes/m1-32B-1K.yaml --dataset <org>/m1K
```
(`accelerate launch ... train/sft.py ...` works the same from a checkout. Outside one, as after a
pip install, name a recipe by its name, `--recipe m1-7B-1K`, and find the FSDP file with
`python -c "import m1data.train as t, pathlib; print(pathlib.Path(t.__file__).parent / 'accelerate_fsdp.yaml')"`.)

Loss on the assistant turn only: the rows are turned into TRL's conversational prompt/completion
shape (`m1data.stages.formatting.to_prompt_completion`), for which current TRL masks every prompt token by
default (`completion_only_loss=None` -> on). The completion is the assistant turn as the chat
template renders it, i.e. ``<|im_start|>think ... <|im_start|>answer ...<|im_end|>\\n``, so the
model also learns to stop. This works with any chat template; ``assistant_only_loss`` on the
``messages`` column gives the same mask but needs ``{% generation %}`` markers (TRL >= 1.x swaps in
its own for Qwen2.5; m1data's `QWEN25_CHAT_TEMPLATE` has them). The published folder trains with
plain TRL too (`m1data.stages.formatting.hub_configs`); this wrapper adds the recipes and the global batch.

Global batch: `global_batch_size` (16, as s1) is split as per-device batch x gradient accumulation
x number of processes; the accumulation steps are derived at start-up from the number of
processes, so the same recipe gives batch 16 on 1, 2, 4, 8 or 16 GPUs.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from m1data.config import read_mapping
from m1data.errors import UserError
from m1data.redact import refuse_url_credentials

RECIPES = Path(__file__).parent / "recipes"

log = logging.getLogger(__name__)


@dataclass
class ScriptArguments:
    """What to train on; everything about *how* lives in TRL's `SFTConfig`."""

    model_name_or_path: str = field(
        default="Qwen/Qwen2.5-7B-Instruct", metadata={"help": "Base model: Hub id or local folder."}
    )
    dataset: str | None = field(
        default=None,
        metadata={"help": "Hub id or local Hub-layout folder (parquet under data/ + README) of an m1data build."},
    )
    dataset_config: str | None = field(default=None, metadata={"help": "Dataset config name, if any."})
    dataset_split: str = field(default="train", metadata={"help": "Split to train on."})
    global_batch_size: int | None = field(
        default=16,
        metadata={
            "help": "Examples per optimizer step over all processes; sets gradient_accumulation_steps. "
            "None keeps gradient_accumulation_steps as given."
        },
    )
    max_train_examples: int | None = field(
        default=None, metadata={"help": "Train on the first N rows only (smoke runs)."}
    )


@dataclass
class TrainConfig:
    """One training run: the script arguments plus TRL's `SFTConfig`."""

    script: ScriptArguments
    sft: Any  # trl.SFTConfig; typed loosely so importing this module does not import torch


def recipe_path(recipe: str | Path) -> Path:
    """A YAML path, or the name of a shipped recipe (`m1-7B-1K`, `m1-7B-23K`, `m1-32B-1K`)."""
    path = Path(recipe)
    if path.is_file():
        return path
    shipped = RECIPES / f"{recipe}.yaml"
    if shipped.is_file():
        return shipped
    names = ", ".join(sorted(p.stem for p in RECIPES.glob("*.yaml")))
    raise FileNotFoundError(f"no recipe {recipe!r}: not a file, nor one of {names}")


def load_recipe(recipe: str | Path | None = None, args: Sequence[str] = ()) -> TrainConfig:
    """Recipe YAML values become defaults; command-line style `args` override them.

    A key the recipe sets that neither dataclass knows is an error, so a typo in a recipe
    cannot silently fall back to a default hyperparameter.
    """
    path = None if recipe is None else recipe_path(recipe)  # a recipe that is not there says so, extra or not
    try:
        from trl import SFTConfig, TrlParser
    except ImportError:
        raise UserError("training needs the `train` extra: pip install 'm1data[train]' (torch first, as the README "
                        "says)") from None

    parser = TrlParser((ScriptArguments, SFTConfig))
    if path is not None:
        values = read_mapping(path)
        unknown = parser.set_defaults_with_config(**values)
        if unknown:
            raise UserError(f"unknown keys in recipe {recipe}: {unknown}")
    try:
        script, sft = parser.parse_args_into_dataclasses(args=list(args))
    except ValueError as err:  # TrainingArguments checks its values as it is built
        raise UserError(_argument_problem(err)) from None
    _refuse_credentials(sft)
    for name in ("model_name_or_path", "dataset"):  # quoted as given by every error that cannot read it
        refuse_url_credentials(getattr(script, name), f"--{name}")
    return TrainConfig(script=script, sft=sft)


HUB_TOKEN_FIELDS = ("hub_token", "push_to_hub_token")  # pad_token, eos_token: vocabulary, no secret


def _refuse_credentials(sft: Any) -> None:
    """Stop, in one line naming the setting and not its value, when a training setting holds a
    credential: `hub_token`, or a value shaped like a key (`model_init_kwargs`' `token`, an
    `hf_...` anywhere). Why: the trainer pickles every setting into `training_args.bin` in
    `output_dir` and in each checkpoint, the files a run folder is shared and uploaded with, and
    a pickle is no text any mask reads. The Hub token comes from HF_TOKEN, which nothing records."""
    from m1data.redact import redact_config

    for name, value in vars(sft).items():
        if (name in HUB_TOKEN_FIELDS and value) or redact_config(value) != value:
            raise UserError(f"training arguments: {name} holds a credential (not shown), which would be saved in "
                            "training_args.bin in output_dir and every checkpoint: the Hub token comes from HF_TOKEN")


def _argument_problem(err: ValueError) -> str:
    """One line for a setting the trainer refuses. The common one: the recipes train in bf16 on
    GPUs, and a machine without one (a CPU smoke run) must say so explicitly."""
    message = " ".join(str(err).split())
    if "bf16" in message and "support" in message:
        return ("the recipe trains in bf16, which needs a GPU this machine does not have; to train here on the CPU, "
                "pass --bf16 false --use_cpu true")
    return f"training arguments: {message}"


def _set_global_batch(script: ScriptArguments, sft: Any) -> None:
    if script.global_batch_size is None:
        return
    per_step = sft.per_device_train_batch_size * sft.world_size
    if script.global_batch_size % per_step:
        raise UserError(
            f"global_batch_size {script.global_batch_size} is not a multiple of per-device batch "
            f"{sft.per_device_train_batch_size} x {sft.world_size} processes"
        )
    sft.gradient_accumulation_steps = script.global_batch_size // per_step


TRAINING_COLUMNS = (("prompt", "completion"), ("messages",), ("prompt", "reasoning", "teacher_reply"))


def _training_rows(script: ScriptArguments):
    """The rows to train on, or one line saying why there are none. Why: an empty selection
    (``max_train_examples`` 0, an empty split) got as far as the trainer and died there with a
    bare StopIteration; rows of the wrong shape failed on the first row with a KeyError. The
    dataset itself is read by `read_dataset`, as `build --from-m23k` reads one."""
    from m1data.reading.readers import read_dataset

    if script.max_train_examples is not None and script.max_train_examples < 1:
        raise UserError(f"max_train_examples must be at least 1, got {script.max_train_examples}")
    rows = read_dataset(script.dataset, script.dataset_config, script.dataset_split)
    if script.max_train_examples is not None:
        rows = rows.select(range(min(script.max_train_examples, len(rows))))
    if len(rows) == 0:
        raise UserError(f"dataset {script.dataset} (split {script.dataset_split!r}) has no rows to train on")
    if not any(set(columns) <= set(rows.column_names) for columns in TRAINING_COLUMNS):
        wanted = " or ".join("+".join(columns) for columns in TRAINING_COLUMNS)
        raise UserError(f"dataset {script.dataset} has columns {rows.column_names}; SFT needs {wanted} "
                        "(an m1data build's Hub folder has them)")
    return rows


def build_trainer(config: TrainConfig):
    """The `SFTTrainer` of a run, with its dataset already tokenized and masked (not trained yet)."""
    from transformers import AutoTokenizer
    from trl import SFTTrainer

    from m1data.llm.hf import model_load_error
    from m1data.stages.formatting import QWEN25_CHAT_TEMPLATE, to_prompt_completion

    script, sft = config.script, config.sft
    if not script.dataset:
        raise UserError("no dataset: pass --dataset <Hub id or local folder>")
    _set_global_batch(script, sft)

    rows = _training_rows(script)

    try:
        tokenizer = AutoTokenizer.from_pretrained(script.model_name_or_path)
    except OSError as err:  # not found, offline without it cached, a malformed id: a 300-line traceback
        raise model_load_error(script.model_name_or_path, err) from None
    if tokenizer.chat_template is None:  # base checkpoints; Qwen2.5-Instruct's own renders the same
        tokenizer.chat_template = QWEN25_CHAT_TEMPLATE

    examples = to_prompt_completion(rows)
    _check_lengths(examples, tokenizer, sft.max_length)
    return SFTTrainer(
        model=script.model_name_or_path,
        args=sft,
        train_dataset=examples,
        processing_class=tokenizer,
    )


def _check_lengths(examples: Any, tokenizer: Any, max_length: int | None) -> None:
    """Say how many rows are longer than `max_length` tokens, and refuse a run none of whose
    rows keeps a token to train on. Why: TRL cuts a long row's end (`keep_start`), which is its
    answer, and drops a row whose prompt alone fills the limit, both without a word; with every
    row dropped it died in its sampler ("num_samples=0") with a traceback (audit)."""
    if not max_length:
        return
    prompts, totals = [], []
    for prompt, completion in zip(examples["prompt"], examples["completion"], strict=True):
        ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True, return_dict=True)
        prompts.append(len(ids["input_ids"]))
        totals.append(len(tokenizer.apply_chat_template(prompt + completion, tokenize=True,
                                                        return_dict=True)["input_ids"]))
    dropped = sum(n >= max_length for n in prompts)
    cut = sum(n > max_length for n in totals) - dropped
    raise_it = f"raise --max_length (the longest row is {max(totals):,} tokens)"
    if dropped == len(totals):
        raise UserError(f"every row's prompt fills max_length ({max_length:,} tokens), so no row has a token to "
                        f"train on; {raise_it}")
    if cut or dropped:
        log.warning("%d of %d rows are longer than max_length (%d tokens): TRL cuts their end, so %d train without "
                    "their answer and %d (the prompt alone fills the limit) are dropped; %s", cut + dropped,
                    len(totals), max_length, cut, dropped, raise_it)


SAVING_DIR = ".m1data-saving"  # where the final model is written inside output_dir before it is renamed in


def save_final(trainer: Any, output_dir: Path) -> None:
    """The trained model and tokenizer in `output_dir`, each file whole: written to SAVING_DIR
    inside it, put on disk, then renamed over the files of any model saved there before
    (config.json last). Why: `save_model` wrote straight into `output_dir`, so a kill while it
    saved left the model trained before with some files replaced and one cut short (a config.json
    no loader reads), or a new model half written. A save killed before the renames leaves the
    previous model as it was; what it wrote is removed by the next. Every process takes part (a
    sharded model is gathered); the main one writes and renames. With --push_to_hub the upload
    follows, as `save_model` did it."""
    from m1data.durable import fsync_folder, fsync_tree

    staging = output_dir / SAVING_DIR
    if trainer.args.should_save and staging.exists():
        shutil.rmtree(staging)  # what a killed save left
    trainer.accelerator.wait_for_everyone()
    trainer.save_model(str(staging), _internal_call=True)
    trainer.accelerator.wait_for_everyone()
    if trainer.args.should_save and staging.is_dir():
        fsync_tree(staging)
        for item in sorted(staging.iterdir(), key=lambda p: p.name == "config.json"):
            target = output_dir / item.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)  # a folder of shards a DeepSpeed save writes; a file is replaced in one rename
            item.replace(target)
        fsync_folder(output_dir)
        staging.rmdir()
    if trainer.args.push_to_hub:
        trainer.push_to_hub(commit_message="Model save", revision=trainer.args.hub_revision)


def main(config: TrainConfig):
    """Train, save the model and tokenizer to `output_dir` (`save_final`), and return the finished
    trainer. The run holds `output_dir` (`held_output_dir`) from start to end."""
    with held_output_dir(config.sft):
        trainer = build_trainer(config)
        trainer.train(resume_from_checkpoint=config.sft.resume_from_checkpoint)
        save_final(trainer, Path(config.sft.output_dir))
        if hasattr(trainer, "end"):  # transformers >= 5.18: finish trackers, destroy the process group
            trainer.end()
    return trainer


@contextlib.contextmanager
def held_output_dir(sft: Any) -> Iterator[None]:
    """`output_dir` held for one training run: a second run into it is refused at once with one
    line (`RunLocked`, exit 1, as a second build into a run folder is) while the first runs. Why:
    two runs into one output_dir were unguarded, wrote each other's checkpoints, and one's final
    save removed the other's half-written SAVING_DIR (`save_final` clears it as a killed save's).

    An OS lock (flock) on the folder itself, as `folder_lock` takes, but refused rather than
    waited for, and released by the OS however the run ends. Not the build's `run_lock`: its
    lock file would sit in the model folder, and `push_to_hub` uploads that folder.

    Only the processes that write output_dir take it (`should_save`: the main process; one per
    node with save_on_each_node), and they never wait for it: it is taken at once or refused,
    before any collective. The other processes of a distributed job never touch it, so none can
    wait on a lock the main process holds across a collective (a barrier, the gather of a
    sharded model), where a waiting lock would leave the processes waiting on each other forever.
    A refused main process exits before the first collective, and the launcher (torchrun,
    accelerate) stops the job's other processes, as when any process fails."""
    if not sft.should_save:
        yield
        return
    import fcntl
    import os

    from m1data.errors import storage_errors
    from m1data.running.pipeline import RunLocked

    output_dir = Path(sft.output_dir)
    with storage_errors(output_dir):  # a read-only or full disk: one line, before the model loads
        output_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(output_dir, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLocked(f"{output_dir} is in use by another training run; wait for it to finish or "
                            "train into another --output_dir") from None
        yield
    finally:
        os.close(fd)  # releases the lock


def parse_cli(argv: Sequence[str]) -> TrainConfig:
    """`--recipe PATH` anywhere in `argv`, every other flag an override (see `load_recipe`)."""
    argv = list(argv)
    recipe = None
    if "--recipe" in argv:
        at = argv.index("--recipe")
        recipe = argv[at + 1]
        del argv[at : at + 2]
    return load_recipe(recipe, argv)


if __name__ == "__main__":  # `m1data train`: its one-line errors and exit codes, not a traceback
    from m1data.cli import main as command_line

    command_line(["train", *sys.argv[1:]])
