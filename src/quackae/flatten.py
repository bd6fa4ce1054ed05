"""The ingest stage: raw Hyperquack sources -> labelled, tokenized rows in a dataset directory.

Each source file is read as a stream by one worker process, cut into chunks of lines; each
chunk becomes one shard committed through the manifest by the parent process (the single
writer). A killed run resumes after the last committed chunk of every source, so rerunning
the same command ends with exactly the rows of an uninterrupted run; a source already
ingested is recognised by its content key and adds nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import multiprocessing as mp
import os
import queue
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from quackae import store, tokens
from quackae.geo import CountryLookup
from quackae.hyperquack import ParseError, Try, parse_measurement
from quackae.outcome import outcome_of
from quackae.signatures import DEFAULT_SET_HINT, Matcher, label, load_signatures
from quackae.sources import SourceError, expand_sources, iter_lines, scan_from_name, source_key

log = logging.getLogger(__name__)

CHUNK_LINES = 5_000
CHUNK_BYTES = 64 * 2**20  # also commit after this much input, so memory stays bounded with big pages
TOKENIZER_SAMPLE = 20_000  # tries of text the BPE model is trained on at a dataset's creation


class FlattenError(Exception):
    """A user error that stops the run; the message is one line saying what to do."""


@dataclass(frozen=True)
class Options:
    """What a flatten run keeps and how it labels and tokenizes."""

    labeled: bool = False
    anomalies: bool = False
    signatures: Path | None = None
    max_tokens: int = tokens.DEFAULT_MAX_TOKENS
    mmdb: Path | None = None
    chunk_lines: int = CHUNK_LINES

    def filters(self) -> dict[str, bool]:
        """The row filters, recorded in the manifest so appends stay consistent."""
        return {"labeled": self.labeled, "anomalies": self.anomalies}


@dataclass
class Summary:
    """What a run did, printed at the end and returned to callers."""

    rows: int = 0
    lines: int = 0
    rejected: int = 0
    skipped_sources: int = 0
    failed_sources: list[str] = field(default_factory=list)
    reasons: Counter = field(default_factory=Counter)
    labels: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    def lines_text(self, root: Path) -> list[str]:
        """Human-readable summary lines."""
        rate = self.rows / self.seconds if self.seconds else 0.0
        out = [
            f"flatten: {self.rows} rows from {self.lines} lines in {self.seconds:.1f}s "
            f"({rate:,.0f} rows/s) -> {root}",
            f"  labels: censored {self.labels[1]}, undetermined {self.labels[0]}, "
            f"uncensored {self.labels[-1]}",
        ]
        if self.skipped_sources:
            out.append(f"  {self.skipped_sources} source(s) already ingested: nothing added")
        if self.rejected:
            top = ", ".join(f"{r} ({n})" for r, n in self.reasons.most_common(5))
            out.append(f"  rejected {self.rejected} line(s): {top}; see {root}/rejects/")
        for failed in self.failed_sources:
            out.append(f"  FAILED {failed}")
        return out


# --------------------------------------------------------------------------- one chunk of rows


class _Chunk:
    """Rows and rejects of one chunk of a source, in column form."""

    def __init__(self) -> None:
        self.columns: dict[str, list] = {name: [] for name in store.SCHEMA.names}
        self.tries: list[Try] = []
        self.token_outcomes: list[str] = []
        self.rejects: list[dict[str, Any]] = []
        self.lines = 0
        self.bytes = 0

    def __len__(self) -> int:
        return len(self.tries)


class _SourceWorker:
    """Turns the lines of one source into committed chunks."""

    def __init__(self, root: Path, options: Options, emit: Callable[[tuple], None]) -> None:
        self.root = root
        self.options = options
        self.emit = emit
        self.matcher: Matcher = load_signatures(options.signatures)
        self.encoder = tokens.Encoder(
            tokens.load_tokenizer(root / store.TOKENIZER), options.max_tokens
        )
        self.geo = CountryLookup(options.mmdb)

    def run(self, path: Path, key: str, skip_lines: int, first_chunk: int) -> None:
        """Ingest ``path`` from line ``skip_lines + 1``, committing a chunk every N lines."""
        name = path.name
        scan = scan_from_name(name)
        chunk, chunk_no, last_line = _Chunk(), first_chunk, skip_lines

        def reject(_source: str, line_no: int, reason: str) -> None:
            chunk.rejects.append({"file": name, "line": line_no, "reason": reason})

        for item in iter_lines(path, reject, skip_lines=skip_lines):
            last_line = item.line_no
            chunk.lines += 1
            chunk.bytes += len(item.data)
            self._add_line(chunk, key, name, item.line_no, item.data, scan)
            if chunk.lines >= self.options.chunk_lines or chunk.bytes >= CHUNK_BYTES:
                self._commit(chunk, key, chunk_no, last_line, done=False)
                self.emit(("progress", chunk.lines))
                chunk, chunk_no = _Chunk(), chunk_no + 1
        self._commit(chunk, key, chunk_no, last_line, done=True)
        self.emit(("progress", chunk.lines))

    def _add_line(
        self, chunk: _Chunk, key: str, name: str, line_no: int, data: bytes, scan: str | None
    ) -> None:
        reason = None
        try:
            obj = json.loads(data.decode("utf-8"))
            if not isinstance(obj, dict):
                raise ParseError(f"not a JSON object ({type(obj).__name__})")
            tries = parse_measurement(obj, scan)
        except UnicodeDecodeError as e:
            reason = f"not UTF-8: {e.reason} at byte {e.start}"
        except json.JSONDecodeError as e:
            reason = "blank line" if not data.strip() else f"invalid JSON: {e.msg}"
        except (ParseError, RecursionError) as e:
            reason = f"unknown shape: {e}"
        if reason is not None:
            chunk.rejects.append({"file": name, "line": line_no, "reason": reason})
            return
        for t in tries:
            self._add_try(chunk, key, name, line_no, t)

    def _add_try(self, chunk: _Chunk, key: str, name: str, line_no: int, t: Try) -> None:
        if self.options.anomalies and not (t.anomaly and not t.success):
            return
        censored, fingerprint = label(t, self.matcher)
        if self.options.labeled and censored == 0:
            return
        code, location = t.country_code, t.location
        if not code:
            code, location = self.geo.lookup(t.ip)
        cols = chunk.columns
        cols["row_id"].append(store.row_id(key, line_no, t.try_index))
        cols["source"].append(name)
        cols["line"].append(line_no)
        cols["try_index"].append(t.try_index)
        cols["ip"].append(t.ip)
        cols["domain"].append(t.domain)
        cols["location"].append(location)
        cols["country_code"].append(code)
        cols["timestamp"].append(_unix(t.start))
        cols["end_time"].append(_unix(t.end))
        cols["duration_ms"].append(_duration_ms(t))
        cols["scan"].append(t.scan)
        cols["censored"].append(censored)
        cols["fingerprint"].append(fingerprint)
        cols["outcome"].append(outcome_of(t, censored, fingerprint))
        cols["anomaly"].append(t.anomaly)
        chunk.tries.append(t)
        chunk.token_outcomes.append(outcome_of(t, 0, ""))

    def _commit(self, chunk: _Chunk, key: str, chunk_no: int, last_line: int, done: bool) -> None:
        entry = None
        if len(chunk) or chunk.rejects:
            seqs = self.encoder.encode(chunk.tries, chunk.token_outcomes)
            chunk.columns["tokens"] = seqs
            chunk.columns["length"] = [len(s) for s in seqs]
            name = f"part-{key[:16]}-{chunk_no:05d}"
            entry = store.write_shard(self.root, name, chunk.columns, chunk.rejects)
            entry["source"] = key
            reasons = Counter(_reason_kind(r["reason"]) for r in chunk.rejects)
            entry_reasons = dict(reasons)
        else:
            entry_reasons = {}
        self.emit(("commit", key, entry, last_line, chunk_no + 1, done, entry_reasons))


def _unix(seconds: float) -> int:
    return int(math.floor(seconds)) if math.isfinite(seconds) else 0


def _duration_ms(t: Try) -> float:
    ms = (t.end - t.start) * 1000.0
    return float(ms) if math.isfinite(ms) else float("nan")


def _reason_kind(reason: str) -> str:
    return reason.split(":", 1)[0]


# --------------------------------------------------------------------------- worker processes


def _worker_main(
    root: str, options: Options, tasks: list[tuple[str, str, int, int]], out: mp.Queue
) -> None:
    """Process entry point: ingest the assigned sources, reporting through ``out``."""
    parent = os.getppid()
    # one tokenizer thread per worker process: the processes are the parallelism
    os.environ["RAYON_NUM_THREADS"] = "1"
    os.environ["TOKENIZERS_PARALLELISM"] = "false"

    def emit(msg: tuple) -> None:
        if os.getppid() != parent:  # the parent was killed: stop, write nothing more
            os._exit(1)
        out.put(msg)

    try:
        worker = _SourceWorker(Path(root), options, emit)
    except Exception as e:  # noqa: BLE001 - reported to the parent as a failed start
        for _path, key, _skip, _chunk in tasks:
            out.put(("failed", key, f"worker could not start: {e}"))
        return
    for path, key, skip, first_chunk in tasks:
        try:
            worker.run(Path(path), key, skip, first_chunk)
        except Exception as e:  # noqa: BLE001 - one broken source must not stop the others
            log.exception("source %s failed", path)
            out.put(("failed", key, f"{type(e).__name__}: {e}"))


# --------------------------------------------------------------------------- the run


def _sample_texts(paths: list[Path], limit: int) -> list[str]:
    """Normalised texts of the first tries of every source, to train the tokenizer on."""
    per_source = max(limit // max(len(paths), 1), 1)
    texts: list[str] = []
    for path in paths:
        scan = scan_from_name(path.name)
        taken = 0
        for item in iter_lines(path, lambda *_: None):
            try:
                obj = json.loads(item.data.decode("utf-8"))
                tries = parse_measurement(obj, scan) if isinstance(obj, dict) else []
            except (ValueError, ParseError, RecursionError):
                continue
            for t in tries:
                texts.append(tokens.normalise(tokens.try_text(t), t.domain))
            taken += len(tries)
            if taken >= per_source:
                break
    return texts


def _signatures_id(directory: Path | None) -> str:
    """Hash of the signature files a dataset is labelled with (None: the default set)."""
    from importlib.resources import files

    base = files("quackae") / "data" if directory is None else Path(directory)
    h = hashlib.sha256()
    for name in ("blockpage_signatures.json", "false_positive_signatures.json"):
        h.update((base / name).read_bytes())
    return h.hexdigest()


def _open_or_create(
    root: Path, paths: list[Path], options: Options, tokenizer: Path | None, vocab_size: int
) -> dict[str, Any]:
    """The dataset's manifest, creating the directory and its tokenizer on first use."""
    signatures_id = _signatures_id(options.signatures)
    if (root / store.MANIFEST).exists():
        manifest = store.read_manifest(root)
        _check_compatible(root, manifest, options, tokenizer, signatures_id)
        return manifest
    root.mkdir(parents=True, exist_ok=True)
    if options.max_tokens < 32:
        raise FlattenError(f"--max_tokens {options.max_tokens} is too small; use 32 or more")
    if tokenizer is not None:
        if not tokenizer.is_file():
            raise FlattenError(f"--tokenizer {tokenizer}: no such file")
        shutil.copyfile(tokenizer, root / store.TOKENIZER)
    else:
        log.info("training a %d-token BPE tokenizer on the sources", vocab_size)
        tok = tokens.train_tokenizer(_sample_texts(paths, TOKENIZER_SAMPLE), vocab_size)
        tokens.save_tokenizer(tok, root / store.TOKENIZER)
    sha = tokens.tokenizer_sha256(root / store.TOKENIZER)
    layout = tokens.TokenLayout(tokens.load_tokenizer(root / store.TOKENIZER).get_vocab_size())
    manifest = store.new_manifest(layout.to_dict(), sha, options.max_tokens)
    manifest["filters"] = options.filters()
    manifest["signatures"] = signatures_id
    store.write_manifest(root, manifest)
    return manifest


