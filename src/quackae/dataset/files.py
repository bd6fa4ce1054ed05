"""How a dataset's files are reached: a local folder or an object-store prefix, one API.

``root`` is a local ``Path``/``str``, a URI string (``gs://``, ``s3://``) or a ``Location``;
local files are replaced atomically (temp, fsync, rename), remote ones are single whole uploads.
I/O failures on a store become one-line ``StoreError``s naming the object.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import pyarrow.fs as pafs

from quackae.io import atomic, storage
from quackae.io.storage import Location, store_call

MANIFEST = "manifest.json"
TOKENIZER = "tokenizer.json"
SHARD_NAME = re.compile(r"part-[0-9a-f]{16}-\d{5,}\.(parquet|jsonl)")
CACHE_NAME = re.compile(r"(tokens|offsets)-[0-9a-f]{16}\.(bin|npy)")
Root = Path | str | Location  # a dataset directory: local path, object-store URI, or Location
StoreError = (
    atomic.StoreError
)  # a dataset directory that cannot be used; the message says what to do


def location(root: Root) -> Location:
    """The ``Location`` of a dataset root given as a local path, a URI string or a Location."""
    if isinstance(root, Location):
        return root
    try:
        return storage.resolve(root)
    except storage.StorageError as e:
        raise StoreError(str(e)) from None


def remote_root(root: Root) -> Location | None:
    """The root's ``Location`` if it is on an object store, else None (the local code paths)."""
    if isinstance(root, Location):
        return root if root.remote else None
    return location(root) if storage.is_uri(root) else None


def local_root(root: Root) -> Path:
    """A local root as a ``Path`` (a local ``Location`` and a ``file://`` URI included)."""
    return Path(root.path) if isinstance(root, Location) else storage.local_path(root)


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


def write_file(root: Root, name: str, data: bytes) -> None:
    """Replace ``root/name`` with ``data``: temp-and-rename locally, one whole upload remotely."""
    remote = remote_root(root)
    if remote is None:
        atomic.atomic_write(local_root(root) / name, data)
        return
    with store_call(remote, f"write {name}"):
        remote.child(name).write_bytes(data)


def read_file(root: Root, name: str) -> bytes | None:
    """The bytes of ``root/name``, or None if there is no such file."""
    loc = location(root).child(name)
    with store_call(loc, "read it"):
        return loc.read_bytes() if loc.is_file() else None


def file_ref(root: Root, name: str) -> tuple[Path | Location, str, pafs.FileSystem | None]:
    """A dataset file as (what to name in messages, path for pyarrow, filesystem for pyarrow)."""
    remote = remote_root(root)
    if remote is None:
        path = local_root(root) / name
        return path, str(path), None
    loc = remote.child(name)
    return loc, loc.path, loc.fs


def exists(root: Root, name: str) -> bool:
    """Whether the dataset file ``name`` exists."""
    path = file_ref(root, name)[0]
    if isinstance(path, Location):
        with store_call(path, "read it"):
            return path.is_file()
    return path.is_file()


def delete_files(root: Root, files: Iterable[str]) -> None:
    """Delete dataset files the committed manifest no longer lists (after it was written)."""
    remote = remote_root(root)
    for name in files:
        if remote is None:
            (local_root(root) / name).unlink(missing_ok=True)
        else:
            with store_call(remote, f"delete {name}"):
                remote.child(name).delete()
