"""What must never be written down: credentials inside URLs, keys and tokens, and the values of
configured keys. The one module that masks secrets: every writer (manifests, the LLM cache, log
lines and error replies, cards, the Hub upload's last check) calls it.

Credentials inside a base_url (`https://user:pass@host/v1`) are refused (`refuse_userinfo`): the
SDK would send them as HTTP Basic auth in place of the API key, and a server that echoes its
request headers would hand the password back, base64-encoded, into error replies, the reply
cache and the terminal, where no plain-text mask finds it. So is a base_url with a query string
(`?api-key=...`, `refuse_query`): it would be written wherever the endpoint is recorded. A key
belongs in an environment variable named by `api_key_env`. Writers still strip userinfo from every URL they record
(`strip_userinfo`/`scrub`), so a URL from an older run folder or a message is recorded as the
server it names and never as a way to log in to it. Keys themselves are only ever read from the environment; the
names of the variables that hold them are in the stage configs (`api_key_env`), which is what
`configured_secrets` follows to find the values that an upload must not contain.

The same goes for local paths in what is published (`strip_local_paths`, `public_scrub`): a path
such as `/home/me/models/x.gguf` only describes the machine that built a dataset, tells a reader
nothing they can look up, and gives away a user name; the file name says what was used. A llama.cpp
server, for one, reports the model it serves by the path it was given.
"""

from __future__ import annotations

import base64
import json
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterable
from functools import lru_cache
from pathlib import Path, PureWindowsPath
from typing import Any
from urllib.parse import quote, quote_plus

from m1data.errors import UserError

# scheme://userinfo@ : userinfo has no '/', '@', '?', '#' or whitespace (RFC 3986, percent-encoded)
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^/\s@?#]*@")
SECRET_ENV_SUFFIXES = ("_API_KEY",)
MIN_SECRET_LENGTH = 8  # a shorter value would match innocent bytes by chance: searched for as a whole token only
# A key from 4 to 7 characters is masked only where it stands as a whole token (not inside a word:
# `k3y9` in "key=k3y9," but not in "k3y9Zeta"); a shorter one nowhere, it would hit words and numbers.
MIN_TOKEN_SECRET_LENGTH = 4
# What users give local servers that need no key (vLLM's docs: EMPTY; llama.cpp's: sk-no-key-required;
# m1data's own: no-key; Ollama and LM Studio's docs: ollama, lm-studio), and the flags that variables
# named like keys hold: no secret, and masking each "none" or "false" would mangle logs and cards.
PLACEHOLDER_KEYS = frozenset({"empty", "none", "null", "dummy", "no-key", "nokey", "not-needed", "sk-no-key-required",
                              "ollama", "lm-studio", "placeholder", "true", "false", "yes", "no"})
_KEY_CHARS = r"A-Za-z0-9_\-"  # what a key is made of: the characters that continue it as a token
_KEY_VARIABLE = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD)$", re.I)  # a variable *named* as one key
REDACTED = "[redacted]"  # what a card shows in place of a secret
_BEARER = re.compile(r"((?:Bearer|Basic)\s+)[^\s\"',;]+", re.IGNORECASE)  # echoed Authorization values
# Keys that *are* credential names (`api_key`, `hf_token`), not keys that merely contain one of
# the words (`token_lengths`, `max_tokens`); `_env` keys hold the *name* of a variable, which is safe.
_SECRET_KEY = re.compile(r"(^|_)(api_?key|token|secret|password|passwd|authorization|credentials?)$", re.I)
_SECRET_ENV = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH)", re.I)
# What credentials look like: provider key prefixes, bearer headers, JWTs.
_SECRET_VALUE = re.compile(
    r"(sk-[A-Za-z0-9_-]{16,}|hf_[A-Za-z0-9]{20,}|gh[pousr]_[A-Za-z0-9]{20,}|xox[abprs]-[A-Za-z0-9-]{10,}"
    r"|AKIA[0-9A-Z]{16}|AIza[0-9A-Za-z_-]{35}|Bearer\s+[A-Za-z0-9._~+/=-]{8,}"
    r"|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})"
)


