"""The dataset directory: Parquet shards + ``manifest.json``; atomic append, resume, mmap reads.

Layout::

    DIR/manifest.json            what is committed (only shards listed here exist for readers)
    DIR/tokenizer.json           the BPE tokenizer the tokens were made with
    DIR/shards/part-*.parquet    one row per non-control try
    DIR/rejects/part-*.jsonl     every rejected input line: {"file", "line", "reason"}
    DIR/cache/                   flat token cache, memory-mapped by readers (rebuilt on demand)

Every file is written through ``atomic.atomic_path`` (temporary name, fsync, rename, fsync of the
directory), and the manifest is replaced last, so a run killed at any moment leaves the previous
committed state intact. Writers hold ``dataset_lock(root)``; ``commit`` is the one way to change
the manifest from a process that did not write the shards itself.

``root`` may also be an object-store URI (``gs://``, ``s3://``; see ``storage``): each file is
then one upload, which appears whole when it ends, and the manifest is still written last.
Object stores have no flock: the writer lock is an object (``.quackae.lock``: host, pid, time)
that refuses a second writer. Readers of such a dataset use ``local_dataset``, a local mirror,
because the token cache must be a memory-mapped local file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from quackae import atomic, storage
from quackae.storage import Location

FORMAT_VERSION = 2  # 2: sources keyed by file name (a truncated copy and the full one share a key)
MANIFEST = "manifest.json"
TOKENIZER = "tokenizer.json"
SHARD_NAME = re.compile(r"part-[0-9a-f]{16}-\d{5,}\.(parquet|jsonl)")
CACHE_NAME = re.compile(r"(tokens|offsets)-[0-9a-f]{16}\.(bin|npy)")
CACHE_ENV = "QUACKAE_CACHE"  # where local mirrors of object-store datasets live
Root = Path | str | Location  # a dataset directory: local path, object-store URI, or Location
log = logging.getLogger(__name__)

SCHEMA = pa.schema(
    [
        ("row_id", pa.int64()),
        ("source", pa.string()),
        ("line", pa.int64()),
        ("try_index", pa.int16()),
        ("ip", pa.string()),
        ("domain", pa.string()),
        ("location", pa.string()),
        ("country_code", pa.string()),
        ("timestamp", pa.int64()),
        ("end_time", pa.int64()),
        ("duration_ms", pa.float32()),
        ("scan", pa.string()),
        ("censored", pa.int8()),
        ("fingerprint", pa.string()),
        ("outcome", pa.string()),
        ("anomaly", pa.bool_()),
        ("length", pa.int32()),
        ("tokens", pa.list_(pa.int32())),
    ]
)

#: How shards are written. Dictionary encoding only for the few-valued text columns: on the token
#: lists and per-row ids it costs a third of the write time and makes the file larger (measured on
#: the real mix of ``benchmarks/ingest.py --real``: 0.61 s -> 0.39 s per 105k rows, 20% smaller).
SHARD_WRITE_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "row_group_size": 16384,
    "use_dictionary": ["source", "domain", "location", "country_code", "scan", "fingerprint", "outcome"],
    "write_statistics": [name for name in SCHEMA.names if name != "tokens"],  # min/max of ids: no use
}
METADATA_COLUMNS = tuple(n for n in SCHEMA.names if n not in ("tokens",))
LABEL_KEYS = {1: "censored", 0: "undetermined", -1: "uncensored"}


StoreError = atomic.StoreError  # a dataset directory that cannot be used; the message says what to do


def location(root: Root) -> Location:
    """The ``Location`` of a dataset root given as a local path, a URI string or a Location."""
    if isinstance(root, Location):
        return root
    try:
        return storage.resolve(root)
    except storage.StorageError as e:
        raise StoreError(str(e)) from None


def _remote(root: Root) -> Location | None:
    """The root's ``Location`` if it is on an object store, else None (the local code paths)."""
    if isinstance(root, Location):
        return root if root.remote else None
    return location(root) if storage.is_uri(root) else None


def _local(root: Root) -> Path:
    """A local root as a ``Path`` (a local ``Location`` and a ``file://`` URI included)."""
    if isinstance(root, str) and root.startswith("file://"):
        return Path(storage.resolve(root).path)
    return Path(root.path) if isinstance(root, Location) else Path(root)


