"""The ingest stage: raw Hyperquack sources -> labelled, tokenized rows in a dataset directory.

This process reads every source as a stream and cuts it into chunks of lines; each chunk
becomes one shard, parsed and written here, by ``--workers`` processes or by Ray tasks
(``fanout``), and committed through the manifest by this process alone (the single writer), in
the order cut. It holds the dataset's writer lock for the whole run: a second run on the same
directory waits. A killed run resumes after the last committed chunk of every source, so
rerunning the same command ends with exactly the rows of an uninterrupted run.

A source is recognised by its file name (``sources.source_key``); the size and first MiB of the
copy that was read are recorded too (``source_fingerprint``). A source that ended early (a
truncated or corrupt archive) keeps its rows but is never marked done, and a later, different
copy of the same name replaces those rows instead of adding to them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from quackae.dataset import store
from quackae.ingest import fanout, tokens
from quackae.ingest.geo import CountryLookup
from quackae.ingest.hyperquack import (
    ParseError,
    Try,
    loads_line,
    parse_lines,
    parse_measurement,
)
from quackae.ingest.limits import GOOD_TOKENIZER_TEXTS, MIN_TOKENIZER_TEXTS, TOKENIZER_SAMPLE
from quackae.ingest.outcome import outcome_of
from quackae.ingest.signatures import (
    DEFAULT_SET_HINT,
    LABEL_RULES,
    Matcher,
    SignatureError,
    label,
    load_signatures,
)
from quackae.ingest.sources import (
    SOURCE_SUFFIXES,
    SourceError,
    expand_sources,
    iter_lines,
    scan_from_name,
    source_fingerprint,
    source_key,
    source_name,
)
from quackae.io import atomic, storage

log = logging.getLogger(__name__)

CHUNK_LINES = 5_000
CHUNK_BYTES = (
    64 * 2**20
)  # also commit after this much input, so memory stays bounded with big pages
LABEL_MEMO = 50_000  # distinct (received, error, flags) label results remembered per worker
LABEL_MEMO_CHARS = 16 * 2**20  # ... holding at most this many characters of text (memory bound)

# Seconds per ingest stage spent in this process (read, parse, label, normalise, tokenize,
# write): the split the ingest benchmark prints. Worker processes keep their own.
STAGE_SECONDS: Counter[str] = Counter()


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
    label_rule: str = "full"  # signatures.LABEL_RULES: the whole response, or the body only

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

    def lines_text(self, root: Path | str) -> list[str]:
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
    """Rows and rejects of one chunk of a source; the columns are built at commit."""

    def __init__(self, source: str) -> None:
        self.source = source  # the source's file name
        self.columns: dict[str, Any] = {}
        self.tries: list[Try] = []
        self.line_nos: list[int] = []
        self.labels: list[tuple[int, str, str, str]] = []  # see _SourceWorker._label
        self.places: list[tuple[str, str]] = []  # (country code, country name)
        self.rejects: list[dict[str, Any]] = []
        self.lines = 0
        self.bytes = 0

    def __len__(self) -> int:
        return len(self.tries)


class _SourceWorker:
    """Turns the lines of a chunk into its shard and manifest entry (one per worker process)."""

    def __init__(self, root: store.Root, options: Options) -> None:
        self.root = root  # a local path or an object-store URI: shards are written there
        self.options = options
        self.matcher: Matcher = load_signatures(options.signatures)
        self.encoder = tokens.Encoder(store.load_tokenizer(root), options.max_tokens)
        self.geo = CountryLookup(options.mmdb)
        self.encoder.seconds = STAGE_SECONDS
        # Pages and errors repeat across vantage points: label and classify each kind once.
        self.labels: dict[tuple, tuple[int, str, str, str]] = {}
        self.label_chars = 0  # characters of text the keys of ``labels`` hold

    def process(self, job: fanout.ChunkJob) -> tuple:
        """Parse, label, tokenize and write one chunk; the commit message for the driver.

        Errors become messages too: ``fatal`` for a full disk (every chunk would fail the
        same way), ``failed`` for anything else (the source stops there).
        """
        try:
            return self._run_job(job)
        except OSError as e:
            if atomic.is_disk_full(e):
                return ("fatal", job.key, _disk_full_text(self.root, e))
            log.exception("source %s failed", job.name)
            return ("failed", job.key, f"{type(e).__name__}: {e}")
        except Exception as e:  # noqa: BLE001 - one broken source must not stop the others
            log.exception("source %s failed", job.name)
            return ("failed", job.key, f"{type(e).__name__}: {e}")

    def _run_job(self, job: fanout.ChunkJob) -> tuple:
        chunk = _Chunk(job.name)
        started = time.perf_counter()
        typed = parse_lines(job.datas, job.scan)  # None for a line the dict path must decide
        STAGE_SECONDS["parse"] += time.perf_counter() - started
        for (line_no, data), tries in zip(job.lines(), typed, strict=True):
            chunk.lines += 1
            if tries is None:
                tries = self._parse_dict(chunk, job.name, line_no, data, job.scan)
            for t in tries:
                self._add_try(chunk, job.key, job.name, line_no, t)
        STAGE_SECONDS["parse+label"] += time.perf_counter() - started
        # the reader's rejects (line too long, damage) in line order, a line's own first
        chunk.rejects = sorted(chunk.rejects + job.rejects, key=lambda r: r["line"])
        return self._commit(chunk, job.key, job.chunk_no, job.last_line, job.done, job.early)

    def _parse_dict(
        self, chunk: _Chunk, name: str, line_no: int, data: bytes, scan: str | None
    ) -> list[Try]:
        """The tries of a line the typed path left alone, or none and a counted reject."""
        reason = None
        started = time.perf_counter()
        try:
            obj = loads_line(data)
            if not isinstance(obj, dict):
                raise ParseError(f"not a JSON object ({type(obj).__name__})")
            return parse_measurement(obj, scan)
        except UnicodeDecodeError as e:
            reason = f"not UTF-8: {e.reason} at byte {e.start}"
        except json.JSONDecodeError as e:
            reason = "blank line" if not data.strip() else f"invalid JSON: {e.msg}"
        except (ParseError, RecursionError) as e:
            reason = f"unknown shape: {e}"
        finally:
            STAGE_SECONDS["parse"] += time.perf_counter() - started
        chunk.rejects.append({"file": name, "line": line_no, "reason": reason})
        return []

    def _add_try(self, chunk: _Chunk, key: str, name: str, line_no: int, t: Try) -> None:
        if self.options.anomalies and not (t.anomaly and not t.success):
            return
        labels = self._label(t)
        if self.options.labeled and labels[0] == 0:
            return
        code = t.country_code
        chunk.places.append((code, t.location) if code else self.geo.lookup(t.ip))
        chunk.tries.append(t)
        chunk.line_nos.append(line_no)
        chunk.labels.append(labels)

    def _label(self, t: Try) -> tuple[int, str, str, str]:
        """Label, fingerprint, outcome and signature-blind outcome of a try, memoised.

        They depend on nothing but the key's fields (see ``label`` and ``outcome_of``). The memo
        starts over when full, by entries or by characters of text, so a worker's memory does
        not grow with the size of a file of big, distinct pages.
        """
        memo_key = (t.success, t.anomaly, t.scan, t.received, t.error, t.body)
        hit = self.labels.get(memo_key)
        if hit is None:
            chars = len(t.received or "") + len(t.error) + len(t.body or "")
            if len(self.labels) >= LABEL_MEMO or self.label_chars + chars > LABEL_MEMO_CHARS:
                self.labels.clear()
                self.label_chars = 0
            self.label_chars += chars
            censored, fingerprint = label(t, self.matcher, self.options.label_rule)
            outcome = outcome_of(t, censored, fingerprint)
            blind = outcome if not fingerprint else outcome_of(t, 0, "")
            hit = self.labels[memo_key] = (censored, fingerprint, outcome, blind)
        return hit

    def _commit(
        self, chunk: _Chunk, key: str, chunk_no: int, last_line: int, done: bool, early: str = ""
    ) -> tuple:
        entry = None
        if len(chunk) or chunk.rejects:
            started = time.perf_counter()
            chunk.columns = _columns(chunk, key, chunk.source)
            STAGE_SECONDS["columns"] += time.perf_counter() - started
            token_outcomes = [labels[3] for labels in chunk.labels]
            seqs, lengths = self.encoder.encode_arrow(chunk.tries, token_outcomes)
            chunk.columns["tokens"] = seqs
            chunk.columns["length"] = lengths.tolist()
            name = f"part-{key[:16]}-{chunk_no:05d}"
            started = time.perf_counter()
            entry = store.write_shard(self.root, name, chunk.columns, chunk.rejects)
            STAGE_SECONDS["write"] += time.perf_counter() - started
            entry["source"] = key
            reasons = Counter(_reason_kind(r["reason"]) for r in chunk.rejects)
            entry_reasons = dict(reasons)
        else:
            entry_reasons = {}
        return ("commit", key, entry, last_line, chunk_no + 1, done, entry_reasons, early)


def _columns(chunk: _Chunk, key: str, name: str) -> dict[str, Any]:
    """The metadata columns of a chunk's rows (all but tokens and length), one list each."""
    tries = chunk.tries
    start = np.fromiter((t.start for t in tries), np.float64, len(tries))
    end = np.fromiter((t.end for t in tries), np.float64, len(tries))
    with np.errstate(invalid="ignore"):
        duration = (end - start) * 1000.0  # float64 as before, stored as float32
    return {
        "row_id": store.row_ids(key, chunk.line_nos, [t.try_index for t in tries]),
        "source": [name] * len(tries),
        "line": chunk.line_nos,
        "try_index": [t.try_index for t in tries],
        "ip": [t.ip for t in tries],
        "domain": [t.domain for t in tries],
        "location": [place[1] for place in chunk.places],
        "country_code": [place[0] for place in chunk.places],
        "timestamp": _unix(start),
        "end_time": _unix(end),
        "duration_ms": np.where(np.isfinite(duration), duration, np.nan),
        "scan": [t.scan for t in tries],
        "censored": [labels[0] for labels in chunk.labels],
        "fingerprint": [labels[1] for labels in chunk.labels],
        "outcome": [labels[2] for labels in chunk.labels],
        "anomaly": [t.anomaly for t in tries],
    }


