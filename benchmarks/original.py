"""The seed project's model and store, plus the timing helpers every peer benchmark shares.

``OriginalAutoEncoder`` is the seed's ``QuackAutoEncoder`` maths at the same sizes: ``nn.GRU`` over
a packed sequence as encoder, ``nn.GRUCell`` decoder stepped in Python with per-step attention and a
per-step loss. ``write_pickle_store`` / ``read_pickle_store`` are the seed's one-pickle-file-per-
record dataset layout: benchmarks only, in a temporary directory (nothing in ``src/`` pickles).

The peers run in the same process on the same inputs with the same warm-up, alternating A B A B
(:func:`alternate`), and every MFU is against a matmul peak measured in the same run
(:func:`matmul_peak`).
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
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

PAD = 0


class OriginalAutoEncoder(nn.Module):
    """The seed project's model as it was, for reference timings (same sizes and maths)."""

    def __init__(self, vocab: int, embed: int, hidden: int, layers: int = 1) -> None:
        super().__init__()
        self.hidden = hidden
        self.embed = nn.Embedding(vocab, embed, padding_idx=PAD)
        self.encoder = nn.GRU(
            embed, hidden // 2, num_layers=layers, batch_first=True, bidirectional=True
        )
        self.decoder = nn.ModuleList(
            [nn.GRUCell(embed, hidden)] + [nn.GRUCell(hidden, hidden) for _ in range(layers - 1)]
        )
        self.predict_word = nn.Sequential(
            nn.Linear(2 * hidden, hidden),
            nn.LeakyReLU(),
            nn.LayerNorm(hidden),
            nn.Linear(hidden, hidden),
            nn.LeakyReLU(),
            nn.LayerNorm(hidden),
            nn.Linear(hidden, vocab),
        )

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Packed bidirectional encoder: latent (B, H), states (B, T, H), mask (B, T)."""
        b, t = x.shape
        mask = x.ne(PAD)
        lengths = mask.sum(dim=1)
        packed = pack_padded_sequence(
            self.embed(x), lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        states, last = self.encoder(packed)
        states, _ = pad_packed_sequence(states, batch_first=True, total_length=t)
        last = last.view(-1, 2, b, self.hidden // 2)[-1].permute(1, 0, 2).reshape(b, -1)
        return last, states, mask

    def loss(self, x: Tensor, teacher_forcing: bool) -> Tensor:
        """Decode one token per Python step; sum of the per-step cross-entropies."""
        latent, states, mask = self.encode(x)
        hidden = [latent for _ in self.decoder]
        lengths = mask.sum(dim=1, keepdim=True)
        inp = self.embed(x.gather(1, lengths - 1).flatten())
        predictions = []
        for t in range(x.shape[1]):
            h = inp
            for i, cell in enumerate(self.decoder):
                h = hidden[i] = cell(h, hidden[i])
            scores = torch.bmm(states, h.unsqueeze(2)) / math.sqrt(self.hidden)
            scores[~mask] = -1000.0
            weights = F.softmax(scores, dim=1)
            context = (states * weights).sum(dim=1)
            logits = self.predict_word(torch.cat([context, h], dim=1))
            predictions.append(logits)
            with torch.no_grad():
                if teacher_forcing:
                    nxt = x[:, t]
                else:
                    nxt = torch.multinomial(F.softmax(logits, dim=1), 1)[:, -1]
            inp = self.embed(nxt)
        stacked = torch.stack(predictions, dim=1)
        loss = x.new_zeros((), dtype=stacked.dtype)
        for t in range(x.shape[1]):
            loss = loss + F.cross_entropy(stacked[:, t], x[:, t], ignore_index=PAD)
        return loss


# --------------------------------------------------------------------------- the seed's store


def write_pickle_store(root: Path, rows: Iterable[dict]) -> int:
    """The seed's dataset layout: one pickle file per record, named by its index; the count."""
    root.mkdir(parents=True, exist_ok=True)
    n = 0
    for n, row in enumerate(rows, start=1):
        with open(root / f"{n - 1}.pkl", "wb") as f:
            pickle.dump(row, f)
    return n


def read_pickle_store(root: Path, index: Iterable[int]) -> list[dict]:
    """Read records back as the seed's ``Dataset.__getitem__`` did: one open + unpickle each."""
    out = []
    for i in index:
        with open(root / f"{i}.pkl", "rb") as f:
            out.append(pickle.load(f))  # noqa: S301 - the seed's own format, written by this benchmark
    return out


def pad_batch(rows: list[np.ndarray], pad: int = PAD) -> Tensor:
    """The seed's collate: right-pad a list of token arrays into a (B, T) int64 tensor."""
    width = max(len(r) for r in rows)
    out = np.full((len(rows), width), pad, dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return torch.from_numpy(out)


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


def matmul_peak(n: int = 2048, repeats: int = 5) -> float:
    """Best fp32 matmul rate in FLOP/s on an n x n by n x n product, measured now."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def alternate(
    peers: dict[str, Callable[[], object]], rounds: int, warmup: int = 1
) -> dict[str, float]:
    """Median seconds per call of each peer: ``warmup`` untimed calls each, then A B A B rounds."""
    for _ in range(warmup):
        for fn in peers.values():
            fn()
    seconds: dict[str, list[float]] = {name: [] for name in peers}
    for _ in range(rounds):
        for name, fn in peers.items():
            t0 = time.perf_counter()
            fn()
            seconds[name].append(time.perf_counter() - t0)
    return {name: statistics.median(v) for name, v in seconds.items()}


def machine_line() -> str:
    """Threads, load average and OpenMP wait policy: what makes two runs comparable."""
    return (
        f"threads={torch.get_num_threads()} cores={os.cpu_count()} "
        f"load1={os.getloadavg()[0]:.2f} "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')} "
        f"torch {torch.__version__}"
    )
