"""How many texts a BPE tokenizer needs: token lengths of held-out tries by training-set size.

Usage: ``python benchmarks/tokenizer_minimum.py [--measurements N] [--seed S]``. Generates one
deterministic synthetic world per scan (``quackae synth``'s generator), trains a tokenizer (the
flatten settings: byte-level BPE, vocabulary 8192) on the first N normalised tries for each N,
and prints the p50/p90/p99 token length of the same held-out tries (the last quarter) under
each, beside the tokenizer flatten trains on its full sample (up to 20,000 tries). Too few texts
leave few merges, so pages split into many more tokens and hit the 512-token cut: the figure
behind ``ingest.limits.MIN_TOKENIZER_TEXTS``. Seconds, bounded by --measurements.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from quackae import synth
from quackae.ingest import tokens
from quackae.ingest.hyperquack import ParseError, loads_line, parse_measurement
from quackae.ingest.sources import iter_lines

SIZES = (0, 10, 30, 100, 300, 1000, 3000)
FULL = 20_000  # flatten's TOKENIZER_SAMPLE


def _texts(measurements: int, seed: int) -> list[str]:
    """Normalised texts of every try of one generated archive per scan, interleaved by line."""
    per_scan: list[list[str]] = []
    with tempfile.TemporaryDirectory(prefix="qtokmin-") as tmp:
        for i, scan in enumerate(("http", "https", "echo", "discard")):
            arc = synth.write_archive(Path(tmp) / scan, measurements, seed=seed + i, scan=scan)
            texts, domains = [], []
            for item in iter_lines(arc.archive, lambda *_: None):
                try:
                    tries = parse_measurement(loads_line(item.data), scan)
                except (ValueError, ParseError):
                    continue
                texts += [tokens.try_text(t) for t in tries]
                domains += [t.domain for t in tries]
            per_scan.append(tokens.normalise_many(texts, domains))
    mixed = []
    for i in range(max(map(len, per_scan))):
        mixed += [texts[i] for texts in per_scan if i < len(texts)]
    return mixed


def _lengths(tok, texts: list[str]) -> np.ndarray:
    return np.array([len(e.ids) for e in tok.encode_batch(texts)])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--measurements", type=int, default=3000, help="per scan (default 3000)")
    p.add_argument("--seed", type=int, default=0, help="world seed (default 0)")
    a = p.parse_args()
    texts = _texts(a.measurements, a.seed)
    held = texts[len(texts) * 3 // 4 :]
    pool = texts[: len(texts) * 3 // 4]
    print(f"{len(texts)} tries; held out {len(held)}; vocabulary {tokens.DEFAULT_VOCAB}")
    print(f"{'texts':>7} {'vocab':>6} {'p50':>5} {'p90':>5} {'p99':>5} {'>512':>6} {'s':>5}")
    for n in (*SIZES, min(FULL, len(pool))):
        started = time.perf_counter()
        tok = tokens.train_tokenizer(pool[:n], tokens.DEFAULT_VOCAB)
        lengths = _lengths(tok, held)
        p50, p90, p99 = np.percentile(lengths, [50, 90, 99])
        cut = (lengths > tokens.DEFAULT_MAX_TOKENS).mean()
        print(
            f"{n:>7} {tok.get_vocab_size():>6} {p50:>5.0f} {p90:>5.0f} {p99:>5.0f} {cut:>6.1%} "
            f"{time.perf_counter() - started:>5.1f}"
        )


if __name__ == "__main__":
    main()
