"""Open raw Hyperquack sources and stream their lines.

Censored Planet publishes one archive per scan (``CP_Quack-<scan>-<date>.tar.gz``, older
ones ``.tar``) whose ``results.json`` member holds newline-delimited JSON. Archives are many
GB, so everything here streams: tar archives are read in streaming mode, nothing is unpacked
to disk, and a single line is never held in memory beyond ``MAX_LINE_BYTES``. Gzip is inflated
with ISA-L (``isal``), about twice zlib's rate on these archives (``benchmarks/ingest.py``).

Line numbers are 1-based physical lines of the results stream of one source. When a source
has several results members, numbering continues across them, so ``(source, line_no)`` is
unique and ``skip_lines`` resumes exactly where an earlier run stopped.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import os
import re
import tarfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from isal import igzip
from isal.isal_zlib import error as IsalError

from quackae.io import storage
from quackae.io.storage import Location

__all__ = [
    "MAX_LINE_BYTES",
    "SCANS",
    "SOURCE_SUFFIXES",
    "ErrorCallback",
    "SourceError",
    "SourceLine",
    "expand_sources",
    "iter_lines",
    "scan_from_name",
    "source_fingerprint",
    "source_key",
    "source_name",
]

log = logging.getLogger(__name__)

SCANS: tuple[str, ...] = ("echo", "discard", "http", "https")
SOURCE_SUFFIXES: tuple[str, ...] = (
    ".tar",
    ".tar.gz",
    ".tgz",
    ".json",
    ".jsonl",
    ".json.gz",
    ".jsonl.gz",
)
MAX_LINE_BYTES = 8 * 1024 * 1024
_READ_CHUNK = 1024 * 1024
_MEMBER_BUFFER = 128 * 1024  # read size of a gzipped tar's stream and of its members
_INFLATE_PIECE = 16 * 1024  # inflated per ISA-L call (what a damaged spot can take with it)
_KEY_HEAD_BYTES = 1024 * 1024
_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
_GZIP_MAGIC = b"\x1f\x8b"
_WORD_SPLIT = re.compile(r"[^a-z0-9]+")
SIDECAR_SUFFIX = ".truth.jsonl"  # ground truth written next to `quackae synth` archives

ErrorCallback = Callable[[str, int, str], None]
#: A source file: a local path, an object-store URI string (``gs://``, ``s3://``) or a ``Location``.
Source = str | os.PathLike[str] | Location


class SourceError(Exception):
    """A source path cannot be used (missing, unreadable); the message is one line."""


@dataclass(frozen=True, slots=True)
class SourceLine:
    """One non-blank line of a results stream, as raw bytes (newline stripped)."""

    source: str
    member: str
    line_no: int
    data: bytes


def _log_error(source: str, line_no: int, reason: str) -> None:
    """Default ``on_error``: log the problem and carry on."""
    log.warning("%s:%d: %s", source, line_no, reason)


# --------------------------------------------------------------------------- paths


#: Signature files sit beside archives (``quackae synth`` writes them there) and are never
#: measurements; ground-truth sidecars are dropped with a warning by ``expand_sources``.
_NOT_SOURCES = ("blockpage_signatures.json", "false_positive_signatures.json")


def _is_source_name(name: str) -> bool:
    """Whether a file name has a recognised source suffix and is no signature file."""
    lower = name.lower()
    return lower not in _NOT_SOURCES and lower.endswith(SOURCE_SUFFIXES)


def _walk_dir(directory: Path) -> list[Path]:
    """Source files under ``directory``, recursively, in a deterministic order."""
    found: list[Path] = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and _is_source_name(name):
                found.append(Path(root) / name)
    return found


def _expand_uri(uri: str) -> list[Location]:
    """Source objects a URI names: one object, every source below a prefix, or a glob's matches."""
    try:
        if storage.has_glob(uri):
            found = storage.glob(uri)
            what = "no object matches it"
        else:
            loc = storage.resolve(uri)
            info = loc.info()
            if info.type == storage.FileType.File:
                return [loc]
            found = loc.list_files() if info.type == storage.FileType.Directory else []
            what = "no such object or prefix"
        found = [f for f in found if _is_source_name(f.name) and not f.name.startswith(".")]
    except storage.StorageError as e:
        raise SourceError(str(e)) from None
    if not found:
        raise SourceError(
            f"{uri}: {what} (or none with a source suffix: {', '.join(SOURCE_SUFFIXES)}); check "
            "the bucket, prefix and pattern, e.g. gs://BUCKET/PREFIX/CP_Quack-http-*.tar.gz"
        )
    return found