def _store_call(loc: Location, what: str):
    """Context turning a store's I/O error into a one-line ``StoreError`` naming ``loc``."""
    return _StoreCall(loc, what)


class _StoreCall(contextlib.AbstractContextManager):
    def __init__(self, loc: Location, what: str) -> None:
        self.loc, self.what = loc, what

    def __exit__(self, kind, exc, tb) -> bool:
        if isinstance(exc, storage.StorageError):
            raise StoreError(str(exc)) from None
        if isinstance(exc, OSError | pa.ArrowException) and not isinstance(exc, FileNotFoundError):
            raise StoreError(
                f"{self.loc}: cannot {self.what} ({storage._first_line(exc)}); check the URI, "
                "credentials and network, then rerun"
            ) from None
        return False


def row_id(source_key: str, line: int, try_index: int) -> int:
    """Stable signed 64-bit id of a row, the same in every run over the same source."""
    digest = hashlib.blake2b(f"{source_key}:{line}:{try_index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def row_ids(source_key: str, lines: Sequence[int], try_indices: Sequence[int]) -> list[int]:
    """``row_id`` of many rows of one source (the key is encoded once)."""
    prefix, blake2b, from_bytes = f"{source_key}:".encode(), hashlib.blake2b, int.from_bytes
    return [
        from_bytes(blake2b(prefix + b"%d:%d" % (line, t), digest_size=8).digest(), "little", signed=True)
        for line, t in zip(lines, try_indices, strict=True)
    ]


def damaged(path: Path | Location, exc: BaseException) -> StoreError:
    """The one-line error for a shard that cannot be read (truncated, overwritten, missing)."""
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(path, Location):
        root = path.uri.split("/shards/", 1)[0].split("/rejects/", 1)[0]
        if path.query:
            root += f"?{path.query}"
    else:
        root = Path(path).parent.parent
    return StoreError(
        f"{path} is damaged ({reason}); `quackae inspect {root} --verify` lists every damaged "
        "shard: restore them from a backup, or re-flatten the sources into a new --storage_path"
    )


# --------------------------------------------------------------------------- manifest


def new_manifest(layout: dict, tokenizer_sha256: str, max_tokens: int) -> dict[str, Any]:
    """An empty manifest for a dataset made with this tokenizer and layout."""
    return {
        "kind": "dataset",
        "format_version": FORMAT_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "length": 0,
        "censored": 0,
        "undetermined": 0,
        "uncensored": 0,
        "rejected": 0,
        "max_width": 0,
        "max_tokens": max_tokens,
        "vocab_size": layout["vocab_size"],
        "layout": layout,
        "tokenizer_sha256": tokenizer_sha256,
        "sources": {},
        "shards": [],
    }


def read_manifest(root: Root) -> dict[str, Any]:
    """Load ``manifest.json``; a clear ``StoreError`` if the directory is not a dataset."""
    remote = _remote(root)
    path: Path | Location = remote.child(MANIFEST) if remote else _local(root) / MANIFEST
    with _store_call(remote, "read the manifest") if remote else contextlib.nullcontext():
        exists = path.is_file()
    if not exists:
        raise StoreError(
            f"no dataset at {root}: make one with `quackae flatten --source ARCHIVE "
            f"--storage_path {root}` (or `quackae synth` for sample data)"
        )
    try:
        if remote:
            with _store_call(remote, "read the manifest"):
                text = path.read_bytes().decode("utf-8")
        else:
            text = path.read_text()
        manifest = json.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise StoreError(f"{path} is unreadable ({e}); re-create the dataset") from None
    if manifest.get("format_version") != FORMAT_VERSION:
        raise StoreError(
            f"{path} has format_version {manifest.get('format_version')}, this quackae reads "
            f"{FORMAT_VERSION}; re-flatten the sources into a new directory"
        )
    return manifest


def write_manifest(root: Root, manifest: dict[str, Any]) -> None:
    """Replace the manifest atomically: the commit point of every change to the dataset."""
    write_file(root, MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode())


def write_file(root: Root, name: str, data: bytes) -> None:
    """Replace ``root/name`` with ``data``: temp-and-rename locally, one whole upload remotely."""
    remote = _remote(root)
    if remote is None:
        atomic.atomic_write(_local(root) / name, data)
        return
    with _store_call(remote, f"write {name}"):
        remote.child(name).write_bytes(data)


def read_file(root: Root, name: str) -> bytes | None:
    """The bytes of ``root/name``, or None if there is no such file."""
    loc = location(root).child(name)
    with _store_call(loc, "read it"):
        return loc.read_bytes() if loc.is_file() else None


def load_tokenizer(root: Root):
    """The dataset's BPE tokenizer (``tokenizers.Tokenizer``), read from a local or remote root."""
    from tokenizers import Tokenizer

    data = read_file(root, TOKENIZER)
    if data is None:
        raise StoreError(f"{location(root).child(TOKENIZER)}: missing; restore it or re-flatten")
    return Tokenizer.from_str(data.decode("utf-8"))


def add_shard(manifest: dict[str, Any], shard: dict[str, Any]) -> None:
    """Account a committed shard in the manifest totals (caller writes the manifest)."""
    manifest["shards"].append(shard)
    for key in ("length", "censored", "undetermined", "uncensored", "rejected"):
        manifest[key] += shard[key if key != "length" else "rows"]
    manifest["max_width"] = max(manifest["max_width"], shard["max_width"])


def dataset_version(manifest: dict[str, Any], shards: int | None = None) -> dict[str, Any]:
    """Which committed state of a dataset this is (of its first ``shards`` shards if given).

    Appends only add shards, so the version of an older state equals the version of the
    newer one's prefix: that is how a reader tells "grew" from "changed".
    """
    listed = manifest["shards"][:shards] if shards is not None else manifest["shards"]
    digest = hashlib.sha256(json.dumps([(s["file"], s["rows"]) for s in listed]).encode())
    return {"shards": len(listed), "length": sum(s["rows"] for s in listed),
            "digest": digest.hexdigest()[:32]}  # fmt: skip


def drop_source(manifest: dict[str, Any], key: str) -> list[str]:
    """Forget a source's shards and totals (it is being re-read); return the files to delete."""
    kept, files = [], []
    for shard in manifest["shards"]:
        if shard.get("source") != key:
            kept.append(shard)
            continue
        files += [f for f in (shard["file"], shard.get("rejects_file")) if f]
        manifest["length"] -= shard["rows"]
        for k in ("censored", "undetermined", "uncensored", "rejected"):
            manifest[k] -= shard[k]
    manifest["shards"] = kept
    manifest["max_width"] = max((s["max_width"] for s in kept), default=0)
    manifest["sources"].pop(key, None)
    return files


def delete_files(root: Root, files: Iterable[str]) -> None:
    """Delete dataset files the committed manifest no longer lists (after it was written)."""
    remote = _remote(root)
    for name in files:
        if remote is None:
            (_local(root) / name).unlink(missing_ok=True)
        else:
            with _store_call(remote, f"delete {name}"):
                remote.child(name).delete()


def commit(
    root: Root,
    shards: list[dict[str, Any]],
    sources: dict[str, dict[str, Any]] | None = None,
    replace: Iterable[str] = (),
) -> dict[str, Any]:
    """Commit shards written by any process: re-read the manifest, add them, write it back.

    Call it inside ``with dataset_lock(root):``. ``replace`` names source keys whose earlier
    shards are dropped first (a complete copy replacing a truncated one); ``sources`` updates
    the per-source bookkeeping. Returns the new manifest. ``root`` may be a URI.
    """
    manifest = read_manifest(root)
    dropped: list[str] = []
    for key in replace:
        dropped += drop_source(manifest, key)
    for shard in shards:
        add_shard(manifest, shard)
    manifest["sources"].update(sources or {})
    write_manifest(root, manifest)
    delete_files(root, dropped)
    return manifest


def remove_orphans(root: Root, manifest: dict[str, Any]) -> int:
    """Delete a killed run's leftovers: unlisted files with quackae's shard names, and temps.

    Only names quackae itself gives are touched; anything else in the directory is left alone.
    """
    listed = {s["file"] for s in manifest["shards"]} | {
        s["rejects_file"] for s in manifest["shards"] if s.get("rejects_file")
    }
    remote = _remote(root)
    if remote is not None:
        return _remove_remote_orphans(remote, listed)
    root = _local(root)
    removed = atomic.remove_temps(Path(root))
    for sub in ("shards", "rejects"):
        directory = Path(root) / sub
        removed += atomic.remove_temps(directory)
        if not directory.is_dir():
            continue
        for path in directory.iterdir():
            if SHARD_NAME.fullmatch(path.name) and f"{sub}/{path.name}" not in listed:
                path.unlink(missing_ok=True)
                removed += 1
    return removed


def _remove_remote_orphans(root: Location, listed: set[str]) -> int:
    """``remove_orphans`` on an object store: uploads are whole, so only unlisted shards remain."""
    removed = 0
    with _store_call(root, "clean up"):
        for sub in ("shards", "rejects"):
            for obj in root.child(sub).list_files(recursive=False):
                if SHARD_NAME.fullmatch(obj.name) and f"{sub}/{obj.name}" not in listed:
                    obj.delete()
                    removed += 1
    return removed


def _top_names(root: Root) -> set[str] | None:
    """Names directly below a root (None if it does not exist; raises if it is a file)."""
    remote = _remote(root)
    if remote is None:
        path = _local(root)
        if not path.exists() or (path / MANIFEST).exists():
            return None
        if not path.is_dir():
            raise StoreError(f"{path} is a file, not a directory; pass a new --storage_path")
        return {p.name for p in path.iterdir()}
    with _store_call(remote, "list it"):
        if remote.is_file():
            raise StoreError(f"{remote} is an object, not a prefix; pass a new --storage_path")
        if remote.child(MANIFEST).is_file():
            return None
        base = remote.path.rstrip("/") + "/"
        return {obj.path[len(base):].split("/", 1)[0] for obj in remote.list_files()} or None


def check_owned(root: Root) -> None:
    """Refuse a non-empty directory that holds no quackae dataset, before writing anything."""
    names = _top_names(root)
    if not names:
        return
    # a creation killed before its first manifest leaves only the lock, the tokenizer and temps
    ours = {atomic.LOCK_FILE, TOKENIZER} if atomic.LOCK_FILE in names else set()
    foreign = sorted(n for n in names if n not in ours and not atomic.is_temp(n))
    if foreign:
        raise StoreError(
            f"{root} is not empty ({len(foreign)} entries, e.g. {foreign[0]}) and holds no quackae "
            f"dataset ({MANIFEST}); pass a new or empty --storage_path: quackae never writes "
            "into a folder of other files"
        )


def _file(root: Root, name: str) -> tuple[Path | Location, str, pafs.FileSystem | None]:
    """A dataset file as (what to name in messages, path for pyarrow, filesystem for pyarrow)."""
    remote = _remote(root)
    if remote is None:
        path = _local(root) / name
        return path, str(path), None
    loc = remote.child(name)
    return loc, loc.path, loc.fs


def check_shards(root: Root, manifest: dict[str, Any]) -> None:
    """Cheap integrity check before appending: each listed shard's footer and row count."""
    for shard in manifest["shards"]:
        path, where, fs = _file(root, shard["file"])
        try:
            rows = pq.read_metadata(where, filesystem=fs).num_rows
        except (OSError, pa.ArrowException) as e:
            raise damaged(path, e) from None
        if rows != shard["rows"]:
            raise damaged(path, ValueError(f"{rows} rows, the manifest says {shard['rows']}"))


def verify(root: Root) -> list[str]:
    """Read every committed shard in full; return one problem line per damaged file."""
    manifest = read_manifest(root)
    problems = []
    for shard in manifest["shards"]:
        path, where, fs = _file(root, shard["file"])
        try:
            table = pq.read_table(where, filesystem=fs)
            if table.num_rows != shard["rows"] or table.schema.names != SCHEMA.names:
                raise ValueError(f"{table.num_rows} rows, the manifest says {shard['rows']}")
        except (OSError, ValueError, pa.ArrowException) as e:
            problems.append(str(damaged(path, e)))
        rejects = shard.get("rejects_file")
        if rejects and not exists(root, rejects):
            problems.append(f"{_file(root, rejects)[0]}: missing (the rejects of {shard['file']})")
    if not exists(root, TOKENIZER):
        problems.append(f"{_file(root, TOKENIZER)[0]}: missing; restore it or re-flatten into a new --storage_path")
    return problems


def exists(root: Root, name: str) -> bool:
    """Whether the dataset file ``name`` exists."""
    path = _file(root, name)[0]
    if isinstance(path, Location):
        with _store_call(path, "read it"):
            return path.is_file()
    return path.is_file()


# --------------------------------------------------------------------------- the writer lock

_remote_held: dict[str, int] = {}  # lock URI -> depth: re-entrant within a process, as locally
_remote_guard = threading.Lock()


@contextlib.contextmanager
def dataset_lock(root: Root, wait: bool = True) -> Iterator[Path | Location]:
    """Hold a directory's exclusive writer lock for the block (``with dataset_lock(root):``).

    Datasets and embeddings directories both use it.

    Locally: ``atomic.directory_lock`` (flock; a second writer waits). On an object store: the
    lock object ``.quackae.lock`` (host, pid, time); a second writer is refused with one line.
    A lock left by a dead process of this host is taken over. Object stores offer no atomic
    compare-and-swap here, so this guards against mistakes, not against a race of two starts.
    """
    remote = _remote(root)
    if remote is None:
        with atomic.directory_lock(_local(root), wait=wait) as held:
            yield held
        return
    lock = remote.child(atomic.LOCK_FILE)
    with _remote_guard:
        nested = lock.uri in _remote_held
        if nested:
            _remote_held[lock.uri] += 1
    if nested:
        try:
            yield remote
        finally:
            with _remote_guard:
                _remote_held[lock.uri] -= 1
        return
    try:
        mine = _take_object_lock(lock)
        with _remote_guard:
            _remote_held[lock.uri] = 1
        try:
            yield remote
        finally:
            with contextlib.suppress(StoreError, storage.StorageError, OSError, pa.ArrowException):
                if _read_lock(lock) == mine:
                    lock.delete()
    finally:
        with _remote_guard:
            _remote_held.pop(lock.uri, None)


def _read_lock(lock: Location) -> dict[str, Any] | None:
    """The holder recorded in a lock object, or None if there is none."""
    with _store_call(lock, "read the writer lock"):
        if not lock.is_file():
            return None
        data = lock.read_bytes()
    try:
        held = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {"host": "?", "pid": -1, "time": "?"}
    return held if isinstance(held, dict) else {"host": "?", "pid": -1, "time": "?"}


def _pid_alive(pid: Any) -> bool:
    """Whether a process of this host is running (a malformed pid counts as dead)."""
    try:
        pid = int(pid)
    except (TypeError, ValueError):
        return False
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def _take_object_lock(lock: Location) -> dict[str, Any]:
    """Write our lock object unless a live writer holds one; return what we wrote."""
    host, pid = socket.gethostname(), os.getpid()
    held = _read_lock(lock)
    if held is not None:
        dead = held.get("host") == host and (held.get("pid") == pid or not _pid_alive(held.get("pid")))
        if not dead:
            plain = lock.prefix.split("://")[0] + "://" + lock.path
            raise StoreError(
                f"{lock.uri}: another writer (host {held.get('host')}, pid {held.get('pid')}, since "
                f"{held.get('time')}) holds this directory; wait for it to end, or if that run is "
                f"dead delete the lock object (e.g. `gcloud storage rm {plain}`) and rerun"
            )
        log.warning("taking over the writer lock of a dead run (pid %s on this host): %s", held.get("pid"), lock)
    mine = {"host": host, "pid": pid, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "token": hashlib.blake2b(os.urandom(16), digest_size=8).hexdigest()}  # fmt: skip
    with _store_call(lock, "write the writer lock"):
        lock.write_bytes(json.dumps(mine).encode())
    if _read_lock(lock) != mine:
        raise StoreError(f"{lock.uri}: another writer took the lock at the same moment; rerun later")
    return mine


# --------------------------------------------------------------------------- local mirrors


def cache_dir(uri: str) -> Path:
    """Where the local mirror of the dataset at ``uri`` lives: ``$QUACKAE_CACHE/<hash of uri>``."""
    base = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "quackae" / "datasets"
    return Path(base) / hashlib.sha256(uri.encode()).hexdigest()[:16]


def local_dataset(data_dir: Root) -> Path:
    """A local dataset directory for ``data_dir``: itself if local, else its local mirror.

    The mirror (see ``cache_dir``) holds the committed manifest, the tokenizer, and the shards
    and rejects it lists; only files not already there (by name and size) are downloaded, the
    manifest last. Readers then open it as any local dataset (mmap'd token cache included).
    """
    remote = _remote(data_dir)
    if remote is None:
        return _local(data_dir)
    mirror = cache_dir(remote.uri)
    mirror.mkdir(parents=True, exist_ok=True)
    with atomic.directory_lock(mirror):
        _mirror(remote, mirror)
    return mirror


def _remote_sizes(remote: Location) -> dict[str, int]:
    """Sizes of the files in a remote dataset's ``shards/`` and ``rejects/``, by relative name."""
    sizes: dict[str, int] = {}
    base = remote.path.rstrip("/") + "/"
    with _store_call(remote, "list it"):
        for sub in ("shards", "rejects"):
            selector = pafs.FileSelector(remote.child(sub).path, allow_not_found=True)
            for info in remote.fs.get_file_info(selector):
                if info.type == pafs.FileType.File:
                    sizes[info.path[len(base):]] = int(info.size)
    return sizes


def _download(src: Location, dest: Path) -> None:
    """Copy one object to a local file atomically, streaming."""
    with _store_call(src, "download it"), src.open_input() as inp, atomic.atomic_path(dest) as tmp, \
            open(tmp, "wb") as out:  # fmt: skip
        while chunk := inp.read(8 * 2**20):
            out.write(chunk)


def _mirror(remote: Location, mirror: Path) -> None:
    """Bring ``mirror`` up to the remote dataset's committed state (manifest written last)."""
    manifest = read_manifest(remote)
    tokenizer = mirror / TOKENIZER
    if not tokenizer.is_file() or hashlib.sha256(tokenizer.read_bytes()).hexdigest() != manifest["tokenizer_sha256"]:
        _download(remote.child(TOKENIZER), tokenizer)
    sizes = _remote_sizes(remote)
    (mirror / "shards").mkdir(exist_ok=True)
    (mirror / "rejects").mkdir(exist_ok=True)
    for shard in manifest["shards"]:
        for name in (shard["file"], shard.get("rejects_file")):
            if not name:
                continue
            if name not in sizes:
                raise StoreError(
                    f"{remote.child(name)}: listed in the manifest but missing; restore it, or "
                    "re-flatten the sources into a new --storage_path"
                )
            local = mirror / name
            if not (local.is_file() and local.stat().st_size == sizes[name]):
                _download(remote.child(name), local)
    remove_orphans(mirror, manifest)
    write_manifest(mirror, manifest)


# --------------------------------------------------------------------------- writing


def write_shard(
    root: Root, name: str, columns: dict[str, list], rejects: list[dict[str, Any]]
) -> dict[str, Any]:
    """Write one shard (and its rejects) atomically; return its manifest entry.

    ``root`` may be a local path or an object-store URI (string or Location): any process that
    can reach it may write shards; only the lock holder commits them (``commit``).
    """
    table = pa.Table.from_pydict(columns, schema=SCHEMA)
    shard_file = f"shards/{name}.parquet"
    remote = _remote(root)
    if remote is None:
        local = _local(root)
        (local / "shards").mkdir(parents=True, exist_ok=True)
        (local / "rejects").mkdir(parents=True, exist_ok=True)
        with atomic.atomic_path(local / shard_file) as tmp:
            pq.write_table(table, tmp, **SHARD_WRITE_OPTIONS)
    else:  # serialised first, so a failure never leaves a partial object behind
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, **SHARD_WRITE_OPTIONS)
        write_file(remote, shard_file, sink.getvalue().to_pybytes())
    rejects_file = ""
    if rejects:
        rejects_file = f"rejects/{name}.jsonl"
        write_file(root, rejects_file, "".join(json.dumps(r) + "\n" for r in rejects).encode())
    labels = np.asarray(columns["censored"], dtype=np.int8)
    lengths = columns["length"]
    return {
        "file": shard_file,
        "rejects_file": rejects_file,
        "rows": table.num_rows,
        "censored": int((labels == 1).sum()),
        "undetermined": int((labels == 0).sum()),
        "uncensored": int((labels == -1).sum()),
        "rejected": len(rejects),
        "max_width": int(max(lengths)) if lengths else 0,
    }


