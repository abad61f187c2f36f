"""The SQLite reply cache: what the key depends on (and what it must not), what is stored, and
that the file never holds a secret."""

from __future__ import annotations

import sqlite3

from hypothesis import given
from hypothesis import strategies as st

from m1data.llm import Cache, Reply, Request, request_key
from m1data.llm.cache import normalise_endpoint

BASE = "http://127.0.0.1:8000/v1"


def ask(**params) -> Request:
    return Request(model="m", messages=({"role": "user", "content": "hi"},), params=params)


@given(st.permutations([("max_tokens", 10), ("temperature", 0.0), ("seed", 1), ("stop", ["x"])]))
def test_key_ignores_parameter_order(items):
    assert request_key(BASE, ask(**dict(items))) == request_key(
        BASE, ask(max_tokens=10, temperature=0.0, seed=1, stop=["x"])
    )


def test_key_depends_on_everything_sent():
    base = request_key(BASE, ask(max_tokens=10))
    variants = [
        request_key("https://api.deepseek.com", ask(max_tokens=10)),
        request_key(BASE, ask(max_tokens=11)),
        request_key(BASE, ask(max_tokens=10, temperature=0.0)),
        request_key(BASE, Request(model="other", messages=ask().messages, params={"max_tokens": 10})),
        request_key(BASE, Request(model="m", prompt="hi", params={"max_tokens": 10})),
    ]
    assert len({base, *variants}) == 6


def test_key_spelling_of_endpoint_does_not_matter():
    assert normalise_endpoint("HTTP://LocalHost:8000/v1/") == "http://localhost:8000/v1"
    assert request_key("http://127.0.0.1:8000/v1/", ask()) == request_key(BASE, ask())


def test_roundtrip_and_transient(tmp_path):
    path = tmp_path / "c.sqlite"
    with Cache(path) as cache:
        cache.put(
            "k1",
            BASE,
            ask(),
            Reply(text="A", reasoning="r", finish_reason="stop", prompt_tokens=3, completion_tokens=4),
        )
        cache.put("k2", BASE, ask(), Reply(status="error", error="http_500: x"), transient=True, attempts=6)
    with Cache(path) as cache:
        found = cache.get_many(["k1", "k2", "absent"])
        assert set(found) == {"k1", "k2"}
        one = found["k1"].reply
        assert (one.text, one.reasoning, one.prompt_tokens, one.completion_tokens, one.cached) == ("A", "r", 3, 4, True)
        assert not found["k1"].transient and found["k2"].transient
        assert cache.status_counts() == {"ok": 1, "error (transient)": 1}
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_many_lookups_in_chunks(tmp_path):
    with Cache(tmp_path / "c.sqlite") as cache:
        for i in range(1200):
            cache.put(f"k{i}", BASE, ask(), Reply(text=str(i)))
        found = cache.get_many(f"k{i}" for i in range(0, 2400, 2))
        assert len(found) == 600 and found["k1198"].reply.text == "1198"


def test_mean_completion_tokens_needs_enough_samples(tmp_path):
    with Cache(tmp_path / "c.sqlite") as cache:
        for i in range(5):
            cache.put(f"k{i}", BASE, ask(), Reply(completion_tokens=100))
        assert cache.mean_completion_tokens(BASE, "m") is None
        for i in range(5, 25):
            cache.put(f"k{i}", BASE, ask(), Reply(completion_tokens=200))
        assert cache.mean_completion_tokens(BASE + "/", "m") == 180


def test_a_corrupted_cache_file_is_a_clear_error_naming_it(tmp_path):
    import pytest

    from m1data.llm.cache import CacheError

    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not a database at all " * 200)
    with pytest.raises(CacheError, match=str(garbage)) as err:
        Cache(garbage)
    assert isinstance(err.value, ValueError)  # the CLI prints ValueErrors as one line, exit 2
    assert "not a readable" in str(err.value)

    truncated = tmp_path / "truncated.sqlite"
    with Cache(truncated) as cache:
        for i in range(300):
            cache.put(f"k{i}", BASE, ask(), Reply(text="x" * 500))
    data = truncated.read_bytes()
    truncated.write_bytes(data[:4096] + b"\0" * 4096 + data[8192:])  # a page overwritten
    with pytest.raises(CacheError, match=str(truncated)):
        with Cache(truncated) as cache:
            cache.get_many([f"k{i}" for i in range(300)])