def expand_sources(paths: Iterable[Source]) -> list[Path | Location]:
    """Expand files, directories and object-store URIs into the list of source files to read.

    Directories are searched recursively for ``SOURCE_SUFFIXES`` files (hidden entries
    skipped); files named explicitly are kept whatever their suffix. A URI names one object,
    a prefix (searched like a directory) or a glob (``*``, ``?``, ``[...]``); its sources are
    ``Location``s, streamed later without a local copy. Duplicates are dropped, first
    occurrence wins. Ground-truth sidecars of ``quackae synth`` (``*.truth.jsonl``) are
    not measurements: they are skipped, with one warning saying how many.

    Raises
    ------
    SourceError
        A path does not exist, a URI matches nothing, or its store cannot be reached.
    """
    out: list[Path | Location] = []
    seen: set[str] = set()
    for raw in paths:
        if isinstance(raw, Location) or storage.is_uri(raw):
            candidates: list[Path | Location] = (
                [raw] if isinstance(raw, Location) else list(_expand_uri(str(raw)))
            )
        else:
            path = _local_path(raw)
            if path.is_dir():
                candidates = list(_walk_dir(path))
            elif path.is_file():
                candidates = [path]
            else:
                raise SourceError(
                    f"{path}: no such file or directory; pass existing archive files "
                    f"({', '.join(SOURCE_SUFFIXES)}) or directories holding them"
                )
        for candidate in candidates:
            ident = candidate.uri if isinstance(candidate, Location) else str(candidate.resolve())
            if ident not in seen:
                seen.add(ident)
                out.append(candidate)
    sidecars = [p for p in out if source_name(p).lower().endswith(SIDECAR_SUFFIX)]
    if sidecars:
        log.warning(
            "skipped %d ground-truth sidecar(s) (*%s, e.g. %s): they are not measurements",
            len(sidecars),
            SIDECAR_SUFFIX,
            sidecars[0],
        )
    return [p for p in out if p not in sidecars]


def source_name(source: Source) -> str:
    """The file name of a source (a URI's last path component, without its query string)."""
    if isinstance(source, Location):
        return source.name
    if storage.is_uri(source):
        return storage.resolve(str(source)).name
    return Path(source).name


def _location(source: Source) -> Location | None:
    """The ``Location`` of an object-store source; None for a local path."""
    if isinstance(source, Location):
        return source if source.remote else None
    return storage.resolve(str(source)) if storage.is_uri(source) else None


def _local_path(source: Source) -> Path:
    """A local source as a ``Path`` (a local ``Location`` and a ``file://`` URI included)."""
    if isinstance(source, str) and source.startswith("file://"):
        return Path(storage.resolve(source).path)
    return Path(source.path) if isinstance(source, Location) else Path(source)


def scan_from_name(name: str | os.PathLike[str]) -> str | None:
    """The scan type (echo/discard/http/https) named in a source's file name, or None.

    Censored Planet names archives ``CP_Quack-<scan>-YYYY-MM-DD-HH-MM-SS.tar.gz``; any name
    holding one of the scan names as a separate word is accepted too. The base name is
    tried first, then the enclosing directory names, nearest first.
    """
    parts = list(reversed(Path(name).parts))
    for part in parts:
        for word in _WORD_SPLIT.split(part.lower()):
            if word in SCANS:
                return word
    return None


