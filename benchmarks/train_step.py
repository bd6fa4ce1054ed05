"""Training-step throughput of QuackAutoEncoder against a faithful copy of the original model.

Measures forward + backward + AdamW step, in non-pad tokens per second, for the decoder's
paths (teacher-forced loop, sampling loop, fast teacher-forced scan), the default mixed
training (``teacher_forcing = 0.5``) and the original cp_learning model (nn.GRU over a packed
sequence, nn.GRUCell decoder stepped in Python with per-step attention and per-step loss).
Model-FLOP utilisation is against a fp32 matmul peak measured here.

    .venv/bin/python benchmarks/train_step.py              # T = 64 and 256
    .venv/bin/python benchmarks/train_step.py --quick      # fewer steps, T = 64 only

On a machine shared with other busy processes, spinning OpenMP threads wait for descheduled
peers and small per-step ops get many times slower; ``OMP_WAIT_POLICY=PASSIVE`` in the
environment keeps that in check. The table prints the load average so runs can be compared.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from quackae.autoencoder import QuackAutoEncoder
from quackae.gru import tune_cpu_allocator

PAD = 0
ORIGINAL = "ORIGINAL"


class OriginalAutoEncoder(nn.Module):
    """The seed project's model as it was, for reference timings (same sizes and maths)."""

    def __init__(self, vocab: int, embed: int, hidden: int, layers: int = 1) -> None:
        super().__init__()
        self.hidden = hidden
        self.embed = nn.Embedding(vocab, embed, padding_idx=PAD)
        self.encoder = nn.GRU(embed, hidden // 2, num_layers=layers, batch_first=True,
                              bidirectional=True)
        self.decoder = nn.ModuleList([nn.GRUCell(embed, hidden)]
                                     + [nn.GRUCell(hidden, hidden) for _ in range(layers - 1)])
        self.predict_word = nn.Sequential(
            nn.Linear(2 * hidden, hidden), nn.LeakyReLU(), nn.LayerNorm(hidden),
            nn.Linear(hidden, hidden), nn.LeakyReLU(), nn.LayerNorm(hidden),
            nn.Linear(hidden, vocab))

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Packed bidirectional encoder: latent (B, H), states (B, T, H), mask (B, T)."""
        b, t = x.shape
        mask = x.ne(PAD)
        lengths = mask.sum(dim=1)
        packed = pack_padded_sequence(self.embed(x), lengths.cpu(), batch_first=True,
                                      enforce_sorted=False)
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


@dataclass
class Result:
    """One benchmark row: per-step seconds and non-pad tokens per step."""

    name: str
    length: int
    seconds: float
    tokens: int
    steps: int
    derived: bool = False

    @property
    def tokens_per_s(self) -> float:
        """Non-pad tokens processed per second."""
        return self.tokens / self.seconds


def make_batch(batch: int, length: int, vocab: int, min_fill: float, seed: int) -> Tensor:
    """Random right-padded (B, T) batch; row lengths uniform in [min_fill*T, T], one row full."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(4, vocab, (batch, length), generator=gen)
    lengths = torch.randint(max(1, math.ceil(min_fill * length)), length + 1, (batch,), generator=gen)
    lengths[0] = length
    x[torch.arange(length).unsqueeze(0) >= lengths.unsqueeze(1)] = PAD
    return x


def matmul_peak(n: int = 2048, repeats: int = 5) -> float:
    """Best fp32 matmul rate in FLOP/s on an n x n by n x n product."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def model_flops(x: Tensor, embed: int, hidden: int, vocab: int, layers: int) -> float:
    """Matmul FLOPs of forward + backward (3x forward) over the batch's real tokens."""
    lengths = x.ne(PAD).sum(dim=1).double()
    tokens = float(lengths.sum())
    hd = hidden // 2
    enc = sum(2 * 2 * 3 * hd * ((embed if i == 0 else hidden) + hd) for i in range(layers))
    dec = sum(2 * 3 * hidden * ((embed if i == 0 else hidden) + hidden) for i in range(layers))
    mlp = 2 * (2 * hidden * hidden + hidden * hidden + hidden * vocab)
    attention = 4 * hidden * float((lengths**2).sum())  # scores + context, per row length
    return 3 * ((enc + dec + mlp) * tokens + attention)


def time_steps(step: Callable[[], None], steps: int, warmup: int) -> float:
    """Best (least disturbed) seconds per call of ``step`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        step()
    best = math.inf
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - t0)
    return best


def train_step_fn(model: nn.Module, loss_fn: Callable[[], Tensor]) -> Callable[[], None]:
    """Forward + backward + AdamW step on ``model`` with loss ``loss_fn``."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn()
        loss.backward()
        optimizer.step()

    return step