def test_credentials_in_a_base_url_never_reach_the_cache(tmp_path):
    with_password = "https://user:hunter2secret@api.example.com/v1"
    assert normalise_endpoint(with_password) == "https://api.example.com/v1"
    assert request_key(with_password, ask()) == request_key("https://api.example.com/v1", ask())
    path = tmp_path / "c.sqlite"
    with Cache(path) as cache:
        cache.put(request_key(with_password, ask()), with_password, ask(), Reply(text="ok"))
    for file in tmp_path.iterdir():
        assert b"hunter2secret" not in file.read_bytes() and b"user:" not in file.read_bytes()


# ---------------------------------------------------------------------------------------------
# Namespaces: a local server that moves keeps its cache; providers never share one


def test_default_namespace_is_the_host_remotely_and_the_model_locally():
    from m1data.llm.cache import cache_namespace

    assert cache_namespace("https://API.deepseek.com/v1", "deepseek-reasoner") == "api.deepseek.com"
    for local in ("http://127.0.0.1:8000/v1", "http://localhost:9001/v1", "http://10.0.3.7:8000/v1",
                  "http://192.168.1.20/v1", "http://[::1]:8000/v1"):
        assert cache_namespace(local, "Qwen/Qwen2.5-7B-Instruct") == "Qwen/Qwen2.5-7B-Instruct", local
    assert cache_namespace("hf:/models/tiny", "tiny") == "hf:/models/tiny"
    assert cache_namespace("http://127.0.0.1:8000/v1", "m", "mine") == "mine"
    same = ask(max_tokens=10)
    assert request_key("http://127.0.0.1:8000/v1", same) == request_key("http://localhost:8123/v1", same)
    assert request_key("https://api.deepseek.com", same) != request_key("https://api.together.xyz/v1", same)
    assert request_key(BASE, same) != request_key(BASE, same, "mine")


def test_a_local_server_back_on_another_port_resends_nothing(tmp_path, capsys, shown_output):
    from llm_server import ScriptedServer

    from m1data.llm import HTTPConfig, HTTPEngine, complete_all

    requests = [Request(model="local-model", messages=({"role": "user", "content": f"q{i}"},),
                        params={"max_tokens": 5}) for i in range(6)]
    path = tmp_path / "cache.sqlite"
    with ScriptedServer() as first, Cache(path) as cache:
        complete_all(HTTPEngine(HTTPConfig(base_url=first.base_url)), requests, cache, progress=False)
        assert first.count() == 6
    with ScriptedServer() as second, Cache(path) as cache:
        assert second.base_url != first.base_url  # another port
        engine = HTTPEngine(HTTPConfig(base_url=second.base_url))
        capsys.readouterr()
        complete_all(engine, requests, cache, dry_run=True)
        err = capsys.readouterr().err
        assert "6 cached" in err and "0 to send" in err and "cache namespace: local-model" in err
        replies = complete_all(engine, requests, cache, progress=False)
        assert second.count() == 0 and all(r.cached and r.status == "ok" for r in replies)


SCHEMA_1 = """
CREATE TABLE IF NOT EXISTS replies (
    key TEXT PRIMARY KEY, endpoint TEXT NOT NULL, model TEXT NOT NULL, request TEXT NOT NULL, status TEXT NOT NULL,
    finish_reason TEXT, text TEXT NOT NULL, reasoning TEXT, prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL, error TEXT, transient INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 1, created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('schema_version', '1');
"""


def schema_1_cache(path, endpoint: str, request: Request, reply: Reply, *, created: float, transient: int = 0):
    """A row as the schema-1 code wrote it: keyed on the endpoint URL."""
    import hashlib
    import json

    from m1data.llm.params import canonical_json, request_body

    body = request_body(request)
    key = hashlib.sha256(canonical_json({"endpoint": endpoint, "kind": request.kind, "body": body}).encode()).hexdigest()
    db = sqlite3.connect(str(path))
    db.executescript(SCHEMA_1)
    db.execute("INSERT INTO replies VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
               (key, endpoint, request.model, json.dumps(body), reply.status, reply.finish_reason, reply.text,
                reply.reasoning, 3, 4, reply.error, transient, 1, created))
    db.commit()
    db.close()
    return key


