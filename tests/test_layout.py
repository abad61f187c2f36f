"""One home for each kind of knowledge, and a module graph without cycles (issue 20 item 3):
the source registry, the one redaction module, the one config-file reader, an offline tagger
that loads no LLM machinery, and no two modules that import each other."""

from __future__ import annotations

import ast
import graphlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

from m1data.reading.registry import SOURCE_REGISTRY, pretty_name

ROOT = Path(__file__).resolve().parents[1]
# installed name -> folder (pyproject's package-dir)
PACKAGES = {"m1data": ROOT / "m1data", "m1data.builders": ROOT / "builders", "m1data.cards": ROOT / "cards",
            "m1data.train": ROOT / "train", "m1data.infer": ROOT / "infer"}


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = [p for p in path.relative_to(folder).with_suffix("").parts if p != "__init__"]
            found[".".join([package, *parts])] = path
    return found


def _imports(tree: ast.AST) -> list[tuple[str, list[str]]]:
    """(module, names) of every absolute import, at any depth, outside `if TYPE_CHECKING:`."""
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
               for n in ast.walk(node)}
    out = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.module, [a.name for a in node.names]))
    return out


def import_graph() -> dict[str, set[str]]:
    """Module -> the m1data modules it imports, function-local imports included (a cycle hidden
    inside a function is still a cycle). `from package import submodule` is an edge to the
    submodule, and a package's own submodules importing it are not edges back."""
    known = modules()
    graph: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        for module, names in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            targets = [f"{module}.{n}" for n in names if f"{module}.{n}" in known] or [module]
            for target in targets:
                while target and target not in known:
                    target = target.rpartition(".")[0]
                if target and target != name and target != "m1data" and not name.startswith(target + "."):
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """A cycle of imports if there is one (the first graphlib meets), else none."""
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as err:
        return [err.args[1][:-1]]  # graphlib repeats the cycle's first module at its end
    return []


def test_no_module_imports_one_that_imports_it_back():
    graph = import_graph()
    sources, evalsets = "m1data.reading.sources", "m1data.reading.evalsets"
    assert evalsets not in graph[sources] or sources not in graph[evalsets]
    assert cycles(graph) == []


def test_the_cycle_check_sees_a_cycle_hidden_in_a_function():
    graph = import_graph()
    graph["m1data.reading.native"].add("m1data.reading.sources")  # as a function-local import would add it
    assert any({"m1data.reading.native", "m1data.reading.sources"} <= set(c) for c in cycles(graph)), cycles(graph)


