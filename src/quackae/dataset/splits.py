"""Stable per-row randomness: train/validation/test splits and samples keyed by row id.

A row's split depends only on its id and the seed, never on its position, so appending to a
dataset never moves a row from one split to another.
"""

from __future__ import annotations

import hashlib

import numpy as np

SPLITS = ("train", "val", "test")


def uniform(row_ids: np.ndarray, seed: int, salt: str) -> np.ndarray:
    """A reproducible uniform [0, 1) number per row, from its stable id (not its position)."""
    digest = hashlib.blake2b(f"{seed}:{salt}".encode(), digest_size=8).digest()
    key = np.uint64(int.from_bytes(digest, "little"))
    x = np.asarray(row_ids, dtype=np.int64).astype(np.uint64) ^ key
    # splitmix64 finaliser: a well-mixed 64-bit hash, vectorised.
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def split_of(row_ids: np.ndarray, seed: int, fractions: tuple[float, ...]) -> np.ndarray:
    """Split number (0 train, 1 val, 2 test) of every row: stable across runs and appends."""
    u = uniform(np.asarray(row_ids, dtype=np.int64), seed, "split")
    edges = np.cumsum(fractions)[:-1]
    return np.searchsorted(edges, u, side="right").astype(np.int8)