def _check_compatible(
    root: Path, manifest: dict, options: Options, tokenizer: Path | None, signatures_id: str
) -> None:
    if tokenizer is not None and tokens.tokenizer_sha256(tokenizer) != manifest["tokenizer_sha256"]:
        raise FlattenError(f"--tokenizer {tokenizer} differs from the tokenizer of {root}")
    if manifest.get("filters", {}) != options.filters():
        raise FlattenError(
            f"{root} was made with {manifest.get('filters')}; append with the same "
            "--labeled/--anomalies flags or use a new --storage_path"
        )
    if manifest.get("signatures") != signatures_id:
        raise FlattenError(
            f"{root} was labelled with other signatures; use the same --signatures or a new "
            "--storage_path"
        )
    if options.max_tokens != manifest["max_tokens"]:
        raise FlattenError(
            f"{root} was made with --max_tokens {manifest['max_tokens']}; "
            "pass the same value or use a new --storage_path"
        )


def _plan(paths: list[Path], manifest: dict) -> tuple[list[tuple[str, str, int, int]], int]:
    """Tasks ``(path, key, skip_lines, first_chunk)`` still to do, and how many are done."""
    tasks, done, seen = [], 0, set()
    for path in paths:
        key = source_key(path)
        if key in seen:
            continue
        seen.add(key)
        entry = manifest["sources"].get(key)
        if entry and entry["done"]:
            done += 1
            continue
        skip, chunk = (entry["lines_done"], entry["chunks"]) if entry else (0, 0)
        tasks.append((str(path), key, skip, chunk))
    return tasks, done


