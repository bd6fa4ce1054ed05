"""The writer lock of a dataset or embeddings folder, locally and on object stores.

Locally it is ``atomic.directory_lock`` (flock; a second writer waits). On an object store it
is the lock object ``.quackae.lock`` (host, pid, time, token); a second writer is refused in
one line.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from quackae.io import atomic, storage
from quackae.io.atomic import StoreError
from quackae.io.storage import Location, store_call

log = logging.getLogger(__name__)

_remote_held: dict[str, int] = {}  # lock URI -> depth: re-entrant within a process, as locally
_remote_guard = threading.Lock()


def _remote(root: Path | str | Location) -> Location | None:
    if isinstance(root, Location):
        return root if root.remote else None
    return storage.resolve(root) if storage.is_uri(root) else None


@contextlib.contextmanager
def writer_lock(root: Path | str | Location, wait: bool = True) -> Iterator[Path | Location]:
    """Hold a directory's exclusive writer lock for the block (``with writer_lock(root):``).

    Datasets and embeddings directories both use it (``root``: a path, a URI or a Location).

    Locally: ``atomic.directory_lock`` (flock; a second writer waits). On an object store: the
    lock object ``.quackae.lock`` (host, pid, time); a second writer is refused with one line.
    A lock left by a dead process of this host is taken over. Object stores offer no atomic
    compare-and-swap here, so this guards against mistakes, not against a race of two starts.
    """
    remote = _remote(root)
    if remote is None:
        local = Path(root.path) if isinstance(root, Location) else Path(storage.local_path(root))
        with atomic.directory_lock(local, wait=wait) as held:
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
    with store_call(lock, "read the writer lock"):
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
        dead = held.get("host") == host and (
            held.get("pid") == pid or not _pid_alive(held.get("pid"))
        )
        if not dead:
            plain = lock.prefix.split("://")[0] + "://" + lock.path
            raise StoreError(
                f"{lock.uri}: another writer (host {held.get('host')}, pid {held.get('pid')}, "
                "since "
                f"{held.get('time')}) holds this directory; wait for it to end, or if that run is "
                f"dead delete the lock object (e.g. `gcloud storage rm {plain}`) and rerun"
            )
        log.warning(
            "taking over the writer lock of a dead run (pid %s on this host): %s",
            held.get("pid"),
            lock,
        )
    mine = {
        "host": host,
        "pid": pid,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "token": hashlib.blake2b(os.urandom(16), digest_size=8).hexdigest(),
    }
    with store_call(lock, "write the writer lock"):
        lock.write_bytes(json.dumps(mine).encode())
    if _read_lock(lock) != mine:
        raise StoreError(
            f"{lock.uri}: another writer took the lock at the same moment; rerun later"
        )
    return mine
