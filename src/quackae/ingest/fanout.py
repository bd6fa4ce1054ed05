"""Chunk-parallel execution of the ingest stage: one reader, many workers, one committer.

A gzip stream cannot be split at byte offsets without an index, so one reader (the driver)
decompresses every source in turn and cuts its lines into chunks (``cut_chunks``). Each chunk
is a self-contained job: parsing, labelling, tokenizing and writing its shard need nothing but
the chunk's lines, the dataset's tokenizer and the signatures. Jobs run in this process
(``InlineExecutor``, ``--workers 1``), in spawned worker processes (``PoolExecutor``,
``--workers N``) or as Ray tasks on a cluster (``RayExecutor``, ``--ray_address``); workers
write the shard and return its manifest entry.

The driver (``drive``) commits results strictly in the order the chunks were cut, buffering
those that finish early, so a source's ``lines_done``/``chunks`` keep meaning "every line before
this one is committed" and a killed run resumes exactly. A job is idempotent (its shard name
and content depend only on the source, the chunk number and its lines), so a job run twice (a
retried Ray task, a resubmitted job of a dead worker process) writes the same file and its
second result is ignored: rows land exactly once. At most ``slots`` jobs (two per worker) are
cut but not yet committed, which bounds memory to about two chunks per worker.

One reader for all sources rather than one worker per file: a real Censored Planet scan is one
big results member, and the days' files differ in size by 10x, so chunks balance the work
whatever the mix. Decompressing and cutting lines runs at hundreds of MB/s, parsing and
tokenizing real pages at about 20 MB/s per core, so one reader feeds on the order of ten
workers; ``benchmarks/ingest.py --real`` prints both rates.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from multiprocessing import connection as mp_connection
from typing import Any, Protocol

import pyarrow as pa

from quackae.ingest.sources import iter_lines, scan_from_name, source_name

log = logging.getLogger(__name__)

ARCHIVE_DAMAGE = ("truncated archive", "corrupt archive")  # iter_lines' reasons for an early end
JOBS_PER_WORKER = 2  # chunks cut but not committed, per worker: the memory bound
POOL_RESTARTS = 3  # dead worker processes replaced per run before the rest is given up
RAY_RETRIES = 3  # retries of a Ray task whose worker died (the task is idempotent)
RAY_TASK_NAME = "quackae_ingest_chunk"

# ("commit", key, entry, last_line, chunks, done, reasons, early) | ("failed", key, text)
# | ("fatal", key, text)
Message = tuple


@dataclass
class ChunkJob:
    """The lines of one chunk of one source, and where the chunk sits in the source."""

    key: str  # the source's key
    name: str  # the source's file name
    scan: str | None
    chunk_no: int
    line_nos: list[int] = field(default_factory=list)
    datas: list[bytes] = field(
        default_factory=list
    )  # the lines' bytes (shipped as they are: joining
    # them into one buffer and splitting it again cost 6% of a one-worker run)
    rejects: list[dict[str, Any]] = field(default_factory=list)  # the reader's (too long, damage)
    last_line: int = 0  # the last physical line this chunk covers
    done: bool = False  # the source's last chunk, read to its end without damage
    early: str = ""  # why the source ended early (truncated or corrupt), else ""

    def lines(self) -> Iterator[tuple[int, bytes]]:
        """``(line_no, data)`` of every line, in order."""
        if self.line_nos:
            yield from zip(self.line_nos, self.datas, strict=True)


class Processor(Protocol):
    """What a worker runs a job with (``flatten``'s per-process worker)."""

    def process(self, job: ChunkJob) -> Message: ...


Factory = Callable[
    [str, Any], Processor
]  # (root, options) -> a Processor; module-level, importable


class _NoPandas:
    """A meta-path finder that refuses ``pandas`` (see :func:`skip_pandas_probe`)."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name == "pandas" or name.startswith("pandas."):
            raise ImportError("not imported by quackae's ingest processes")


def skip_pandas_probe() -> None:
    """Spare an ingest process pyarrow's pandas import (0.2-0.4 s, a sixth of a small run).

    On its first conversion pyarrow imports pandas only to ask whether the input is a DataFrame;
    ingest never hands it one. The probe runs here once with pandas refused, so pyarrow goes on
    without it; pandas itself stays importable, and pyarrow still takes and gives DataFrames when
    asked later (checked in ``tests/test_fanout.py``). Called where a process exists for ingest
    only: ``quackae flatten`` and its worker processes.
    """
    if "pandas" in sys.modules:
        return
    blocker = _NoPandas()
    sys.meta_path.insert(0, blocker)
    try:
        pa.array([0])
    finally:
        sys.meta_path.remove(blocker)


# --------------------------------------------------------------------------- the reader


def cut_chunks(
    path: str,
    key: str,
    skip: int,
    first_chunk: int,
    chunk_lines: int,
    chunk_bytes: int,
    seconds: Counter | None = None,
) -> Iterator[ChunkJob]:
    """Chunks of ``path`` from line ``skip + 1``: every ``chunk_lines`` lines or ``chunk_bytes``.

    The last chunk (possibly without lines) carries ``done`` or ``early``. Time spent reading is
    added to ``seconds["read"]``.
    """
    name = source_name(path)
    scan = scan_from_name(name)
    seconds = seconds if seconds is not None else Counter()
    state = {"early": ""}
    job = ChunkJob(key, name, scan, first_chunk, last_line=skip)
    size = 0

    def reject(_source: str, line_no: int, reason: str) -> None:
        if reason.startswith(ARCHIVE_DAMAGE):
            state["early"] = reason
        job.rejects.append({"file": name, "line": line_no, "reason": reason})

    clock = time.perf_counter
    mark = clock()
    for item in iter_lines(path, reject, skip_lines=skip):
        job.line_nos.append(item.line_no)
        job.last_line = item.line_no
        job.datas.append(item.data)
        size += len(item.data)
        if len(job.datas) >= chunk_lines or size >= chunk_bytes:
            seconds["read"] += clock() - mark
            yield job
            mark = clock()
            job = ChunkJob(key, name, scan, job.chunk_no + 1, last_line=job.last_line)
            size = 0
    job.early = state["early"]
    job.done = not job.early
    seconds["read"] += clock() - mark
    yield job


def _failed(key: str, text: str) -> Message:
    return ("failed", key, text)


def cut_all(
    tasks: Iterable[tuple[str, str, int, int]],
    chunk_lines: int,
    chunk_bytes: int,
    seconds: Counter | None = None,
) -> Iterator[ChunkJob | Message]:
    """The chunks of every ``(path, key, skip, first_chunk)`` task, source after source.

    A source that cannot be read (missing, unreadable mid-way) yields a ``failed`` message
    after its chunks read so far, which stay valid.
    """
    for path, key, skip, first_chunk in tasks:
        try:
            yield from cut_chunks(path, key, skip, first_chunk, chunk_lines, chunk_bytes, seconds)
        except Exception as e:  # noqa: BLE001 - one unreadable source must not stop the others
            log.exception("source %s failed", path)
            yield _failed(key, f"{type(e).__name__}: {e}")


# --------------------------------------------------------------------------- the committer


class Executor(Protocol):
    """Runs jobs somewhere; results come back through ``wait`` in any order."""

    slots: int  # jobs cut but not committed at most

    def submit(self, seq: int, job: ChunkJob) -> None: ...

    def wait(self) -> list[tuple[int, Message]]: ...

    def close(self) -> None: ...


def drive(
    items: Iterable[ChunkJob | Message],
    executor: Executor,
    handle: Callable[[Message], None],
    discard: Callable[[dict[str, Any]], None],
) -> None:
    """Run every job on ``executor`` and pass results to ``handle`` in the order cut.

    ``handle`` also gets ``("progress", lines)`` after each commit. After a source failed, its
    later results are not committed: ``discard`` gets their manifest entries (files to delete).
    """
    keys: dict[int, tuple[str, int]] = {}  # seq -> (source key, lines): cut, not committed
    results: dict[int, Message] = {}
    dead: set[str] = set()
    state = {"next": 0}

    def flush() -> None:
        while state["next"] in results:
            seq = state["next"]
            msg = results.pop(seq)
            key, lines = keys.pop(seq)
            state["next"] += 1
            if key in dead:
                if msg[0] == "commit" and msg[2] is not None:
                    discard(msg[2])
                continue
            if msg[0] != "commit":
                dead.add(key)
            handle(msg)
            if msg[0] == "commit":
                handle(("progress", lines))

    def collect() -> None:
        for seq, msg in executor.wait():
            if seq in keys and seq not in results:  # a second result of a rerun job is ignored
                results[seq] = msg
        flush()

    for seq, item in enumerate(items):
        while len(keys) >= executor.slots:
            collect()
        if isinstance(item, ChunkJob):
            keys[seq] = (item.key, len(item.line_nos))
            executor.submit(seq, item)
        else:
            keys[seq] = (item[1], 0)
            results[seq] = item
        flush()
    while keys:
        collect()


# --------------------------------------------------------------------------- executors

_PROCESSORS: dict[tuple, Processor] = {}


def run_job(
    factory: Factory,
    root: str,
    options: Any,
    job: ChunkJob,
    cache: dict[tuple, Processor] = _PROCESSORS,
) -> Message:
    """Run one job with the processor for ``(root, options)`` in ``cache``, made on first use.

    Worker processes and Ray workers keep theirs for their lifetime (the module's cache).
    """
    cache_key = (factory.__module__, factory.__qualname__, root, options)
    processor = cache.get(cache_key)
    if processor is None:
        if (
            cache is _PROCESSORS
        ):  # a worker process: one tokenizer thread, workers are the parallelism
            os.environ["RAYON_NUM_THREADS"] = "1"
            os.environ["TOKENIZERS_PARALLELISM"] = "false"
        try:
            processor = cache[cache_key] = factory(root, options)
        except Exception as e:  # noqa: BLE001 - reported to the driver as a failed source
            return _failed(job.key, f"worker could not start: {type(e).__name__}: {e}")
    return processor.process(job)


class InlineExecutor:
    """Jobs run in this process as they are submitted: ``--workers 1``."""

    slots = 1

    def __init__(self, factory: Factory, root: str, options: Any) -> None:
        self.factory, self.root, self.options = factory, root, options
        self.cache: dict[tuple, Processor] = {}  # this run's processor, gone with the run
        self.done: list[tuple[int, Message]] = []

    def submit(self, seq: int, job: ChunkJob) -> None:
        """Run the job now."""
        self.done.append((seq, run_job(self.factory, self.root, self.options, job, self.cache)))

    def wait(self) -> list[tuple[int, Message]]:
        """The results of the jobs run since the last call."""
        done, self.done = self.done, []
        return done

    def close(self) -> None:
        """Nothing to stop."""


def _pool_main(
    factory: Factory, root: str, options: Any, jobs: mp.Queue, out: Any, parent: int
) -> None:
    """Worker process: run jobs until told to stop, or until the driver is gone."""
    threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()
    skip_pandas_probe()
    while True:
        item = jobs.get()
        if item is None:
            return
        seq, job = item
        out.send((seq, run_job(factory, root, options, job)))


def _exit_with(parent: int) -> None:
    """Stop this process within a second of the driver's death, whatever it is doing.

    A driver killed mid-way through sending a job leaves half a message in the pipe, which
    would block the worker's read forever; the watch does not depend on the pipe.
    """
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


class _Worker:
    """One worker process with its own job queue and result pipe.

    Nothing is shared between workers: a worker killed while holding a queue's lock or
    half-way through a message breaks only its own channels, which die with it.
    """

    def __init__(self, ctx: Any, args: tuple) -> None:
        self.jobs = ctx.Queue()
        self.results, send = ctx.Pipe(duplex=False)
        self.proc = ctx.Process(
            target=_pool_main, args=(*args, self.jobs, send, os.getpid()), daemon=True
        )
        self.proc.start()
        send.close()  # the worker holds the only writing end: its death reads as EOF here
        self.pending: dict[int, ChunkJob] = {}

    def submit(self, seq: int, job: ChunkJob) -> None:
        self.pending[seq] = job
        self.jobs.put((seq, job))

    def abandon(self) -> None:
        """Forget a dead worker's channels without waiting on them."""
        self.jobs.cancel_join_thread()
        self.jobs.close()
        self.results.close()


class PoolExecutor:
    """Jobs spread over ``workers`` spawned processes, the least busy first: ``--workers N``.

    A worker process that dies is replaced and the jobs it had not answered go to its
    replacement, up to ``POOL_RESTARTS`` times per run; after that they fail their sources.
    """

    def __init__(self, factory: Factory, root: str, options: Any, workers: int) -> None:
        self.args = (factory, root, options)
        self.slots = JOBS_PER_WORKER * workers
        self.ctx = mp.get_context("spawn")
        self.workers = [_Worker(self.ctx, self.args) for _ in range(workers)]
        self.restarts = 0

    def submit(self, seq: int, job: ChunkJob) -> None:
        """Queue the job at the worker with the fewest unanswered jobs."""
        min(self.workers, key=lambda w: len(w.pending)).submit(seq, job)

    def wait(self) -> list[tuple[int, Message]]:
        """Block until at least one result is in; replace dead workers meanwhile."""
        while True:
            owner = {w.results: w for w in self.workers}
            got: list[tuple[int, Message]] = []
            for conn in mp_connection.wait(list(owner), timeout=0.5):
                worker = owner[conn]
                try:
                    seq, msg = conn.recv()
                except (EOFError, OSError):  # the worker died; what it sent before was read
                    got += self._replace(worker)
                    continue
                worker.pending.pop(seq, None)
                got.append((seq, msg))
            if got:
                return got

    def _replace(self, dead: _Worker) -> list[tuple[int, Message]]:
        """Start a worker in a dead one's place with its unanswered jobs; past the limit, fail."""
        dead.abandon()
        dead.proc.join(timeout=5)
        self.restarts += 1
        fresh = _Worker(self.ctx, self.args)
        self.workers[self.workers.index(dead)] = fresh
        if self.restarts > POOL_RESTARTS:
            return [
                (s, _failed(j.key, f"worker process died ({self.restarts} times)"))
                for s, j in dead.pending.items()
            ]
        log.warning(
            "a worker process died (exit code %s); restarting it with its %d chunk(s)",
            dead.proc.exitcode,
            len(dead.pending),
        )
        for seq, job in sorted(dead.pending.items()):
            fresh.submit(seq, job)
        return []

    def close(self) -> None:
        """Stop the workers (at once if jobs are left, e.g. after a fatal error)."""
        busy = any(w.pending for w in self.workers)
        for w in self.workers:
            w.jobs.put(None)
        for w in self.workers:
            w.proc.join(timeout=0 if busy else 10)
            if w.proc.is_alive():
                w.proc.terminate()
                w.proc.join(timeout=5)
            w.abandon()


def _ray_job(factory: Factory, root: str, options: Any, job: ChunkJob) -> Message:
    """Ray task body: one job on whichever node runs it."""
    return run_job(factory, root, options, job)


class RayExecutor:
    """Jobs as Ray tasks (one CPU each) on the cluster this driver joined: ``--ray_address``.

    A task whose worker process dies is retried by Ray (``RAY_RETRIES``); a task that still
    fails makes its source fail, with Ray's reason in one line.
    """

    def __init__(self, factory: Factory, root: str, options: Any) -> None:
        import ray

        self.ray = ray
        self.args = (factory, root, options)
        self.task = ray.remote(_ray_job).options(
            num_cpus=1, max_retries=RAY_RETRIES, name=RAY_TASK_NAME
        )
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.slots = JOBS_PER_WORKER * max(cpus, 1)
        self.refs: dict[Any, tuple[int, str]] = {}

    def submit(self, seq: int, job: ChunkJob) -> None:
        """Start the job as a task."""
        self.refs[self.task.remote(*self.args, job)] = (seq, job.key)

    def wait(self) -> list[tuple[int, Message]]:
        """Block until at least one task has finished; their results."""
        ready, _ = self.ray.wait(list(self.refs), num_returns=1)
        got = []
        for ref in ready:
            seq, key = self.refs.pop(ref)
            try:
                got.append((seq, self.ray.get(ref)))
            except self.ray.exceptions.RayError as e:
                first = (str(e).strip().splitlines() or [type(e).__name__])[0]
                got.append(
                    (seq, _failed(key, f"Ray task failed after {RAY_RETRIES} retries: {first}"))
                )
        return got

    def close(self) -> None:
        """Cancel what is still running (after a fatal error); the cluster stays up."""
        for ref in self.refs:
            self.ray.cancel(ref, force=True)
        self.refs.clear()