def source_key(path: Source) -> str:
    """The identity of a source: hex blake2b (128 bit) of its base file name.

    Censored Planet names every archive uniquely (scan and start time), so the name alone
    says which source a file is, from any directory; a truncated download and the complete
    file share a key, which lets the complete one replace the partial rows. What the file
    holds is told apart by ``source_fingerprint``.
    """
    digest = hashlib.blake2b(digest_size=16)
    digest.update(source_name(path).encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def source_fingerprint(path: Source) -> str:
    """Which copy of a source a file is: its size and the hash of its first 1 MiB.

    For an object, both come from the store (the size it reports, the first MiB read).

    Raises
    ------
    SourceError
        The file cannot be read.
    """
    loc = _location(path)
    if loc is not None:
        try:
            size, head = loc.size(), loc.read_bytes(_KEY_HEAD_BYTES)
        except storage.StorageError as exc:
            raise SourceError(str(exc)) from None
        return f"{size}:{hashlib.blake2b(head, digest_size=16).hexdigest()}"
    p = _local_path(path)
    try:
        size = p.stat().st_size
        with p.open("rb") as fh:
            head = fh.read(_KEY_HEAD_BYTES)
    except OSError as exc:
        raise SourceError(f"{p}: cannot read ({exc.strerror or exc})") from exc
    return f"{size}:{hashlib.blake2b(head, digest_size=16).hexdigest()}"


# --------------------------------------------------------------------------- reading


def _open_binary(path: Path | Location) -> BinaryIO:
    """A buffered binary stream of a local file or an object (streamed, never copied locally)."""
    if isinstance(path, Location):
        return io.BufferedReader(path.open_input(), _READ_CHUNK)
    return path.open("rb", buffering=_READ_CHUNK)


def _kind(path: Path | Location) -> str:
    """``"tar"``, ``"gzip"`` or ``"plain"``: by suffix, else by the file's magic bytes."""
    lower = path.name.lower()
    if lower.endswith(_TAR_SUFFIXES):
        return "tar"
    if lower.endswith(".gz"):
        return "gzip"
    if lower.endswith((".json", ".jsonl")):
        return "plain"
    with _open_binary(path) as fh:
        head = fh.read(512)
    if head[:2] == _GZIP_MAGIC:
        return "gzip"
    if head[257:262] == b"ustar":
        return "tar"
    return "plain"


def _discard_rest_of_line(stream: BinaryIO) -> None:
    """Read and drop bytes up to and including the next newline, in bounded chunks."""
    while True:
        chunk = stream.readline(_READ_CHUNK)
        if not chunk or chunk.endswith(b"\n"):
            return


class _LineCounter:
    """Line numbering shared across the members of one source."""

    __slots__ = ("line_no", "skip")

    def __init__(self, skip: int) -> None:
        self.line_no = 0
        self.skip = max(0, skip)


def _stream_lines(
    stream: BinaryIO,
    source: str,
    member: str,
    counter: _LineCounter,
    on_error: ErrorCallback,
) -> Iterator[SourceLine]:
    """Yield the non-blank lines of ``stream`` with a size cap per line."""
    cap = MAX_LINE_BYTES
    while counter.skip > 0:
        chunk = stream.readline(_READ_CHUNK)
        if not chunk:
            return
        if not chunk.endswith(b"\n"):
            _discard_rest_of_line(stream)
        counter.line_no += 1
        counter.skip -= 1
    readline = stream.readline
    while True:
        data = readline(cap + 1)
        if not data:
            return
        counter.line_no += 1
        if len(data) > cap and not data.endswith(b"\n"):
            _discard_rest_of_line(stream)
            on_error(source, counter.line_no, f"line too long (> {cap} bytes), skipped")
            continue
        data = data.rstrip(b"\r\n")
        if data.strip():
            yield SourceLine(source, member, counter.line_no, data)


def _is_results_member(name: str) -> bool:
    """Whether a tar member holds the measurements (Censored Planet's naming)."""
    return name.endswith("results.json")


def _is_json_member(name: str) -> bool:
    """Whether a tar member is some JSON-lines file (fallback when no results member)."""
    return name.lower().endswith((".json", ".jsonl"))


class _KeptError:
    """A gzip stream that ends at the first damage, keeping what it inflated and the error.

    tarfile drops a partly filled block when its stream raises, and the lines in it with it;
    over this stream it gets every byte inflated before the damage, then an end, and
    ``_MemberReader`` raises ``error`` there, after the last complete line.
    """

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.error: BaseException | None = None

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes, inflated in pieces; ``b""`` from the first damage on.

        ISA-L drops what one call inflated when that call meets the damage, so pieces of
        ``_INFLATE_PIECE`` bound what is lost before a damaged spot to less than that.
        """
        pieces: list[bytes] = []
        want = size
        while want > 0 and self.error is None:
            try:
                piece = self.stream.read(min(want, _INFLATE_PIECE))
            except (EOFError, zlib.error, IsalError, gzip.BadGzipFile, OSError) as exc:
                self.error = exc
                break
            if not piece:
                break
            pieces.append(piece)
            want -= len(piece)
        return b"".join(pieces)


class _MemberReader(io.RawIOBase):
    """The data of the current member of a streaming tar, read straight from its stream.

    tarfile's own member reader goes through an 8 KiB buffer and 10 KiB stream blocks in
    Python; reading 128 KiB at a time (inflated in 16 KiB pieces, which measured faster than
    larger ones) takes the reader of ``benchmarks/ingest.py --real``'s mix from 0.58 to about
    0.25 CPU seconds per 48k lines. A damaged stream raises its error after the last byte it
    gave.
    """

    def __init__(self, stream: Any, size: int, kept: _KeptError) -> None:
        self.stream, self.left, self.kept = stream, size, kept

    def readable(self) -> bool:
        """A reader."""
        return True

    def readinto(self, buffer: Any) -> int:
        """Fill ``buffer`` with the member's next bytes; 0 at its end."""
        if self.left <= 0:
            return 0
        data = self.stream.read(min(len(buffer), self.left))
        if not data:
            raise self.kept.error or tarfile.ReadError("unexpected end of data")
        buffer[: len(data)] = data
        self.left -= len(data)
        return len(data)


def _open_tar(raw: BinaryIO) -> tuple[tarfile.TarFile, _KeptError | None]:
    """A streaming tar reader over ``raw``; gzip is inflated by ISA-L, other layers by tarfile.

    For a gzipped tar also the stream under it, whose ``error`` says where it was damaged.
    """
    if raw.peek(2)[:2] == _GZIP_MAGIC:  # type: ignore[attr-defined]  # _open_binary is buffered
        kept = _KeptError(igzip.IGzipFile(fileobj=raw, mode="rb"))
        return tarfile.open(fileobj=kept, mode="r|", bufsize=_MEMBER_BUFFER), kept  # type: ignore[call-overload]
    return tarfile.open(fileobj=raw, mode="r|*"), None


def _member(tar: tarfile.TarFile, info: tarfile.TarInfo, kept: _KeptError | None) -> Any:
    """A reader of a member's data: straight from the stream where it can, else tarfile's."""
    stream = tar.fileobj
    if kept is not None and not info.issparse() and stream.tell() == info.offset_data:
        return io.BufferedReader(_MemberReader(stream, info.size, kept), _MEMBER_BUFFER)
    return tar.extractfile(info)


def _tar_lines(
    path: Path | Location,
    source: str,
    counter: _LineCounter,
    on_error: ErrorCallback,
    wanted: Callable[[str], bool],
    seen: dict[str, bool],
) -> Iterator[SourceLine]:
    """Stream the lines of the tar members selected by ``wanted``.

    ``seen`` records whether any results member and any JSON member were met, so the
    caller can decide on a fallback pass.
    """
    with _open_binary(path) as raw:
        tar, kept = _open_tar(raw)
        with tar:
            yield from _members_lines(tar, kept, source, counter, on_error, wanted, seen)
        if kept is not None and kept.error is not None:
            raise kept.error


def _members_lines(
    tar: tarfile.TarFile,
    kept: _KeptError | None,
    source: str,
    counter: _LineCounter,
    on_error: ErrorCallback,
    wanted: Callable[[str], bool],
    seen: dict[str, bool],
) -> Iterator[SourceLine]:
    """The lines of the wanted members of an open tar (see ``_tar_lines``)."""
    for info in tar:
        if not info.isfile():
            continue
        name = info.name
        if _is_results_member(name):
            seen["results"] = True
        if _is_json_member(name):
            seen["json"] = True
        if not wanted(name):
            continue
        extracted = _member(tar, info, kept)
        if extracted is None:
            continue
        with extracted:
            yield from _stream_lines(extracted, source, name, counter, on_error)


def _iter_tar(
    path: Path | Location, source: str, counter: _LineCounter, on_error: ErrorCallback
) -> Iterator[SourceLine]:
    """Stream the ``results.json`` members of a tar; else, any JSON member (second pass)."""
    seen = {"results": False, "json": False}
    yield from _tar_lines(path, source, counter, on_error, _is_results_member, seen)
    if not seen["results"] and seen["json"]:
        yield from _tar_lines(path, source, counter, on_error, _is_json_member, seen)


def _iter_gzip(
    path: Path | Location, source: str, counter: _LineCounter, on_error: ErrorCallback
) -> Iterator[SourceLine]:
    """Stream the lines of a gzip-compressed JSON-lines file."""
    with _open_binary(path) as raw, igzip.IGzipFile(fileobj=raw, mode="rb") as gz:
        yield from _stream_lines(gz, source, "", counter, on_error)


def _iter_plain(
    path: Path | Location, source: str, counter: _LineCounter, on_error: ErrorCallback
) -> Iterator[SourceLine]:
    """Stream the lines of an uncompressed JSON-lines file."""
    with _open_binary(path) as fh:
        yield from _stream_lines(fh, source, "", counter, on_error)


_READERS = {"tar": _iter_tar, "gzip": _iter_gzip, "plain": _iter_plain}


def _archive_error_reason(exc: BaseException) -> str:
    """The reject reason for an exception raised while decompressing or untarring."""
    if isinstance(exc, EOFError) or "unexpected end" in str(exc) or "truncated" in str(exc):
        return f"truncated archive: {exc}"
    return f"corrupt archive: {type(exc).__name__}: {exc}"


def iter_lines(
    path: Source,
    on_error: ErrorCallback | None = None,
    skip_lines: int = 0,
) -> Iterator[SourceLine]:
    """Stream the non-blank lines of one source file's results stream.

    Parameters
    ----------
    path
        A local file, object-store URI or ``Location``: a ``.tar``/``.tar.gz``/``.tgz`` archive
        (members ending in ``results.json``; if none, every ``.json``/``.jsonl`` member) or a
        plain or gzipped JSON-lines file.
    on_error
        ``on_error(source, line_no, reason)`` for lines longer than ``MAX_LINE_BYTES``
        (skipped without being loaded) and for truncated or corrupt archives (reading that
        file stops; lines already yielded stay valid; ``line_no`` is the last line read,
        0 if none). Default: log a warning.
    skip_lines
        Physical lines to skip cheaply at the start of the stream (resume).

    Raises
    ------
    SourceError
        The path is missing or cannot be opened (raised by the call itself, before any
        iteration).
    """
    p: Path | Location = _location(path) or _local_path(path)
    try:
        if not p.is_file():
            raise SourceError(f"{p}: no such file; check the path (or re-run the listing)")
        reader = _READERS[_kind(p)]
    except storage.StorageError as exc:
        raise SourceError(str(exc)) from None
    except OSError as exc:
        raise SourceError(f"{p}: cannot open ({exc.strerror or exc})") from exc
    return _guarded(reader, p, on_error or _log_error, skip_lines)


def _guarded(
    reader: Callable[[Path | Location, str, _LineCounter, ErrorCallback], Iterator[SourceLine]],
    p: Path | Location,
    report: ErrorCallback,
    skip_lines: int,
) -> Iterator[SourceLine]:
    """Run ``reader`` and turn archive damage into an ``on_error`` report that ends the file."""
    source = str(p)
    counter = _LineCounter(skip_lines)
    try:
        yield from reader(p, source, counter, report)
    except (EOFError, tarfile.TarError, zlib.error, IsalError, gzip.BadGzipFile) as exc:
        report(source, counter.line_no, _archive_error_reason(exc))
    except storage.StorageError as exc:
        raise SourceError(str(exc)) from None
    except OSError as exc:
        if isinstance(exc, FileNotFoundError | PermissionError):
            raise SourceError(f"{p}: cannot read ({exc.strerror or exc})") from exc
        report(source, counter.line_no, _archive_error_reason(exc))
