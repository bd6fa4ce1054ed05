"""Turn a try into token ids: text normalisation, byte-level BPE, static-feature token layout.

A sequence is ``START <static tokens> SEP <text tokens> END``. Special tokens, every static
feature and the BPE text vocabulary live in disjoint id ranges (``TokenLayout``), so no value
of one feature can collide with another or overflow the embedding table (the original model
overflowed on raw TLS values).
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from itertools import chain
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from quackae.ingest.hyperquack import Try
from quackae.ingest.limits import DEFAULT_MAX_TOKENS, DEFAULT_VOCAB
from quackae.ingest.outcome import OUTCOME_INDEX
from quackae.io.atomic import atomic_path

PAD, START, SEP, END = 0, 1, 2, 3
SPECIALS = {"pad": PAD, "start": START, "sep": SEP, "end": END}

SCANS = ("echo", "discard", "http", "https")
TLS_VERSIONS = (768, 769, 770, 771, 772)  # SSL 3.0, TLS 1.0, 1.1, 1.2, 1.3
CIPHER_BUCKETS = 64
DURATION_BUCKETS = 20
OUTCOME_SLOTS = 32

# (name, number of values). Order is the order of the static tokens in a sequence and of
# the id ranges; append-only, the layout is recorded in every manifest and checkpoint.
STATIC_FIELDS: tuple[tuple[str, int], ...] = (
    ("ip0", 257),  # 256 octet values + "not IPv4"
    ("ip1", 257),
    ("ip2", 257),
    ("ip3", 257),
    ("success", 3),  # unknown, false, true
    ("anomaly", 2),
    ("controls_failed", 2),
    ("stateful_block", 2),
    ("tls_version", len(TLS_VERSIONS) + 2),  # none, known versions, other
    ("cipher_suite", CIPHER_BUCKETS + 1),  # none, hashed bucket
    ("certificate", 2),
    ("duration", DURATION_BUCKETS),  # unknown, log2 buckets of milliseconds
    ("scan", len(SCANS)),
    ("outcome", OUTCOME_SLOTS),
)

# Placeholders for volatile text, kept as single tokens by the BPE model.
_SCAN_INDEX = {name: i for i, name in enumerate(SCANS)}

PLACEHOLDERS = ("[DOMAIN]", "[ADDR]", "[IP]", "[DATE]", "[TIME]", "[HEX]", "[NUM]", "[B64]")

MAX_TEXT_CHARS = 16384  # cap on the text kept for tokenizer training
CHARS_PER_TOKEN = 8  # generous bound on characters per BPE token, for cutting text early


@dataclass(frozen=True, eq=True)
class TokenLayout:
    """Id ranges of the token space: specials, one range per static field, then BPE text."""

    text_vocab: int

    @property
    def static_offsets(self) -> dict[str, tuple[int, int]]:
        """Map each static field to ``(first id, number of values)``."""
        offsets, nxt = {}, len(SPECIALS)
        for name, size in STATIC_FIELDS:
            offsets[name] = (nxt, size)
            nxt += size
        return offsets

    @cached_property
    def static_starts(self) -> tuple[int, ...]:
        """First id of every static field's range, in ``STATIC_FIELDS`` order."""
        return tuple(start for start, _ in self.static_offsets.values())

    @property
    def text_offset(self) -> int:
        """First id of the BPE text range."""
        return len(SPECIALS) + sum(size for _, size in STATIC_FIELDS)

    @property
    def vocab_size(self) -> int:
        """Total number of ids: the ``num_embeddings`` of the model."""
        return self.text_offset + self.text_vocab

    def to_dict(self) -> dict:
        """JSON-ready description, stored in manifests and checkpoints."""
        return {
            "specials": dict(SPECIALS),
            "static": {k: list(v) for k, v in self.static_offsets.items()},
            "text_offset": self.text_offset,
            "text_vocab": self.text_vocab,
            "vocab_size": self.vocab_size,
        }


# --------------------------------------------------------------------------- normalisation