def test_a_schema_1_cache_is_migrated_once_on_open(tmp_path):
    path = tmp_path / "old.sqlite"
    request = ask(max_tokens=10)
    old_key = schema_1_cache(path, "http://127.0.0.1:8000/v1", request, Reply(status="error", error="503"),
                             created=1.0, transient=1)
    schema_1_cache(path, "http://127.0.0.1:8001/v1", request, Reply(text="answer", finish_reason="stop"), created=2.0)
    remote = Request(model="deepseek-reasoner", messages=ask().messages, params={"max_tokens": 10})
    schema_1_cache(path, "https://api.deepseek.com", remote, Reply(text="remote", finish_reason="stop"), created=3.0)
    with Cache(path) as cache:
        assert len(cache) == 2  # the two local copies of one request became one
        entry = cache.get(request_key("http://localhost:9999/v1", request))
        assert entry is not None and entry.reply.text == "answer" and not entry.transient  # the answer won
        assert entry.reply.model is None  # schema 1 did not know which model answered
        assert cache.get(request_key("https://api.deepseek.com/", remote)).reply.text == "remote"
        assert cache.get(old_key) is None
    with Cache(path) as cache:  # opening again changes nothing
        assert len(cache) == 2
    version = sqlite3.connect(str(path)).execute("SELECT value FROM meta WHERE name='schema_version'").fetchone()[0]
    assert version == "2"


def test_a_full_disk_is_said_as_such_and_the_cached_replies_stay(tmp_path):
    """SQLite's SQLITE_FULL (here made real by capping the file's pages, as a full disk caps them)
    was "the reply cache cannot be used (database or disk is full)", which reads like a damaged
    cache; it says to free space and run again, and what was cached is kept."""
    import pytest

    from m1data.llm.cache import CacheError

    path = tmp_path / "c.sqlite"
    with Cache(path) as cache:
        cache.put("kept", BASE, ask(), Reply(text="an answer"))
        pages = cache._db.execute("PRAGMA page_count").fetchone()[0]
        cache._db.execute(f"PRAGMA max_page_count = {pages}")
        with pytest.raises(CacheError, match="free some space on its disk, then run the same command again"):
            cache.put("big", BASE, ask(), Reply(text="x" * 100_000))
    with Cache(path) as cache:
        assert {key: entry.reply.text for key, entry in cache.get_many(["kept", "big"]).items()} == {"kept": "an answer"}


def test_a_folder_given_as_the_cache_is_one_error_saying_a_file_is_needed(tmp_path):
    """`--cache runs/` (for runs/llm_cache.sqlite) was SQLite's OperationalError traceback
    ("unable to open database file")."""
    import pytest

    from m1data.errors import UserError

    with pytest.raises(UserError, match="is a folder; the reply cache is a file"):
        Cache(tmp_path)


def test_a_model_retrained_into_its_folder_is_another_namespace(tmp_path):
    """`infer` of a model retrained into the same folder (or served by its path, as `vllm serve
    runs/m1-7B-1K` names it) read the old weights' replies from the cache and scored them as the
    new model's. A local model's namespace carries a stamp of its weight files."""
    import os

    from m1data.llm.cache import cache_namespace, weights_stamp

    model = tmp_path / "m1-7B-1K"
    model.mkdir()
    weights = model / "model.safetensors"
    weights.write_bytes(b"first weights")
    (model / "README.md").write_text("not a weight file")
    local, hf = "http://127.0.0.1:8000/v1", f"hf:{model}"
    before = {cache_namespace(local, str(model)), cache_namespace(hf, "tiny")}
    assert before == {f"{model}@weights:{weights_stamp(str(model))}", f"hf:{model}@weights:{weights_stamp(str(model))}"}
    assert before == {cache_namespace(local, str(model)), cache_namespace(hf, "tiny")}  # stable while unchanged
    (model / "README.md").write_text("edited card")  # not the weights: the same model
    assert cache_namespace(local, str(model)) in before
    weights.write_bytes(b"second weights")  # retrained in place: the same name, other bytes
    os.utime(weights, ns=(10**18, 10**18))
    after = {cache_namespace(local, str(model)), cache_namespace(hf, "tiny")}
    assert not after & before
    assert cache_namespace(local, "Qwen/Qwen2.5-7B-Instruct") == "Qwen/Qwen2.5-7B-Instruct"  # no such folder here
    assert cache_namespace("https://api.deepseek.com", str(model)) == "api.deepseek.com"  # a remote one: its host