def _unix(seconds: np.ndarray) -> np.ndarray:
    """Whole unix seconds (floor), 0 where unknown."""
    finite = np.isfinite(seconds)
    return np.where(finite, np.floor(np.where(finite, seconds, 0.0)), 0.0).astype(np.int64)


def _reason_kind(reason: str) -> str:
    return reason.split(":", 1)[0]


# --------------------------------------------------------------------------- workers


def _make_processor(root: str, options: Options) -> _SourceWorker:
    """A worker's chunk processor (``fanout`` calls it once per process, by reference)."""
    return _SourceWorker(root if storage.is_uri(root) else Path(root), options)


def _disk_full_text(root: Path | str, e: OSError) -> str:
    """One line for a write that ran out of space: which file, and what to do."""
    where = e.filename or root
    return (
        f"cannot write {where}: {e.strerror or e} (disk full?); free space and rerun the same "
        f"command: what {root} had committed is intact and the run resumes"
    )


# --------------------------------------------------------------------------- the run


def _sample_texts(paths: list, limit: int) -> list[str]:
    """Normalised texts of the first tries of every source, to train the tokenizer on."""
    per_source = max(limit // max(len(paths), 1), 1)
    texts: list[str] = []
    domains: list[str] = []
    for path in paths:
        scan = scan_from_name(source_name(path))
        taken = 0
        for item in iter_lines(path, lambda *_: None):
            try:
                obj = loads_line(item.data)
                tries = parse_measurement(obj, scan) if isinstance(obj, dict) else []
            except (ValueError, ParseError, RecursionError):
                continue
            texts.extend(tokens.try_text(t) for t in tries)
            domains.extend(t.domain for t in tries)
            taken += len(tries)
            if taken >= per_source:
                break
    return tokens.normalise_many(texts, domains)


def _signatures_id(directory: Path | None) -> str:
    """Hash of the signature files a dataset is labelled with (None: the default set)."""
    from importlib.resources import files

    base = files("quackae.ingest") / "data" if directory is None else Path(directory)
    h = hashlib.sha256()
    for name in ("blockpage_signatures.json", "false_positive_signatures.json"):
        h.update((base / name).read_bytes())
    return h.hexdigest()


def _open_or_create(
    root: Path | storage.Location,
    paths: list,
    options: Options,
    tokenizer: Path | None,
    vocab_size: int,
    sample: list[str] | None = None,
) -> dict[str, Any]:
    """The dataset's manifest, creating the directory and its tokenizer on first use.

    ``sample``: the texts to train the tokenizer on, when the caller took them already.
    """
    signatures_id = _signatures_id(options.signatures)
    if store.exists(root, store.MANIFEST):
        manifest = store.read_manifest(root)
        restorable = tokenizer is not None and tokenizer.is_file()
        if (
            not store.exists(root, store.TOKENIZER)
            and restorable
            and (tokens.tokenizer_sha256(tokenizer) == manifest["tokenizer_sha256"])
        ):
            _copy_tokenizer(tokenizer, root)  # restoring the dataset's own tokenizer
        if not store.exists(root, store.TOKENIZER):
            raise FlattenError(
                f"{root}/{store.TOKENIZER} is missing, so rows cannot be appended with the same "
                "tokens: restore it (or pass it with --tokenizer), or flatten into a new "
                "--storage_path"
            )
        _check_compatible(root, manifest, options, tokenizer, signatures_id)
        _check_tokenizer_trained(root, manifest)
        store.check_shards(root, manifest)
        return manifest
    if isinstance(root, Path):
        root.mkdir(parents=True, exist_ok=True)
    if tokenizer is not None:
        _copy_tokenizer(tokenizer, root)
    else:
        if sample is None:
            sample = tokenizer_sample(paths)
        log.info("training a %d-token BPE tokenizer on %d tries", vocab_size, len(sample))
        tok = tokens.train_tokenizer(sample, vocab_size)
        if isinstance(root, Path):
            tokens.save_tokenizer(tok, root / store.TOKENIZER)
        else:  # the same bytes as a local save, uploaded whole
            with tempfile.TemporaryDirectory(prefix="quackae-") as tmp:
                tokens.save_tokenizer(tok, Path(tmp) / store.TOKENIZER)
                _copy_tokenizer(Path(tmp) / store.TOKENIZER, root)
    tokenizer_bytes = store.read_file(root, store.TOKENIZER) or b""
    sha = hashlib.sha256(tokenizer_bytes).hexdigest()
    layout = tokens.TokenLayout(store.load_tokenizer(root).get_vocab_size())
    manifest = store.new_manifest(layout.to_dict(), sha, options.max_tokens)
    manifest["filters"] = options.filters()
    manifest["signatures"] = signatures_id
    # how many tries the tokenizer learnt from (None: given with --tokenizer), checked on append
    manifest["tokenizer_texts"] = None if tokenizer is not None else len(sample or ())
    manifest["label_rule"] = options.label_rule
    store.write_manifest(root, manifest)
    return manifest


def tokenizer_sample(paths: list, sources: list | None = None) -> list[str]:
    """The texts a new dataset's tokenizer learns from; refused when fewer than the minimum.

    ``MIN_TOKENIZER_TEXTS`` (see ``ingest.limits`` for the measurement behind it): a tokenizer
    trained on fewer tries cuts pages into so many tokens that their endings are lost, and
    every later append to the dataset reuses it. Below ``GOOD_TOKENIZER_TEXTS`` `-v` says so.
    """
    sample = _sample_texts(paths, TOKENIZER_SAMPLE)
    if len(sample) < MIN_TOKENIZER_TEXTS:
        named = " ".join(map(str, sources or paths))
        raise FlattenError(
            f"--source {named} holds {len(sample)} readable tries; a new dataset's tokenizer "
            f"needs at least {MIN_TOKENIZER_TEXTS} (docs/safety.md): pass more or larger "
            "archives, or "
            "--tokenizer DIR/tokenizer.json of an existing dataset"
        )
    if len(sample) < GOOD_TOKENIZER_TEXTS:  # shown with -v: small test datasets are fine
        log.info(
            "the tokenizer learns from only %d tries (from %d on, token lengths come within a "
            "few percent of a full sample's); flatten more sources at creation for a better one",
            len(sample),
            GOOD_TOKENIZER_TEXTS,
        )
    return sample


def _tokenizer_merges(root: Path | storage.Location) -> int:
    """The number of BPE merges the dataset's tokenizer learnt (0: trained on no text)."""
    try:
        model = json.loads(store.read_file(root, store.TOKENIZER) or b"{}").get("model", {})
    except ValueError:
        return 0
    return len(model.get("merges", ()))


def _check_tokenizer_trained(root: Path | storage.Location, manifest: dict) -> None:
    """Refuse to append to a dataset whose tokenizer learnt from too few tries.

    Datasets written before the count was recorded are judged by their tokenizer: fewer than
    ``MIN_TOKENIZER_TEXTS`` merges means it saw (almost) no text, as after an empty first run.
    """
    texts = manifest.get("tokenizer_texts")
    if texts is not None and texts >= MIN_TOKENIZER_TEXTS:
        return
    if texts is None:
        merges = _tokenizer_merges(root)
        if merges >= MIN_TOKENIZER_TEXTS:
            return
        why = f"learnt only {merges} merges: it saw (almost) no text"
    else:
        why = f"was trained on only {texts} tries (the minimum is {MIN_TOKENIZER_TEXTS})"
    raise FlattenError(
        f"{root}/{store.TOKENIZER} {why}, so appended rows would be cut into far too many "
        "tokens; flatten every source into a new --storage_path instead"
    )


def _check_inputs(paths: list, sources: list, options: Options, tokenizer: Path | None) -> None:
    """One-line refusals of a run that cannot produce a usable dataset; nothing is written yet.

    No sources at all (``flatten([], ...)`` with a tokenizer: an empty dataset) is allowed; sources
    named that hold no Hyperquack file are not.
    """
    if sources and not paths:
        raise FlattenError(
            f"--source {' '.join(map(str, sources))}: no Hyperquack files there (looked for "
            f"{', '.join(SOURCE_SUFFIXES)}); pass archive files or folders holding them"
        )
    if options.max_tokens < 32:
        raise FlattenError(f"--max_tokens {options.max_tokens} is too small; use 32 or more")
    if tokenizer is not None and not Path(tokenizer).is_file():
        what = "a folder" if Path(tokenizer).is_dir() else "no such file"
        raise FlattenError(
            f"--tokenizer {tokenizer}: {what}; pass a tokenizer.json file (e.g. DATASET/"
            "tokenizer.json of another dataset)"
        )
    try:
        load_signatures(options.signatures)
    except SignatureError as e:
        inner = Path(options.signatures or ".") / "signatures"
        hint = (
            f"pass --signatures {inner} (the folder holding them)"
            if (inner / "blockpage_signatures.json").is_file()
            else "pass the folder holding Censored Planet's blockpage_signatures.json and "
            "false_positive_signatures.json (e.g. DIR/signatures of `quackae synth`), or leave "
            "--signatures out for the default set"
        )
        raise FlattenError(f"--signatures {options.signatures}: {e}; {hint}") from None


def _copy_tokenizer(tokenizer: Path, root: Path | storage.Location) -> None:
    """Install a given tokenizer file into the dataset, atomically."""
    store.write_file(root, store.TOKENIZER, Path(tokenizer).read_bytes())


def _check_compatible(
    root: Path | storage.Location,
    manifest: dict,
    options: Options,
    tokenizer: Path | None,
    signatures_id: str,
) -> None:
    if tokenizer is not None and tokens.tokenizer_sha256(tokenizer) != manifest["tokenizer_sha256"]:
        raise FlattenError(f"--tokenizer {tokenizer} differs from the tokenizer of {root}")
    if manifest.get("filters", {}) != options.filters():
        raise FlattenError(
            f"{root} was made with {manifest.get('filters')}; append with the same "
            "--labeled/--anomalies flags or use a new --storage_path"
        )
    made_with = manifest.get("label_rule", "full")  # datasets from before the option: full
    if made_with != options.label_rule:
        raise FlattenError(
            f"{root} was labelled with --label_rule {made_with}; append with the same rule or "
            "use a new --storage_path"
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


@dataclass
class _Plan:
    """What a run will do with each source: read, resume, replace, or leave."""

    tasks: list[tuple[str, str, int, int]] = field(default_factory=list)
    fingerprints: dict[str, str] = field(default_factory=dict)
    replace: list[str] = field(default_factory=list)
    done: int = 0
    refused: list[str] = field(default_factory=list)


def _plan(paths: list, manifest: dict) -> _Plan:
    """Decide per source: new, resume a killed run, replace an incomplete copy, or skip."""
    plan, seen = _Plan(), set()
    for path in paths:
        key = source_key(path)
        if key in seen:
            continue
        seen.add(key)
        fingerprint = source_fingerprint(path)
        entry = manifest["sources"].get(key)
        same = entry is not None and entry.get("fingerprint") == fingerprint
        if entry is None:
            skip, chunk = 0, 0
        elif same and entry["done"]:
            plan.done += 1
            continue
        elif same and entry.get("ended_early"):
            plan.refused.append(
                f"{source_name(path)}: this copy ends early ({entry['ended_early']}); its "
                f"{entry['rows']} rows stay, not marked done: flatten the complete file to "
                "replace them"
            )
            continue
        elif same:  # a killed run: resume after its last committed chunk
            skip, chunk = entry["lines_done"], entry["chunks"]
        elif entry["done"]:
            plan.refused.append(
                f"{path}: a different file named {source_name(path)} was already ingested "
                "completely; "
                "nothing added (rename it if it really is another source)"
            )
            continue
        else:  # another copy of a source that ended early or was cut short: start over
            plan.replace.append(key)
            skip, chunk = 0, entry["chunks"]
        plan.fingerprints[key] = fingerprint
        plan.tasks.append((str(path), key, skip, chunk))
    return plan


def flatten(
    sources: list[str | Path],
    storage_path: str | Path,
    options: Options | None = None,
    workers: int = 1,
    tokenizer: Path | None = None,
    vocab_size: int = tokens.DEFAULT_VOCAB,
    progress: bool = True,
    ray_address: str | None = None,
    allow_open_cluster: bool = False,
) -> Summary:
    """Ingest ``sources`` into the dataset at ``storage_path``; see the module docstring.

    ``workers`` processes here, or with ``ray_address`` (``auto`` or ``HOST:PORT``) Ray tasks
    on that cluster, parse the chunks the reader cuts; this process alone commits. The cluster
    is joined before anything is written (``cluster.connect``: an open one off this machine only
    with ``allow_open_cluster``).

    Sources and ``storage_path`` may be local paths or object-store URIs (``gs://``, ``s3://``,
    any form ``pyarrow.fs`` takes; source URIs may hold globs): archives are streamed from the
    store, and shards are written to it directly.
    """
    options = options or Options()
    if options.label_rule not in LABEL_RULES:
        raise FlattenError(
            f"label rule {options.label_rule!r} is unknown; use one of {', '.join(LABEL_RULES)}"
        )
    started = time.perf_counter()
    root = _root_of(storage_path)
    try:
        paths = expand_sources(sources)
    except SourceError as e:
        raise FlattenError(str(e)) from None
    _check_inputs(paths, list(sources), options, tokenizer)  # a mistake: one line, no cluster
    if ray_address:
        _join(ray_address, allow_open_cluster)
    store.check_owned(root)
    # a new dataset's tokenizer sample is read first: too few tries refuse before anything exists
    creating = tokenizer is None and not store.exists(root, store.MANIFEST)
    sample = tokenizer_sample(paths, list(sources)) if creating else None
    try:
        with store.dataset_lock(root):
            store.check_owned(root)  # another writer may have changed it while we waited
            summary = _flatten_locked(
                root, paths, options, workers, tokenizer, vocab_size, progress, ray_address, sample
            )
    except OSError as e:
        if atomic.is_disk_full(e):
            raise FlattenError(_disk_full_text(root, e)) from None
        raise
    summary.seconds = time.perf_counter() - started
    return summary


def _root_of(storage_path: str | Path) -> Path | storage.Location:
    """The dataset root: a ``Path`` for a local directory, a ``Location`` for a URI."""
    if not storage.is_uri(storage_path):  # a local path (a file:// URI too)
        return Path(
            storage.resolve(storage_path).path
            if str(storage_path).startswith("file://")
            else storage_path
        )
    try:
        return storage.resolve(str(storage_path))
    except storage.StorageError as e:
        raise FlattenError(f"--storage_path {e}") from None


class _NoBar:
    """The progress bar of a quiet run: nothing drawn, and no tqdm import or monitor thread."""

    def update(self, n: int) -> None:
        """Nothing to draw."""

    def close(self) -> None:
        """Nothing to close."""


def _progress_bar(progress: bool) -> Any:
    """A tqdm bar of lines read on stderr, or ``_NoBar`` (importing tqdm costs 0.05-0.1 s)."""
    if not progress:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(desc="flatten", unit=" lines", unit_scale=True, file=sys.stderr)


def _flatten_locked(
    root: Path | storage.Location,
    paths: list,
    options: Options,
    workers: int,
    tokenizer: Path | None,
    vocab_size: int,
    progress: bool,
    ray_address: str | None = None,
    sample: list[str] | None = None,
) -> Summary:
    """The run itself, with the writer lock held."""
    manifest = _open_or_create(root, paths, options, tokenizer, vocab_size, sample)
    store.remove_orphans(root, manifest)
    plan = _plan(paths, manifest)
    if plan.replace:
        dropped = [f for key in plan.replace for f in store.drop_source(manifest, key)]
        store.write_manifest(root, manifest)
        store.delete_files(root, dropped)
    if plan.tasks and options.signatures is None:
        log.warning(DEFAULT_SET_HINT)
    summary = Summary(skipped_sources=plan.done, failed_sources=list(plan.refused))
    names = {key: source_name(path) for path, key, _, _ in plan.tasks}
    bar = _progress_bar(progress)

    def handle(msg: tuple) -> None:
        kind = msg[0]
        if kind == "progress":
            summary.lines += msg[1]
            bar.update(msg[1])
        elif kind == "commit":
            _, key, entry, last_line, chunks, done, reasons, early = msg
            src = manifest["sources"].setdefault(
                key, {"name": names[key], "lines_done": 0, "chunks": 0, "done": False, "rows": 0}
            )
            src.update(
                lines_done=last_line,
                chunks=chunks,
                done=done,
                fingerprint=plan.fingerprints[key],
                ended_early=early,
            )
            if entry is not None:
                src["rows"] += entry["rows"]
                store.add_shard(manifest, entry)
                summary.rows += entry["rows"]
                summary.rejected += entry["rejected"]
                summary.reasons.update(reasons)
                for lab, k in store.LABEL_KEYS.items():
                    summary.labels[lab] += entry[k]
            store.write_manifest(root, manifest)
            if early:
                summary.failed_sources.append(
                    f"{names[key]}: ended early at line {last_line} ({early}); its rows are kept "
                    "but it is not marked done: flatten the complete file to replace them"
                )
        elif kind == "failed":
            summary.failed_sources.append(f"{names[msg[1]]}: {msg[2]}")
        elif kind == "fatal":
            raise FlattenError(msg[2])

    try:
        _run_chunks(root, options, plan.tasks, workers, ray_address, handle)
    finally:
        bar.close()
    return summary


def _run_chunks(
    root: Path | storage.Location,
    options: Options,
    tasks: list,
    workers: int,
    ray_address: str | None,
    handle: Callable,
) -> None:
    """Cut the sources into chunks here; process them here, in worker processes or on Ray.

    Whatever runs them, results are committed in the order cut (``fanout.drive``).
    """
    if not tasks:
        return
    args = (_make_processor, str(root), options)
    executor: fanout.Executor
    if ray_address:
        _join(ray_address)  # joined already by flatten(); a caller of this alone joins here
        executor = fanout.RayExecutor(*args)
    elif workers > 1:
        executor = fanout.PoolExecutor(*args, workers)
    else:
        executor = fanout.InlineExecutor(*args)
    chunks = fanout.cut_all(tasks, options.chunk_lines, CHUNK_BYTES, STAGE_SECONDS)
    try:
        fanout.drive(chunks, executor, handle, lambda entry: _discard(root, entry))
    finally:
        executor.close()


def _join(ray_address: str, allow_open_cluster: bool = False) -> None:
    """Join the Ray cluster at ``ray_address`` (once); a refusal is a one-line FlattenError."""
    from quackae.io import cluster

    try:
        cluster.connect(ray_address, allow_open=allow_open_cluster)
    except cluster.ClusterError as e:
        raise FlattenError(str(e)) from None


def _discard(root: Path | storage.Location, entry: dict[str, Any]) -> None:
    """Delete the files of a shard that will not be committed (its source failed before it)."""
    store.delete_files(root, [f for f in (entry["file"], entry.get("rejects_file")) if f])
