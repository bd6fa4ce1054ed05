"""Text normalisation and token sequences: the batch path gives exactly the reference strings."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from quackae.ingest import tokens
from quackae.ingest.hyperquack import Try, parse_measurement
from quackae.ingest.sources import scan_from_name

REFERENCE = Path(__file__).resolve().parents[1] / ".." / "shared" / "reference"

# (raw text, test domain, normalised text): real-shaped responses, the last one with the
# non-ASCII neighbours where Python's Unicode \b/\d and RE2's ASCII ones would disagree.
PINNED = [
    (
        "HTTP/1.1 403 Forbidden\nContent-Type: text/html; charset=utf-8\n"
        "Date: Sun, 30 May 2021 05:01:16 GMT\nServer: ADM/150\n"
        "Set-Cookie: sid=9f86d081884c7d659a2feaa0c55ad015; path=/\n"
        "<html><body>Access to www.blocked.example is denied by 10.10.34.36:8080 at "
        "2021-05-30T05:01:16Z ref 1622350876</body></html>",
        "www.blocked.example",
        "HTTP/1.1 403 Forbidden\nContent-Type: text/html; charset=utf-8\nDate: [DATE]\n"
        "Server: ADM/150\nSet-Cookie: sid=[HEX]; path=/\n<html><body>Access to [DOMAIN] is "
        "denied by [ADDR] at [DATE] ref [NUM]</body></html>",
    ),
    (
        "GET / HTTP/1.1\r\nHost: www.sex.com\r\n\r\n",
        "www.sex.com",
        "GET / HTTP/1.1\r\nHost: [DOMAIN]\r\n\r\n",
    ),
    (
        'HTTP/1.1 200 OK\nX-Cache: cdn-4821 12:34:56\nETag: "5f2b3c4d5e6f7a8b"\n'
        "Location: https://195.175.254.2/block.html?u="
        "d3d3LmV4YW1wbGUuY29tL3NvbWUvbG9uZy9wYXRoL3RoYXQvZW5jb2Rlcw==",
        "",
        'HTTP/1.1 200 OK\nX-Cache: cdn-4821 [TIME]\nETag: "[HEX]"\nLocation: '
        "https://[IP]/block.html?u=[B64]",
    ),
    (
        "Доступ к ресурсу 104.com.tw ограничен 2021年5月30日 ип 185.7.214.104 ٣٤٥٦٧ é12345 ü 12345",
        "104.com.tw",
        "Доступ к ресурсу [DOMAIN] ограничен 2021年5月30日 ип [IP] [NUM] é12345 ü [NUM]",
    ),
]


@pytest.mark.parametrize(("text", "domain", "expected"), PINNED)
def test_normalise_pinned(text: str, domain: str, expected: str) -> None:
    assert tokens.normalise(text, domain) == expected
    assert tokens.normalise_many([text], [domain]) == [expected]


def test_normalise_many_equals_normalise_on_edge_cases() -> None:
    texts = [
        "é12345 x",
        "x 12345",
        "٣٤٥٦٧",
        "Mon, 01 Jan 2020 10:00:00 GMT",
        "éMon, 01 Jan 2020 10:00:00 GMT",
        "a\ud800 1.2.3.4 99999",
        "deadbeefcafe12é",
        "ü deadbeefcafe12 ü",
        "ab" * 30,
        "",
        "1.2.3.4:80é",
        "é1.2.3.4",
        "x" * 5000 + " 123456",
    ]
    domains = ["", "x", "", "", "", "", "", "", "", "", "", "", "x"]
    expected = [tokens.normalise(t, d) for t, d in zip(texts, domains, strict=True)]
    assert tokens.normalise_many(texts, domains) == expected
    assert expected[0] == "é12345 x" and expected[2] == "[NUM]"  # Unicode rules kept


def test_normalise_many_equals_normalise_on_random_text() -> None:
    rng = random.Random(3)
    alphabet = "0123456789abcdefABCDEF.: -+/=,GMTMonJanéü٣年\n"
    texts = [
        "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 120))) for _ in range(3000)
    ]
    domains = [rng.choice(["", "ab", "1.2", "é"]) for _ in texts]
    texts += texts[:500]  # repeats take the de-duplicated path
    domains += domains[:500]
    expected = [tokens.normalise(t, d) for t, d in zip(texts, domains, strict=True)]
    assert tokens.normalise_many(texts, domains) == expected


def _reference_tries() -> list[Try]:
    folder = REFERENCE / "hyperquack"
    tries: list[Try] = []
    for path in sorted(folder.glob("*.json")):
        for line in path.read_text().splitlines():
            tries.extend(parse_measurement(json.loads(line), scan_from_name(path.name)))
    return tries


@pytest.mark.skipif(not (REFERENCE / "hyperquack").is_dir(), reason="shared/reference not present")
def test_encoder_matches_reference_definition_on_real_tries() -> None:
    tries = _reference_tries()
    assert len(tries) > 40
    texts = [tokens.try_text(t) for t in tries]
    domains = [t.domain for t in tries]
    normalised = tokens.normalise_many(texts, domains)
    assert normalised == [tokens.normalise(x, d) for x, d in zip(texts, domains, strict=True)]
    assert sum("[DOMAIN]" in x for x in normalised) > 10
    tok = tokens.train_tokenizer(normalised, vocab_size=600)
    enc = tokens.Encoder(tok, max_tokens=64)
    outcomes = ["unknown"] * len(tries)
    got = enc.encode(tries, outcomes)
    room, off = 64 - len(tokens.STATIC_FIELDS) - 3, enc.layout.text_offset
    for t, seq in zip(tries, got, strict=True):
        text = tokens.normalise(tokens.try_text(t, 64 * tokens.CHARS_PER_TOKEN), t.domain)
        ids = [i + off for i in tok.encode(text, add_special_tokens=False).ids[:room]]
        statics = tokens.static_tokens(t, "unknown", enc.layout)
        assert seq == [tokens.START, *statics, tokens.SEP, *ids, tokens.END]
