"""Where files live: local paths, or object stores (``gs://``, ``s3://``) through ``pyarrow.fs``.

Every URI form ``pyarrow.fs.FileSystem.from_uri`` accepts is accepted as it is, query string
included, e.g. ``gs://anonymous@BUCKET/PREFIX?scheme=http&endpoint_override=127.0.0.1:PORT``
for a test server. A ``Location`` keeps the filesystem, the path inside it and how to spell a
child's URI, so a location can travel to another process (or a Ray task) as a plain string.

Object stores have no rename and no locks, but an object appears whole when its upload
finishes: ``write_bytes`` is atomic per object there, as ``atomic.atomic_write`` is locally.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.fs as pafs

from quackae.io import atomic

__all__ = ["FileType", "Location", "StorageError", "glob", "has_glob", "is_uri", "resolve"]

FileType = pafs.FileType

_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
_GLOB_CHARS = re.compile(r"[*?\[]")


class StorageError(Exception):
    """A location that cannot be reached or read; the message is one line saying what to do."""


def is_uri(target: str | os.PathLike[str]) -> bool:
    """Whether ``target`` names an object-store URI (``scheme://...``) rather than a local path."""
    return (
        isinstance(target, str) and bool(_SCHEME.match(target)) and not target.startswith("file://")
    )


@dataclass(frozen=True)
class Location:
    """A file or directory on some filesystem: ``fs`` plus ``path``, and its URI spelling."""

    fs: pafs.FileSystem
    path: str
    prefix: str = ""  # "gs://user@" for URIs; "" for local paths
    query: str = ""  # the URI's query string, kept for children

    @property
    def remote(self) -> bool:
        """Whether this is an object-store location."""
        return bool(self.prefix)

    @property
    def uri(self) -> str:
        """The string that ``resolve`` turns back into this location (a local path if local)."""
        if not self.remote:
            return self.path
        return f"{self.prefix}{self.path}" + (f"?{self.query}" if self.query else "")

    @property
    def name(self) -> str:
        """The last path component (a source's file name)."""
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    def child(self, *parts: str) -> Location:
        """The location of ``parts`` below this one."""
        path = "/".join([self.path.rstrip("/"), *(p.strip("/") for p in parts)])
        return Location(self.fs, path, self.prefix, self.query)

    def __str__(self) -> str:
        return self.uri

    # ----------------------------------------------------------------- queries

    def info(self) -> pafs.FileInfo:
        """The file info (type, size); a one-line ``StorageError`` if the store is unreachable."""
        try:
            return self.fs.get_file_info(self.path)
        except (OSError, pa.ArrowException) as e:
            raise StorageError(
                f"{self}: cannot reach it ({first_line(e)}); check the URI and credentials"
            ) from None

    def is_file(self) -> bool:
        """Whether a file (object) exists here."""
        return self.info().type == pafs.FileType.File

    def is_dir(self) -> bool:
        """Whether a directory (or, on object stores, a non-empty prefix) exists here."""
        return self.info().type == pafs.FileType.Directory

    def size(self) -> int:
        """The file's size in bytes."""
        return int(self.info().size)

    def list_files(self, recursive: bool = True) -> list[Location]:
        """Files below this directory, sorted by path."""
        selector = pafs.FileSelector(self.path, recursive=recursive, allow_not_found=True)
        try:
            infos = self.fs.get_file_info(selector)
        except (OSError, pa.ArrowException) as e:
            raise StorageError(f"{self}: cannot list it ({first_line(e)})") from None
        paths = sorted(i.path for i in infos if i.type == pafs.FileType.File)
        return [Location(self.fs, p, self.prefix, self.query) for p in paths]

    # ----------------------------------------------------------------- reading and writing

    def open_input(self):
        """A sequential binary stream of the file (no local copy); see ``pyarrow.NativeFile``."""
        try:
            return self.fs.open_input_stream(self.path)
        except (OSError, pa.ArrowException) as e:
            raise StorageError(f"{self}: cannot open it ({first_line(e)})") from None

    def read_bytes(self, limit: int | None = None) -> bytes:
        """The file's bytes (the first ``limit`` only if given)."""
        with self.open_input() as f:
            return f.read(limit) if limit is not None else f.read()

    def write_bytes(self, data: bytes) -> None:
        """Replace the file with ``data`` atomically: temp and rename here, one upload remotely."""
        if not self.remote:
            atomic.atomic_write(Path(self.path), data)
            return
        with self.fs.open_output_stream(self.path) as f:
            f.write(data)

    def delete(self) -> None:
        """Delete the file if it exists."""
        with contextlib.suppress(FileNotFoundError):
            self.fs.delete_file(self.path)

    def makedirs(self) -> None:
        """Create the directory locally (object stores need none)."""
        if not self.remote:
            Path(self.path).mkdir(parents=True, exist_ok=True)


def first_line(exc: BaseException) -> str:
    """The first line of an exception's text (its type name if it has none), for one-line errors."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def local_path(target: str | os.PathLike[str]) -> Path:
    """A local target as a ``Path`` (a ``file://`` URI included)."""
    if isinstance(target, str) and target.startswith("file://"):
        return Path(resolve(target).path)
    return Path(target)


class _StoreCall(contextlib.AbstractContextManager):
    def __init__(self, loc: Location, what: str) -> None:
        self.loc, self.what = loc, what

    def __exit__(self, kind, exc, tb) -> bool:
        if isinstance(exc, StorageError):
            raise atomic.StoreError(str(exc)) from None
        if isinstance(exc, OSError | pa.ArrowException) and not isinstance(exc, FileNotFoundError):
            raise atomic.StoreError(
                f"{self.loc}: cannot {self.what} ({first_line(exc)}); check the URI, "
                "credentials and network, then rerun"
            ) from None
        return False


def store_call(loc: Location, what: str) -> contextlib.AbstractContextManager:
    """Context turning a store's I/O error into a one-line ``StoreError`` naming ``loc``."""
    return _StoreCall(loc, what)


#: How long a GCS call retries before giving up, unless the URI sets ``retry_limit_seconds``
#: (the client library's own default is 15 minutes, which reads as a hang).
GCS_RETRY_LIMIT_S = 60


def _with_retry_limit(uri: str) -> str:
    """``uri`` with a bounded GCS retry time added when it names none."""
    parts = urlsplit(uri)
    if parts.scheme != "gs" or "retry_limit_seconds=" in parts.query:
        return uri
    query = "&".join(q for q in (parts.query, f"retry_limit_seconds={GCS_RETRY_LIMIT_S}") if q)
    return parts._replace(query=query).geturl()


def resolve(target: str | os.PathLike[str]) -> Location:
    """The ``Location`` of a local path or an object-store URI (without glob characters).

    Raises
    ------
    StorageError
        The URI is malformed or names a filesystem pyarrow cannot open here.
    """
    if not is_uri(target):
        text = os.fspath(target)
        if text.startswith("file://"):
            text = text[len("file://") :]
        return Location(pafs.LocalFileSystem(), str(Path(text).absolute()))
    text = str(target)
    try:
        fs, path = pafs.FileSystem.from_uri(_with_retry_limit(text))
    except (OSError, pa.ArrowException, ValueError) as e:
        raise StorageError(
            f"{text}: not a usable URI ({first_line(e)}); use gs://BUCKET/PREFIX or "
            "s3://BUCKET/PREFIX"
        ) from None
    parts = urlsplit(text)
    user = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return Location(fs, path.rstrip("/"), f"{parts.scheme}://{user}", parts.query)


def has_glob(target: str) -> bool:
    """Whether a URI's path holds glob characters (``*``, ``?``, ``[``)."""
    return bool(_GLOB_CHARS.search(urlsplit(target).path))


def glob(target: str) -> list[Location]:
    """Files matching a URI with ``*``, ``?`` or ``[...]`` in its path, sorted by path.

    The listing starts at the longest prefix without glob characters and is recursive;
    ``*`` matches across ``/`` as in ``fnmatch``.
    """
    parts = urlsplit(target)
    base_path = parts.path
    cut = _GLOB_CHARS.search(base_path)
    if cut is None:
        return [resolve(target)]
    head = base_path[: cut.start()].rsplit("/", 1)[0]
    base_uri = parts._replace(path=head).geturl()
    base = resolve(base_uri)
    pattern = f"{parts.netloc.rsplit('@', 1)[-1]}{base_path}"
    return [loc for loc in base.list_files() if fnmatch.fnmatchcase(loc.path, pattern)]