# --------------------------------------------------------------------------- reading


@dataclass
class TokenCache:
    """All token sequences as one flat memory-mapped array plus row offsets (nanoGPT style)."""

    values: np.ndarray  # flat token ids, uint16 or uint32
    offsets: np.ndarray  # int64, len = rows + 1

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        """Length of every sequence."""
        return np.diff(self.offsets)

    def batch(self, index: np.ndarray, pad_id: int = 0, width: int | None = None) -> np.ndarray:
        """Right-padded ``(B, T)`` int64 batch of the given rows, gathered without a Python loop."""
        index = np.asarray(index, dtype=np.int64)
        starts = self.offsets[index]
        lengths = self.offsets[index + 1] - starts
        width = int(lengths.max()) if width is None else width
        cols = np.arange(width, dtype=np.int64)
        mask = cols[None, :] < lengths[:, None]
        pos = np.where(mask, starts[:, None] + cols[None, :], 0)
        out = self.values[pos].astype(np.int64)
        out[~mask] = pad_id
        return out


class Dataset:
    """A committed dataset directory, opened read-only with bounded memory.

    An object-store URI is mirrored first (``local_dataset``); ``root`` is then the mirror and
    ``uri`` what was given.
    """

    def __init__(self, root: Root) -> None:
        self.uri = str(root)
        self.root = local_dataset(root)
        self.manifest = read_manifest(self.root)

    def __len__(self) -> int:
        return int(self.manifest["length"])

    @property
    def shard_paths(self) -> list[Path]:
        """Shard files in manifest order: the global row order."""
        return [self.root / s["file"] for s in self.manifest["shards"]]

    @property
    def pad_id(self) -> int:
        """Padding id of the token layout."""
        return int(self.manifest["layout"]["specials"]["pad"])

    def read_columns(self, columns: list[str]) -> pa.Table:
        """Selected columns of every row, in global order (for small columns: labels, ids)."""
        if not self.shard_paths:
            return pa.table({c: pa.array([], SCHEMA.field(c).type) for c in columns})
        return pa.concat_tables(_read_shard(p, columns) for p in self.shard_paths)

    def iter_batches(
        self, columns: list[str], start: int = 0, stop: int | None = None, batch_size: int = 4096
    ) -> Iterator[pa.RecordBatch]:
        """Stream rows ``[start, stop)`` of the selected columns, a row group at a time."""
        stop = len(self) if stop is None else stop
        base = 0
        for path, shard in zip(self.shard_paths, self.manifest["shards"], strict=True):
            rows = shard["rows"]
            if base + rows <= start or base >= stop:
                base += rows
                continue
            pos = base
            for batch in _shard_batches(path, batch_size, columns):
                lo, hi = max(start - pos, 0), min(stop - pos, batch.num_rows)
                if lo < hi:
                    yield batch.slice(lo, hi - lo)
                pos += batch.num_rows
            base += rows

    def tokens(self) -> TokenCache:
        """The flat memory-mapped token cache, built (bounded memory) if missing or stale."""
        key = hashlib.sha256(
            json.dumps([(s["file"], s["rows"]) for s in self.manifest["shards"]]).encode()
        ).hexdigest()[:16]
        dtype = np.uint16 if self.manifest["vocab_size"] <= 65536 else np.uint32
        cache = self.root / "cache"
        values_path, offsets_path = cache / f"tokens-{key}.bin", cache / f"offsets-{key}.npy"
        if not offsets_path.exists():
            self._build_cache(values_path, offsets_path, dtype)
        offsets = np.load(offsets_path, mmap_mode="r")
        values = (
            np.memmap(values_path, dtype=dtype, mode="r")
            if int(offsets[-1]) > 0
            else np.zeros(0, dtype=dtype)
        )
        return TokenCache(values=values, offsets=offsets)

    def _build_cache(self, values_path: Path, offsets_path: Path, dtype: type) -> None:
        cache = values_path.parent
        cache.mkdir(exist_ok=True)
        key = values_path.name.split("-", 1)[1].split(".", 1)[0]
        for old in cache.iterdir():  # only quackae's own names of other (stale) keys
            ours = CACHE_NAME.fullmatch(old.name) or atomic.is_temp(old.name)
            if ours and key not in old.name:  # a concurrent builder's temp of this key stays
                old.unlink(missing_ok=True)
        offsets = np.zeros(len(self) + 1, dtype=np.int64)
        row = 0
        with atomic.atomic_path(values_path) as tmp_values, open(tmp_values, "wb") as f:
            for batch in self.iter_batches(["tokens"], batch_size=16384):
                col = batch.column(0)
                flat = col.flatten().to_numpy(zero_copy_only=False).astype(dtype)
                lens = np.diff(col.offsets.to_numpy())
                offsets[row + 1 : row + 1 + len(lens)] = offsets[row] + np.cumsum(lens)
                row += len(lens)
                f.write(flat.tobytes())
        with atomic.atomic_path(offsets_path) as tmp_offsets, open(tmp_offsets, "wb") as f:
            np.save(f, offsets, allow_pickle=False)


