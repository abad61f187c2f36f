"""SFT entry point: recipes, completion-only loss as TRL tokenizes it, and a real CPU training run
on a tiny random Qwen2-shaped model built at test time (no downloads)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import datasets
import pytest

pytest.importorskip("trl")

from m1data.errors import UserError  # noqa: E402
from m1data.train.sft import RECIPES, SAVING_DIR, build_trainer, load_recipe, main, parse_cli  # noqa: E402

from m1data.stages.formatting import render_chat  # noqa: E402
from tiny_model import trained_labels  # noqa: E402

ROWS = [
    {
        "id": f"r{i}",
        "source": "medqa",
        "prompt": f"Question {i}: a patient has fever {i}. Which drug?\nA. aspirin\nB. ibuprofen",
        "options": ["aspirin", "ibuprofen"],
        "answer_idx": i % 2,
        "reasoning": f"Fever {i} points to option {'AB'[i % 2]}.",
        "teacher_reply": f"The answer is \\boxed{{{'AB'[i % 2]}}}" if i % 2 else "Answer: A",
    }
    for i in range(4)
]

# Small and CPU-only; everything else comes from the recipe under test.
TINY_OVERRIDES = [
    "--bf16", "false", "--use_cpu", "true", "--activation_checkpointing", "false",
    "--max_length", "512", "--model_init_kwargs", '{"dtype": "float32"}', "--dataloader_num_workers", "0",
    "--logging_steps", "1", "--disable_tqdm", "true",
]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    from tiny_model import save_tiny

    return Path(save_tiny(tmp_path_factory.mktemp("tiny-qwen2")))


@pytest.fixture(scope="module")
def hub_folder(tmp_path_factory) -> Path:
    """A Hub-layout dataset folder (parquet under data/ + README), as m1data publishes."""
    root = tmp_path_factory.mktemp("m1K")
    (root / "data").mkdir()
    datasets.Dataset.from_list(ROWS).to_parquet(str(root / "data" / "train-00000-of-00001.parquet"))
    (root / "README.md").write_text(
        "---\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n    path: data/train-*\n---\n"
    )
    return root


def tiny_config(tiny_dir: Path, hub_folder: Path, out: Path, *extra: str):
    return parse_cli(
        ["--recipe", "m1-7B-1K", "--model_name_or_path", str(tiny_dir), "--dataset", str(hub_folder),
         "--output_dir", str(out), *TINY_OVERRIDES, *extra]
    )


@pytest.mark.parametrize("name", ["m1-7B-1K", "m1-7B-23K", "m1-32B-1K"])
def test_recipes_carry_s1_hyperparameters(name):
    config = load_recipe(RECIPES / f"{name}.yaml", ["--dataset", "x", "--use_cpu", "true", "--bf16", "false"])
    sft, script = config.sft, config.script
    assert script.model_name_or_path == ("Qwen/Qwen2.5-32B-Instruct" if "32B" in name else "Qwen/Qwen2.5-7B-Instruct")
    assert (sft.num_train_epochs, sft.learning_rate, sft.weight_decay) == (5, 1e-5, 1e-4)
    assert (sft.adam_beta1, sft.adam_beta2, sft.warmup_steps) == (0.9, 0.95, 0.05)
    assert sft.lr_scheduler_type.value == "cosine" and sft.max_length == 32768
    assert script.global_batch_size == 16 and sft.per_device_train_batch_size == 1
    assert sft.model_init_kwargs == {"dtype": "bfloat16"}
    assert sft.output_dir == f"runs/{name}"
    # the YAML says bf16: true; only this CPU test turns it off
    assert load_recipe(name, ["--use_cpu", "true"]).sft.bf16 is True


def test_unknown_recipe_key_and_name(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("learning_rte: 1e-4\n")
    with pytest.raises(ValueError, match="learning_rte"):
        load_recipe(bad)
    with pytest.raises(FileNotFoundError, match="m1-7B-1K"):
        load_recipe("m1-70B")


def test_labels_mask_every_prompt_token_and_no_assistant_token(tiny_dir, hub_folder, tmp_path):
    trainer = build_trainer(tiny_config(tiny_dir, hub_folder, tmp_path))
    tokenizer = trainer.processing_class
    # global batch 16 on one process with per-device batch 1 -> 16 accumulation steps
    assert trainer.args.gradient_accumulation_steps == 16
    assert len(trainer.train_dataset) == len(ROWS)
    for row, example in zip(ROWS, trainer.train_dataset):
        ids, labels = example["input_ids"], trained_labels(trainer, example)
        assert len(ids) == len(labels)
        n_prompt = sum(label == -100 for label in labels)
        # masked tokens are exactly the prompt as rendered for generation, and they come first
        prompt_ids = tokenizer.apply_chat_template(
            [{"role": "user", "content": row["prompt"]}], add_generation_prompt=True, tokenize=True, return_dict=True
        )["input_ids"]
        assert ids[:n_prompt] == list(prompt_ids)
        assert all(label == -100 for label in labels[:n_prompt])
        assert labels[n_prompt:] == ids[n_prompt:]
        assert tokenizer.decode(ids[:n_prompt]) == render_chat(
            [{"role": "user", "content": row["prompt"]}], add_generation_prompt=True
        )
        # every assistant token is trained, including the end-of-turn token
        completion = tokenizer.decode(ids[n_prompt:])
        assert completion.startswith("<|im_start|>think\n" + row["reasoning"] + "\n<|im_start|>answer\nAnswer: ")
        assert completion.endswith("<|im_end|>\n")
    # a batch keeps each example's mask and masks padding too
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(ROWS))])
    for i, example in enumerate(trainer.train_dataset):
        n = len(example["input_ids"])
        assert batch["labels"][i, :n].tolist() == trained_labels(trainer, example)
        assert (batch["labels"][i, n:] == -100).all()


@pytest.mark.slow
def test_cpu_training_loss_goes_down(tiny_dir, hub_folder, tmp_path):
    out = tmp_path / "run"
    config = tiny_config(
        tiny_dir, hub_folder, out,
        "--max_steps", "30", "--learning_rate", "3e-3", "--warmup_steps", "0", "--lr_scheduler_type", "constant",
        "--global_batch_size", "4", "--per_device_train_batch_size", "4",
    )
    trainer = main(config)
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    assert len(losses) == 30
    assert losses[-1] < 0.7 * losses[0]
    assert (out / "config.json").is_file() and (out / "tokenizer_config.json").is_file()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="the bf16 refusal is for machines without a GPU")
def test_a_bf16_recipe_on_a_cpu_machine_is_one_line_naming_the_flag(tiny_dir, tmp_path):
    """Issue 23 item 5: was a 97-line traceback from TrainingArguments."""
    import subprocess
    import sys

    with pytest.raises(UserError, match="--bf16 false --use_cpu true"):
        parse_cli(["--recipe", "m1-7B-1K", "--model_name_or_path", str(tiny_dir), "--dataset", "x"])
    proc = subprocess.run(
        [sys.executable, "-c", "from m1data.cli import main; main()", "train", "--recipe", "m1-7B-1K",
         "--model_name_or_path", str(tiny_dir), "--dataset", "x", "--output_dir", str(tmp_path / "out")],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "--bf16 false" in proc.stderr


HUB_TOKEN = "hf_FakeTrainTokenQwErTy1234567890"


@pytest.mark.parametrize("flags", [["--hub_token", HUB_TOKEN],
                                   ["--model_init_kwargs", json.dumps({"dtype": "float32", "token": HUB_TOKEN})]])
def test_a_token_among_the_training_arguments_is_one_line_and_never_saved(tiny_dir, hub_folder, tmp_path, flags):
    """`m1data train ... --hub_token hf_...` trained, and the trainer pickled the token into
    output_dir/training_args.bin (and each checkpoint's), the files a run folder is shared with;
    no mask reads a pickle. Now a credential among the settings stops the run before anything is
    written, in one line that names the setting and not the token."""
    import subprocess
    import sys

    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-c", "from m1data.cli import main; main()", "train", "--recipe", "m1-7B-1K",
         "--model_name_or_path", str(tiny_dir), "--dataset", str(hub_folder), "--output_dir", str(out),
         *TINY_OVERRIDES, "--max_steps", "1", *flags],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "holds a credential" in proc.stderr, proc.stderr
    assert HUB_TOKEN not in proc.stdout + proc.stderr
    assert not any(HUB_TOKEN.encode() in path.read_bytes() for path in out.rglob("*") if path.is_file())


@pytest.mark.parametrize("name", ["dataset", "model_name_or_path"])
def test_a_url_with_credentials_for_the_model_or_dataset_is_one_line_without_them(tiny_dir, hub_folder, name):
    """`--dataset https://me:<password>@huggingface.co/...` was quoted whole by the reader's error
    line, and the same for `--model_name_or_path` by a traceback of the Hub's: the password on the
    terminal and in CI logs. Now either is refused before anything reads it, without the password."""
    given = {"dataset": str(hub_folder), "model_name_or_path": str(tiny_dir),
             name: "https://me:Pw9Zq7Wx3Vb5@huggingface.co/org/x"}
    with pytest.raises(UserError, match=f"--{name} https://huggingface.co/org/x carries credentials") as err:
        parse_cli(["--recipe", "m1-7B-1K", "--model_name_or_path", given["model_name_or_path"],
                   "--dataset", given["dataset"], *TINY_OVERRIDES])
    assert "Pw9Zq7Wx3Vb5" not in str(err.value)


@pytest.fixture(scope="module")
def published_folder(tmp_path_factory) -> Path:
    """A Hub folder laid out as a build writes `runs/m1k/hub`: the default config (every column,
    ``prompt`` published as ``user_prompt``, with ``messages``) and its prompt-completion config."""
    from m1data.publishing.hub import write_hub_folder
    from m1data.stages.formatting import hub_configs, to_sft

    rows = to_sft(datasets.Dataset.from_list(ROWS))
    configs = {name: {"train": view} for name, view in hub_configs(rows, "m1k").items()}
    return write_hub_folder(tmp_path_factory.mktemp("run") / "hub", configs, "# m1k\n")


@pytest.mark.parametrize("config", [None, "m1k", "m1k-prompt-completion"])
def test_a_builds_hub_folder_trains_from_each_of_its_configs(tiny_dir, published_folder, tmp_path, config):
    extra = ["--dataset_config", config] if config else []
    trainer = build_trainer(tiny_config(tiny_dir, published_folder, tmp_path, *extra))
    assert len(trainer.train_dataset) == len(ROWS)
    tokenizer = trainer.processing_class
    first = trainer.train_dataset[0]
    n_prompt = sum(label == -100 for label in trained_labels(trainer, first))
    assert tokenizer.decode(first["input_ids"][n_prompt:]).startswith("<|im_start|>think\n" + ROWS[0]["reasoning"])


def _rows_folder(root: Path, rows: list[dict]) -> Path:
    (root / "data").mkdir(parents=True)
    datasets.Dataset.from_list(rows).to_parquet(str(root / "data" / "train-00000-of-00001.parquet"))
    return root


@pytest.mark.parametrize(
    ("dataset", "extra", "message"),
    [
        ("published", ["--dataset_config", "m1k-typo"], r"BuilderConfig 'm1k-typo' not found"),
        ("published", ["--dataset_split", "test"], r'Unknown split "test"'),
        ("published", ["--max_train_examples", "0"], "max_train_examples must be at least 1"),
        ("no_columns", [], r"has columns \['id', 'question', 'answer'\]; SFT needs"),
        ("no_prompt", [], r"has columns \['reasoning', 'teacher_reply'\]; SFT needs"),
    ],
)
def test_dataset_problems_are_one_user_error(tiny_dir, published_folder, tmp_path, dataset, extra, message):
    """A config or split the folder does not have was a ValueError from `datasets` (an 'internal
    error' with a traceback on the command line), --max_train_examples 0 died in the trainer with
    a bare StopIteration, and rows without a prompt column with a KeyError on the first row."""
    folders = {
        "published": published_folder,
        "no_columns": _rows_folder(tmp_path / "a", [{"id": "a", "question": "q", "answer": "x"}]),
        "no_prompt": _rows_folder(tmp_path / "b", [{"reasoning": "r", "teacher_reply": "Answer: A"}]),
    }
    with pytest.raises(UserError, match=message):
        build_trainer(tiny_config(tiny_dir, folders[dataset], tmp_path / "out", *extra))


def test_a_wrong_dataset_config_on_the_command_line_is_one_line(tiny_dir, published_folder, tmp_path):
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", "from m1data.cli import main; main()", "train", "--recipe", "m1-7B-1K",
         "--model_name_or_path", str(tiny_dir), "--dataset", str(published_folder), "--dataset_config", "m1k-typo",
         "--output_dir", str(tmp_path / "out"), *TINY_OVERRIDES],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "m1k-prompt-completion" in proc.stderr  # the configs there are


def test_dataset_may_be_a_rows_file_and_a_missing_one_is_one_line(tiny_dir, hub_folder, tmp_path, monkeypatch):
    """`m1data train --dataset rows.parquet` sent the file name to load_dataset as a Hub id
    (ConnectionError traceback offline); so did a name that is nowhere. A rows file is read as rows
    (here the Hub folder's own data file), and a missing name is one line."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data_file = next((hub_folder / "data").glob("*.parquet"))
    trainer = build_trainer(tiny_config(tiny_dir, data_file, tmp_path / "out"))
    assert len(trainer.train_dataset) == len(ROWS)
    with pytest.raises(UserError, match="no such file or folder, and the Hub could not give it"):
        build_trainer(tiny_config(tiny_dir, tmp_path / "nosuch", tmp_path / "out"))


def test_a_run_folder_given_for_its_hub_folder_is_one_line(tiny_dir, hub_folder, tmp_path):
    """`--dataset runs/m1k` (the run folder, not runs/m1k/hub): datasets read its stage files as one
    dataset and failed on their differing columns. Train reads datasets as `build --from-m23k` does."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(hub_folder, run / "hub")
    (run / "builds.json").write_text('{"builds": []}\n', encoding="utf-8")
    with pytest.raises(UserError, match=r"is a run folder, not a dataset .*its Hub-layout folders: .*hub \(unknown\)"):
        build_trainer(tiny_config(tiny_dir, run, tmp_path / "out"))


@pytest.mark.slow
def test_a_training_killed_while_it_saves_keeps_the_model_saved_before(tiny_dir, hub_folder, tmp_path):
    """The final save wrote each file straight into output_dir: killed while it wrote config.json,
    the model trained before was left with a config cut short (no longer loadable), its other
    files already half replaced. The files of the new model are written beside and renamed in
    once all are whole; the same command again saves it."""
    from kill_points import killed_writing
    from transformers import AutoModelForCausalLM

    out = tmp_path / "run"
    args = ["--recipe", "m1-7B-1K", "--model_name_or_path", tiny_dir, "--dataset", hub_folder, "--output_dir", out,
            *TINY_OVERRIDES, "--max_steps", "1", "--global_batch_size", "4", "--per_device_train_batch_size", "4",
            "--warmup_steps", "0", "--lr_scheduler_type", "constant"]  # so the one step changes the weights
    main(parse_cli([*map(str, args), "--learning_rate", "1e-3"]))
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert {"config.json", "model.safetensors"} <= set(before)

    killed = killed_writing("config.json", ["train", *args, "--learning_rate", "3e-3"])
    assert killed.returncode == -9, killed.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before

    again = killed_writing("no-such-file", ["train", *args, "--learning_rate", "3e-3"])
    assert again.returncode == 0, again.stderr
    assert (out / "model.safetensors").read_bytes() != before["model.safetensors"]
    AutoModelForCausalLM.from_pretrained(out)
    assert sorted(p.name for p in out.iterdir()) == sorted(before)


@pytest.mark.slow
def test_a_second_training_into_an_output_dir_in_use_is_refused_and_leaves_the_first_save_whole(
        tiny_dir, hub_folder, tmp_path):
    """Two `m1data train` runs into one output_dir at once were unguarded: the second's final save
    cleared the fixed SAVING_DIR, deleting the first's half-written save under it. While one run
    holds the folder (here: held in its final save, writing config.json) a second is refused at
    once with one line (exit 1, as a second build is); the first then finishes with a model that loads."""
    import subprocess
    import sys
    import time

    from kill_points import held_writing
    from transformers import AutoModelForCausalLM

    out, release = tmp_path / "run", tmp_path / "release"
    args = ["train", "--recipe", "m1-7B-1K", "--model_name_or_path", tiny_dir, "--dataset", hub_folder,
            "--output_dir", out, *TINY_OVERRIDES, "--max_steps", "1", "--global_batch_size", "4",
            "--per_device_train_batch_size", "4"]
    first = held_writing("config.json", args, release)
    try:
        deadline = time.monotonic() + 600
        while not release.with_name("release.held").exists():
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.1)
        second = subprocess.run([sys.executable, "-c", "from m1data.cli import main; main()", *map(str, args)],
                                capture_output=True, text=True, timeout=600)
        assert second.returncode == 1, second.stderr
        assert "in use by another training run" in second.stderr and "Traceback" not in second.stderr
    finally:
        release.touch()
        stdout, stderr = first.communicate(timeout=600)
    assert first.returncode == 0, stderr
    AutoModelForCausalLM.from_pretrained(out)
    assert not (out / SAVING_DIR).exists()


@pytest.mark.parametrize("model", ["org/no-such-model", "/no/such/model", "bad name!!"])
def test_a_model_that_cannot_be_loaded_is_one_line(hub_folder, tmp_path, monkeypatch, model):
    """A model id not cached while offline (or a missing folder, a malformed id) came out of
    transformers as an OSError: 'internal error' and a 300-line traceback."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = parse_cli(["--recipe", "m1-7B-1K", "--model_name_or_path", model, "--dataset", str(hub_folder),
                        "--output_dir", str(tmp_path / "out"), *TINY_OVERRIDES])
    with pytest.raises(UserError, match=f"^cannot load model '{re.escape(model)}': ") as err:
        build_trainer(config)
    assert len(str(err.value).splitlines()) == 1


def test_rows_over_max_length_are_counted_and_a_limit_no_row_fits_is_one_line(tiny_dir, hub_folder, tmp_path, caplog):
    """TRL cuts a long row's end (its answer) and drops a row whose prompt fills the limit, without
    a word; with every row dropped it died with a traceback deep in its sampler (audit)."""
    trainer = build_trainer(tiny_config(tiny_dir, hub_folder, tmp_path / "full"))
    longest = max(len(example["input_ids"]) for example in trainer.train_dataset)
    with caplog.at_level("WARNING", logger="m1data.train.sft"):
        build_trainer(tiny_config(tiny_dir, hub_folder, tmp_path / "cut", "--max_length", str(longest - 1)))
    assert f"rows are longer than max_length ({longest - 1} tokens)" in caplog.text
    assert f"the longest row is {longest} tokens" in caplog.text
    with pytest.raises(UserError, match="every row's prompt fills max_length"):
        build_trainer(tiny_config(tiny_dir, hub_folder, tmp_path / "none", "--max_length", "8"))
