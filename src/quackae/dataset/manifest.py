"""``manifest.json``: what a dataset holds. Only shards it lists exist for readers.

The manifest is replaced last in every change, so a run killed at any moment leaves the previous
committed state. Writers hold ``dataset_lock(root)``; ``commit`` is the one way to change the
manifest from a process that did not write the shards itself.

On ``gs://`` and ``s3://`` the manifest is also a compare-and-swap object: this process
remembers the version (GCS generation, S3 ETag) it last read or wrote, and replaces the
manifest only if it is still that version (``objects.replace``; a new dataset's first manifest
with ``objects.create``). A writer whose lock was broken is then refused in one line instead
of overwriting another's commits, and ``commit`` re-reads and re-applies its change until it
lands, so committers need not even share the lock to land every shard once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from quackae.dataset.files import (
    MANIFEST,
    SHARD_NAME,
    TOKENIZER,
    Root,
    StoreError,
    damaged,
    delete_files,
    exists,
    file_ref,
    local_root,
    location,
    read_file,
    remote_root,
    write_file,
)
from quackae.dataset.schema import SCHEMA
from quackae.io import atomic, folders, objects
from quackae.io.storage import Location, store_call

FORMAT_VERSION = 2  # 2: sources keyed by file name (a truncated copy and the full one share a key)
COMMIT_TRIES = 20  # compare-and-swap attempts of one commit before it gives up

_versions: dict[str, str] = {}  # manifest URI -> the version this process last read or wrote
_versions_guard = threading.Lock()


class ManifestChanged(StoreError):
    """The manifest on the store is no longer the version this process read or wrote."""


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
    remote = remote_root(root)
    path: Path | Location = remote.child(MANIFEST) if remote else local_root(root) / MANIFEST
    with store_call(remote, "read the manifest") if remote else contextlib.nullcontext():
        exists = path.is_file()
    if not exists:
        raise StoreError(
            f"no dataset at {root}: make one with `quackae flatten --source ARCHIVE "
            f"--storage_path {root}` (or `quackae synth` for sample data)"
        )
    try:
        text = _read_remote(path) if remote else path.read_text()  # type: ignore[arg-type]
        manifest = json.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise StoreError(f"{path} is unreadable ({e}); re-create the dataset") from None
    if manifest.get("format_version") != FORMAT_VERSION:
        raise StoreError(
            f"{path} has format_version {manifest.get('format_version')}, this quackae reads "
            f"{FORMAT_VERSION}; re-flatten the sources into a new directory"
        )
    return manifest


def _read_remote(path: Location) -> str:
    """The text of a remote manifest, remembering its version where the store has them."""
    with store_call(path, "read the manifest"):
        if not objects.supports(path):
            return path.read_bytes().decode("utf-8")
        got = objects.read(path)
    if got is None:
        raise StoreError(f"{path}: the manifest vanished while being read; rerun")
    with _versions_guard:
        _versions[path.uri] = got[1]
    return got[0].decode("utf-8")


def write_manifest(root: Root, manifest: dict[str, Any]) -> None:
    """Replace the manifest atomically: the commit point of every change to the dataset.

    On ``gs://``/``s3://`` only if it is still the version this process last read or wrote (a
    new one only if there is none): else ``ManifestChanged``, and nothing is written.
    """
    data = json.dumps(manifest, indent=1, sort_keys=True).encode()
    remote = remote_root(root)
    if remote is None or not objects.supports(remote):
        write_file(root, MANIFEST, data)
        return
    path = remote.child(MANIFEST)
    with _versions_guard:
        expected = _versions.get(path.uri)
    with store_call(path, "write the manifest"):
        try:
            if expected is None:
                version = objects.create(path, data)
            else:
                version = objects.replace(path, data, expected)
        except objects.PreconditionFailed:
            raise ManifestChanged(
                f"{path}: another writer changed the manifest since this process read it (a "
                "second writer without the lock, or this run's lock was taken over); this "
                "change was not committed: rerun the same command to resume"
            ) from None
    with _versions_guard:
        _versions[path.uri] = version


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
    return {
        "shards": len(listed),
        "length": sum(s["rows"] for s in listed),
        "digest": digest.hexdigest()[:32],
    }


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


def commit(
    root: Root,
    shards: list[dict[str, Any]],
    sources: dict[str, dict[str, Any]] | None = None,
    replace: Iterable[str] = (),
) -> dict[str, Any]:
    """Commit shards written by any process: re-read the manifest, add them, write it back.

    Call it inside ``with dataset_lock(root):``. ``replace`` names source keys whose earlier
    shards are dropped first (a complete copy replacing a truncated one); ``sources`` updates
    the per-source bookkeeping. Returns the new manifest. ``root`` may be a URI; on ``gs://``
    and ``s3://`` a commit that meets another one re-reads the manifest and applies itself
    again, so every shard lands once even without the lock.
    """
    replace = list(replace)
    for attempt in range(COMMIT_TRIES):
        manifest = read_manifest(root)
        dropped: list[str] = []
        for key in replace:
            dropped += drop_source(manifest, key)
        for shard in shards:
            add_shard(manifest, shard)
        manifest["sources"].update(sources or {})
        try:
            write_manifest(root, manifest)
        except ManifestChanged:
            if attempt == COMMIT_TRIES - 1:
                raise
            time.sleep(min(0.05 * 2**attempt, 2.0))  # another commit landed first: redo on it
            continue
        delete_files(root, dropped)
        return manifest
    raise AssertionError("unreachable")


def remove_orphans(root: Root, manifest: dict[str, Any]) -> int:
    """Delete a killed run's leftovers: unlisted files with quackae's shard names, and temps.

    Only names quackae itself gives are touched; anything else in the directory is left alone.
    """
    listed = {s["file"] for s in manifest["shards"]} | {
        s["rejects_file"] for s in manifest["shards"] if s.get("rejects_file")
    }
    remote = remote_root(root)
    if remote is not None:
        return _remove_remote_orphans(remote, listed)
    root = local_root(root)
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
    with store_call(root, "clean up"):
        for sub in ("shards", "rejects"):
            for obj in root.child(sub).list_files(recursive=False):
                if SHARD_NAME.fullmatch(obj.name) and f"{sub}/{obj.name}" not in listed:
                    obj.delete()
                    removed += 1
    return removed


def _top_names(root: Root) -> set[str] | None:
    """Names directly below a root (None if it does not exist; raises if it is a file)."""
    remote = remote_root(root)
    if remote is None:
        path = local_root(root)
        if not path.exists() or (path / MANIFEST).exists():
            return None
        if not path.is_dir():
            raise StoreError(f"{path} is a file, not a directory; pass a new --storage_path")
        return {p.name for p in path.iterdir()}
    with store_call(remote, "list it"):
        if remote.is_file():
            raise StoreError(f"{remote} is an object, not a prefix; pass a new --storage_path")
        if remote.child(MANIFEST).is_file():
            return None
        base = remote.path.rstrip("/") + "/"
        return {obj.path[len(base) :].split("/", 1)[0] for obj in remote.list_files()} or None


def check_owned(root: Root) -> None:
    """Refuse a non-empty directory that holds no quackae dataset, before writing anything."""
    names = _top_names(root)
    if not names:
        return
    # a creation killed before its first manifest leaves only the lock, the tokenizer and temps
    ours = {atomic.LOCK_FILE, TOKENIZER} if atomic.LOCK_FILE in names else set()
    foreign = sorted(n for n in names if n not in ours and not atomic.is_temp(n))
    # the one refusal every command gives (quackae.io.folders), a dataset's proof its manifest
    folders.refuse_foreign(root, foreign, "--storage_path", f"`quackae flatten` (no {MANIFEST})")


def check_shards(root: Root, manifest: dict[str, Any]) -> None:
    """Cheap integrity check before appending: each listed shard's footer and row count."""
    for shard in manifest["shards"]:
        path, where, fs = file_ref(root, shard["file"])
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
        path, where, fs = file_ref(root, shard["file"])
        try:
            table = pq.read_table(where, filesystem=fs)
            if table.num_rows != shard["rows"] or table.schema.names != SCHEMA.names:
                raise ValueError(f"{table.num_rows} rows, the manifest says {shard['rows']}")
        except (OSError, ValueError, pa.ArrowException) as e:
            problems.append(str(damaged(path, e)))
        rejects = shard.get("rejects_file")
        if rejects and not exists(root, rejects):
            problems.append(
                f"{file_ref(root, rejects)[0]}: missing (the rejects of {shard['file']})"
            )
    if not exists(root, TOKENIZER):
        problems.append(
            f"{file_ref(root, TOKENIZER)[0]}: missing; restore it or re-flatten into a new "
            "--storage_path"
        )
    return problems
