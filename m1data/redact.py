"""What must never be written down: credentials inside URLs, and the values of configured keys.

Why one module: a base_url may carry credentials (`https://user:pass@host/v1`), and the same
string is copied into stage manifests, the cache's endpoint column, cards and log lines. Every
writer strips them with `strip_userinfo`/`scrub`, so a URL is recorded as the server it names and
never as a way to log in to it. Keys themselves are only ever read from the environment; the
names of the variables that hold them are in the stage configs (`api_key_env`), which is what
`configured_secrets` follows to find the values that an upload must not contain.

The same goes for local paths in what is published (`strip_local_paths`, `public_scrub`): a path
such as `/home/me/models/x.gguf` only describes the machine that built a dataset, tells a reader
nothing they can look up, and gives away a user name; the file name says what was used. A llama.cpp
server, for one, reports the model it serves by the path it was given.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path, PureWindowsPath
from typing import Any

# scheme://userinfo@ : userinfo has no '/', '@', '?', '#' or whitespace (RFC 3986, percent-encoded)
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^/\s@?#]*@")
SECRET_ENV_SUFFIXES = ("_API_KEY",)
MIN_SECRET_LENGTH = 8  # a shorter value would match innocent bytes by chance


def strip_userinfo(text: str) -> str:
    """`text` with the `user:password@` part of every URL in it removed."""
    return _USERINFO.sub(r"\g<scheme>", text)


def scrub(value: Any) -> Any:
    """A copy of a JSON-like value (dicts, lists, strings) with credentials removed from every URL."""
    if isinstance(value, str):
        return strip_userinfo(value)
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v) for v in value]
    return value


def key_env_names(config: Any) -> set[str]:
    """Every environment variable a config names as holding a key (`api_key_env`, at any depth)."""
    names: set[str] = set()
    if isinstance(config, dict):
        for key, value in config.items():
            if str(key).endswith("api_key_env") and isinstance(value, str) and value:
                names.add(value)
            else:
                names |= key_env_names(value)
    elif isinstance(config, list):
        for item in config:
            names |= key_env_names(item)
    return names


def configured_secrets(env_names: Iterable[str] = ()) -> dict[str, str]:
    """{variable: value} for the named variables and every `*_API_KEY` variable that is set."""
    names = set(env_names) | {n for n in os.environ if n.endswith(SECRET_ENV_SUFFIXES)}
    found = {}
    for name in sorted(names):
        value = os.environ.get(name)
        if value and len(value) >= MIN_SECRET_LENGTH:
            found[name] = value
    return found


# ---------------------------------------------------------------------------------------------
# Local paths

# Top-level folders that hold users' and machines' files on Linux, macOS and the usual clusters and
# notebooks; a path under one of them names this machine. Bare `/data/...`-like folders are here
# too: a published row has no reason to name one.
_LOCAL_TOP = ("root", "home", "Users", "tmp", "var", "opt", "usr", "mnt", "srv", "work", "workspace", "scratch",
              "private", "media", "Volumes", "nfs", "gpfs", "lustre", "data", "content", "kaggle", "run")
_PATH_CHARS = r"[^\s\"'`<>()\[\]{},;|*]"  # a path ends at whitespace, quotes, brackets, separators
_SEGMENT = r"[^\s\"'`<>()\[\]{},;|*/\\]"  # one folder name
_NOT_AFTER = r"(?<![\w.~:/\\-])"  # not inside a URL, a relative path or a word ("and/or", "mg/kg")


def _roots() -> list[str]:
    """This machine's own folders, wherever they are: home, working folder, temp folder, the Python
    installation and the folder m1data is installed or cloned in."""
    here = Path(__file__).resolve().parent
    found = {str(Path.home()), os.getcwd(), tempfile.gettempdir(), sys.prefix, sys.base_prefix,
             str(here.parent), str(here.parent.parent)}
    return sorted((r.rstrip("/\\") for r in found if len(r.rstrip("/\\")) > 1), key=len, reverse=True)


@lru_cache(maxsize=1)
def _local_path_pattern() -> re.Pattern[str]:
    roots = "|".join(re.escape(r) for r in _roots())
    tops = "|".join(_LOCAL_TOP)
    return re.compile(
        rf"file://{_PATH_CHARS}+"  # file:///home/me/x
        rf"|{_NOT_AFTER}(?:{roots})(?:[/\\]{_PATH_CHARS}*)?(?!{_PATH_CHARS})"  # this machine's folders
        rf"|{_NOT_AFTER}/(?:{tops})(?:/{_PATH_CHARS}*)?(?!{_PATH_CHARS})"  # /home/..., /tmp/..., /root
        rf"|{_NOT_AFTER}/(?:{_SEGMENT}+/)*?(?:site|dist)-packages(?:/{_PATH_CHARS}*)?"  # any installation
        rf"|{_NOT_AFTER}~[/\\]{_PATH_CHARS}+"  # ~/models/x.gguf
        rf"|\b[A-Za-z]:\\{_PATH_CHARS}+"  # C:\Users\me\x
    )


_PATH_BEFORE = set("_.~:/\\-")  # what the character before a path's first separator must not be


def _may_hold_path(text: str) -> bool:
    """A fast pre-check (str.find, no regex): whether `text` has a separator where a local path
    could start: a `/` not inside a word or URL (`mg/kg`, `host/v1`), `~/`, `X:\\` or `file:`.
    Most published strings have none, and the full pattern is slow on long reasoning texts."""
    if "\\" in text or "file:" in text:
        return True
    at = text.find("/")
    while at >= 0:
        before = text[at - 1] if at else " "
        if before == "~" or not (before.isalnum() or before in _PATH_BEFORE):
            return True
        at = text.find("/", at + 1)
    return False


def local_paths(text: str) -> list[str]:
    """Every absolute local path in `text` (see `strip_local_paths` for what counts as one)."""
    if not _may_hold_path(text):
        return []
    return [m.group(0) for m in _local_path_pattern().finditer(text)]


def file_name(path: str) -> str:
    """The last part of a path (POSIX or Windows, a trailing separator ignored)."""
    path = path.removeprefix("file://").rstrip("/\\")
    return PureWindowsPath(path).name if "\\" in path else Path(path).name


def strip_local_paths(text: str) -> str:
    """`text` with every absolute local path replaced by its file name. A local path is one under
    this machine's home, working, temp, Python or m1data folder, or under a top-level folder that
    holds users' files (`/home`, `/root`, `/tmp`, `/Users`, `/mnt`, ...), a `site-packages` path,
    `~/...`, `C:\\...` or a `file://` URL. URLs' own paths (`https://host/v1`), relative paths and
    slashes inside words (`mg/kg`) are left alone."""
    if not _may_hold_path(text):
        return text
    return _local_path_pattern().sub(lambda m: file_name(m.group(0)), text)


def public_model_name(name: str | None) -> str | None:
    """What a reader can look up about a model a server says it serves: a path becomes its file
    name (`/root/.cache/x/SmolLM2-Q4_1.gguf` -> `SmolLM2-Q4_1.gguf`); a Hub id or alias stays."""
    if not name:
        return name
    if name.startswith(("/", "~", "file://")) or re.match(r"^[A-Za-z]:[\\/]", name):
        return file_name(name) or name
    return strip_local_paths(name)


def public_scrub(value: Any) -> Any:
    """`scrub` for what is published: credentials out of URLs and local paths cut to file names,
    in every string of a JSON-like value."""
    if isinstance(value, str):
        return strip_local_paths(strip_userinfo(value))
    if isinstance(value, dict):
        return {k: public_scrub(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [public_scrub(v) for v in value]
    return value


__all__ = [
    "configured_secrets",
    "file_name",
    "key_env_names",
    "local_paths",
    "public_model_name",
    "public_scrub",
    "scrub",
    "strip_local_paths",
    "strip_userinfo",
]
