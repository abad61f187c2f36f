"""What must never be written down: credentials inside URLs, and the values of configured keys.

Credentials inside a base_url (`https://user:pass@host/v1`) are refused (`refuse_userinfo`): the
SDK would send them as HTTP Basic auth in place of the API key, and a server that echoes its
request headers would hand the password back, base64-encoded, into error replies, the reply
cache and the terminal, where no plain-text mask finds it. A key belongs in an environment
variable named by `api_key_env`. Writers still strip userinfo from every URL they record
(`strip_userinfo`/`scrub`), so a URL from an older run folder or a message is recorded as the
server it names and never as a way to log in to it. Keys themselves are only ever read from the environment; the
names of the variables that hold them are in the stage configs (`api_key_env`), which is what
`configured_secrets` follows to find the values that an upload must not contain.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from m1data.errors import UserError

# scheme://userinfo@ : userinfo has no '/', '@', '?', '#' or whitespace (RFC 3986, percent-encoded)
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^/\s@?#]*@")
SECRET_ENV_SUFFIXES = ("_API_KEY",)
MIN_SECRET_LENGTH = 8  # a shorter value would match innocent bytes by chance


def strip_userinfo(text: str) -> str:
    """`text` with the `user:password@` part of every URL in it removed."""
    return _USERINFO.sub(r"\g<scheme>", text)


def has_userinfo(url: str) -> bool:
    """`url` names a user (and maybe a password) before its host: `scheme://user:pass@host`."""
    try:
        return "@" in urlsplit(url.strip()).netloc
    except ValueError:  # not a URL at all: another check says so
        return False


def refuse_userinfo(url: str | None, what: str = "base_url") -> None:
    """Stop, in one line that shows neither user nor password, when `url` carries credentials
    (module docstring: why they are refused rather than sent)."""
    if url and has_userinfo(url):
        raise UserError(
            f"{what} {strip_userinfo(url.strip())} carries credentials (user:password@ before the host), which m1data "
            "does not send: put the key in an environment variable and name it with api_key_env (--api-key-env)"
        )


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


__all__ = ["configured_secrets", "has_userinfo", "key_env_names", "refuse_userinfo", "scrub", "strip_userinfo"]