def flatten(
    sources: list[str | Path],
    storage_path: str | Path,
    options: Options | None = None,
    workers: int = 1,
    tokenizer: Path | None = None,
    vocab_size: int = tokens.DEFAULT_VOCAB,
    progress: bool = True,
) -> Summary:
    """Ingest ``sources`` into the dataset at ``storage_path``; see the module docstring."""
    options = options or Options()
    started = time.perf_counter()
    root = Path(storage_path)
    try:
        paths = expand_sources([Path(s) for s in sources])
    except SourceError as e:
        raise FlattenError(str(e)) from None
    manifest = _open_or_create(root, paths, options, tokenizer, vocab_size)
    store.remove_orphans(root, manifest)
    tasks, already = _plan(paths, manifest)
    if tasks and options.signatures is None:
        log.warning(DEFAULT_SET_HINT)
    summary = Summary(skipped_sources=already)
    names = {key: Path(path).name for path, key, _, _ in tasks}
    bar = tqdm(
        desc="flatten", unit=" lines", unit_scale=True, disable=not progress, file=sys.stderr
    )

    def handle(msg: tuple) -> None:
        kind = msg[0]
        if kind == "progress":
            summary.lines += msg[1]
            bar.update(msg[1])
        elif kind == "commit":
            _, key, entry, last_line, chunks, done, reasons = msg
            src = manifest["sources"].setdefault(
                key, {"name": names[key], "lines_done": 0, "chunks": 0, "done": False, "rows": 0}
            )
            src.update(lines_done=last_line, chunks=chunks, done=done)
            if entry is not None:
                src["rows"] += entry["rows"]
                store.add_shard(manifest, entry)
                summary.rows += entry["rows"]
                summary.rejected += entry["rejected"]
                summary.reasons.update(reasons)
                for lab, k in store.LABEL_KEYS.items():
                    summary.labels[lab] += entry[k]
            store.write_manifest(root, manifest)
        elif kind == "failed":
            summary.failed_sources.append(f"{names[msg[1]]}: {msg[2]}")

    try:
        if workers <= 1 or len(tasks) <= 1:
            _run_inline(root, options, tasks, handle)
        else:
            _run_pool(root, options, tasks, workers, handle)
    finally:
        bar.close()
    summary.seconds = time.perf_counter() - started
    return summary


