"""A persistent reply cache in one SQLite file: pay for each request once.

Key: sha256 of the canonical JSON of {namespace, kind, body}, where body is the full request body
the engine sends (model, messages or prompt, every generation parameter) and namespace says which
server's answers these are (`cache_namespace`):

- set explicitly: `cache_namespace` on an LLM stage's config (or HTTPConfig), any string;
- a remote API: its host (`api.deepseek.com`), so a provider's answers are never reused for
  another provider's model of the same name (the reference stack's cache ignored the endpoint);
- a local server (localhost, a loopback or private address): the model name, so the same model
  brought back on another port or machine of the network re-sends nothing;
- an engine without a URL: its identity, such as `hf:/path/to/model`.

Where the model is a folder or file on this machine (`hf:/path/to/model`, or a local server's model
named by its path, as `vllm serve runs/m1-7B-1K` names it), the namespace also carries a stamp of
its weight files (names, sizes, modification times: `weights_stamp`): a model retrained into the
same folder is another model, whose answers are not the old one's. Without it, `infer` scored the
new weights with the old model's cached replies.

Switching provider, model, prompt or any parameter is a different key. So is a later try at the
same question (`Request.attempt` 2, 3, ...: traces' `attempts`, a student's `samples`), which
adds its index to the key material; a first try's key is the one it always was. The API key is a header,
never part of the body, so it neither enters the key material nor the file: rotating a key
keeps the cache.

Caches written before namespaces (schema 1, keyed on the full endpoint URL) are migrated once,
in place, when first opened: every stored reply is re-keyed under its endpoint's default
namespace (a file keeps working with no user action). A stage that sets its own
`cache_namespace` does not see those old replies under it.

What is stored: every outcome, including truncated ("length"), content-filtered and failed
replies, so a re-run does not pay for them again. Failures marked `transient` (a 5xx or timeout
that survived every retry) are kept for the record but count as unanswered, so the next run
sends them again.

Durability: WAL journal with synchronous=NORMAL, and one commit per stored reply. A committed
reply survives `kill -9` of the process (the WAL write happens before commit returns); only an OS
crash or power loss can lose the last commits before a checkpoint. So a killed run loses exactly
the requests that were in flight. One commit costs about 0.1 ms of CPU (0.2-0.3 ms wall) here, which the throughput
benchmark includes.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import ipaddress
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from m1data.errors import M1DataError, UserError
from m1data.llm.params import canonical_json, request_body
from m1data.llm.types import Reply, Request

SCHEMA_VERSION = 2  # 1: keyed on the endpoint URL; 2: on the namespace (migrated on open)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS replies (
    key TEXT PRIMARY KEY,
    endpoint TEXT NOT NULL,
    model TEXT NOT NULL,
    request TEXT NOT NULL,
    status TEXT NOT NULL,
    finish_reason TEXT,
    text TEXT NOT NULL,
    reasoning TEXT,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    error TEXT,
    transient INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 1,
    created REAL NOT NULL,
    served_model TEXT
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_REPLY_COLUMNS = (
    "key, status, finish_reason, text, reasoning, prompt_tokens, completion_tokens, error, transient, served_model"
)
_INSERT = "INSERT OR REPLACE INTO replies VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
_LOOKUP_CHUNK = 500  # SQLite's default limit on bound parameters is 999 on old builds


@functools.lru_cache(maxsize=256)
def normalise_endpoint(endpoint: str) -> str:
    """Same server, same spelling: lowercase scheme and host, no trailing slash, and no
    credentials (`user:password@`): they are a way in, not part of which server answered, and
    this string is stored in the cache file."""
    parts = urlsplit(endpoint.strip())
    if not parts.scheme or not parts.netloc:
        return endpoint.strip().rstrip("/")
    host = parts.netloc.rpartition("@")[2].lower()
    return urlunsplit((parts.scheme.lower(), host, parts.path.rstrip("/"), parts.query, ""))


def is_local_host(host: str) -> bool:
    """localhost, a loopback or a private-network address: a server the user runs themselves."""
    return _host_is(host, lambda address: address.is_loopback or address.is_private or address.is_link_local)


def is_this_machine(host: str) -> bool:
    """localhost (or a name under .localhost) or a loopback address: this machine, never another."""
    return _host_is(host, lambda address: address.is_loopback)


def _host_is(host: str, address_test: Callable[[Any], bool]) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return address_test(ipaddress.ip_address(host))
    except ValueError:
        return False


def cache_namespace(endpoint: str, model: str, configured: str | None = None) -> str:
    """Whose answers a reply is (module docstring): `configured` if set, else the host of a
    remote API, the model name on a local server, or the identity of an engine with no URL."""
    if configured:
        return configured
    normalised = normalise_endpoint(endpoint)
    host = urlsplit(normalised).hostname
    if not host:
        return _stamped(normalised, normalised[len("hf:"):]) if normalised.startswith("hf:") else normalised
    return _stamped(model, model) if is_local_host(host) else host


WEIGHT_SUFFIXES = frozenset({".safetensors", ".bin", ".gguf", ".pt", ".pth"})


def weights_stamp(model: str) -> str | None:
    """A short digest of the weight files `model` names on this machine (a folder's, or the file
    itself), by name, size and modification time; None when `model` names none. Stats only: it
    runs for every request's key."""
    path = Path(model).expanduser()
    try:
        files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.suffix in WEIGHT_SUFFIXES) \
            if path.is_dir() else []
        stats = [(f.name, f.stat()) for f in files]
    except (OSError, ValueError):  # a name that is no path (a served model's name), or cannot be read
        return None
    if not stats:
        return None
    material = ";".join(f"{name}:{st.st_size}:{st.st_mtime_ns}" for name, st in stats)
    return hashlib.sha256(material.encode()).hexdigest()[:12]


