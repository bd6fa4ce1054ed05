"""Censored Planet signature files and a fast first-hit matcher.

Signature files are JSON lines ``{"fingerprint": ..., "pattern": <Python regex>}`` as
published in censoredplanet-analysis (``blockpage_signatures.json``,
``false_positive_signatures.json``), read unchanged. The authoritative semantics are
``re.search(pattern, text, re.DOTALL)``, false positives before blockpages, first hit in
file order. To avoid running ~1,000 Python regexes per response, one RE2 ``Set`` finds in a
single pass every pattern that can match; only those candidates are confirmed with Python
``re`` in file order. Patterns whose RE2 meaning could differ from Python's (or that RE2
rejects) are always checked with Python ``re``, so the prefilter never loses a hit.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import re2

if TYPE_CHECKING:
    from quackae.ingest.hyperquack import Try

__all__ = [
    "BLOCKPAGE_FILE",
    "DEFAULT_SET_HINT",
    "FALSE_POSITIVE_FILE",
    "LABEL_RULES",
    "Matcher",
    "Signature",
    "SignatureError",
    "label",
    "load_signature_file",
    "load_signatures",
    "parse_signature_lines",
]

BLOCKPAGE_FILE = "blockpage_signatures.json"
#: Said once by flatten when no ``--signatures`` is given (see docs/signatures.md).
DEFAULT_SET_HINT = (
    "signatures: using quackae's small default set of well-known national and vendor blockpages "
    "(docs/signatures.md); Censored Planet's published blockpage_signatures.json and "
    "false_positive_signatures.json (github.com/censoredplanet/censoredplanet-analysis) give "
    "fuller coverage: pass --signatures DIR"
)
FALSE_POSITIVE_FILE = "false_positive_signatures.json"
_RE2_MAX_MEM = 512 << 20
_SET_CHUNK = 4096  # patterns per RE2 set: one set (one scan of the text) for any published file
# Constructs whose RE2 meaning differs from Python's (Unicode classes, ``$`` before a final
# newline, ``{,n}``, POSIX classes, lookaround/backrefs, unusual inline flags): such
# patterns skip the prefilter and are always run with Python ``re``.
_RE2_UNSAFE = re.compile(r"\\[dDwWsSbBAZ0-9]|\$|\{,|\[:|\(\?(?![:i]|P<)|\\[xuUN]")


class SignatureError(ValueError):
    """A signature file is missing or has a bad line (message names file and line)."""


@dataclass(frozen=True, slots=True)
class Signature:
    """One Censored Planet signature: a fingerprint name and a Python regex."""

    fingerprint: str
    pattern: str


# --------------------------------------------------------------------------- loading


@lru_cache(maxsize=8192)  # loading validates each pattern, the Matcher compiles it again
def _compile_python(pattern: str) -> re.Pattern[str]:
    """Compile with ``re.DOTALL``, silencing Python's FutureWarnings about odd sets."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return re.compile(pattern, re.DOTALL)