def bench_paths(args: argparse.Namespace, length: int) -> list[Result]:
    """Rows for QuackAutoEncoder's decode paths at one sequence length."""
    x = make_batch(args.batch, length, args.vocab, args.min_fill, seed=length)
    tokens = int(x.ne(PAD).sum())
    torch.manual_seed(0)
    model = QuackAutoEncoder(args.vocab, args.embed, args.hidden, layers=args.layers)
    rows = []
    times = {}
    paths = [("fast", "fast, teacher-forced"), ("sample", "fast, sampling (rollout+scan)"),
             ("loop", "loop, teacher-forced"), ("sample-loop", "loop, sampling")]
    for mode, label in paths:
        step = train_step_fn(model, lambda mode=mode: model.decode_loss(x, mode)[0])
        times[mode] = time_steps(step, args.steps, warmup=1)
        rows.append(Result(label, length, times[mode], tokens, args.steps))
        print(f"  T={length} {label}: {times[mode]:.2f} s/step", flush=True)
    mixed = 0.5 * (times["fast"] + times["sample"])
    rows.append(Result("mixed, teacher_forcing=0.5", length, mixed, tokens, args.steps, derived=True))
    return rows


def bench_original(args: argparse.Namespace, length: int, label: str) -> Result:
    """One row for the original model (teacher-forced; sampling costs the same there)."""
    x = make_batch(args.batch, length, args.vocab, args.min_fill, seed=length)
    torch.manual_seed(0)
    original = OriginalAutoEncoder(args.vocab, args.embed, args.hidden, args.layers)
    step = train_step_fn(original, lambda: original.loss(x, teacher_forcing=True))
    seconds = time_steps(step, args.original_steps, warmup=0)
    print(f"  T={length} {label}: {seconds:.2f} s/step", flush=True)
    return Result(label, length, seconds, int(x.ne(PAD).sum()), args.original_steps)


def print_table(rows: list[Result], args: argparse.Namespace, peak: float) -> None:
    """The results table: per-step time, tokens/s, MFU and speed-up over the original."""
    print()
    print(f"B={args.batch} E={args.embed} H={args.hidden} V={args.vocab} layers={args.layers}; "
          f"row lengths uniform in [{args.min_fill:.2f}T, T]; threads={torch.get_num_threads()}; "
          f"matmul peak {peak / 1e9:.0f} GFLOP/s; "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}")
    header = f"{'T':>4}  {'path':<30} {'s/step':>8} {'tokens/s':>9} {'MFU':>6} {'vs orig':>8}"
    print(header)
    print("-" * len(header))
    for length in sorted({r.length for r in rows}):
        group = [r for r in rows if r.length == length]
        orig = next((r for r in group if r.name == ORIGINAL), None)
        x = make_batch(args.batch, length, args.vocab, args.min_fill, seed=length)
        flops = model_flops(x, args.embed, args.hidden, args.vocab, args.layers)
        for r in group:
            mfu = flops / r.seconds / peak
            speedup = f"{orig.seconds / r.seconds:7.1f}x" if orig else "     n/a"
            name = r.name + (" *" if r.derived else "")
            print(f"{length:>4}  {name:<30} {r.seconds:8.2f} {r.tokens_per_s:9.0f} {mfu:6.1%} {speedup}")
    print(f"s/step: best of {args.steps} steps after 1 warm-up ({args.original_steps} step, no "
          "warm-up, for the original); tuned malloc: quackae.gru.tune_cpu_allocator()")
    print("* mean step time of the two 'fast' rows: what training with teacher_forcing=0.5 averages to")


def parse_args() -> argparse.Namespace:
    """Command-line flags."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=2, help="timed steps per path (after 1 warm-up)")
    p.add_argument("--original-steps", type=int, default=1, help="timed steps of the original")
    p.add_argument("--lengths", type=int, nargs="+", default=[64, 256])
    p.add_argument("--quick", action="store_true", help="1 timed step, T=64 only")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--embed", type=int, default=128)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--vocab", type=int, default=7069)
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--min-fill", type=float, default=0.75, help="shortest row as a fraction of T")
    p.add_argument("--skip-original", action="store_true")
    p.add_argument("--no-tune-allocator", action="store_true",
                   help="leave glibc malloc returning freed memory to the OS")
    args = p.parse_args()
    if args.quick:
        args.steps, args.original_steps = 1, 1
        if args.lengths == [64, 256]:
            args.lengths = [64]
    return args


def main() -> None:
    """Run every path at every length and print the table."""
    args = parse_args()
    load_before = os.getloadavg()[0]
    peak = matmul_peak()
    rows: list[Result] = []
    if not args.skip_original:  # first, with the allocator as the original ran
        rows += [bench_original(args, t, ORIGINAL) for t in args.lengths]
    if not args.no_tune_allocator:
        tune_cpu_allocator()
    for length in args.lengths:
        rows += bench_paths(args, length)
    if not args.skip_original and not args.no_tune_allocator:
        rows += [bench_original(args, t, ORIGINAL + ", tuned malloc") for t in args.lengths]
    print_table(rows, args, peak)
    print(f"1-min load average: {load_before:.2f} at start, {os.getloadavg()[0]:.2f} at end "
          f"(above ~0.5 other processes share the {os.cpu_count()} cores and timings suffer)")


if __name__ == "__main__":
    main()
