"""Run a build on a Ray cluster (Ray Data and Ray tasks), with the same results as the local runner.

The local runner stays the default; ``--executor ray`` (or ``executor: {kind: ray}`` in the YAML)
hands three kinds of work to Ray, and nothing else changes: the same stages, manifests, funnel,
lineage and Hub folder, so a run started on one executor resumes on the other.

- Row-parallel stages (``Stage.row_parallel``: the LLM stages, the offline tagger, SFT
  formatting) run as Ray Data ``map_batches`` over blocks of rows, and each worker keeps the
  stage (and the engine or tagger model it builds) for all its blocks. A stage that loads a
  model into its process (``Stage.holds_model``: vLLM, transformers) or reserves GPUs gets one
  Ray actor per worker, which frees the model when the stage ends. Every other stage runs as
  Ray tasks on Ray's pooled worker processes, which keep their imports from stage to stage: an
  actor pool costs about 4 s to start on every stage, a warm task pool a fraction of a second.
  The blocks' kept rows and dropped rows are concatenated in the
  original order, their statistics merged by the stage's ``merge_stats`` (part of the Stage
  contract; counts summed by default) and their transient failures summed, so one incomplete
  block leaves the stage incomplete and the build stops as it does locally. A block that stops
  with an m1data error (a refused key, a stage's check) stops the stage at once: Ray Data's
  execution is shut down, so no other block starts and the running ones are cancelled (what
  they had been answered is in the reply cache).
- Per-source loading runs one Ray task per source (``parallel_map``).
- Fuzzy dedup and decontamination run their length bands as Ray tasks (``band_runner``): the
  same filter the local matcher runs (``BandJob.filtered``), its few survivors scored with
  rapidfuzz and the earliest-partner rule applied once on the driver. Removals are identical.

Where the LLM cache lives: one SQLite file, the stage's ``llm_cache.sqlite`` (or the
configured ``cache_path``), opened by every worker. SQLite in WAL mode lets the workers of one
node read and write it at once, and every reply is committed as it arrives, so a re-run (on
either executor) sends only what was never answered. On a multi-node cluster the run directory
(or ``cache_path``) must be on storage every node mounts with working file locks; Ray does not
ship files between nodes for us.

Ray is an optional extra (``pip install 'm1data[ray]'``), imported only here and only when asked
for; without it the ray executor is a one-line error.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math
import os
import pickle
import secrets
import uuid
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np

from m1data.caches import can_write_in
from m1data.config import ConfigError
from m1data.errors import M1DataError, UserError
from m1data.running.pipeline import RunContext, portable, sum_stats
from m1data.schema import flattened, fresh_fingerprint

T = TypeVar("T")
R = TypeVar("R")

POSITION = "__m1data_position"
RAY_MISSING = "the ray executor needs the `ray` extra: pip install 'm1data[ray]' (or choose --executor local)"


class MissingExtra(ConfigError):
    """The configuration asks for an optional dependency that is not installed."""


@dataclass
class ExecutorConfig:
    """Where a build's stages run. Not part of any stage's config, so switching executor never
    invalidates a completed stage.

    ``address``: None starts a Ray instance on this machine (``num_cpus`` of its CPUs);
    ``auto`` joins the cluster started here with ``ray start --head``; ``ray://host:10001``
    connects to a remote one. ``workers``: concurrent map_batches workers (default: the
    cluster's CPUs). ``gpus_per_worker``: GPUs each worker reserves (in-process model engines).
    ``rows_per_block``: rows a worker handles per call (default: about four blocks per worker).
    """

    kind: Literal["local", "ray"] = "local"
    address: str | None = None
    num_cpus: int | None = None
    workers: int | None = None
    gpus_per_worker: float = 0.0
    rows_per_block: int | None = None

    def __post_init__(self) -> None:
        """Checked when the settings are read, at every door (a config's ``executor:``, the
        command line's ``--executor``, an ExecutorConfig from Python). Why: ``workers: 0`` and
        ``rows_per_block: 0`` fell through to the defaults in silence (``or``), and a negative
        value was handed on to Ray (``ray.init(num_cpus=...)``, a worker pool's size), unchecked."""
        if self.kind not in ("local", "ray"):
            raise UserError(f"executor.kind must be local or ray, got {self.kind!r}")
        for name, default in (("num_cpus", "every CPU here"), ("workers", "the cluster's CPUs"),
                              ("rows_per_block", "about four blocks per worker")):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UserError(f"executor.{name} must be at least 1 (leave it out for {default}), got {value!r}")
        if self.gpus_per_worker < 0:
            raise UserError(f"executor.gpus_per_worker must be 0 or more, got {self.gpus_per_worker!r}")


def executor_config(kind: str | None, address: str | None, base: ExecutorConfig | None = None) -> ExecutorConfig:
    """`base` (a config file's ``executor:``; default: the local runner) with the command line's
    ``--executor``/``--ray-address`` over it."""
    base = base or ExecutorConfig()
    if address and (kind or base.kind) == "local":
        raise ConfigError("a Ray address (--ray-address, ray_address=) goes with the ray executor (--executor ray)")
    return dataclasses.replace(base, kind=kind or base.kind, address=address or base.address)


def require_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise MissingExtra(RAY_MISSING) from None
    return ray


def a_ray_token_where_home_cannot_hold_one(environ: MutableMapping[str, str] = os.environ) -> None:
    """Ray turns token authentication on for a cluster that `ray.init` starts, and saves a new token
    in ~/.ray/auth_token: where HOME cannot be written (a container run as a user with no home,
    HOME=/nonexistent) `--executor ray` stopped with Ray's FileNotFoundError or PermissionError.
    There, the token is made here and handed to Ray in RAY_AUTH_TOKEN (Ray's own way to pass one),
    for this process and the cluster's processes, which inherit it: it is never written to disk.
    A token the user chose (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH) or saved is left alone; it
    changes nothing where HOME can be written. Only for a cluster started here: one joined
    (``address``, RAY_ADDRESS) needs its own token."""
    if environ.get("RAY_AUTH_TOKEN") or environ.get("RAY_AUTH_TOKEN_PATH") or environ.get("RAY_ADDRESS"):
        return  # a token chosen, or a cluster to join (RAY_ADDRESS), which has its own
    saved = os.path.join(os.path.expanduser(environ.get("HOME") or "~"), ".ray", "auth_token")
    if os.path.exists(saved) or can_write_in(Path(saved).parent):
        return
    environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)  # what Ray's own token generator makes


def make_executor(config: ExecutorConfig | None, *, join: bool = True) -> RayExecutor | None:
    """None for the local runner, else a RayExecutor connected to its cluster (`join` False:
    connected when a stage first uses it; see `RayExecutor`)."""
    if config is None or config.kind == "local":
        return None
    if config.kind != "ray":
        raise ConfigError(f"executor.kind must be local or ray, got {config.kind!r}")
    return RayExecutor(config, join=join)


def parallel_map(ctx: Any, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """``[fn(x) for x in items]``, as Ray tasks when the run context carries a Ray executor."""
    executor = getattr(ctx, "executor", None)
    if executor is None or len(items) < 2:
        return [fn(x) for x in items]
    return executor.map(fn, items)


def band_runner(ctx: Any) -> Any:
    """The fuzzy matcher's band runner for this run context (None: run the bands here)."""
    executor = getattr(ctx, "executor", None)
    return None if executor is None else executor.band_runner


# ---------------------------------------------------------------------------------------------
# connecting


CONNECT_SECONDS = 5.0  # how long an address may take to answer before it is called unreachable
_JOINED: dict[str, Any] = {}  # the Ray session `connect` started or joined, and with what


def connect(config: ExecutorConfig) -> None:
    """Start Ray here (no address) or join the cluster at ``config.address``, once a process.

    Why the checks: Ray's own connect to an address where nothing answers retries forever in C++,
    deaf to SIGTERM and Ctrl-C, and its other failures (no cluster for ``auto``, a malformed
    address, ``ray://`` without Ray's client) were tracebacks. And a second job of one Python
    session ran on the Ray the first had started, whatever address or CPUs it asked for."""
    ray = require_ray()
    here = config.address in (None, "local")  # "local": Ray's own word for a new instance here
    wanted = {"address": config.address, "num_cpus": config.num_cpus if here else None}
    if ray.is_initialized():
        ours = _JOINED.get("session") == ray.get_runtime_context().get_session_name()  # not a ray.init of the caller's
        if ours and _JOINED["settings"] != wanted:
            raise UserError(f"this process already runs Ray {_described(_JOINED['settings'])}; a job cannot also "
                            f"run {_described(wanted)}: call ray.shutdown() first")
        return
    joins = config.address or os.environ.get("RAY_ADDRESS")  # RAY_ADDRESS: what ray.init joins when given none
    if here:
        a_ray_token_where_home_cannot_hold_one()
    if joins not in (None, "auto", "local"):
        _check_reachable(joins)
    try:
        ray.init(address=config.address, num_cpus=wanted["num_cpus"], include_dashboard=False, log_to_driver=True)
    except (ConnectionError, ValueError, RuntimeError) as err:
        said = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        where = f"the Ray cluster at {joins}" if joins not in (None, "local") else "a Ray instance here"
        raise UserError(f"cannot start or join {where} ({said})") from None
    _JOINED.update(session=ray.get_runtime_context().get_session_name(), settings=wanted)


def _described(joined: dict[str, Any]) -> str:
    if joined["address"] is not None:
        return f"joined to {joined['address']}"
    return "started here" + (f" on {joined['num_cpus']} CPUs" if joined["num_cpus"] else "")


def _check_reachable(address: str) -> None:
    """A HOST[:PORT] (or ray://HOST[:PORT]) that accepts a connection within CONNECT_SECONDS; the
    address may come from RAY_ADDRESS, which `ray.init` reads when given none."""
    import socket

    client = address.startswith("ray://")
    host, colon, port = address.removeprefix("ray://").rpartition(":")
    if not colon or host.endswith(":"):  # no port (an IPv6 address without one ends in ":" here)
        host, port = address.removeprefix("ray://"), "10001" if client else "6379"  # Ray's own defaults
    if not host or not port.isdigit() or any(c.isspace() for c in host):
        raise UserError(f"Ray address {address!r} is not HOST[:PORT], ray://HOST[:PORT], auto or local")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_SECONDS).close()
    except OSError as err:
        raise UserError(f"nothing answers at Ray address {address} ({err.strerror or err}) within "
                        f"{CONNECT_SECONDS:g} s: is the cluster up, and is the address its head's?") from None


# ---------------------------------------------------------------------------------------------
# the executor


class RayExecutor:
    """Connects to (or starts) a Ray cluster; the pipeline and the stages call ``run_stage``,
    ``map`` and ``band_runner``. Stages travel to the workers by pickling: an LLM stage travels as
    its config and each worker builds its engines once, for all its blocks (an HTTP client, or
    the model itself for ``base_url: vllm``, on the ``gpus_per_worker`` GPUs it reserved). An
    engine object handed to a stage by hand must be picklable.

    `join` False: only the extra is checked here (`require_ray`); Ray is started or joined when a
    stage first uses the executor. Why: a file run reads its input first, and a missing or wrong
    file cost a Ray start (seconds, and its log lines) before the one line the local run gives."""

    def __init__(self, config: ExecutorConfig, *, join: bool = True):
        require_ray()
        self.config = config
        self.joined = False
        if join:
            self.join()

    def join(self) -> None:
        """Start or join the cluster (`connect`), once."""
        if not self.joined:
            connect(self.config)
            self.joined = True

    def parallelism(self) -> int:
        ray = require_ray()
        self.join()
        return self.config.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        ray = require_ray()
        self.join()
        task = ray.remote(num_cpus=1)(_call)
        return _results([task.remote(fn, item) for item in items])

    def band_runner(self, job: Any, bands: list[tuple[int, int]]) -> list[Any]:
        """Filter groups of bands as Ray tasks, then score the survivors here. The job goes to
        the object store once, without its texts (``BandJob.without_texts``): its arrays reach
        every task without a copy, and the texts, unpickled anew by every task, cost more
        than the filtering at 1M rows."""
        ray = require_ray()
        self.join()
        groups = group_bands([job.band_cost(b) for b in bands], 4 * self.parallelism())
        ref = ray.put(job.without_texts())
        task = ray.remote(num_cpus=1)(_filter_bands)
        parts = _results([task.remote(ref, bands[a:b]) for a, b in groups])
        rows = np.concatenate([np.zeros(0, np.int64), *(r for r, _ in parts)])
        cols = np.concatenate([np.zeros(0, np.int64), *(c for _, c in parts)])
        return [job.score(rows, cols, workers=-1)]

    def run_stage(self, stage: Any, rows: Any, ctx: Any) -> Any:
        """A row-parallel stage over Ray Data blocks; the same StageResult the stage gives locally."""
        if rows is None or len(rows) == 0:
            return stage.run(rows, ctx)
        import pyarrow as pa

        ray = require_ray()
        self.join()

        rows = flattened(rows)
        table = rows.data.table.append_column(POSITION, pa.array(np.arange(len(rows), dtype=np.int64)))
        workers = min(self.parallelism(), len(rows))
        block = self.config.rows_per_block or math.ceil(len(rows) / (4 * workers))
        # one block per batch, several per worker, so every worker gets work and order is kept
        blocks = [table.slice(start, block) for start in range(0, len(rows), block)]
        args = (stage, rows.features, RunContext(ctx.run_dir, ctx.stage_dir, ctx.state_dir))
        if stage.holds_model() or self.config.gpus_per_worker:
            work = {"fn": _StageWorker, "fn_constructor_args": args,
                    "compute": ray.data.ActorPoolStrategy(size=workers)}
        else:
            work = {"fn": _run_block, "fn_args": (uuid.uuid4().hex, *args),
                    "compute": ray.data.TaskPoolStrategy(size=workers)}
        results = ray.data.from_arrow(blocks).map_batches(
            **work,
            batch_size=block,
            batch_format="pyarrow",
            num_cpus=1,
            num_gpus=self.config.gpus_per_worker or None,
        )
        return merge_results(stage, _parts_or_first_error(results))


def _parts_or_first_error(results: Any) -> list[Any]:
    """The blocks' results in block order, read as each block finishes; the first m1data error a
    block returns (`_StageWorker`) is raised at once. Why as they finish, not `take_all`: a
    block's error came to the driver only once every block had run, so the workers that had not
    failed themselves ran their blocks to the end, and started new ones, after the stage had
    already failed (a refused key or a teacher without reasoning paid for in every block).
    Leaving Ray Data's iterator early is the engine's own stop: it shuts the execution down,
    starts no other block, and cancels the blocks running (their answered replies are in the
    cache already; calls on the wire at that moment are lost, as on Ctrl-C). Before ray 2.57
    the execution ran on after the iterator closed, and the process's next `ray.shutdown()`
    ended the process (exit 1 or a segmentation fault): hence the extra's floor. No
    prefetching: with Ray Data's default (`prefetch_batches=1`, ray 2.51 to 2.60) the iterator
    fetches the next block before it yields the one at hand, so a failed block's error waited
    for another block to end (30 s in the test)."""
    records = []
    batches = iter(results.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=0))
    with contextlib.closing(batches):  # closed at once, not when the garbage collector gets to it
        for batch in batches:
            for record in batch.to_pylist():
                part = pickle.loads(record["result"])
                if isinstance(part, M1DataError):
                    raise part
                records.append((record[POSITION], part))
    records.sort(key=lambda record: record[0])
    return [part for _, part in records]


def _results(refs: list[Any]) -> list[Any]:
    """The tasks' results; a problem the user can fix (an M1DataError: a malformed source file)
    raised in a task is raised here as itself. Ray wraps it in a RayTaskError whose message is the
    worker's traceback, and the command line would print that instead of its one line. Read in
    order, so that where several tasks fail the first one's error is raised, as the local runner
    raises it (`ray.get` of the list raises whichever failure arrives first)."""
    ray = require_ray()
    try:
        return [ray.get(ref) for ref in refs]
    except ray.exceptions.RayTaskError as err:
        cause = getattr(err, "cause", None)
        if isinstance(cause, M1DataError):
            raise cause from None
        raise


def _call(fn: Callable[[T], R], item: T) -> R:
    return fn(item)


def _filter_bands(job: Any, bands: list[tuple[int, int]]) -> Any:
    return job.filtered(bands, workers=1)


_RESIDENT: dict[str, _StageWorker] = {}  # in a Ray worker process: the stage it is running now


def _run_block(batch: Any, key: str, stage: Any, features: Any, ctx: Any) -> Any:
    """A Ray task: the worker process keeps the stage of one ``run_stage`` call (``key``) for
    its later blocks, so its engine or tagger is built once per process, as an actor's would
    be, and drops the previous stage's when the next one arrives."""
    worker = _RESIDENT.get(key)
    if worker is None:
        _RESIDENT.clear()
        worker = _RESIDENT[key] = _StageWorker(stage, features, ctx)
    return worker(batch)


class _StageWorker:
    """Holds the stage (and whatever it builds once) and runs blocks: a Ray actor, or kept by
    ``_run_block`` in a task's worker process.

    An m1data error the stage raises (a UserError from its check, an EndpointError from an LLM
    stage whose server refuses the key or is down) is returned as the block's result, and
    ``run_stage`` raises it on the driver as itself: the local runner's one line and exit code 2.
    Why: raised here, Ray Data wrapped it in a UserCodeException whose cause does not survive the
    trip to the driver, logged the worker's traceback, and the command line printed it as an
    internal error and exited 1. The driver raises it as soon as the block returns it, which stops
    Ray Data's execution (`_parts_or_first_error`); a block already handed to this worker returns
    the same error without running."""

    def __init__(self, stage: Any, features: Any, ctx: Any):
        self.stage, self.features, self.ctx = stage, features, ctx
        self.stopped: M1DataError | None = None

    def __call__(self, batch: Any) -> Any:
        import datasets
        import pyarrow as pa
        from datasets.table import InMemoryTable


        position = batch.column(POSITION)[0].as_py()
        table = batch.drop_columns([POSITION]).cast(self.features.arrow_schema)
        rows = datasets.Dataset(InMemoryTable(table), info=datasets.DatasetInfo(features=self.features),
                                fingerprint=fresh_fingerprint())
        result: Any = self.stopped
        if result is None:
            try:
                result = portable(self.stage.run(rows, self.ctx))  # a block may keep no rows: still unpicklable
            except M1DataError as err:
                result = self.stopped = err
        return pa.table({POSITION: [position], "result": [pickle.dumps(result)]})


def group_bands(costs: Sequence[int], groups: int) -> list[tuple[int, int]]:
    """Contiguous [start, end) groups of bands of about equal total cost (at most ``groups``)."""
    if not costs:
        return []
    total = np.cumsum(np.asarray(costs, dtype=np.float64) + 1.0)
    cuts = np.searchsorted(total, total[-1] * np.arange(1, groups) / groups, side="left") + 1
    edges = sorted({0, *[int(c) for c in cuts if 0 < c < len(costs)], len(costs)})
    return list(itertools.pairwise(edges))


# ---------------------------------------------------------------------------------------------
# putting the blocks back together


def merge_results(stage: Any, parts: list[Any]) -> Any:
    """One StageResult from the blocks' results, in block order: the stage's own
    ``Stage.merge_results`` (rows concatenated, statistics by its ``merge_stats``, transient
    failures summed, so a block left incomplete leaves the stage incomplete)."""
    return stage.merge_results(parts)


__all__ = [
    "POSITION",
    "RAY_MISSING",
    "ExecutorConfig",
    "MissingExtra",
    "RayExecutor",
    "a_ray_token_where_home_cannot_hold_one",
    "band_runner",
    "executor_config",
    "group_bands",
    "make_executor",
    "merge_results",
    "parallel_map",
    "require_ray",
    "sum_stats",
]