def test_the_offline_tagger_loads_no_llm_machinery():
    code = ("import sys, m1data.stages.mesh_offline, m1data.stages.mesh_eval\n"
            "llm = sorted(m for m in sys.modules if m.startswith('m1data.llm') or m == 'm1data.stages.mesh'"
            " or m.split('.')[0] in ('openai', 'tiktoken'))\n"  # httpx: huggingface_hub 1.x imports it itself
            "assert not llm, llm\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_one_redaction_module():
    """Secret patterns and masks are defined in m1data/redact.py only; every writer imports them."""
    shapes = re.compile(r"Bearer\\s|\[redacted\]|\"\*\*\*\"|api_?key\|token\|secret")
    defined = sorted(str(path.relative_to(ROOT)) for path in modules().values() if shapes.search(path.read_text(encoding="utf-8")))
    assert defined == ["m1data/redact.py"]
    from m1data.cards import render

    from m1data.llm import http
    from m1data.redact import mask_secret, redact_config

    assert http.mask_secret is mask_secret and render.redact_config is redact_config


def test_one_reader_of_config_files():
    """Configs and recipes are read by m1data.config.read_mapping; no other module parses YAML
    files (the card's front matter is YAML inside a card, read by m1data.publishing.cardmeta)."""
    readers = sorted(str(path.relative_to(ROOT)) for path in modules().values()
                     if "yaml.safe_load(" in path.read_text(encoding="utf-8"))
    assert readers == ["m1data/config.py", "m1data/publishing/cardmeta.py"]
    names = {n for path in modules().values() for n in re.findall(r"^def (load_\w*config\w*)\(", path.read_text(encoding="utf-8"), re.M)}
    assert names == {"load_config"}


@pytest.mark.parametrize("name", sorted(SOURCE_REGISTRY))
def test_every_reader_of_source_facts_reads_the_registry(name):
    from m1data.cards.figures import SOURCE_COLOURS
    from m1data.cards.render import SOURCE_INFO

    from m1data.reading.sources import get_source
    from m1data.schema import SOURCES

    record = SOURCE_REGISTRY[name]
    assert name in SOURCES and list(SOURCES) == list(SOURCE_REGISTRY)
    source = get_source(name)
    assert (source.hub_id, source.hub_config) == (record.hub_id, record.hub_config)
    info = SOURCE_INFO[name]
    assert (info.name, info.licence, info.terms, info.citation, info.hub_id, info.url) == (
        record.title, record.licence, record.terms, record.citation, record.hub_id, record.url)
    assert SOURCE_COLOURS[name] == record.colour and pretty_name(name) == record.pretty_name


def test_source_facts_are_typed_once():
    """A Hub id or a citation written outside the registry would be a second copy to drift."""
    facts = [f for r in SOURCE_REGISTRY.values() for f in (r.hub_id, r.citation[:40], r.url)]  # colours are a palette
    for module, path in modules().items():
        if module == "m1data.reading.registry":
            continue
        text = path.read_text(encoding="utf-8")
        assert not [f for f in facts if f in text], module


def test_the_readme_tree_names_every_module():
    """The README's tree of m1data/ is how a newcomer finds a module: it lists each module once, in
    its subpackage, and no module that is gone (llm/ is summarised in one line)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    tree = readme.split("Inside `m1data/`, one module per idea", 1)[1].split("```", 2)[1]
    listed, folder = set(), ""
    for line in tree.splitlines()[1:]:
        name = line.split()[0] if line.strip() else ""
        depth = (len(line) - len(line.lstrip())) // 2
        if name.endswith("/"):
            folder = name if depth == 1 else folder
        elif name.endswith(".py"):
            listed.add((folder if depth == 2 else "") + name)
    on_disk = {str(p.relative_to(ROOT / "m1data")) for p in (ROOT / "m1data").rglob("*.py")
               if p.name != "__init__.py" and p.parent.name != "llm"}
    assert listed == on_disk


def test_the_readme_s_submodules_are_reached_through_the_package():
    # `import m1data; m1data.output.enable()` (README) raised AttributeError: __getattr__ knew only
    # the top-level names; `import m1data` must still import none of them until asked
    code = (
        "import sys, m1data\n"
        "assert 'm1data.output' not in sys.modules and 'm1data.jobs' not in sys.modules\n"
        "m1data.output.enable(); m1data.output.disable()\n"
        "assert callable(m1data.jobs.run_dedup_file)\n"
        # the short paths the design gives researchers (they failed to import)
        "from m1data.sampling import stratified_sample\n"
        "from m1data.dedup import decontaminate\n"
        "import m1data.stages.sampling as s, m1data.stages.dedup as d\n"
        "assert stratified_sample is s.stratified_sample and decontaminate is d.decontaminate\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def locale_dependent_text_io(tree: ast.AST) -> list[int]:
    """Lines that read or write text in the locale's encoding: `open(...)` in text mode,
    `.open("w")`-style calls and `.read_text()`/`.write_text()`, with no `encoding=`."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or any(k.arg == "encoding" for k in node.keywords):
            continue
        func = node.func
        mode = next((k.value for k in node.keywords if k.arg == "mode"), None)
        if isinstance(func, ast.Name) and func.id == "open":
            mode = mode or (node.args[1] if len(node.args) > 1 else ast.Constant("r"))
        elif isinstance(func, ast.Attribute) and func.attr in ("read_text", "write_text"):
            mode = ast.Constant("r")
        elif isinstance(func, ast.Attribute) and func.attr == "open" and node.args:
            mode = mode or node.args[0]
        if isinstance(mode, ast.Constant) and isinstance(mode.value, str) and "b" not in mode.value \
                and set(mode.value) <= set("rwaxt+"):
            found.append(node.lineno)
    return found


def test_text_files_are_read_and_written_as_utf_8_whatever_the_locale():
    """A machine's locale may be Latin-1 or ASCII (LC_ALL=C with PYTHONUTF8=0), where Python's
    default text encoding is not UTF-8: a chat template, a prices file or a record m1data wrote
    with a non-ASCII character was then misread or refused there. Every text file names its
    encoding."""
    found = {f"{path.relative_to(ROOT)}:{line}" for path in modules().values()
             for line in locale_dependent_text_io(ast.parse(path.read_text(encoding="utf-8")))}
    assert found == set()
    planted = ast.parse("Path(p).read_text()\nopen(p)\nopen(p, 'rb')\nf.open('w')\nopen(p, encoding='utf-8')\n")
    assert locale_dependent_text_io(planted) == [1, 2, 4]


def test_the_sdist_ships_the_package_whole_and_no_half_test_suite(tmp_path):
    """setuptools' default put 21 top-level test files in the sdist, a suite that cannot run
    without the rest of the repository; and a wheel built from the sdist must hold what one built
    from the repository holds (a data file left out of the sdist would vanish from it)."""
    import zipfile

    if not (ROOT / ".git").exists():
        pytest.skip("needs the repository (git archive)")
    # the build backend pyproject asks for (a venv of Python 3.12+ has no setuptools, one of 3.11 an older one)
    pytest.importorskip("setuptools", minversion="75", reason="needs setuptools>=75, the build backend")
    tree = tmp_path / "tree"
    tree.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "HEAD"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)

    def build(where: Path, kind: str, out: Path) -> Path:
        out.mkdir(exist_ok=True)
        code = f"import sys; from setuptools import build_meta; print(build_meta.build_{kind}(sys.argv[1]))"
        done = subprocess.run([sys.executable, "-c", code, str(out)], cwd=where, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        return out / done.stdout.split()[-1]

    sdist = build(tree, "sdist", tmp_path / "sdist")
    names = subprocess.run(["tar", "-tzf", str(sdist)], capture_output=True, text=True, check=True).stdout.split()
    (tmp_path / "unpacked").mkdir()
    subprocess.run(["tar", "-xzf", str(sdist), "-C", str(tmp_path / "unpacked")], check=True)
    assert not [n for n in names if "/tests/" in n] and any(n.endswith("/m1data/cli.py") for n in names)
    from_sdist = build(next((tmp_path / "unpacked").iterdir()), "wheel", tmp_path / "a")
    from_tree = build(tree, "wheel", tmp_path / "b")
    assert sorted(zipfile.ZipFile(from_sdist).namelist()) == sorted(zipfile.ZipFile(from_tree).namelist())