def strip_userinfo(text: str) -> str:
    """`text` with the `user:password@` part of every URL in it removed."""
    return _USERINFO.sub(r"\g<scheme>", text)


def has_userinfo(url: str) -> bool:
    """`url` may name a user (and maybe a password) before its host: it holds an '@' anywhere.

    Why anywhere and not in the parsed authority: a password with a raw '/', '?' or '#' in it
    (`https://alice:s3cr/etPW@host/v1`) ends the authority early for every URL parser, which then
    reads `alice:s3cr` as host and port and the rest as a path; where the credentials end cannot
    be told. An endpoint's URL has no other use for an '@'."""
    return "@" in url


def without_credentials(url: str) -> str:
    """`url` with everything from its scheme to its last '@' removed, and its query and fragment
    (`without_query`): shown in place of a URL that `has_userinfo`, whatever characters the
    password holds."""
    scheme, sep, rest = url.partition("://")
    return without_query(f"{scheme}{sep}{rest.rpartition('@')[2]}" if sep else url.rpartition("@")[2])


def has_query(url: str) -> bool:
    """`url` has a query string or a fragment: a '?' or '#' anywhere in it."""
    return "?" in url or "#" in url


def without_query(url: str) -> str:
    """`url` up to its first '?' or '#': what may be shown of a URL whose query may hold a key."""
    return re.split(r"[?#]", url, maxsplit=1)[0]


def refuse_userinfo(url: str | None, what: str = "base_url") -> None:
    """Stop, in one line that shows neither user nor password, when `url` carries credentials
    (module docstring: why they are refused rather than sent)."""
    if url and has_userinfo(url):
        raise UserError(
            f"{what} {without_credentials(url.strip())} carries credentials (user:password@ before the host, or "
            "another '@'), which m1data does not send: put the key in an environment variable and name it with "
            "api_key_env (--api-key-env)"
        )


def refuse_url_credentials(path: str | None, what: str) -> None:
    """Stop, showing none of them, when the file or dataset `path` names is a URL with credentials
    in it (a git remote's `https://me:<token>@huggingface.co/...`): a reader's error quotes the
    path it could not read, token included, and no reader here takes such a URL. Only URLs: a
    local path may hold an '@' (`runs@v2/hub`)."""
    if path and "://" in path and has_userinfo(path):
        raise UserError(f"{what} {without_credentials(path.strip())} carries credentials (not shown): give a "
                        "Hub repo id (owner/name) or a local file or folder; the Hub token comes from HF_TOKEN")


def refuse_query(url: str | None, what: str = "base_url") -> None:
    """Stop, in one line that does not show it, when `url` has a query string or fragment.

    Why: a provider that takes its key in the URL (`?api-key=...`, `?key=...`) would have it
    written wherever the endpoint is recorded: plan lines, manifests, the reply cache, the card.
    And nothing is lost: the SDK appends its route after the whole URL (`/v1?k=v` is called as
    `/v1/?k=vchat/completions`), so no server ever receives such a query as one."""
    if url and has_query(url):
        raise UserError(
            f"{what} {without_query(url.strip())} has a query string or fragment ('?...' or '#...', not shown), "
            "which m1data does not send: put a key in an environment variable and name it with api_key_env "
            "(--api-key-env)"
        )


def refuse_endpoint_secrets(url: str | None, what: str = "base_url") -> None:
    """The checks every endpoint URL passes before it is used or recorded: no credentials
    (`refuse_userinfo`, first, since the other message shows part of the URL) and no query
    string (`refuse_query`)."""
    refuse_userinfo(url, what)
    refuse_query(url, what)


