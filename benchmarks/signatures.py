"""Benchmark the signature matcher against a naive loop of Python ``re.search``.

Usage: ``python benchmarks/signatures.py [--signatures DIR] [--seconds S]``. Uses the Censored
Planet reference signatures and responses from ``../shared/reference`` when present, else the
package's default set and generated responses. Both matchers run on the same responses in the
same process, and their answers are checked to be identical.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from pathlib import Path

from quackae.ingest.hyperquack import ParseError, parse_line
from quackae.ingest.signatures import Matcher, load_signatures
from quackae.ingest.sources import iter_lines, scan_from_name

REFERENCE = Path(__file__).resolve().parents[1] / ".." / "shared" / "reference"

_PAGES = (
    "HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/html\r\n\r\n"
    "<html><head><title>{t}</title></head><body>{b}</body></html>",
    "HTTP/1.1 403 Forbidden\r\nServer: Apache\r\nContent-Length: 199\r\n\r\n"
    "<!DOCTYPE HTML PUBLIC><html><head><title>403 Forbidden</title></head>"
    "<body><h1>Forbidden</h1><p>{b}</p></body></html>",
    "302 Found\nLocation: https://{t}/\nContent-Type: text/html; charset=iso-8859-1\n"
    "<HTML><HEAD><TITLE>302 Found</TITLE></HEAD><BODY>The document has moved {b}</BODY></HTML>",
    "GET / HTTP/1.1\r\nHost: {t}\r\n\r\n",
)
_WORDS = ("the", "access", "page", "site", "blocked", "server", "request", "error", "policy")


def _reference_responses() -> list[str]:
    """Received texts of the reference measurements (empty list when absent)."""
    texts: list[str] = []
    folder = REFERENCE / "hyperquack"
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        for line in iter_lines(path):
            try:
                tries = parse_line(line.data, scan_from_name(path.name))
            except ParseError:
                continue
            texts.extend(t.received for t in tries if t.received)
    return texts


def _generated_responses(n: int, seed: int = 7) -> list[str]:
    """Ordinary web and echo responses of realistic sizes (0.05-8 KB)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        body = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(5, 1200)))
        out.append(rng.choice(_PAGES).format(t=f"site{i}.example", b=body))
    return out


def _rate(fn: Callable[[str], tuple[int, str]], texts: list[str], seconds: float) -> float:
    """Matches per second of ``fn`` cycling over ``texts`` for about ``seconds``."""
    done = 0
    start = time.perf_counter()
    while True:
        for text in texts:
            fn(text)
        done += len(texts)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done / elapsed


def main() -> None:
    """Run both matchers on the same responses and print matches/s."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signatures", type=Path, default=None)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    sig_dir = args.signatures
    if sig_dir is None and (REFERENCE / "signatures").is_dir():
        sig_dir = REFERENCE / "signatures"
    t0 = time.perf_counter()
    matcher: Matcher = load_signatures(sig_dir)
    build = time.perf_counter() - t0
    texts = _reference_responses() + _generated_responses(300)
    mismatches = sum(matcher.match(t) != matcher.match_naive(t) for t in texts)
    hits = sum(matcher.match(t)[0] != 0 for t in texts)
    fast = _rate(matcher.match, texts, args.seconds)
    naive = _rate(matcher.match_naive, texts, args.seconds)
    mean_kb = sum(len(t) for t in texts) / len(texts) / 1024
    print(
        f"signatures: {len(matcher)} from {sig_dir or 'package default'}"
        f" ({matcher.python_only} python-only), build {build:.2f}s"
    )
    print(
        f"responses: {len(texts)} (mean {mean_kb:.1f} KB, {hits} with a hit),"
        f" disagreements: {mismatches}"
    )
    print(f"re2-prefiltered matcher: {fast:,.0f} matches/s")
    print(f"naive re.search loop:    {naive:,.0f} matches/s")
    print(f"speed-up: {fast / naive:.1f}x")


if __name__ == "__main__":
    main()