def _stamped(namespace: str, model: str) -> str:
    stamp = weights_stamp(model)
    return namespace if stamp is None else f"{namespace}@weights:{stamp}"


def key_from_body(namespace: str, kind: str, body: dict[str, Any], attempt: int = 1) -> str:
    """`attempt` enters the key material only from 2 on, so every first try keeps the key it had
    before attempts existed and no cache written earlier is lost."""
    material: dict[str, Any] = {"namespace": namespace, "kind": kind, "body": body}
    if attempt != 1:
        material["attempt"] = attempt
    return hashlib.sha256(canonical_json(material).encode()).hexdigest()


def request_key(endpoint: str, request: Request, namespace: str | None = None) -> str:
    """The cache key of `request` sent to `endpoint`; `namespace` is the configured one, if any.
    A later try at the same question (`request.attempt` > 1) has a key of its own."""
    namespace = cache_namespace(endpoint, request.model, namespace)
    return key_from_body(namespace, request.kind, request_body(request), request.attempt)


class CacheError(M1DataError, ValueError):
    """A cache file SQLite cannot read: named, with what to do, instead of a bare DatabaseError."""

    def __init__(self, path: Path, err: sqlite3.Error):
        if _disk_full(err):
            problem = (f"{path}: the reply cache cannot be written ({err}): free some space on its disk, then run the "
                       "same command again (the replies it holds are kept, and only the rest are sent)")
        elif isinstance(err, sqlite3.OperationalError):
            problem = f"{path}: the reply cache cannot be used ({err})"
        else:
            problem = (
                f"{path} is not a readable reply cache ({err}). If it is damaged, move it away and run again: "
                "a new cache is started, and the replies the old one held are paid for again"
            )
        super().__init__(problem)
        self.path = path


def _disk_full(err: sqlite3.Error) -> bool:
    """SQLite's SQLITE_FULL: the disk (or a quota) has no room for the cache's next page."""
    return getattr(err, "sqlite_errorname", None) == "SQLITE_FULL" or "disk is full" in str(err)


@contextlib.contextmanager
def _readable(path: Path) -> Iterator[None]:
    try:
        yield
    except sqlite3.DatabaseError as err:
        raise CacheError(path, err) from None


OPEN_TIMEOUT = 60.0  # seconds a new connection waits for others setting up the same file


def _while_locked(step: Callable[[], None], timeout: float) -> None:
    """Run `step`, again while SQLite says the file is locked. Why: several processes opening one
    new cache at once (Ray workers on one stage) race to switch it to WAL, and that switch fails
    at once with "database is locked" instead of waiting like an ordinary write."""
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        try:
            step()
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) and "busy" not in str(err) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.5)


@dataclass
class Entry:
    """A stored outcome. `transient` failures are history, not answers."""

    reply: Reply
    transient: bool


