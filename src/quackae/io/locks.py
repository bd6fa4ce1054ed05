"""The writer lock of a dataset or embeddings folder, locally and on object stores.

Locally it is ``atomic.directory_lock`` (flock; a second writer waits). On ``gs://`` and
``s3://`` it is the lock object ``.quackae.lock`` (host, pid, since, token, lease), created
with the store's own precondition (``objects.create``: GCS ``ifGenerationMatch=0``, S3
``If-None-Match: *``), so of two writers starting at the same moment exactly one gets it. The
holder rewrites it every quarter lease (conditionally on its own last version: the heartbeat);
a second writer waits while the heartbeat goes on, takes over a lock of a dead process of its
own host, and is refused in one line when the heartbeat stopped for a whole lease (a holder
dead elsewhere: deleting the lock object is the user's call), or at once for a lock object
without a lease (written by hand or by an older quackae).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from quackae.io import atomic, objects, storage
from quackae.io.atomic import StoreError
from quackae.io.storage import Location, store_call

log = logging.getLogger(__name__)

_remote_held: dict[str, int] = {}  # lock URI -> depth: re-entrant within a process, as locally
_remote_guard = threading.Lock()
LEASE_ENV = "QUACKAE_LOCK_LEASE_S"
LEASE_S = 60.0  # a holder's heartbeat rewrites the lock every LEASE_S / 4 seconds


def lease_seconds() -> float:
    """The lease of a lock this process takes (``$QUACKAE_LOCK_LEASE_S``, default 60 s)."""
    try:
        return max(float(os.environ.get(LEASE_ENV, LEASE_S)), 0.2)
    except ValueError:
        return LEASE_S


def _remote(root: Path | str | Location) -> Location | None:
    if isinstance(root, Location):
        return root if root.remote else None
    return storage.resolve(root) if storage.is_uri(root) else None


@contextlib.contextmanager
def writer_lock(root: Path | str | Location, wait: bool = True) -> Iterator[Path | Location]:
    """Hold a directory's exclusive writer lock for the block (``with writer_lock(root):``).

    Datasets and embeddings directories both use it (``root``: a path, a URI or a Location).

    Locally: ``atomic.directory_lock`` (flock; a second writer waits). On ``gs://`` and
    ``s3://``: the lock object, created and kept alive with the store's preconditions (see the
    module docstring); a second writer waits while the holder's heartbeat goes on (with
    ``wait=False`` it is refused in one line). A lock left by a dead process of this host is
    taken over. Other object stores get the lock object without preconditions, which guards
    against mistakes, not against a race of two starts.
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
        if objects.supports(lock):
            held = _ConditionalLock(lock, wait)
            with _remote_guard:
                _remote_held[lock.uri] = 1
            try:
                yield remote
            finally:
                held.release()
            return
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


def _plain(lock: Location) -> str:
    """The lock object's URI without the query, as a user would type it to delete it."""
    return lock.prefix.split("://")[0] + "://" + lock.path


def _holder_text(lock: Location, held: dict[str, Any]) -> str:
    return (
        f"{lock.uri}: another writer (host {held.get('host')}, pid {held.get('pid')}, since "
        f"{held.get('since', held.get('time'))}) holds this directory"
    )


def _parse_lock(data: bytes) -> dict[str, Any]:
    try:
        held = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {"host": "?", "pid": -1, "time": "?"}
    return held if isinstance(held, dict) else {"host": "?", "pid": -1, "time": "?"}


class _ConditionalLock:
    """The lock object of a ``gs://``/``s3://`` folder, held from construction to ``release``."""

    def __init__(self, lock: Location, wait: bool) -> None:
        self.lock = lock
        self.lease = lease_seconds()
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.mine = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "since": now,
            "time": now,
            "token": hashlib.blake2b(os.urandom(16), digest_size=8).hexdigest(),
            "lease_s": self.lease,
        }
        self.version = self._acquire(wait)
        self.stop = threading.Event()
        self.beat = threading.Thread(target=self._heartbeat, name="quackae-lock", daemon=True)
        self.beat.start()

    def _encode(self) -> bytes:
        return json.dumps(self.mine).encode()

    def _acquire(self, wait: bool) -> str:
        """Create the lock object, waiting for (or taking over from) a holder; its version."""
        lock, said = self.lock, False
        seen_version, seen_at = "", 0.0
        while True:
            with store_call(lock, "take the writer lock"):
                try:
                    return objects.create(lock, self._encode())
                except objects.PreconditionFailed:
                    got = objects.read(lock)
            if got is None:
                continue  # released in between: try again
            data, version = got
            held = _parse_lock(data)
            if held.get("token") == self.mine["token"]:
                return version  # our own create, retried by the client after it landed
            if self._dead_here(held):
                log.warning(
                    "taking over the writer lock of a dead run (pid %s on this host): %s",
                    held.get("pid"),
                    lock,
                )
                with store_call(lock, "take the writer lock"):
                    try:
                        return objects.replace(lock, self._encode(), version)
                    except objects.PreconditionFailed:
                        continue  # someone else was faster
            lease = held.get("lease_s")
            if not wait or not isinstance(lease, int | float) or isinstance(lease, bool):
                raise StoreError(
                    f"{_holder_text(lock, held)}; wait for it to end, or if that run is dead "
                    f"delete the lock object (e.g. `gcloud storage rm {_plain(lock)}`) and rerun"
                )
            if version != seen_version:
                seen_version, seen_at = version, time.monotonic()
            elif time.monotonic() - seen_at > 2 * lease:
                raise StoreError(
                    f"{_holder_text(lock, held)} and its heartbeat stopped over {2 * lease:.0f} s "
                    f"ago; if that run is dead delete the lock object (e.g. `gcloud storage rm "
                    f"{_plain(lock)}`) and rerun"
                )
            if not said:
                print(
                    f"quackae: waiting for another writer of {lock.uri.rsplit('/', 1)[0]} (host "
                    f"{held.get('host')}, pid {held.get('pid')}) to finish ...",
                    file=sys.stderr,
                    flush=True,
                )
                said = True
            time.sleep(min(1.0, float(lease) / 4))

    def _dead_here(self, held: dict[str, Any]) -> bool:
        """Whether the holder was a process of this host that no longer runs (or is us)."""
        if held.get("host") != self.mine["host"]:
            return False
        return held.get("pid") == self.mine["pid"] or not _pid_alive(held.get("pid"))

    def _heartbeat(self) -> None:
        """Rewrite the lock every quarter lease, conditionally on our last version."""
        while not self.stop.wait(self.lease / 4):
            self.mine["time"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            try:
                self.version = objects.replace(self.lock, self._encode(), self.version)
            except objects.PreconditionFailed:
                log.error(
                    "%s: the writer lock was taken from this run; its manifest commits will be "
                    "refused",
                    self.lock,
                )
                return
            except OSError as e:  # a passing outage: the next beat tries again
                log.warning("%s: heartbeat failed (%s)", self.lock, e)

    def release(self) -> None:
        """Stop the heartbeat and delete the lock object if it is still ours."""
        self.stop.set()
        self.beat.join()
        with contextlib.suppress(StoreError, OSError, objects.PreconditionFailed):
            got = objects.read(self.lock)
            if got is not None and _parse_lock(got[0]).get("token") == self.mine["token"]:
                objects.delete(self.lock, got[1])