def _parse_signature(line: str, where: str) -> Signature:
    """One JSON line -> ``Signature``; ``where`` is ``file:line`` for error messages."""
    try:
        obj = json.loads(line)
    except ValueError as exc:
        raise SignatureError(f"{where}: invalid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise SignatureError(f"{where}: expected an object with fingerprint and pattern")
    fingerprint, pattern = obj.get("fingerprint"), obj.get("pattern")
    if not isinstance(fingerprint, str) or not fingerprint:
        raise SignatureError(f"{where}: missing or non-string 'fingerprint'")
    if not isinstance(pattern, str) or not pattern:
        raise SignatureError(f"{where}: missing or non-string 'pattern'")
    try:
        _compile_python(pattern)
    except re.error as exc:
        raise SignatureError(f"{where}: pattern is not a valid Python regex ({exc})") from None
    return Signature(fingerprint, pattern)


def parse_signature_lines(lines: Iterable[str], name: str) -> list[Signature]:
    """Signatures of JSON-lines text (blank lines skipped); ``name`` is used in errors."""
    out: list[Signature] = []
    for line_no, line in enumerate(lines, 1):
        if line.strip():
            out.append(_parse_signature(line, f"{name}:{line_no}"))
    return out


def load_signature_file(path: str | Path) -> list[Signature]:
    """Signatures of one Censored Planet JSON-lines file, in file order."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SignatureError(f"{p}: signature file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SignatureError(f"{p}: cannot read signature file ({exc})") from None
    return parse_signature_lines(text.splitlines(), str(p))


def _load_default(name: str) -> list[Signature]:
    """A signature file of the project's default set (package data ``quackae/ingest/data``)."""
    resource = resources.files("quackae.ingest").joinpath("data", name)
    try:
        text = resource.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        raise SignatureError(
            f"default signature file quackae/ingest/data/{name} is missing; "
            "reinstall quackae or pass --signatures DIR"
        ) from None
    return parse_signature_lines(text.splitlines(), f"quackae/ingest/data/{name}")


def load_signatures(directory: str | Path | None = None) -> Matcher:
    """A ``Matcher`` for a directory holding both signature files (None: the default set)."""
    if directory is None:
        fps = _load_default(FALSE_POSITIVE_FILE)
        bps = _load_default(BLOCKPAGE_FILE)
    else:
        d = Path(directory)
        if not d.is_dir():
            raise SignatureError(
                f"{d}: not a directory; --signatures wants a directory holding "
                f"{BLOCKPAGE_FILE} and {FALSE_POSITIVE_FILE}"
            )
        fps = load_signature_file(d / FALSE_POSITIVE_FILE)
        bps = load_signature_file(d / BLOCKPAGE_FILE)
    return Matcher(fps, bps)


# --------------------------------------------------------------------------- matching


def _re2_options() -> re2.Options:
    """RE2 options that mirror ``re.DOTALL`` on UTF-8 text."""
    options = re2.Options()
    options.dot_nl = True
    options.max_mem = _RE2_MAX_MEM
    options.log_errors = False
    return options


def _re2_safe(pattern: str) -> bool:
    """Whether ``pattern`` uses no construct whose RE2 meaning could differ from Python's."""
    return _RE2_UNSAFE.search(pattern) is None


def _build_sets(
    patterns: Sequence[tuple[int, str]], options: re2.Options
) -> tuple[list[tuple[re2.Set, list[int]]], list[int]]:
    """RE2 search sets over ``(global index, pattern)``, each with its index map, and the
    indices RE2 refused (to be run with Python ``re``).

    A pattern is tried by adding it to its set: RE2 parses it there once, instead of once more
    in a separate ``re2.compile`` (which took a quarter of loading Censored Planet's files).
    """
    sets: list[tuple[re2.Set, list[int]]] = []
    refused: list[int] = []
    for start in range(0, len(patterns), _SET_CHUNK):
        rset = re2.Set.SearchSet(options)
        index_map: list[int] = []
        for index, pattern in patterns[start : start + _SET_CHUNK]:
            try:
                rset.Add(pattern)
            except re2.error:
                refused.append(index)
                continue
            index_map.append(index)
        if index_map:
            rset.Compile()
            sets.append((rset, index_map))
    return sets, refused


class Matcher:
    """First-hit signature matcher: false positives first, then blockpages, file order.

    ``match(text)`` gives exactly what a loop of ``re.search(p, text, re.DOTALL)`` over the
    false-positive then blockpage patterns gives, with an RE2 prefilter for speed.
    """

    def __init__(
        self, false_positives: Sequence[Signature], blockpages: Sequence[Signature]
    ) -> None:
        self.false_positives: tuple[Signature, ...] = tuple(false_positives)
        self.blockpages: tuple[Signature, ...] = tuple(blockpages)
        signatures = self.false_positives + self.blockpages
        self._n_fp = len(self.false_positives)
        self._fingerprints = [s.fingerprint for s in signatures]
        self._compiled = [_compile_python(s.pattern) for s in signatures]
        options = _re2_options()
        prefiltered: list[tuple[int, str]] = []
        always: list[int] = []
        for index, sig in enumerate(signatures):
            if _re2_safe(sig.pattern):
                prefiltered.append((index, sig.pattern))
            else:
                always.append(index)
        self._sets, refused = _build_sets(prefiltered, options)
        self._always = sorted(always + refused)

    def __len__(self) -> int:
        return len(self._compiled)

    @property
    def python_only(self) -> int:
        """How many patterns bypass the RE2 prefilter (always run with Python ``re``)."""
        return len(self._always)

    def _result(self, index: int) -> tuple[int, str]:
        """``(-1, fp)`` for a false-positive index, ``(1, fp)`` for a blockpage index."""
        return (-1 if index < self._n_fp else 1), self._fingerprints[index]

    def _candidates(self, text: str) -> list[int] | None:
        """Sorted indices that may match, or None when RE2 cannot take the text."""
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError:
            return None  # lone surrogates: only Python can judge
        found: list[int] = []
        for rset, index_map in self._sets:
            hits = rset.Match(data)
            if hits:
                found.extend(index_map[h] for h in hits)
        if self._always:
            found.extend(self._always)
        found.sort()
        return found

    def match(self, text: str) -> tuple[int, str]:
        """``(-1, fp)`` false-positive hit, ``(1, fp)`` blockpage hit, ``(0, "")`` none."""
        found = self._candidates(text)
        indices: Iterable[int] = range(len(self._compiled)) if found is None else found
        compiled = self._compiled
        for index in indices:
            if compiled[index].search(text):
                return self._result(index)
        return 0, ""

    def match_naive(self, text: str) -> tuple[int, str]:
        """The reference semantics: every pattern with Python ``re`` in order (for checks)."""
        for index, pattern in enumerate(self._compiled):
            if pattern.search(text):
                return self._result(index)
        return 0, ""


#: How ``label`` matches signatures (``flatten --label_rule``): ``full`` matches the whole
#: received text (status line, headers, body), Censored Planet analysis's rule; ``seed_body``
#: matches the received body only, and only when it is not empty, as the seed project's
#: ``cp_flatten.py`` did (the labels of its published latents).
LABEL_RULES: tuple[str, ...] = ("full", "seed_body")


def label(try_: Try, matcher: Matcher, rule: str = "full") -> tuple[int, str]:
    """The label of one try: ``(censored, fingerprint)`` by the rule of hyperquack.md.

    -1 when the try matched the template and the measurement is no anomaly; otherwise the
    received text decides (false positive -1, blockpage 1); nothing received or no hit: 0.
    ``rule`` says which text (``LABEL_RULES``): the whole response, or its body only.
    """
    if try_.success is True and not try_.anomaly:
        return -1, ""
    if rule == "seed_body":
        return matcher.match(try_.body) if try_.body else (0, "")
    if try_.received is None:
        return 0, ""
    return matcher.match(try_.received)
