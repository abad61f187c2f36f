"""A server that hands the API key back, and a search for it in everything a run wrote.

Why: a provider, proxy or mirror that echoes its request headers (in its error bodies, its
answers, the model name it reports, URL-encoded, base64-encoded as in a header dump) gives the
key back to m1data, which writes what servers say into the reply cache, the dropped rows, the
manifests, the card and the terminal. Tests point a real run at `echoing(answer)` (through the
scripted server of llm_server.py) and then search every file it wrote for the key in every form
publishing's last check knows (`m1data.redact.holds_secret`), plus the raw bytes.
"""

from __future__ import annotations

import base64
import json
import re
import sqlite3
from collections.abc import Callable, Iterable
from pathlib import Path
from urllib.parse import quote, quote_plus

from llm_server import Received, Response, chat, error

from m1data.redact import holds_secret


def echoed(req: Received) -> dict[str, str]:
    """The ways an echoing server writes back the Authorization header it received."""
    header = req.headers.get("authorization", "")
    key = header.removeprefix("Bearer ")
    return {"key": key, "header": header, "url-encoded": quote(header, safe=""),
            "base64": base64.b64encode(header.encode()).decode(), "json": json.dumps({"authorization": header})}


def every_written_form(key: str) -> list[str]:
    """`key` in every way `m1data.redact.mask_value` knows it: as it is; escaped (backslash
    doubled, JSON with or without `\\/`, a bytes repr, unicode-escaped); percent-encoded (keeping
    `/` or not, `+` for a space, hex in upper, lower or mixed case); base64 of the key alone or
    after a prefix (the three alignments), in either alphabet, with or without its padding."""
    json_escaped = json.dumps(key)[1:-1]
    encoded = quote(key, safe="")
    forms = [key, key.replace("\\", "\\\\"), json_escaped, json_escaped.replace("/", "\\/"), repr(key.encode())[2:-1],
             key.encode("unicode_escape").decode("ascii"), encoded, quote(key, safe="/"), quote_plus(key),
             re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), encoded),
             re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0)[:2] + m.group(0)[2].lower(), encoded)]
    for prefix in ("", "u:", "me:", "Bearer "):
        whole = base64.b64encode(f"{prefix}{key}".encode()).decode()
        forms += [whole, whole.rstrip("="), whole.translate(str.maketrans("+/", "-_"))]
    return forms


def echoing(answer: Callable[[Received], str]) -> Callable[[Received], Response]:
    """A handler that quotes the key back in each reply it gives. Questions take turns, in the
    order they first arrive, at: an answer (ending in `answer(req)`) with the key in its text,
    reasoning and model name; a refusal (400); a 5xx the first time (answered on the retry); a body
    that is not JSON the first time; an inline thinking block holding it. So any five questions
    see every kind."""
    kinds: dict[str, int] = {}

    def handler(req: Received) -> Response:
        forms = echoed(req)
        said = " ".join(forms.values())
        answered = answer(req)
        kind = kinds.setdefault(req.text, len(kinds) % 5)
        if kind == 1:
            return error(400, f"invalid request from {said}")
        if kind == 2 and req.attempt == 1:
            return error(500, f"upstream saw {said}", retry_after=0.01)
        if kind == 3 and req.attempt == 1:
            return Response(body=f"not JSON: {said}")
        if kind == 4:
            return chat(f"<think>\nI was sent {said}\n</think>\n\n{answered}", model=f"served/{forms['key']}")
        return chat(f"You sent {said}.\n{answered}", reasoning=f"The header was {said}.",
                    model=f"served-{forms['key']}")

    return handler


def _strings(path: Path) -> Iterable[tuple[str, str]]:
    """(where, text) for a file: its bytes as text, a parquet file's values, a SQLite file's cells."""
    data = path.read_bytes()
    yield "", data.decode("utf-8", "replace")
    if path.suffix == ".parquet":
        from m1data.publishing.hub import _file_strings

        yield from _file_strings(path)
    if data.startswith(b"SQLite format 3\x00"):
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
                for row in db.execute(f"SELECT * FROM {table}"):  # noqa: S608  (a name SQLite gave)
                    yield from ((table, str(cell)) for cell in row if isinstance(cell, (str, bytes)))


def _holds(text: str, key: str) -> bool:
    """`text` holds `key` anywhere, even inside a longer word, or in a form `holds_secret` knows.
    Why both: `holds_secret` is what is under test (it finds a short key only as a whole token),
    and a test's key is made up so as to appear nowhere by chance."""
    return key in text or holds_secret(text, key)


def leaked(key: str, folder: Path, shown: str = "") -> list[str]:
    """Where `key` is in a file under `folder` or in `shown` (what a run printed), as it is or in
    any form `holds_secret` knows (percent-encoded, escaped, base64); empty when nowhere."""
    found = [f"output: {shown[max(0, shown.find(key) - 60):][:140]!r}"] if _holds(shown, key) else []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        where = next((w for w, text in _strings(path) if _holds(text, key)), None)
        if where is not None:
            found.append(f"{path.relative_to(folder)} {where}".strip())
    return found
