"""What the seed's original code cannot provide on today's libraries, and shared timing helpers.

The seed's model itself is not here: benchmarks time the original ``autoencoder.py``, imported by
path through ``benchmarks/seed_original.py``. What stays is what that file does not contain:

* the writer of the seed's dataset layout, one pickle file per record (``write_seed_store``:
  the seed's flattener that wrote it needs fairseq 0.10): benchmarks only, in a temporary
  directory (nothing in ``src/`` pickles); the seed's own reader and collate read it back
  (``seed_original.load_data``);
* random padded batches, FLOP counts, and the timing helpers: peers run in the same process on the
  same inputs with the same warm-up, alternating A B A B (:func:`alternate`), and every MFU is
  against a matmul peak measured in the same run (:func:`matmul_peak`), on the same clock
  (:func:`clock`: wall time, or this process's CPU time, which a loaded machine disturbs less).
"""

from __future__ import annotations

import math
import os
import pickle
import statistics
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

PAD = 0


# --------------------------------------------------------------------------- the seed's store


#: Tokens the seed's collate (``cp_tokenized_data.concatenate_data``) adds around a record's text:
#: a start marker, nine static values and the time difference, an end marker.
SEED_FRAME = 11
#: Added to every text id written to the seed's store, so none equals a marker of the seed's
#: collate (XLM-R's ``<s>`` 0 is its start marker, ``<pad>`` 1 its padding, ``</s>`` 2 its end
#: marker): the seed's model masks every id equal to its pad, and quackae's ids include 0-2.
SEED_TEXT_SHIFT = 3


def seed_item_path(root: Path, index: int) -> Path:
    """Where the seed's ``QuackIterableDataset`` looks for record ``index``."""
    return root / str(index // 100000) / str(index % 100000 // 1000) / f"{index}.pyc"


def write_seed_store(root: Path, records: Iterable[tuple[dict, np.ndarray]]) -> int:
    """Write ``(metadata, tokens)`` records in the seed's pickle store layout; the count.

    The layout ``cp_dataset.QuackIterableDataset`` reads: ``metadata.pyc`` (length, label counts,
    max width) and one pickled ``TokenizedQuackData`` per record under ``/{i // 1e5}/{i % 1e5 //
    1e3}/{i}.pyc`` (the seed's flattener, which wrote it, needs fairseq and cannot run here).
    Each record's ``variable_text`` is its tokens but the last ``SEED_FRAME`` and its
    ``static_size`` ten zeros, so the seed's collate rebuilds a sequence of the record's own
    length (the ids differ: text ids are shifted by ``SEED_TEXT_SHIFT``, and the seed's collate
    shifts static values by its vocabulary size).
    """
    root.mkdir(parents=True, exist_ok=True)
    counts = {"censored": 0, "undetermined": 0, "uncensored": 0}
    label = {1: "censored", 0: "undetermined", -1: "uncensored"}
    n, width = 0, 0
    for n, (meta, tokens) in enumerate(records, start=1):
        path = seed_item_path(root, n - 1)
        path.parent.mkdir(parents=True, exist_ok=True)
        item = {
            "metadata": meta,
            "static_size": np.zeros(10, dtype=np.int64),
            "variable_text": np.asarray(tokens[: max(len(tokens) - SEED_FRAME, 0)], np.int64)
            + SEED_TEXT_SHIFT,
        }
        with open(path, "wb") as f:
            pickle.dump(item, f)
        counts[label.get(int(meta.get("censored", 0)), "undetermined")] += 1
        width = max(width, len(tokens))
    with open(root / "metadata.pyc", "wb") as f:
        pickle.dump({"length": n, "max_width": width, **counts}, f)
    return n


# --------------------------------------------------------------------------- inputs and FLOPs


def make_batch(batch: int, length: int, vocab: int, seed: int, min_fill: float = 0.5) -> Tensor:
    """Random right-padded (B, T) batch; row lengths uniform in [min_fill*T, T], one row full."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(4, vocab, (batch, length), generator=gen)
    lengths = torch.randint(
        max(1, math.ceil(min_fill * length)), length + 1, (batch,), generator=gen
    )
    lengths[0] = length
    x[torch.arange(length).unsqueeze(0) >= lengths.unsqueeze(1)] = PAD
    return x


def tokens(batches: Iterable[Tensor]) -> int:
    """Non-pad tokens in ``batches``."""
    return sum(int(x.ne(PAD).sum()) for x in batches)


def encoder_flops_per_token(embed: int, hidden: int, layers: int = 1) -> float:
    """Matmul FLOPs of the bidirectional encoder forward per real token (H/2 per direction)."""
    hd = hidden // 2
    return sum(2 * 2 * 3 * hd * ((embed if i == 0 else hidden) + hd) for i in range(layers))


def train_flops(x: Tensor, embed: int, hidden: int, vocab: int, layers: int = 1) -> float:
    """Matmul FLOPs of one training step (forward + backward = 3x forward) over real tokens."""
    lengths = x.ne(PAD).sum(dim=1).double()
    n = float(lengths.sum())
    dec = sum(2 * 3 * hidden * ((embed if i == 0 else hidden) + hidden) for i in range(layers))
    mlp = 2 * (2 * hidden * hidden + hidden * hidden + hidden * vocab)
    attention = 4 * hidden * float((lengths**2).sum())  # scores + context, per row length
    return 3 * ((encoder_flops_per_token(embed, hidden, layers) + dec + mlp) * n + attention)


# --------------------------------------------------------------------------- timing


CLOCKS = ("wall", "cpu")


def clock(name: str = "wall") -> Callable[[], float]:
    """``"wall"``: ``time.perf_counter``; ``"cpu"``: this process's CPU time (all its threads).

    On a machine shared with other jobs the CPU clock counts only the cycles this process got;
    with one thread (``torch.set_num_threads(1)``) it is the work done, whatever the load.
    """
    if name not in CLOCKS:
        raise ValueError(f"unknown clock {name!r}; expected one of {CLOCKS}")
    return time.perf_counter if name == "wall" else time.process_time


def matmul_peak(
    n: int = 2048, repeats: int = 5, timer: Callable[[], float] = time.perf_counter
) -> float:
    """Best fp32 matmul rate in FLOP/s on an n x n by n x n product, measured now."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = math.inf
    for _ in range(repeats):
        t0 = timer()
        a @ b
        best = min(best, timer() - t0)
    return 2 * n**3 / best


def alternate(
    peers: dict[str, Callable[[], object]],
    rounds: int,
    warmup: int = 1,
    timer: Callable[[], float] = time.perf_counter,
) -> dict[str, float]:
    """Median seconds per call of each peer: ``warmup`` untimed calls each, then A B A B rounds."""
    for _ in range(warmup):
        for fn in peers.values():
            fn()
    seconds: dict[str, list[float]] = {name: [] for name in peers}
    for _ in range(rounds):
        for name, fn in peers.items():
            t0 = timer()
            fn()
            seconds[name].append(timer() - t0)
    return {name: statistics.median(v) for name, v in seconds.items()}


def machine_line() -> str:
    """Threads, load average and OpenMP wait policy: what makes two runs comparable."""
    return (
        f"threads={torch.get_num_threads()} cores={os.cpu_count()} "
        f"load1={os.getloadavg()[0]:.2f} "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')} "
        f"torch {torch.__version__}"
    )
