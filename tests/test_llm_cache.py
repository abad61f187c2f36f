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