def refuse_secret_params(params: Any, what: str = "extra_params") -> None:
    """Stop, in one line naming the field and not its value, when request fields (a stage's
    `extra_params`) hold a credential: a field named like one (`api_key`, `token`, at any depth)
    or a value shaped like one (`sk-...`, `hf_...`, a JWT). Why: those fields are the request
    body, which the reply cache stores and the stage's manifest records with its config; a key
    belongs in the variable `api_key_env` names, sent only as the Authorization header."""
    for field, value in (params or {}).items():
        if redact_config({field: value}) != {field: value}:
            raise UserError(
                f"{what}: {field} holds a credential (its name or its value looks like one), which m1data does not "
                "send in a request body, since the cache and the manifest record the body: put the key in an "
                "environment variable and name it with api_key_env"
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


def is_placeholder(secret: str) -> bool:
    """`secret` is a stand-in for a key (`PLACEHOLDER_KEYS`), never masked."""
    return secret.strip().lower() in PLACEHOLDER_KEYS


def mask_value(text: str, secret: str | None, replacement: str = "***") -> str:
    """`text` with `secret` replaced: everywhere when it has `MIN_SECRET_LENGTH` characters or
    more, written as it is or in any of the forms a server may quote it back in (`_written_forms`:
    percent-encoded, escaped, base64), only as a whole token when it has `MIN_TOKEN_SECRET_LENGTH`
    or more (as it is, or base64-encoded: `_short_base64`), and never when it is shorter or a placeholder. Why the token rule: a 5-character key
    must not reach a log, but as a substring it would match inside innocent words."""
    if _masks_nothing(secret) or not text:
        return text
    if len(secret) >= MIN_SECRET_LENGTH:
        return _mask_written_forms(text.replace(secret, replacement), secret, replacement)
    text = _short_base64(secret).sub(lambda _: replacement, text)
    return _short_token(secret).sub(lambda _: replacement, text)


def holds_secret(text: str, secret: str) -> bool:
    """`text` holds `secret` in a form `mask_value` masks (as it is, percent-encoded, escaped,
    base64): what a last check before publishing searches for, so that it refuses whatever the
    writers would have masked, in a folder written before they masked it."""
    return mask_value(text, secret, "") != text


def mask_in_name(name: str | None, secret: str | None, replacement: str = "***") -> str | None:
    """`name` (a served model's name, an identifier a server chose) with `secret` replaced wherever
    it is, even inside a longer token, once it has `MIN_TOKEN_SECRET_LENGTH` characters (never a
    placeholder), and in every form `mask_value` knows for a longer one.

    Why not the whole-token rule of `mask_value` here: it counts `-` and `_` as part of a key, so a
    server that names its model after the key (`served-k3Y9zQ`) kept a 6-character key in the rows,
    the cache, the manifest's `served_models` and the card. A name is no prose: masking part of it
    cuts no word of an answer, and what is left (`served-***`) still shows that a name was there."""
    if not name or not secret or len(secret) < MIN_TOKEN_SECRET_LENGTH or is_placeholder(secret):
        return name
    return mask_value(name.replace(secret, replacement), secret, replacement)


_BASE64_RUN = "A-Za-z0-9+/_-"  # base64's alphabet and its URL-safe one (`-_` for `+/`)


@lru_cache(maxsize=64)
def _written_forms(secret: str) -> tuple[tuple[str, ...], tuple[re.Pattern[str], ...], tuple[str, ...]]:
    """How else `secret` is written where a server, a proxy or a library quotes it back, beyond
    as it is: percent-encoded (a URL, a form body; hex digits in either case, so as a pattern), escaped (a JSON
    string or a Python repr double its backslash, quote `"` and may write `/` as `\\/`), and
    base64-encoded (HTTP Basic credentials, logs that dump headers). Why each: a plain-text mask
    finds none of them, and every one gives the key back to whoever reads the cache, the dropped
    rows, the card or the terminal.

    base64 depends on where the key starts in what was encoded (alone, or after `user:`): for each
    of the three alignments, the run of characters that encodes the key's bytes alone is searched,
    and the whole base64 token holding it is masked."""
    escaped = {secret.replace("\\", "\\\\"), json.dumps(secret)[1:-1], json.dumps(secret)[1:-1].replace("/", "\\/"),
               secret.encode("unicode_escape").decode("ascii")}
    forms = tuple(sorted(escaped - {secret}, key=len, reverse=True))
    percent = tuple(re.compile(_percent_pattern(form, re.escape))
                    for form in sorted(_percent_encodings(secret), key=len, reverse=True))
    cores = set()
    raw = secret.encode()
    for shift in range(3):
        whole = base64.b64encode(b"\0" * shift + raw).decode("ascii")
        core = whole[4 if shift else 0:(len(raw) + shift) // 3 * 4]  # only characters that encode the key alone
        if len(core) >= MIN_SECRET_LENGTH:
            cores |= {core, core.translate(str.maketrans("+/", "-_"))}
    return forms, percent, tuple(sorted(cores))


@lru_cache(maxsize=64)
def _short_base64(secret: str) -> re.Pattern[str]:
    """A whole base64 token (either alphabet, padding optional) that encodes a short key alone or
    an Authorization value `Bearer <key>`: how a server that dumps its request headers quotes a
    4-7 character key back. Why whole tokens only: `_written_forms` finds a long key's base64 by
    its core inside any token, but a short key's core is 4 characters or fewer, which would match
    by chance; a whole token equal to one of these encodings does not."""
    forms = "|".join(re.escape(form) for form in sorted(_short_base64_forms(secret), key=len, reverse=True))
    return re.compile(rf"(?<![{_BASE64_RUN}])(?:{forms})=*(?![={_BASE64_RUN}])")


@lru_cache(maxsize=64)
def _short_token(secret: str) -> re.Pattern[str]:
    """A short key as a whole token, as it is or percent-encoded (hex digits in either case), where
    a percent-escape before it counts as a boundary too. Why: a server or proxy that echoes its
    request headers URL-encoded writes `Authorization=Bearer%20k3Y9zQ`, and there the key follows
    the `0` of `%20`, which the plain whole-token rule took for part of a longer word: a 6-character
    key reached the reply cache and the dropped rows as it was."""
    forms = {re.escape(secret)} | {_percent_pattern(encoded, re.escape) for encoded in _short_percent_encodings(secret)}
    alternatives = "|".join(sorted(forms, key=len, reverse=True))
    return re.compile(rf"(?:(?<![{_KEY_CHARS}])|(?<=%[0-9A-Fa-f]{{2}}))(?:{alternatives})(?![{_KEY_CHARS}])")


def _percent_encodings(secret: str) -> set[str]:
    """How `secret` is written percent-encoded (`quote`, keeping `/` or not, and `quote_plus`),
    when that differs from `secret` itself."""
    return {quote(secret, safe=""), quote(secret, safe="/"), quote_plus(secret)} - {secret}


def _short_percent_encodings(secret: str) -> set[str]:
    """The percent-encoded forms `_short_token` knows a short key by (a header value: `/` encoded)."""
    return {quote(secret, safe=""), quote_plus(secret)} - {secret}


def _short_base64_forms(secret: str) -> set[str]:
    """The base64 encodings (either alphabet, no padding) of a short key alone and of `Bearer <key>`."""
    encoded = set()
    for raw in (secret, f"Bearer {secret}"):
        whole = base64.b64encode(raw.encode()).decode("ascii").rstrip("=")
        encoded |= {whole, whole.translate(str.maketrans("+/", "-_"))}
    return encoded


def _percent_pattern(encoded: str, literal: Callable[[str], str]) -> str:
    """A pattern matching the percent-encoded `encoded` with its hex digits in either case, the
    other characters as they are (written by `literal`: `re.escape`, or `_re2_literal` for RE2,
    both of which read `(?i:...)`). Why either case: `quote` writes `%2F`, other encoders `%2f`."""
    return "".join(f"%(?i:{part[1:]})" if part.startswith("%") else literal(part)
                   for part in re.split(r"(%[0-9A-F]{2})", encoded) if part)


def _masks_nothing(secret: str | None) -> bool:
    """`mask_value` leaves every text as it is for `secret`: none, under `MIN_TOKEN_SECRET_LENGTH`
    characters, or a placeholder."""
    return not secret or len(secret) < MIN_TOKEN_SECRET_LENGTH or is_placeholder(secret)


def secret_hint(secret: str) -> str | None:
    """An RE2 pattern (for Arrow's `match_substring_regex`) that every text `holds_secret` flags
    for `secret` matches; None when `holds_secret` flags no text at all. Why: the last check
    before an upload ran `holds_secret` on every string of every published file (100K rows of
    traces: 7 s with one key, 11 s with two, 20-30 s on a busy machine), where Arrow tells in
    one pass which strings of a column may hold one. A string that matches may still hold none:
    run `holds_secret` on those.

    Why no flagged text can miss it (`mask_value` with the replacement "" changes `text` exactly
    when one of its steps removes a non-empty match, and each step only searches for these):
    - a key of `MIN_SECRET_LENGTH` characters or more: `text.replace(secret, "")` changes it only
      when `secret` is in it; the escaped forms are replaced only when one is in it; a percent
      pattern (`_percent_pattern`) changes it only where it matches, and the hint holds the same
      pattern in RE2 syntax (literal parts escaped by `_re2_literal`, hex digits `(?i:...)`, which
      both engines read alike: no other character folds to a hex digit); the base64 substitution
      runs only when a core is in it, and then removes at least the core. So the hint is the
      alternation of the key, its escaped forms, its percent patterns and its base64 cores. Each
      step after a change no longer matters: `holds_secret` is already true.
    - a 4-7 character key: `_short_base64` matches only where one of `_short_base64_forms` is,
      `_short_token` only where the key or one of `_short_percent_encodings` is (its lookarounds
      only narrow that); the hint is their alternation without the lookarounds, which RE2 lacks.
    A substring of a Python string is a substring of its UTF-8 bytes, which RE2 searches."""
    if _masks_nothing(secret):
        return None
    if len(secret) >= MIN_SECRET_LENGTH:
        forms, _, cores = _written_forms(secret)
        literals, encodings = {secret, *forms, *cores}, _percent_encodings(secret)
    else:
        literals, encodings = {secret, *_short_base64_forms(secret)}, _short_percent_encodings(secret)
    alternatives = [_re2_literal(text) for text in literals] + [_percent_pattern(e, _re2_literal) for e in encodings]
    return "|".join(sorted(alternatives))


def secrets_hint(secrets: Iterable[str]) -> str | None:
    """One RE2 pattern every text matches that `holds_secret` flags for any of `secrets`
    (`secret_hint` of each, as alternatives); None when it flags none for any."""
    hints = sorted({hint for secret in secrets if (hint := secret_hint(secret)) is not None})
    return "|".join(f"(?:{hint})" for hint in hints) or None


def _mask_written_forms(text: str, secret: str, replacement: str) -> str:
    """`text` with the other ways of writing `secret` (`_written_forms`) replaced too; a base64
    form with the whole base64 token around it."""
    forms, percent, cores = _written_forms(secret)
    for form in forms:
        if form in text:
            text = text.replace(form, replacement)
    if "%" in text:
        for pattern in percent:
            text = pattern.sub(lambda _: replacement, text)
    for core in cores:
        if core in text:  # a plain search first: the pattern is far slower on long texts
            text = re.sub(rf"(?<![{_BASE64_RUN}])[{_BASE64_RUN}]*?{re.escape(core)}[{_BASE64_RUN}]*=*",
                          lambda _: replacement, text)
    return text


def mask_secret(text: str | None, secret: str | None) -> str | None:
    """`text` with the secret (`mask_value`) and any Bearer or Basic credential replaced by `***`."""
    if not text:
        return text
    return _BEARER.sub(r"\1***", mask_value(text, secret))


def redact_config(value: Any, key: str = "") -> Any:
    """A copy of a config with credentials masked: values of credential-named keys, and any
    substring that looks like a key or token wherever it is."""
    if isinstance(value, dict):
        return {k: redact_config(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_config(v, key) for v in value]
    if _is_secret_key(key) and value not in (None, ""):
        return REDACTED
    if isinstance(value, str):
        return _SECRET_VALUE.sub(REDACTED, value)
    return value


def _is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key)) and not key.lower().endswith("_env")


def redact_environment(text: str) -> str:
    """Mask every value of a secret-looking environment variable (HF_TOKEN, OPENAI_API_KEY...).
    A short value (`mask_value`) only when the variable is named as a key (`*_KEY`, `*_TOKEN`):
    TOKENIZERS_PARALLELISM's `false` or an AUTH_MODE's `open` is a setting, not a secret."""
    for name, value in os.environ.items():
        value = value.strip()  # what is sent: m1data.llm.http.api_key_from strips a pasted newline
        if _SECRET_ENV.search(name) and (len(value) >= MIN_SECRET_LENGTH or _KEY_VARIABLE.search(name)):
            text = mask_value(text, value, REDACTED)
    return _SECRET_VALUE.sub(REDACTED, text)


# What an environment variable holding a key is called: UPPER_CASE words of at most 16 characters
# (DEEPSEEK_API_KEY, M1DATA_TEACHER_KEY). A key has a '-' or lower-case letters, or a long run
# without '_': `sk-...`, `gsk_aB3...`, 32 hex digits.
_KEY_VARIABLE_NAME = re.compile(r"[A-Z][A-Z0-9]{0,15}(_[A-Z0-9]{1,16})*")
UNSHOWN_VARIABLE = ("named by api_key_env (--api-key-env; not shown, since it does not look like a variable's name "
                    "and may be the key itself: put the key in a variable and name that)")


def shown_variable(name: str) -> str:
    """How a message names the variable `api_key_env` names: as written when it looks like an
    UPPER_CASE variable name, else not at all. Why: the key itself pasted where its variable's name
    goes is an easy mistake, and "environment variable <key> is not set" would print it on the
    terminal and into CI logs."""
    return name if _KEY_VARIABLE_NAME.fullmatch(name) else UNSHOWN_VARIABLE


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


def is_checkable_secret(value: str | None) -> bool:
    """`value` can be searched for without matching innocent text: `MIN_TOKEN_SECRET_LENGTH`
    characters or more (a 4-7 character one as a whole token, `holds_secret`) and no placeholder."""
    return bool(value) and len(value) >= MIN_TOKEN_SECRET_LENGTH and not is_placeholder(value)


def configured_secrets(env_names: Iterable[str] = ()) -> dict[str, str]:
    """{variable: value} for the named variables and every `*_API_KEY` variable that is set, when
    the value can be searched for (`is_checkable_secret`). Why a 4-7 character key too: it is
    masked wherever it stands as a whole token, so a folder holding it so is one a writer would
    have masked; skipped, such a key went up in a published folder unchecked."""
    names = set(env_names) | {n for n in os.environ if n.endswith(SECRET_ENV_SUFFIXES)}
    found = {}
    for name in sorted(names):
        value = (os.environ.get(name) or "").strip()  # as sent (m1data.llm.http.api_key_from)
        if is_checkable_secret(value):
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


def _local_path_pattern() -> re.Pattern[str]:
    return _local_path_patterns()[0]


@lru_cache(maxsize=1)
def _local_path_patterns() -> tuple[re.Pattern[str], str]:
    """The pattern `local_paths` finds paths with, and its `public_scrub_hints` hint: built from
    one reading of `_roots()`, so that the hint names the very folders the pattern does."""
    roots = _roots()
    tops = "|".join(_LOCAL_TOP)
    pattern = re.compile(
        rf"file://{_PATH_CHARS}+"  # file:///home/me/x
        rf"|{_NOT_AFTER}(?:{'|'.join(re.escape(r) for r in roots)})"  # this machine's folders
        rf"(?:[/\\]{_PATH_CHARS}*)?(?!{_PATH_CHARS})"
        rf"|{_NOT_AFTER}/(?:{tops})(?:/{_PATH_CHARS}*)?(?!{_PATH_CHARS})"  # /home/..., /tmp/..., /root
        rf"|{_NOT_AFTER}/(?:{_SEGMENT}+/)*?(?:site|dist)-packages(?:/{_PATH_CHARS}*)?"  # any installation
        rf"|{_NOT_AFTER}~[/\\]{_PATH_CHARS}+"  # ~/models/x.gguf
        rf"|\b[A-Za-z]:\\{_PATH_CHARS}+"  # C:\Users\me\x
    )
    # What each alternative above cannot match without: its literal start (RE2 syntax, no lookbehind).
    hint = "|".join(["file://", rf"(?:{'|'.join(_re2_literal(r) for r in roots)})", rf"/(?:{tops})",
                     "(?:site|dist)-packages", r"~[/\\]", r"[A-Za-z]:\\"])
    return pattern, hint


def _re2_literal(text: str) -> str:
    """`text` as an RE2 pattern that matches it literally. Why not `re.escape`: it escapes spaces
    and `~`, which RE2 may refuse; RE2 takes a backslash before any ASCII punctuation."""
    return "".join(_re2_char(c) for c in text)


def _re2_char(c: str) -> str:
    """One character of `_re2_literal`: a control character as `\\x{..}` (a raw newline or NUL in
    a pattern is no literal RE2 reads reliably), other ASCII punctuation after a backslash."""
    if c.isascii() and not c.isprintable():
        return f"\\x{{{ord(c):x}}}"
    return f"\\{c}" if c.isascii() and not c.isalnum() and c not in " _" else c


def public_scrub_hints() -> tuple[str, str]:
    """Two RE2 patterns (for Arrow's `match_substring_regex`), the first matched by every string in
    which `local_paths` finds a path, the second by every string `public_scrub` changes (a local path
    or a URL's `user@`). Why: a string neither matches is left as it is, and Arrow tells which
    strings of a column match in one pass, where the full pattern needs Python's lookbehinds and
    is slow on long texts (a reasoning trace's `\\boxed` passes `_may_hold_path`). A string that
    matches may still hold none: run the real check on those only."""
    paths = _local_path_patterns()[1]
    return paths, rf"{paths}|://[^/\s@?#]*@"  # `_USERINFO` needs "://" and then "@" (RE2's \s is narrower)


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
    "MIN_SECRET_LENGTH",
    "MIN_TOKEN_SECRET_LENGTH",
    "PLACEHOLDER_KEYS",
    "REDACTED",
    "configured_secrets",
    "file_name",
    "has_query",
    "has_userinfo",
    "holds_secret",
    "key_env_names",
    "is_checkable_secret",
    "is_placeholder",
    "local_paths",
    "mask_in_name",
    "mask_secret",
    "mask_value",
    "public_model_name",
    "public_scrub",
    "public_scrub_hints",
    "redact_config",
    "redact_environment",
    "refuse_endpoint_secrets",
    "refuse_query",
    "refuse_secret_params",
    "refuse_url_credentials",
    "refuse_userinfo",
    "scrub",
    "secret_hint",
    "secrets_hint",
    "shown_variable",
    "strip_local_paths",
    "strip_userinfo",
    "without_credentials",
    "without_query",
]
