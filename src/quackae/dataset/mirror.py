"""Local mirrors of object-store datasets: readers memory-map a local token cache.

``local_dataset(uri)`` downloads what is new (by name and size) of the committed state into
``$QUACKAE_CACHE/<hash of uri>`` (default ``~/.cache/quackae/datasets``), the manifest last.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pyarrow.fs as pafs

from quackae.dataset.files import TOKENIZER, Root, StoreError, local_root, remote_root
from quackae.dataset.manifest import read_manifest, remove_orphans, write_manifest
from quackae.io import atomic
from quackae.io.storage import Location, store_call

CACHE_ENV = "QUACKAE_CACHE"  # where local mirrors of object-store datasets live


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
    remote = remote_root(data_dir)
    if remote is None:
        return local_root(data_dir)
    mirror = cache_dir(remote.uri)
    mirror.mkdir(parents=True, exist_ok=True)
    with atomic.directory_lock(mirror):
        _mirror(remote, mirror)
    return mirror


def _remote_sizes(remote: Location) -> dict[str, int]:
    """Sizes of the files in a remote dataset's ``shards/`` and ``rejects/``, by relative name."""
    sizes: dict[str, int] = {}
    base = remote.path.rstrip("/") + "/"
    with store_call(remote, "list it"):
        for sub in ("shards", "rejects"):
            selector = pafs.FileSelector(remote.child(sub).path, allow_not_found=True)
            for info in remote.fs.get_file_info(selector):
                if info.type == pafs.FileType.File:
                    sizes[info.path[len(base) :]] = int(info.size)
    return sizes


def _download(src: Location, dest: Path) -> None:
    """Copy one object to a local file atomically, streaming."""
    with (
        store_call(src, "download it"),
        src.open_input() as inp,
        atomic.atomic_path(dest) as tmp,
        open(tmp, "wb") as out,
    ):
        while chunk := inp.read(8 * 2**20):
            out.write(chunk)


def _mirror(remote: Location, mirror: Path) -> None:
    """Bring ``mirror`` up to the remote dataset's committed state (manifest written last)."""
    manifest = read_manifest(remote)
    tokenizer = mirror / TOKENIZER
    if (
        not tokenizer.is_file()
        or hashlib.sha256(tokenizer.read_bytes()).hexdigest() != manifest["tokenizer_sha256"]
    ):
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
