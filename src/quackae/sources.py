"""Open raw Hyperquack sources and stream their lines.

Censored Planet publishes one archive per scan (``CP_Quack-<scan>-<date>.tar.gz``, older
ones ``.tar``) whose ``results.json`` member holds newline-delimited JSON. Archives are many
GB, so everything here streams: tar archives are read in streaming mode, nothing is unpacked
to disk, and a single line is never held in memory beyond ``MAX_LINE_BYTES``.

Line numbers are 1-based physical lines of the results stream of one source. When a source
has several results members, numbering continues across them, so ``(source, line_no)`` is
unique and ``skip_lines`` resumes exactly where an earlier run stopped.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import re
import tarfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

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
    "source_key",
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
_KEY_HEAD_BYTES = 1024 * 1024
_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
_GZIP_MAGIC = b"\x1f\x8b"
_WORD_SPLIT = re.compile(r"[^a-z0-9]+")

ErrorCallback = Callable[[str, int, str], None]


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


#: Companion files that sit beside archives and are never measurements: signature files and
#: ground-truth sidecars (``quackae synth`` writes both next to its archives).
_NOT_SOURCES = ("blockpage_signatures.json", "false_positive_signatures.json")


def _is_source_name(name: str) -> bool:
    """Whether a file name has a recognised source suffix and is no known companion file."""
    lower = name.lower()
    if lower in _NOT_SOURCES or lower.endswith(".truth.jsonl"):
        return False
    return lower.endswith(SOURCE_SUFFIXES)


def _walk_dir(directory: Path) -> list[Path]:
    """Source files under ``directory``, recursively, in a deterministic order."""
    found: list[Path] = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and _is_source_name(name):
                found.append(Path(root) / name)
    return found


def expand_sources(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Expand files and directories into the list of source files to read.

    Directories are searched recursively for ``SOURCE_SUFFIXES`` files (hidden entries
    skipped); files named explicitly are kept whatever their suffix. Duplicates are dropped,
    first occurrence wins.

    Raises
    ------
    SourceError
        A path does not exist.
    """
    out: list[Path] = []
    seen: set[Path] = set()
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            candidates = _walk_dir(path)
        elif path.is_file():
            candidates = [path]
        else:
            raise SourceError(
                f"{path}: no such file or directory; pass existing archive files "
                f"({', '.join(SOURCE_SUFFIXES)}) or directories holding them"
            )
        for candidate in candidates:
            resolved = candidate.resolve()
            if resolved not in seen:
                seen.add(resolved)
                out.append(candidate)
    return out


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


def source_key(path: str | os.PathLike[str]) -> str:
    """A stable identity of a source file that does not depend on its directory.

    Hex blake2b (128 bit) of the base name, the size in bytes and the first 1 MiB of
    content, so the same archive found under another path maps to the same key.

    Raises
    ------
    SourceError
        The file cannot be read.
    """
    p = Path(path)
    try:
        size = p.stat().st_size
        with p.open("rb") as fh:
            head = fh.read(_KEY_HEAD_BYTES)
    except OSError as exc:
        raise SourceError(f"{p}: cannot read ({exc.strerror or exc})") from exc
    digest = hashlib.blake2b(digest_size=16)
    digest.update(p.name.encode("utf-8", "surrogateescape"))
    digest.update(b"\0")
    digest.update(str(size).encode("ascii"))
    digest.update(b"\0")
    digest.update(head)
    return digest.hexdigest()


# --------------------------------------------------------------------------- reading


def _kind(path: Path) -> str:
    """``"tar"``, ``"gzip"`` or ``"plain"``: by suffix, else by the file's magic bytes."""
    lower = path.name.lower()
    if lower.endswith(_TAR_SUFFIXES):
        return "tar"
    if lower.endswith(".gz"):
        return "gzip"
    if lower.endswith((".json", ".jsonl")):
        return "plain"
    with path.open("rb") as fh:
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


def _tar_lines(
    path: Path,
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
    with path.open("rb") as raw, tarfile.open(fileobj=raw, mode="r|*") as tar:
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
            extracted = tar.extractfile(info)
            if extracted is None:
                continue
            with extracted:
                yield from _stream_lines(extracted, source, name, counter, on_error)


def _iter_tar(
    path: Path, source: str, counter: _LineCounter, on_error: ErrorCallback
) -> Iterator[SourceLine]:
    """Stream the ``results.json`` members of a tar; else, any JSON member (second pass)."""
    seen = {"results": False, "json": False}
    yield from _tar_lines(path, source, counter, on_error, _is_results_member, seen)
    if not seen["results"] and seen["json"]:
        yield from _tar_lines(path, source, counter, on_error, _is_json_member, seen)


def _iter_gzip(
    path: Path, source: str, counter: _LineCounter, on_error: ErrorCallback
) -> Iterator[SourceLine]:
    """Stream the lines of a gzip-compressed JSON-lines file."""
    with gzip.open(path, "rb") as gz:
        yield from _stream_lines(gz, source, "", counter, on_error)


def _iter_plain(
    path: Path, source: str, counter: _LineCounter, on_error: ErrorCallback
) -> Iterator[SourceLine]:
    """Stream the lines of an uncompressed JSON-lines file."""
    with path.open("rb", buffering=_READ_CHUNK) as fh:
        yield from _stream_lines(fh, source, "", counter, on_error)


_READERS = {"tar": _iter_tar, "gzip": _iter_gzip, "plain": _iter_plain}


def _archive_error_reason(exc: BaseException) -> str:
    """The reject reason for an exception raised while decompressing or untarring."""
    if isinstance(exc, EOFError) or "unexpected end" in str(exc) or "truncated" in str(exc):
        return f"truncated archive: {exc}"
    return f"corrupt archive: {type(exc).__name__}: {exc}"


def iter_lines(
    path: str | os.PathLike[str],
    on_error: ErrorCallback | None = None,
    skip_lines: int = 0,
) -> Iterator[SourceLine]:
    """Stream the non-blank lines of one source file's results stream.

    Parameters
    ----------
    path
        A ``.tar``/``.tar.gz``/``.tgz`` archive (members ending in ``results.json``; if
        none, every ``.json``/``.jsonl`` member) or a plain or gzipped JSON-lines file.
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
    p = Path(path)
    if not p.is_file():
        raise SourceError(f"{p}: no such file; check the path (or re-run the listing)")
    try:
        reader = _READERS[_kind(p)]
    except OSError as exc:
        raise SourceError(f"{p}: cannot open ({exc.strerror or exc})") from exc
    return _guarded(reader, p, on_error or _log_error, skip_lines)


def _guarded(
    reader: Callable[[Path, str, _LineCounter, ErrorCallback], Iterator[SourceLine]],
    p: Path,
    report: ErrorCallback,
    skip_lines: int,
) -> Iterator[SourceLine]:
    """Run ``reader`` and turn archive damage into an ``on_error`` report that ends the file."""
    source = str(p)
    counter = _LineCounter(skip_lines)
    try:
        yield from reader(p, source, counter, report)
    except (EOFError, tarfile.TarError, zlib.error, gzip.BadGzipFile) as exc:
        report(source, counter.line_no, _archive_error_reason(exc))
    except OSError as exc:
        if isinstance(exc, FileNotFoundError | PermissionError):
            raise SourceError(f"{p}: cannot read ({exc.strerror or exc})") from exc
        report(source, counter.line_no, _archive_error_reason(exc))
