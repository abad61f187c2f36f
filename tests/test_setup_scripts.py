"""scripts/setup_env.sh (the set-up both README commands share) on machines unlike the one it was
written on. It runs here against stand-ins for `python3 -m venv` and the venv's pip that behave as
the real ones do in the case at hand (pip on plain PyPI resolves `torch==2.13.0` to the CUDA build
and has no `+cpu` one; pip with PIP_USER=1 refuses to install into a venv; a venv's scripts name
the folder it was made in), so each case takes a second, needs no network and installs nothing."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from test_python_versions import interpreter  # tests/ is on sys.path (pytest's default import mode)

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ("setup_env.sh", "cpu_torch.sh", "install_embedded.sh")
CPU_INDEX = "https://download.pytorch.org/whl/cpu"

pytestmark = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("bash", "sha256sum", "flock")),
    reason="needs bash, sha256sum and flock (util-linux)",
)

# `python3`: --version, -c (the real one), and `-m venv [--clear] .venv`, which writes the venv's pip and python below
# with the folder the venv was made in, as the #! line of a real venv's scripts does. Like the real
# one (ensurepip), it keeps a pip it finds.
FAKE_PYTHON3 = textwrap.dedent("""\
    #!/usr/bin/env bash
    set -eu
    if [ "$1" = --version ]; then echo "Python 3.11.0"; exit 0; fi
    [ "$1" = -c ] && exec "$REAL_PYTHON" "$@"
    [ "$1 $2" = "-m venv" ] || { echo "fake python3: $*" >&2; exit 2; }
    shift 2
    [ "$1" = --clear ] && { rm -rf "$2"; shift; }
    mkdir -p "$1/bin"
    made_in="$(cd "$1" && pwd -P)"
    for tool in pip python; do
        [ "$tool" = pip ] && [ -e "$1/bin/pip" ] && continue
        printf '#!/usr/bin/env bash\\nexec bash "%s" "%s" "$0" "$@"\\n' "$FAKE_TOOLS/$tool" "$made_in" > "$1/bin/$tool"
        chmod +x "$1/bin/$tool"
    done
    echo "venv $*" >> "$CALLS"
""")

# Shared by both tools: a script run from a venv that was moved fails as a real one does.
MOVED = textwrap.dedent("""\
    made_in="$1"; me="$2"; shift 2
    venv="$(cd "$(dirname "$me")/.." && pwd -P)"
    [ "$venv" = "$made_in" ] || { echo "$me: $made_in/bin/python: bad interpreter: No such file or directory" >&2; exit 126; }
""")

# The venv's pip on plain PyPI (with FAKE_CPU_TORCH_HERE=1: plus a configured wheel folder that has
# the CPU build, as pip.conf's find-links on the machine this was written on; with
# FAKE_NO_CPU_INDEX=1, download.pytorch.org cannot be reached).
FAKE_PIP = "#!/usr/bin/env bash\nset -eu\n" + MOVED + textwrap.dedent("""\
    echo "pip $*" >> "$CALLS"
    if [ -e "$venv/busy" ]; then echo overlap >> "$CALLS"; fi
    touch "$venv/busy"; sleep "${FAKE_PIP_SECONDS:-0}"; rm -f "$venv/busy"
    case "${PIP_USER:-}" in 1|true|yes|on)
        echo "ERROR: Can not perform a '--user' install. User site-packages are not visible in this virtualenv." >&2
        exit 1;;
    esac
    [ "$1" = install ] || exit 0
    for arg in "$@"; do
        case "$arg" in
            torch==2.13.0+cpu)
                if { [[ "$*" != *"--extra-index-url $CPU_INDEX"* ]] || [ "${FAKE_NO_CPU_INDEX:-0}" = 1 ]; } \
                        && [ "${FAKE_CPU_TORCH_HERE:-0}" != 1 ]; then
                    echo "ERROR: No matching distribution found for torch==2.13.0+cpu" >&2; exit 1
                fi
                echo cpu > "$venv/torch";;
            torch==2.13.0)
                [ -e "$venv/torch" ] || echo "cuda (nvidia-cudnn-cu13, cuda-toolkit, ...)" > "$venv/torch";;
        esac
    done
""")

FAKE_VENV_PYTHON = "#!/usr/bin/env bash\nset -eu\n" + MOVED + 'echo "python $*" >> "$CALLS"\n'


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """A folder with what setup_env.sh reads (pyproject.toml and the scripts it runs or sources)."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "pyproject.toml", repo)
    for name in SCRIPTS:
        shutil.copy(ROOT / "scripts" / name, repo / "scripts" / name)
    tools = tmp_path / "tools"
    (tools / "bin").mkdir(parents=True)
    (tools / "bin" / "python3").write_text(FAKE_PYTHON3)
    (tools / "bin" / "python3").chmod(0o755)
    (tools / "pip").write_text(FAKE_PIP)
    (tools / "python").write_text(FAKE_VENV_PYTHON)
    return repo


