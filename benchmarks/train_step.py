"""Training-step throughput: QuackAutoEncoder vs the seed's model, same batches, alternating.

One step = forward + backward + AdamW. Peers: the original model (``benchmarks/original.py``: nn.GRU
over a packed sequence, nn.GRUCell decoder stepped in Python, per-step loss; its sampled step costs
what its teacher-forced one does), quackae teacher-forced (``"fast"``), quackae greedy sampling
(``"sample"``: a no-grad rollout, then the teacher-forced maths over the chosen inputs). Mixed
training (teacher forcing p = 0.5, the default) averages the two quackae step times. Every peer runs
on the same random batches (B=64, row lengths uniform in [T/2, T]), one warm-up step each, then A B
C A B C ...; medians are reported with the MFU against a matmul peak measured in the same run.

    .venv/bin/python benchmarks/train_step.py                      # T = 64 and 256, 3 rounds
    .venv/bin/python benchmarks/train_step.py --lengths 64 --rounds 2
    .venv/bin/python benchmarks/train_step.py --loops   # also the step-by-step reference paths

The glibc allocator is tuned (``quackae.model.gru.tune_cpu_allocator``) as ``ae_processor`` training
does, for every peer alike; ``--no-tune-allocator`` leaves it alone.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
from torch import Tensor, nn

from original import (
    OriginalAutoEncoder,
    alternate,
    machine_line,
    make_batch,
    matmul_peak,
    train_flops,
)
from quackae.model.autoencoder import QuackAutoEncoder
from quackae.model.gru import tune_cpu_allocator

ORIGINAL = "original"
TARGETS = {64: 5.0, 256: 15.0}  # the mixed-training targets, x the original, by T


def train_step_fn(model: nn.Module, loss_fn: Callable[[], Tensor]) -> Callable[[], None]:
    """Forward + backward + AdamW step on ``model`` with loss ``loss_fn``."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn()
        loss.backward()
        optimizer.step()

    return step


def compare_at(length: int, args: argparse.Namespace, peak: float) -> None:
    """Time and print every peer at one sequence length."""
    x = make_batch(args.batch, length, args.vocab, seed=length)
    tokens = int(x.ne(0).sum())
    torch.manual_seed(0)
    original = OriginalAutoEncoder(args.vocab, args.embed, args.hidden, args.layers)
    torch.manual_seed(0)
    model = QuackAutoEncoder(args.vocab, args.embed, args.hidden, layers=args.layers)
    peers = {ORIGINAL: train_step_fn(original, lambda: original.loss(x, teacher_forcing=True))}
    modes = ["fast", "sample"] + (["loop", "sample-loop"] if args.loops else [])
    for mode in modes:
        peers[f"quackae {mode}"] = train_step_fn(
            model, lambda mode=mode: model.decode_loss(x, mode)[0]
        )
    seconds = alternate(peers, args.rounds, warmup=1)
    seconds["quackae mixed (p=0.5) *"] = 0.5 * (seconds["quackae fast"] + seconds["quackae sample"])
    flops = train_flops(x, args.embed, args.hidden, args.vocab, args.layers)
    print(f"T={length}: {tokens:,} non-pad tokens per step, {flops / 1e9:.1f} GFLOP per step")
    for name, sec in seconds.items():
        print(
            f"  {name:<26}{sec:8.2f} s/step{tokens / sec:9,.0f} tokens/s  MFU "
            f"{flops / sec / peak:6.1%}"
            f"  {seconds[ORIGINAL] / sec:6.2f}x original"
        )
    # Both models do the same matmul FLOPs per real token, so a ratio r against the original needs
    # r times the original's MFU: the ceiling any implementation of these maths can reach here.
    target = TARGETS.get(length)
    if target:
        need = target * flops / seconds[ORIGINAL] / peak
        print(
            f"  a {target:g}x target needs MFU {need:.0%} (the original's "
            f"{flops / seconds[ORIGINAL] / peak:.1%}"
            f" x {target:g}); at 100% MFU the ceiling is {peak * seconds[ORIGINAL] / flops:.1f}x"
        )


def parse_args() -> argparse.Namespace:
    """Command-line flags."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3, help="timed alternating rounds after 1 warm-up")
    p.add_argument("--lengths", type=int, nargs="+", default=[64, 256])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--embed", type=int, default=128)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--vocab", type=int, default=7069)
    p.add_argument("--layers", type=int, default=1)
    p.add_argument(
        "--loops", action="store_true", help="also time the step-by-step reference paths"
    )
    p.add_argument(
        "--no-tune-allocator",
        action="store_true",
        help="leave glibc malloc returning freed memory to the OS (for every peer)",
    )
    return p.parse_args()


def main() -> None:
    """Run every peer at every length and print the table."""
    args = parse_args()
    print(
        "command: python benchmarks/train_step.py "
        + " ".join(
            f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
            for k, v in vars(args).items()
        )
    )
    tuned = False if args.no_tune_allocator else tune_cpu_allocator()
    peak = matmul_peak()
    print(
        f"B={args.batch} E={args.embed} H={args.hidden} V={args.vocab} layers={args.layers}; row "
        "lengths "
        f"uniform in [T/2, T]; fp32; matmul peak {peak / 1e9:.1f} GFLOP/s; tuned malloc {tuned}; "
        f"{machine_line()}"
    )
    for length in args.lengths:
        compare_at(length, args, peak)
    print(
        f"s/step: median of {args.rounds} alternating rounds after 1 warm-up step per peer; "
        f"end: {machine_line()}"
    )
    print(
        "* mean step time of 'fast' and 'sample': what training with teacher_forcing=0.5 "
        "averages to"
    )
    print("targets: mixed >= 5x the original at T=64, >= 15x at T=256")


if __name__ == "__main__":
    main()
