"""Outcome categories: the fixed vocabulary, error classification, signature blindness."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest

from quackae.ingest.hyperquack import Try, parse_measurement
from quackae.ingest.outcome import OUTCOME_INDEX, OUTCOMES, classify_error, outcome_of
from quackae.ingest.sources import scan_from_name

REFERENCE = Path(__file__).resolve().parents[1] / ".." / "shared" / "reference"
A = "141.212.123.235:24443->213.140.112.241:7"


def _try(
    error: str = "", success: bool | None = False, scan: str = "echo", received: str | None = None
) -> Try:
    return Try(
        "1.2.3.4",
        "d.example",
        "",
        "",
        scan,
        "v2",
        1,
        math.nan,
        math.nan,
        success,
        True,
        False,
        False,
        "",
        received,
        "",
        error,
        None,
        None,
        False,
    )


def test_vocabulary_is_small_unique_and_pinned() -> None:
    assert len(OUTCOMES) <= 32 and len(set(OUTCOMES)) == len(OUTCOMES)
    assert {name: i for i, name in enumerate(OUTCOMES)} == OUTCOME_INDEX
    # Append-only: these positions are token ids in stored datasets.
    assert OUTCOMES[:6] == (
        "unknown",
        "expected",
        "expected/trusted_host",
        "content/blockpage",
        "content/false_positive",
        "content/mismatch",
    )


@pytest.mark.parametrize(
    "error,scan,expected",
    [
        (f"read tcp {A}: i/o timeout", "echo", "read/timeout"),
        (f"read tcp {A}: read: connection reset by peer", "echo", "read/tcp.reset"),
        ("dial tcp 0.0.0.0:0->1.2.3.4:7: connect: connection refused", "echo", "dial/tcp.refused"),
        ("dial tcp 0.0.0.0:0->1.2.3.4:7: connect: connection timed out", "discard", "dial/timeout"),
        ("dial tcp 1.2.3.4:7: i/o timeout", "echo", "dial/timeout"),
        ("dial tcp 1.2.3.4:7: connect: no route to host", "echo", "dial/ip.host_no_route"),
        (
            "dial tcp 1.2.3.4:7: connect: network is unreachable",
            "echo",
            "dial/ip.network_unreachable",
        ),
        (
            "dial tcp 0.0.0.0:0->1.2.3.4:7: bind: address already in use",
            "echo",
            "setup/system_failure",
        ),
        ("connection reset by peer", "echo", "dial/tcp.reset"),
        (f"write tcp {A}: write: connection reset by peer", "echo", "write/tcp.reset"),
        (f"write tcp {A}: write: broken pipe", "discard", "write/system"),
        ("echo response does not match echo request", "echo", "content/mismatch"),
        ("Incorrect echo response", "echo", "content/mismatch"),
        ("Received response", "discard", "content/mismatch"),
        ("discard response is not empty", "discard", "content/mismatch"),
        ("EOF", "echo", "content/mismatch"),
        ("Get http://1.2.3.4: EOF", "http", "read/http.empty"),
        ("Get http://1.2.3.4: unexpected EOF", "http", "read/http.truncated_response"),
        ("Incorrect web response: status lines don't match", "https", "content/status_mismatch"),
        ("Incorrect web response: bodies don't match", "http", "content/body_mismatch"),
        ("Incorrect web response: certificates don't match", "https", "content/tls_mismatch"),
        ("Incorrect web response: TLS versions don't match", "https", "content/tls_mismatch"),
        ("Status lines does not match", "http", "content/status_mismatch"),
        ("Certificates do not match;Bodies do not match", "https", "content/tls_mismatch"),
        ("header field missing", "http", "content/header_mismatch"),
        ("Get https://1.2.3.4: remote error: handshake failure", "https", "tls/tls.failed"),
        (
            "Get https://1.2.3.4: tls: first record does not look like a TLS handshake",
            "https",
            "tls/tls.failed",
        ),
        ("Get https://1.2.3.4: net/http: TLS handshake timeout", "https", "tls/timeout"),
        (
            "Get http://1.2.3.4: net/http: request canceled (Client.Timeout exceeded)",
            "http",
            "read/timeout",
        ),
        ('Get http://1.2.3.4: malformed HTTP response "SSH-2.0"', "http", "http/http.invalid"),
        ("something nobody has seen", "http", "unknown"),
    ],
)
def test_classify_error(error: str, scan: str, expected: str) -> None:
    assert classify_error(error, scan) == expected
    assert outcome_of(_try(error, scan=scan), 0, "") == expected


def test_success_and_missing_error() -> None:
    assert outcome_of(_try(success=True), 0, "") == "expected"
    assert outcome_of(_try(success=True), -1, "") == "expected"
    assert outcome_of(_try(success=False), 0, "") == "content/mismatch"
    assert outcome_of(_try(success=None), 0, "") == "unknown"


def test_trusted_host_header() -> None:
    received = "403 Forbidden\nServer: AkamaiGHost\n<html>denied</html>"
    t = _try("Status lines do not match", scan="https", received=received)
    assert outcome_of(t, 0, "") == "expected/trusted_host"


def test_fingerprint_decides_only_when_given() -> None:
    t = _try("Incorrect echo response", received="blocked page")
    assert outcome_of(t, 1, "b_some_blockpage") == "content/blockpage"
    assert outcome_of(t, -1, "x_some_fp") == "content/false_positive"
    assert outcome_of(t, 0, "") == "content/mismatch"
    assert outcome_of(_try(success=True), -1, "") == "expected"


def test_signature_blind_never_names_signatures() -> None:
    errors = [
        "",
        "Incorrect echo response",
        "i/o timeout",
        "nonsense",
        "EOF",
        "Bodies do not match",
    ]
    for error in errors:
        for success in (True, False, None):
            for scan in ("echo", "discard", "http", "https"):
                for received in (None, "x", "Server: GHost"):
                    t = _try(error, success, scan, received)
                    got = outcome_of(t, 0, "")
                    assert got in OUTCOMES
                    assert got not in ("content/blockpage", "content/false_positive")


def test_reference_outcomes_are_in_vocabulary() -> None:
    folder = REFERENCE / "hyperquack"
    if not folder.is_dir():
        pytest.skip("shared reference data not present")
    seen = set()
    for path in sorted(folder.glob("*.json")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                for t in parse_measurement(json.loads(line), scan_from_name(path.name)):
                    seen.add(outcome_of(t, 0, ""))
                    assert outcome_of(dataclasses.replace(t), 1, "fp") == "content/blockpage"
    assert seen <= set(OUTCOMES)
    assert {"expected", "read/timeout", "content/mismatch", "dial/timeout"} <= seen
