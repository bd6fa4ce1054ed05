"""Crash-safe file primitives shared by every writer: atomic replace and a directory lock.

``atomic_path`` gives a temporary name in the target's own directory; when the block ends
normally the file is fsynced, renamed over the target and the directory fsynced, so a reader
(or a crash) sees either the old file or the whole new one. On any error the temporary file is
removed. Temporary names are hidden and end in ``TMP_SUFFIX``, so clean-up can recognise
quackae's own leftovers and touch nothing else.

``directory_lock`` serialises writers of one directory with ``flock`` on a lock file that
quackae owns (``.quackae.lock``). POSIX advisory locks are reliable on local filesystems;
see docs/safety.md for network filesystems and object stores.
"""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TMP_SUFFIX = ".quackae-tmp"
LOCK_FILE = ".quackae.lock"
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})

_NO_LOCKS = frozenset({errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL})

_held: dict[str, list] = {}  # resolved lock path -> [fd, depth]: re-entrant within a process
_held_guard = threading.Lock()


class StoreError(Exception):
    """A directory that cannot be used safely; the message is one line saying what to do.

    (``store.StoreError`` is this class: defined here so the lock can raise it.)
    """


def temp_path(path: Path) -> Path:
    """A hidden, unique temporary name next to ``path`` that ``is_temp`` recognises."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}{TMP_SUFFIX}")


def is_temp(name: str) -> bool:
    """Whether a file name is one of quackae's temporary names (a killed writer's leftover)."""
    return name.startswith(".") and name.endswith(TMP_SUFFIX)


_DISK_FULL_TEXT = (
    "no space left",
    "file too large",
    "quota exceeded",
    "errno 28",
    "errno 27",
    "os error 28",
    "os error 27",
)


class DiskFullError(OSError):
    """A write ran out of space; ``filename`` is the file quackae was writing."""


def is_disk_full(exc: BaseException) -> bool:
    """Whether an error means no space is left (or a size or quota limit was hit).

    pyarrow reports a full disk as an ``OSError`` without ``errno`` and the tokenizers library
    as a plain ``Exception`` ("... (os error 28)"), so the text is checked too.
    """
    if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
        return True
    return isinstance(exc, Exception) and any(t in str(exc).lower() for t in _DISK_FULL_TEXT)


def fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path`` durably, else vanishes."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if is_disk_full(e) and not isinstance(e, DiskFullError):
            raise DiskFullError(errno.ENOSPC, "no space left on device", str(path)) from None
        raise
    fsync_dir(path.parent)


def atomic_write(path: Path | str, data: bytes | str) -> None:
    """Replace ``path`` with ``data`` (text is written as UTF-8) atomically and durably."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(payload)


def remove_temps(directory: Path) -> int:
    """Delete quackae's temporary files directly under ``directory``; return how many."""
    removed = 0
    if directory.is_dir():
        for entry in directory.iterdir():
            if is_temp(entry.name) and entry.is_file():
                entry.unlink(missing_ok=True)
                removed += 1
    return removed


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
    except OSError:
        return ""
    return f" (pid {text})" if text else ""


@contextmanager
def directory_lock(root: Path | str, wait: bool = True) -> Iterator[Path]:
    """Hold the exclusive writer lock of ``root`` (created if missing) for the block.

    A second writer waits (saying so once on stderr) until the first releases the lock, or
    with ``wait=False`` raises ``BlockingIOError``. Re-entrant within one process. The lock is
    released by the kernel when the holder dies, so a killed run never leaves it stuck.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    lock_path = root / LOCK_FILE
    key = str(lock_path.resolve())
    with _held_guard:
        if key in _held:
            _held[key][1] += 1
            nested = True
        else:
            nested = False
    if nested:
        try:
            yield root
        finally:
            with _held_guard:
                _held[key][1] -= 1
        return
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                raise
            print(
                f"quackae: waiting for another writer of {root}{_holder(fd)} to finish ...",
                file=sys.stderr,
                flush=True,
            )
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as e:
            if e.errno not in _NO_LOCKS:
                raise
            raise StoreError(
                f"cannot lock {lock_path} ({e.strerror}): this filesystem offers no flock; use a "
                "local folder (or mount it with lock support)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        with _held_guard:
            _held[key] = [fd, 1]
        try:
            yield root
        finally:
            with _held_guard:
                del _held[key]
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # closing the descriptor releases the flock