_NORMALISERS: tuple[tuple[str, str], ...] = (  # (placeholder, regex), applied in this order
    ("[ADDR]", r"\b(?:\d{1,3}\.){3}\d{1,3}:\d{1,5}\b"),
    ("[IP]", r"\b(?:\d{1,3}\.){3}\d{1,3}\b"),
    (
        "[DATE]",
        r"\b(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun),? \d{1,2}[ -](?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug"
        r"|Sep|Oct|Nov|Dec)[ -]\d{2,4} \d{2}:\d{2}:\d{2}(?: GMT)?",
    ),
    ("[DATE]", r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?"),
    ("[TIME]", r"\b\d{1,2}:\d{2}:\d{2}\b"),
    ("[B64]", r"[A-Za-z0-9+/]{40,}={0,2}"),
    ("[HEX]", r"\b[0-9a-fA-F]{12,}\b"),
    ("[NUM]", r"\b\d{5,}\b"),
)
# Applied one after another: measured faster than one alternation, which cannot use each
# pattern's own fast scan.
_COMPILED = tuple((re.compile(rx), ph) for ph, rx in _NORMALISERS)


def try_text(t: Try, max_chars: int = MAX_TEXT_CHARS) -> str:
    """The text of a try as the model reads it: request, received response, error.

    Cut at ``max_chars``: a BPE token covers at least one character, so text beyond
    ``CHARS_PER_TOKEN * max_tokens`` never survives truncation to ``max_tokens`` in practice.
    """
    return _joined_text(t.sent, t.received, t.error, max_chars)


def _joined_text(sent: str, received: str | None, error: str, max_chars: int) -> str:
    """``try_text`` of a try's three text fields."""
    return "\n".join(p for p in (sent, received, error) if p)[:max_chars]


def normalise(text: str, domain: str) -> str:
    """Replace volatile parts (the test domain, addresses, dates, ids) with placeholders.

    The reference definition; ``normalise_many`` gives the same strings much faster.
    """
    if domain:
        text = text.replace(domain, "[DOMAIN]")
    return _normalise_rest(text)


def _normalise_rest(text: str) -> str:
    """The regex part of ``normalise``, on a text whose domain is already replaced."""
    for pattern, placeholder in _COMPILED:
        text = pattern.sub(placeholder, text)
    return text


# Python's ``\d`` and ``\b`` are Unicode-aware, RE2's (pyarrow's regex engine) are ASCII. Every
# ``\b`` above borders an ASCII digit, a run of 12 hex digits or a weekday name, so the two
# engines agree on a text unless a non-ASCII character touches one of those or is itself a
# Unicode digit; such texts (and lone surrogates, which Arrow cannot hold) take Python's path.
_BORDER = r"(?:[0-9]|[0-9a-fA-F]{12}|Mon|Tue|Wed|Thu|Fri|Sat|Sun)"


@lru_cache(maxsize=1)
def _re2_unsafe() -> str:
    """RE2 pattern matching texts whose normalisation could differ between the engines."""
    points = np.arange(0x80, 0x110000, dtype="<u4")
    everything = points[(points < 0xD800) | (points > 0xDFFF)].tobytes().decode("utf-32-le")
    digits = "".join(re.findall(r"\d", everything))  # Python's own Unicode digits, not ASCII
    return rf"[^\x00-\x7f]{_BORDER}|(?:[0-9]|[0-9a-fA-F]{{12}})[^\x00-\x7f]|[{digits}]"


def _re2_normalise(texts: list[str]) -> list[str]:
    """``_normalise_rest`` of every text through pyarrow's RE2 kernels, one call per pattern."""
    if not texts:
        return []
    arr = pa.array(texts, type=pa.large_string())
    for placeholder, regex in _NORMALISERS:
        arr = pc.replace_substring_regex(arr, regex, placeholder)
    return arr.to_pylist()


def _re2_safe(texts: list[str]) -> list[bool]:
    """Whether RE2 normalises each (non-ASCII) text exactly as Python's ``re`` does."""
    ok = []
    for t in texts:
        try:
            t.encode("utf-8")
            ok.append(True)
        except UnicodeEncodeError:  # a lone surrogate from JSON "\\ud800"
            ok.append(False)
    good = [t for t, k in zip(texts, ok, strict=True) if k]
    if good:
        hits = iter(pc.match_substring_regex(pa.array(good), _re2_unsafe()).to_pylist())
        ok = [k and not next(hits) for k in ok]
    return ok


def normalise_many(texts: Sequence[str], domains: Sequence[str]) -> list[str]:
    """``normalise`` of every ``(text, domain)`` pair, equal pairs done once, in batch.

    Vectorised over the batch with pyarrow's RE2 kernels (linear time, no per-call Python
    overhead); texts where RE2 could disagree with Python's ``re`` use ``normalise`` itself.
    """
    pairs: dict[tuple[str, str], int] = {}
    which = [pairs.setdefault(pair, len(pairs)) for pair in zip(texts, domains, strict=True)]
    # A text without its domain is the same text for every domain: dedup again after replacing.
    unique: dict[str, int] = {}
    slot = [unique.setdefault(t.replace(d, "[DOMAIN]") if d else t, len(unique)) for t, d in pairs]
    replaced = list(unique)
    wide = [i for i, t in enumerate(replaced) if not t.isascii()]
    slow = set()
    if wide:
        safe = _re2_safe([replaced[i] for i in wide])
        slow = {i for i, ok in zip(wide, safe, strict=True) if not ok}
    fast = [i for i in range(len(replaced)) if i not in slow]
    done: list[str] = [""] * len(replaced)
    for i, text in zip(fast, _re2_normalise([replaced[i] for i in fast]), strict=True):
        done[i] = text
    for i in slow:
        done[i] = _normalise_rest(replaced[i])
    return [done[slot[k]] for k in which]


# --------------------------------------------------------------------------- static features


@lru_cache(maxsize=65536)
def _ip_octets(ip: str) -> tuple[int, ...]:
    parts = ip.split(".")
    if len(parts) == 4 and all(p.isdigit() and int(p) < 256 for p in parts):
        return tuple(int(p) for p in parts)
    return (256, 256, 256, 256)


def _tls_bucket(version: int | None) -> int:
    if version is None:
        return 0
    return TLS_VERSIONS.index(version) + 1 if version in TLS_VERSIONS else len(TLS_VERSIONS) + 1


def _duration_bucket(t: Try) -> int:
    ms = (t.end - t.start) * 1000.0
    if not math.isfinite(ms) or ms < 0:
        return 0
    return 1 + min(int(math.log2(ms + 1.0)), DURATION_BUCKETS - 2)


def static_values(t: Try, outcome: str) -> list[int]:
    """Value (within its own range) of every static field, in ``STATIC_FIELDS`` order."""
    success = 0 if t.success is None else 1 + int(t.success)
    cipher = 0 if t.cipher_suite is None else 1 + t.cipher_suite % CIPHER_BUCKETS
    scan = _SCAN_INDEX.get(t.scan, 0)
    outcome_id = OUTCOME_INDEX.get(outcome, OUTCOME_INDEX["unknown"])
    return [
        *_ip_octets(t.ip),
        success,
        int(t.anomaly),
        int(t.controls_failed),
        int(t.stateful_block),
        _tls_bucket(t.tls_version),
        cipher,
        int(t.has_cert),
        _duration_bucket(t),
        scan,
        outcome_id,
    ]


def static_tokens(t: Try, outcome: str, layout: TokenLayout) -> list[int]:
    """Static features as ids, each shifted into its field's own range."""
    return [o + v for o, v in zip(layout.static_starts, static_values(t, outcome), strict=True)]


def static_matrix(tries: Sequence[Try], outcomes: Sequence[str], layout: TokenLayout) -> np.ndarray:
    """``static_tokens`` of many tries as an ``(n, fields)`` int32 array, one column at a time."""
    cols = np.empty((len(STATIC_FIELDS), len(tries)), np.int32)
    cols[0:4] = np.array([_ip_octets(t.ip) for t in tries], np.int32).reshape(-1, 4).T
    cols[4] = [0 if t.success is None else 1 + t.success for t in tries]
    cols[5] = [t.anomaly for t in tries]
    cols[6] = [t.controls_failed for t in tries]
    cols[7] = [t.stateful_block for t in tries]
    cols[8] = [_tls_bucket(t.tls_version) for t in tries]
    cols[9] = [0 if t.cipher_suite is None else 1 + t.cipher_suite % CIPHER_BUCKETS for t in tries]
    cols[10] = [t.has_cert for t in tries]
    cols[11] = [_duration_bucket(t) for t in tries]
    cols[12] = [_SCAN_INDEX.get(t.scan, 0) for t in tries]
    unknown = OUTCOME_INDEX["unknown"]
    cols[13] = [OUTCOME_INDEX.get(o, unknown) for o in outcomes]
    cols += np.array(layout.static_starts, np.int32)[:, None]
    return cols.T


# --------------------------------------------------------------------------- BPE


def train_tokenizer(texts: Iterable[str], vocab_size: int = DEFAULT_VOCAB) -> Tokenizer:
    """Train a byte-level BPE model on normalised texts (no unknown token can occur)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(PLACEHOLDERS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def save_tokenizer(tok: Tokenizer, path: Path) -> str:
    """Write the tokenizer JSON atomically; return its sha256."""
    with atomic_path(path) as tmp:
        tok.save(str(tmp))
    return tokenizer_sha256(path)


def load_tokenizer(path: Path) -> Tokenizer:
    """Load a tokenizer JSON written by ``save_tokenizer``."""
    return Tokenizer.from_file(str(path))


def tokenizer_sha256(path: Path) -> str:
    """Hash identifying a tokenizer, recorded in manifests and checkpoints."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class Encoder:
    """Encode tries into full token sequences with one tokenizer and layout."""

    def __init__(self, tokenizer: Tokenizer, max_tokens: int = DEFAULT_MAX_TOKENS) -> None:
        self.tokenizer = tokenizer
        self.layout = TokenLayout(text_vocab=tokenizer.get_vocab_size())
        self.max_tokens = max_tokens
        self.seconds: Counter[str] = Counter()  # time spent per stage, for the ingest benchmark

    def encode(self, tries: Sequence[Try], outcomes: Sequence[str]) -> list[list[int]]:
        """Token ids for each try: START statics SEP text END, head kept on truncation."""
        return self.encode_arrow(tries, outcomes)[0].to_pylist()

    def encode_arrow(
        self, tries: Sequence[Try], outcomes: Sequence[str]
    ) -> tuple[pa.ListArray, np.ndarray]:
        """``encode`` as an Arrow ``list<int32>`` array plus the lengths, without per-id Python."""
        started = time.perf_counter()
        limit = self.max_tokens * CHARS_PER_TOKEN
        # A try's text depends on these fields only: build and normalise each distinct one once
        # (retries and vantage points repeat responses, and equal responses often share one
        # string object, whose hash is computed once).
        kinds: dict[tuple[str, str | None, str, str], int] = {}
        kind = [
            kinds.setdefault((t.sent, t.received, t.error, t.domain), len(kinds)) for t in tries
        ]
        texts = normalise_many(
            [_joined_text(s, r, e, limit) for s, r, e, _ in kinds], [k[3] for k in kinds]
        )
        normalised = time.perf_counter()
        # Normalised texts repeat a lot (error strings, echoes, blockpages): BPE each once.
        slot: dict[str, int] = {}
        slots = np.fromiter((slot.setdefault(x, len(slot)) for x in texts), np.int64, len(texts))
        which = slots[np.asarray(kind, np.int64)] if kind else np.zeros(0, np.int64)
        room = self.max_tokens - len(STATIC_FIELDS) - 3
        ids = [
            enc.ids[:room]
            for enc in self.tokenizer.encode_batch(list(slot), add_special_tokens=False)
        ]
        pool = np.fromiter(chain.from_iterable(ids), np.int32) + self.layout.text_offset
        statics = static_matrix(tries, outcomes, self.layout)
        array, lengths = _assemble(statics, pool, np.array([len(i) for i in ids], np.int64), which)
        self.seconds["normalise"] += normalised - started
        self.seconds["tokenize"] += time.perf_counter() - normalised
        return array, lengths


def _assemble(
    statics: np.ndarray, pool: np.ndarray, pool_lengths: np.ndarray, which: np.ndarray
) -> tuple[pa.ListArray, np.ndarray]:
    """Rows ``START statics SEP text END`` (row i's text: piece ``which[i]`` of ``pool``)."""
    n, width = statics.shape
    text_len = pool_lengths[which]
    lengths = text_len + width + 3
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    starts = offsets[:-1]
    flat = np.empty(int(offsets[-1]), np.int32)
    flat[starts] = START
    flat[starts[:, None] + 1 + np.arange(width)] = statics
    flat[starts + 1 + width] = SEP
    flat[offsets[1:] - 1] = END
    ends = np.cumsum(pool_lengths).tolist()
    pieces = [pool[end - size : end] for end, size in zip(ends, pool_lengths.tolist(), strict=True)]
    # one slice copy per row: ~30x faster than one fancy-indexed scatter of every text id
    for at, k in zip((starts + 2 + width).tolist(), which.tolist(), strict=True):
        piece = pieces[k]
        flat[at : at + len(piece)] = piece
    array = pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(flat))
    return array, lengths