class Cache:
    """The reply store. One connection, guarded by a lock so worker threads may share it; several
    processes may open the same file (WAL allows concurrent readers and one writer at a time)."""

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()  # `cache_path: ~/...` in a config, which no shell expands
        if self.path.is_dir():  # `--cache runs/` for `--cache runs/llm_cache.sqlite`: SQLite's "unable to open"
            raise UserError(f"{self.path} is a folder; the reply cache is a file (say {self.path / 'llm_cache.sqlite'})")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        with _readable(self.path):
            self._db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False, timeout=60)
        try:
            with _readable(self.path):
                _while_locked(self._set_up, OPEN_TIMEOUT)
        except CacheError:
            self._db.close()
            raise

    def _set_up(self) -> None:
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        self._migrate()

    def _migrate(self) -> None:
        """Re-key a schema-1 file (keys on the endpoint URL) under default namespaces, in one
        transaction. Two old endpoints that now share a namespace (one local model on two ports)
        may hold the same request: an answer beats a transient failure, then the newest wins."""
        version = self._db.execute("SELECT value FROM meta WHERE name='schema_version'").fetchone()[0]
        if int(version) >= SCHEMA_VERSION:
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(replies)")}
            if "served_model" not in columns:  # schema 1 did not record the served model
                self._db.execute("ALTER TABLE replies ADD COLUMN served_model TEXT")
            rows = self._db.execute("SELECT * FROM replies ORDER BY transient DESC, created ASC").fetchall()
            self._db.execute("DELETE FROM replies")
            for row in rows:  # later rows (answers, then newer) replace earlier ones with the same key
                endpoint, model, body = row[1], row[2], json.loads(row[3])
                kind = "chat" if "messages" in body else "completion"
                key = key_from_body(cache_namespace(endpoint, model), kind, body)
                self._db.execute(_INSERT, (key, *row[1:]))
            self._db.execute("UPDATE meta SET value=? WHERE name='schema_version'", (str(SCHEMA_VERSION),))
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def __enter__(self) -> Cache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Cache({str(self.path)!r})"

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- reading ----------------------------------------------------------------------------

    @staticmethod
    def _entry(row: tuple[Any, ...]) -> Entry:
        _key, status, finish, text, reasoning, prompt, completion, error, transient, served = row
        reply = Reply(
            text=text,
            reasoning=reasoning,
            finish_reason=finish,
            status=status,
            prompt_tokens=prompt,
            completion_tokens=completion,
            error=error,
            cached=True,
            model=served,
        )
        return Entry(reply, bool(transient))

    def get_many(self, keys: Iterable[str]) -> dict[str, Entry]:
        keys = list(dict.fromkeys(keys))
        found: dict[str, Entry] = {}
        with self._lock, _readable(self.path):
            for start in range(0, len(keys), _LOOKUP_CHUNK):
                chunk = keys[start : start + _LOOKUP_CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(f"SELECT {_REPLY_COLUMNS} FROM replies WHERE key IN ({marks})", chunk)
                for row in rows:
                    found[row[0]] = self._entry(row)
        return found

    def get(self, key: str) -> Entry | None:
        return self.get_many([key]).get(key)

    def __len__(self) -> int:
        with self._lock, _readable(self.path):
            return self._db.execute("SELECT COUNT(*) FROM replies").fetchone()[0]

    def status_counts(self) -> dict[str, int]:
        with self._lock, _readable(self.path):
            rows = self._db.execute("SELECT status, transient, COUNT(*) FROM replies GROUP BY status, transient")
            return {f"{status}{' (transient)' if transient else ''}": n for status, transient, n in rows}

    def mean_completion_tokens(self, endpoint: str, model: str, min_samples: int = 20) -> int | None:
        """Mean output length of answered requests to this endpoint and model, when there are
        enough of them to be a better guess than a fixed fraction of max_tokens."""
        with self._lock, _readable(self.path):
            n, mean = self._db.execute(
                "SELECT COUNT(*), AVG(completion_tokens) FROM replies WHERE endpoint=? AND model=? AND status='ok'",
                (normalise_endpoint(endpoint), model),
            ).fetchone()
        return int(mean) if n >= min_samples else None

    # -- writing ----------------------------------------------------------------------------

    def merge_from(self, other: str | Path) -> int:
        """Copy into this cache every reply of another cache file that this one lacks (or holds
        only as a transient failure), in one transaction; return how many were copied. Used to
        take back a cache a crash left somewhere else: running it twice copies nothing twice."""
        Cache(other).close()  # an older file is migrated first, so both have the same columns and keys
        with self._lock, _readable(Path(other)):
            self._db.execute("ATTACH DATABASE ? AS other", (str(other),))
            try:
                self._db.execute("BEGIN IMMEDIATE")
                before = self._db.total_changes
                self._db.execute(
                    "INSERT OR REPLACE INTO main.replies SELECT o.* FROM other.replies o "
                    "LEFT JOIN main.replies m ON m.key = o.key "
                    "WHERE m.key IS NULL OR (m.transient = 1 AND o.transient = 0)"
                )
                copied = self._db.total_changes - before
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            finally:
                self._db.execute("DETACH DATABASE other")
        return copied

    def put(
        self, key: str, endpoint: str, request: Request, reply: Reply, *, transient: bool = False, attempts: int = 1
    ) -> None:
        """Store one outcome, committed (durable against a process kill) when this returns."""
        row = (
            key,
            normalise_endpoint(endpoint),
            request.model,
            canonical_json(request_body(request)),
            reply.status,
            reply.finish_reason,
            reply.text,
            reply.reasoning,
            reply.prompt_tokens,
            reply.completion_tokens,
            reply.error,
            int(transient),
            attempts,
            time.time(),
            reply.model,
        )
        with self._lock, _readable(self.path):
            self._db.execute(_INSERT, row)


__all__ = [
    "OPEN_TIMEOUT",
    "SCHEMA_VERSION",
    "Cache",
    "CacheError",
    "Entry",
    "cache_namespace",
    "is_local_host",
    "is_this_machine",
    "key_from_body",
    "normalise_endpoint",
    "request_key",
    "weights_stamp",
]