def _run_inline(root: Path, options: Options, tasks: list, handle: Callable) -> None:
    """All sources in this process: the path of ``--workers 1`` and of a single source."""
    if not tasks:
        return
    worker = _SourceWorker(root, options, handle)
    for path, key, skip, first_chunk in tasks:
        try:
            worker.run(Path(path), key, skip, first_chunk)
        except Exception as e:  # noqa: BLE001 - one broken source must not stop the others
            log.exception("source %s failed", path)
            handle(("failed", key, f"{type(e).__name__}: {e}"))


def _run_pool(root: Path, options: Options, tasks: list, workers: int, handle: Callable) -> None:
    """Sources spread over worker processes; the parent alone writes the manifest."""
    ctx = mp.get_context("spawn")
    out: mp.Queue = ctx.Queue(maxsize=256)
    shares = [tasks[i::workers] for i in range(workers) if tasks[i::workers]]
    procs = [
        ctx.Process(target=_worker_main, args=(str(root), options, share, out), daemon=True)
        for share in shares
    ]
    for p in procs:
        p.start()
    remaining = {key for _, key, _, _ in tasks}
    try:
        while remaining:
            try:
                msg = out.get(timeout=1.0)
            except queue.Empty:
                if not any(p.is_alive() for p in procs) and out.empty():
                    for key in remaining:
                        handle(("failed", key, "worker process died"))
                    break
                continue
            handle(msg)
            if msg[0] == "failed" or (msg[0] == "commit" and msg[5]):
                remaining.discard(msg[1])
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
            p.join(timeout=5)