def _read_shard(path: Path, columns: list[str]) -> pa.Table:
    """Selected columns of one shard; a damaged file is a one-line ``StoreError`` naming it."""
    try:
        return pq.read_table(path, columns=columns)
    except (OSError, pa.ArrowException) as e:
        raise damaged(path, e) from None


def _shard_batches(path: Path, batch_size: int, columns: list[str]) -> Iterator[pa.RecordBatch]:
    """Record batches of one shard; a damaged file is a one-line ``StoreError`` naming it."""
    try:
        yield from pq.ParquetFile(path).iter_batches(batch_size=batch_size, columns=columns)
    except (OSError, pa.ArrowException) as e:
        raise damaged(path, e) from None



class DatasetTokens:
    """Token ids of a dataset's rows by ``row_id``: sorted ids plus the memory-mapped token cache.

    Used by the bag-of-tokens baseline (features), the detector and the report (page texts).
    """

    def __init__(self, root: Path | str) -> None:
        self.dataset = Dataset(root)
        ids = self.dataset.read_columns(["row_id"]).column(0).to_numpy()
        self._order = np.argsort(ids, kind="stable")
        self._sorted = ids[self._order]
        self.cache = self.dataset.tokens()
        layout = self.dataset.manifest["layout"]
        self.text_offset = int(layout["text_offset"])
        self.vocab_size = int(self.dataset.manifest["vocab_size"])
        self.tokenizer_sha256 = str(self.dataset.manifest.get("tokenizer_sha256", ""))
        self._tokenizer = None

    def index_of(self, row_ids: np.ndarray) -> np.ndarray:
        """Global row index of each id in the dataset, -1 where the dataset lacks it."""
        row_ids = np.asarray(row_ids, dtype=np.int64)
        if len(self._sorted) == 0:
            return np.full(len(row_ids), -1, dtype=np.int64)
        pos = np.clip(np.searchsorted(self._sorted, row_ids), 0, len(self._sorted) - 1)
        found = self._sorted[pos] == row_ids
        return np.where(found, self._order[pos], -1).astype(np.int64)

    def flat(self, row_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Tokens of the rows concatenated, and CSR-style row pointers (missing rows are empty)."""
        index = self.index_of(row_ids)
        ok = index >= 0
        safe = np.where(ok, index, 0)
        starts = np.asarray(self.cache.offsets[safe], dtype=np.int64)
        lengths = np.where(ok, np.asarray(self.cache.offsets[safe + 1], dtype=np.int64) - starts, 0)
        indptr = np.zeros(len(index) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        positions = np.repeat(starts - indptr[:-1], lengths) + np.arange(indptr[-1], dtype=np.int64)
        return np.asarray(self.cache.values[positions], dtype=np.int64), indptr

    def texts(self, row_ids: np.ndarray) -> list[str]:
        """The normalised text of each row (placeholders kept), decoded from its BPE ids."""
        if self._tokenizer is None:
            from tokenizers import Tokenizer

            self._tokenizer = Tokenizer.from_file(str(self.dataset.root / TOKENIZER))
        values, indptr = self.flat(row_ids)
        seqs = [values[a:b] for a, b in zip(indptr[:-1], indptr[1:], strict=True)]
        ids = [[int(i) - self.text_offset for i in s if i >= self.text_offset] for s in seqs]
        return self._tokenizer.decode_batch(ids, skip_special_tokens=False)