def setup_env(repo: Path, extras: str = "llm", wait: bool = True, **env: str):
    """Run the repo's scripts/setup_env.sh with the fake python3 first on PATH."""
    tools = repo.parent / "tools"
    full_env = {
        # the caller's own M1DATA_PYTHON would replace the stand-in python3
        **{k: v for k, v in os.environ.items() if not k.startswith("PIP_") and k != "M1DATA_PYTHON"},
        "PATH": f"{tools / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "FAKE_TOOLS": str(tools),
        "CALLS": str(repo.parent / "calls.log"),
        "CPU_INDEX": CPU_INDEX,
        "REAL_PYTHON": sys.executable,
        **env,
    }
    process = subprocess.Popen(["bash", str(repo / "scripts" / "setup_env.sh"), extras], env=full_env,
                               cwd="/", stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if not wait:
        return process
    out, _ = process.communicate(timeout=60)
    return subprocess.CompletedProcess(process.args, process.returncode, out)


def calls(repo: Path) -> list[str]:
    path = repo.parent / "calls.log"
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def test_torch_is_the_cpu_build_on_a_machine_with_plain_pypi(clone):
    """On PyPI, torch's Linux wheel is the CUDA build (some 3 GB of nvidia-* wheels come with it):
    the set-up pins the +cpu build, which PyTorch's CPU index has."""
    done = setup_env(clone)
    assert done.returncode == 0, done.stdout
    if os.uname().sysname == "Linux":
        assert (clone / ".venv" / "torch").read_text(encoding="utf-8").strip() == "cpu"
    else:
        assert not any("+cpu" in call for call in calls(clone))


@pytest.mark.skipif(os.uname().sysname != "Linux", reason="the +cpu build is a Linux one")
def test_a_cpu_torch_pip_is_configured_with_is_used_without_pytorchs_index(clone):
    """A machine whose pip already has the CPU build (a wheel folder or mirror in pip.conf), and that
    may not reach download.pytorch.org, installs it without asking that index."""
    done = setup_env(clone, FAKE_CPU_TORCH_HERE="1")
    assert done.returncode == 0, done.stdout
    assert (clone / ".venv" / "torch").read_text(encoding="utf-8").strip() == "cpu"
    assert not any(CPU_INDEX in call for call in calls(clone))


@pytest.mark.skipif(os.uname().sysname != "Linux", reason="the +cpu build is a Linux one")
def test_where_no_cpu_torch_is_reachable_pypis_is_installed_saying_so(clone):
    """PyPI reachable, PyTorch's index not (a proxy that allows PyPI only): the install goes on with
    PyPI's CUDA build, and says so, rather than stopping."""
    done = setup_env(clone, FAKE_NO_CPU_INDEX="1")
    assert done.returncode == 0, done.stdout
    assert (clone / ".venv" / "torch").read_text(encoding="utf-8").startswith("cuda")
    assert "no CPU build reachable" in done.stdout


def test_pip_user_in_the_callers_environment_does_not_stop_the_install(clone):
    done = setup_env(clone, PIP_USER="1")
    assert done.returncode == 0, done.stdout
    assert (clone / ".venv" / "m1data-installed").exists()


def test_two_set_ups_of_one_clone_run_one_after_the_other(clone):
    """main.sh and test.sh started together on a fresh clone: one installs, the other waits and
    then finds the install done (no two pips in one venv at once)."""
    first = setup_env(clone, wait=False, FAKE_PIP_SECONDS="0.3")
    time.sleep(0.2)
    second = setup_env(clone, wait=False, FAKE_PIP_SECONDS="0.3")
    outs = [p.communicate(timeout=60)[0] for p in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], outs
    log = calls(clone)
    assert "overlap" not in log, log
    assert sum(call.startswith("venv") for call in log) == 1, log
    assert any("already installed" in out for out in outs), outs


def test_a_moved_clone_gets_a_venv_made_in_its_new_folder(clone):
    """A clone moved or copied with its .venv: the venv's scripts name the old folder, so the
    stamp must not let the set-up skip the install."""
    assert setup_env(clone).returncode == 0
    moved = clone.with_name("moved repo")
    clone.rename(moved)
    done = setup_env(moved)
    assert done.returncode == 0, done.stdout
    assert "made anew" in done.stdout
    pip = subprocess.run([str(moved / ".venv" / "bin" / "pip"), "--version"], capture_output=True, text=True,
                         env={**os.environ, "FAKE_TOOLS": str(moved.parent / "tools"), "CALLS": os.devnull})
    assert pip.returncode == 0, pip.stderr


def test_a_venv_whose_pip_an_interrupted_set_up_broke_is_made_anew(clone):
    """Killed while pip upgraded itself, a set-up leaves a pip that fails to import; `python3 -m
    venv` keeps it (it finds pip installed), so the next set-up must make .venv anew."""
    assert setup_env(clone).returncode == 0
    pip = clone / ".venv" / "bin" / "pip"
    pip.write_text("#!/usr/bin/env bash\necho \"ImportError: cannot import name 'open_rich_spinner'\" >&2\nexit 1\n")
    (clone / ".venv" / "m1data-installed").unlink()  # the interrupted set-up had removed it
    done = setup_env(clone)
    assert done.returncode == 0, done.stdout
    assert "made anew" in done.stdout
    assert subprocess.run([str(pip), "--version"], capture_output=True,
                          env={**os.environ, "FAKE_TOOLS": str(clone.parent / "tools"), "CALLS": os.devnull}).returncode == 0


def test_a_python_older_than_requires_python_stops_at_once_naming_both(clone):
    """On Python 3.10 (end of life; transformers 5.21 and later need 3.11) the set-up downloaded
    torch, then pip found no transformers>=5.23 for the train extra; with requires-python raised,
    pip would refuse m1data itself, still after torch. It now stops before making anything."""
    old = interpreter((3, 10))
    if old is None:
        pytest.skip("no Python 3.10 on this machine")
    done = setup_env(clone, M1DATA_PYTHON=old)
    assert done.returncode == 1 and not (clone / ".venv").exists(), done.stdout
    assert done.stdout.count("\n") == 1, done.stdout
    assert "needs Python 3.11 or newer" in done.stdout and "Python 3.10." in done.stdout, done.stdout
    missing = setup_env(clone, M1DATA_PYTHON="python3.99")
    assert missing.returncode == 1 and "python3.99 here is not found" in missing.stdout, missing.stdout


def test_m1data_python_picks_the_interpreter_the_venv_is_made_with(clone):
    tools = clone.parent / "tools" / "bin"
    (tools / "python3.12").write_text(FAKE_PYTHON3.replace("Python 3.11.0", "Python 3.12.9"))
    (tools / "python3.12").chmod(0o755)
    done = setup_env(clone, M1DATA_PYTHON="python3.12")
    assert done.returncode == 0, done.stdout
    assert "environment: .venv (Python 3.12.9)" in done.stdout, done.stdout


def test_a_second_run_with_nothing_changed_installs_nothing(clone):
    assert setup_env(clone).returncode == 0
    before = len(calls(clone))
    again = setup_env(clone)
    assert again.returncode == 0 and "already installed" in again.stdout, again.stdout
    assert len(calls(clone)) == before


def test_the_warm_up_command_runs_in_a_c_locale():
    """The set-up's `python -c` warm-up of the fuzzy matcher, as Python runs it where the locale is
    C and UTF-8 mode is off (LC_ALL=C PYTHONUTF8=0): a non-ASCII character written into the command
    line cannot be decoded there ("Unable to decode the command from the command line"), so the
    command must spell its CJK test string with escapes."""
    script = (ROOT / "scripts" / "setup_env.sh").read_text(encoding="utf-8")
    command = re.search(r'^logged \.venv/bin/python -c "(.*?)"$', script, re.S | re.M).group(1)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG", "PYTHONIOENCODING"))}
    env.update(LC_ALL="C", PYTHONUTF8="0")
    done = subprocess.run([sys.executable, "-c", command], env=env, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]



def test_a_clone_at_a_non_ascii_path_stops_at_once_where_python_cannot_read_it(clone, tmp_path):
    """Where the locale is C and UTF-8 mode is off (LC_ALL=C PYTHONUTF8=0), Python holds a
    non-ASCII path in surrogates: `python3 -m venv` stopped writing pyvenv.cfg ("surrogates not
    allowed"), pip writing a script's #! line, and an install made in UTF-8 mode left `m1data`
    unimportable there (the editable finder's paths). The set-up says so before making anything;
    in UTF-8 mode the same clone sets up."""
    moved = tmp_path / os.fsdecode(b"\xc3\xbcn\xc3\xaf") / "repo"  # "ünï", however this process decodes
    moved.parent.mkdir()
    clone.rename(moved)
    (tmp_path / "tools").rename(moved.parent / "tools")
    done = setup_env(moved, LC_ALL="C", PYTHONUTF8="0")  # LC_ALL over any LANG or LC_*
    assert done.returncode == 1 and not (moved / ".venv").exists(), done.stdout
    assert done.stdout.count("\n") == 1 and "set PYTHONUTF8=1" in done.stdout, done.stdout
    assert setup_env(moved, LC_ALL="C", PYTHONUTF8="1").returncode == 0
