"""Outcome category of one try, in the spirit of Censored Planet's ``stage/outcome`` classes.

Stages follow a connection's life: ``setup`` -> ``dial`` -> ``tls`` -> ``write`` -> ``read``
-> ``http`` -> ``content``; ``expected`` is an undisturbed answer. The category is derived
from the Go error string, the template-match flag and the label; Censored Planet's
classification (censoredplanet-analysis, ``docs/outcome.md``) is the model, without the
per-status and per-fingerprint suffixes so that the vocabulary stays small and fixed.

``outcome_of(try_, 0, "")`` is *signature-blind*: it never says ``content/blockpage`` or
``content/false_positive``, so features built from it do not leak the label.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from quackae.ingest.hyperquack import Try

__all__ = ["OUTCOMES", "OUTCOME_INDEX", "classify_error", "outcome_of"]

# Ordered and append-only: the index is a token id offset (at most 32 entries).
OUTCOMES: tuple[str, ...] = (
    "unknown",
    "expected",
    "expected/trusted_host",
    "content/blockpage",
    "content/false_positive",
    "content/mismatch",
    "content/status_mismatch",
    "content/body_mismatch",
    "content/header_mismatch",
    "content/tls_mismatch",
    "http/http.invalid",
    "read/timeout",
    "read/tcp.reset",
    "read/http.empty",
    "read/http.truncated_response",
    "read/system",
    "write/tcp.reset",
    "write/system",
    "tls/tls.failed",
    "tls/timeout",
    "dial/timeout",
    "dial/tcp.refused",
    "dial/tcp.reset",
    "dial/ip.network_unreachable",
    "dial/ip.host_no_route",
    "setup/system_failure",
)
OUTCOME_INDEX: dict[str, int] = {name: i for i, name in enumerate(OUTCOMES)}
assert len(OUTCOMES) <= 32 and len(OUTCOME_INDEX) == len(OUTCOMES)

# (how, needle, outcome) checked in order; how is "end", "start", "in" or "eq".
# Error strings are Go's net errors and Hyperquack's own messages (v1 and v2).
_RULES: tuple[tuple[str, str, str], ...] = (
    # setup: the measurement machine itself failed
    ("end", "address already in use", "setup/system_failure"),
    ("end", "protocol error", "setup/system_failure"),
    ("end", "protocol not available", "setup/system_failure"),
    ("end", "too many open files", "setup/system_failure"),
    # dial
    ("end", "network is unreachable", "dial/ip.network_unreachable"),
    ("end", "no route to host", "dial/ip.host_no_route"),
    ("end", "connection refused", "dial/tcp.refused"),
    ("end", "context deadline exceeded", "dial/timeout"),
    ("in", "connect: connection timed out", "dial/timeout"),
    ("start", "connection reset by peer", "dial/tcp.reset"),
    ("end", "connect: connection reset by peer", "dial/tcp.reset"),
    ("end", "getsockopt: connection reset by peer", "dial/tcp.reset"),
    # tls
    ("in", "TLS handshake timeout", "tls/timeout"),
    ("in", "tls:", "tls/tls.failed"),
    ("in", "remote error:", "tls/tls.failed"),
    ("in", "local error:", "tls/tls.failed"),
    ("end", "readLoopPeekFailLocked: <nil>", "tls/tls.failed"),
    ("end", "no mutual cipher suite", "tls/tls.failed"),
    ("end", "missing ServerKeyExchange message", "tls/tls.failed"),
    # write
    ("end", "write: connection reset by peer", "write/tcp.reset"),
    ("end", "write: broken pipe", "write/system"),
    # read
    ("in", "request canceled", "read/timeout"),
    ("end", "i/o timeout", "read/timeout"),
    ("in", "Client.Timeout exceeded", "read/timeout"),
    ("end", "transport endpoint is not connected", "read/system"),
    ("in", "read: connection reset by peer", "read/tcp.reset"),
    ("in", "http: server closed idle connection", "read/http.truncated_response"),
    # http parsing
    ("end", "trailer header without chunked transfer encoding", "http/http.invalid"),
    ("end", "response missing Location header", "http/http.invalid"),
    ("in", "bad Content-Length", "http/http.invalid"),
    ("in", "failed to parse Location header", "http/http.invalid"),
    ("in", "malformed HTTP", "http/http.invalid"),
    ("in", "malformed MIME", "http/http.invalid"),
    # content verification, Hyperquack v1
    ("eq", "Incorrect echo response", "content/mismatch"),
    ("eq", "Received response", "content/mismatch"),
    ("eq", "Incorrect web response: status lines don't match", "content/status_mismatch"),
    ("eq", "Incorrect web response: bodies don't match", "content/body_mismatch"),
    ("eq", "Incorrect web response: certificates don't match", "content/tls_mismatch"),
    ("eq", "Incorrect web response: cipher suites don't match", "content/tls_mismatch"),
    ("eq", "Incorrect web response: TLS versions don't match", "content/tls_mismatch"),
    # content verification, Hyperquack v2
    ("eq", "echo response does not match echo request", "content/mismatch"),
    ("eq", "discard response is not empty", "content/mismatch"),
    ("start", "Status lines do", "content/status_mismatch"),
    ("start", "Bodies do", "content/body_mismatch"),
    ("start", "Certificates do", "content/tls_mismatch"),
    ("start", "Cipher suites do", "content/tls_mismatch"),
    ("start", "TLS versions do", "content/tls_mismatch"),
    ("in", "header field missing", "content/header_mismatch"),
    ("in", "header field mismatch", "content/header_mismatch"),
)

_TRUSTED_SERVER_HEADERS = frozenset({"Server: AkamaiGHost", "Server: GHost"})


def _rule_hits(how: str, needle: str, error: str) -> bool:
    """Whether one ``_RULES`` entry applies to ``error``."""
    if how == "end":
        return error.endswith(needle)
    if how == "start":
        return error.startswith(needle)
    if how == "eq":
        return error == needle
    return needle in error


def _eof_outcome(error: str, scan: str) -> str | None:
    """EOF errors: a truncated or empty HTTP answer, or (echo/discard) a content mismatch."""
    if "EOF" not in error:
        return None
    if scan in ("http", "https"):
        return "read/http.truncated_response" if "unexpected EOF" in error else "read/http.empty"
    return "content/mismatch"


# ``_RULES`` by kind, each entry with its rule number: the first rule that applies wins, so a
# whole-string rule (one dict lookup) and the scanning rules are compared by that number.
_EQ_RULES = {
    needle: (i, outcome)
    for i, (how, needle, outcome) in reversed(list(enumerate(_RULES)))
    if how == "eq"
}
_SCAN_RULES = tuple(
    (i, how, needle, outcome) for i, (how, needle, outcome) in enumerate(_RULES) if how != "eq"
)


def classify_error(error: str, scan: str) -> str:
    """The outcome named by a non-empty Hyperquack error string (first of ``a;b;c``)."""
    first = error.split(";", 1)[0].strip()
    if "dial tcp" in first and first.endswith("i/o timeout"):
        return "dial/timeout"
    eq_index, eq_outcome = _EQ_RULES.get(first, (len(_RULES), ""))
    for index, how, needle, outcome in _SCAN_RULES:
        if index > eq_index:
            break
        if _rule_hits(how, needle, first):
            return outcome
    return eq_outcome or _eof_outcome(first, scan) or "unknown"


def _trusted_host(received: str | None) -> bool:
    """Whether the response carries a CDN server header known to answer differently."""
    if not received or "GHost" not in received:
        return False
    return any(line.strip() in _TRUSTED_SERVER_HEADERS for line in received.splitlines())


def outcome_of(try_: Try, censored: int, fingerprint: str) -> str:
    """The outcome category (an entry of ``OUTCOMES``) of one try.

    A fingerprint hit decides first (``content/blockpage`` for censored=1,
    ``content/false_positive`` for censored=-1); with ``censored=0, fingerprint=""`` the
    result is signature-blind. Then a template match is ``expected``, a known CDN server
    header ``expected/trusted_host``, and otherwise the error string names the stage.
    """
    if fingerprint:
        if censored == 1:
            return "content/blockpage"
        if censored == -1:
            return "content/false_positive"
    error = try_.error
    if try_.success and not error:
        return "expected"
    if _trusted_host(try_.received):
        return "expected/trusted_host"
    if error:
        return classify_error(error, try_.scan)
    if try_.success is False:
        # v2 left content failures out of the error field for a while (2021-04..07).
        return "content/mismatch"
    return "unknown"
