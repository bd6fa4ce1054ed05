"""Training-step throughput and MFU: QuackAutoEncoder vs the seed's original model, same run.

One step = forward + backward + AdamW. Peers, on the same random batch (B=64, row lengths uniform
in [T/2, T], one row full), one warm-up step each, then A B C ... rounds, medians reported:

* the original: the seed's own ``autoencoder.py`` (``benchmarks/seed_original.py``: nn.GRU over a
  packed sequence, nn.GRUCell decoder stepped in Python, per-step attention and loss,
  ``torch.multinomial`` feedback), its teacher-forcing coin set to each side in turn;
* quackae ``"fast"`` (teacher-forced), ``"sample"`` (the fused sampled step, multinomial feedback
  by inverse CDF, the default) and ``"sample"`` with ``sampling="greedy"``;
* mixed training (teacher forcing p = 0.5, both models' default) is the mean of the two sides.

MFU: the step's matmul FLOPs over real tokens (forward + backward = 3x forward, the same count for
both models) per second, over a matmul peak measured in the same run on the same clock
(``--clock cpu`` counts this process's CPU time: the work done on a machine shared with other
jobs, best with ``--threads 1``). ``--profile`` first times each library call of a sampled decode
step on the real shapes (the output projection, the GRU cell, attention, and every way to draw the
next token).

    .venv/bin/python benchmarks/train_step.py                     # T = 64 and 256, 3 rounds
    .venv/bin/python benchmarks/train_step.py --lengths 64 --rounds 2 --threads 1 --clock cpu
    .venv/bin/python benchmarks/train_step.py --profile --lengths 64 --rounds 0

Without ``../shared/reference/cp_learning`` the original is skipped with one line and quackae's
MFU is still printed. The glibc allocator is tuned (``quackae.model.gru.tune_cpu_allocator``) as
``ae_processor`` training does, for every peer alike; ``--no_tune_allocator`` leaves it alone.
"""

from __future__ import annotations

import argparse
import statistics
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import seed_original
from original import CLOCKS, alternate, clock, machine_line, make_batch, matmul_peak, train_flops
from quackae.model.autoencoder import QuackAutoEncoder
from quackae.model.fused import draw
from quackae.model.gru import tune_cpu_allocator

#: The issue's MFU targets (of the same run's matmul peak).
TARGETS = {"quackae sample": 0.60, "quackae mixed (p=0.5) *": 0.65}
#: The original's step each quackae peer is compared with (the same decoder feedback).
BASELINE = {
    "quackae fast": "original forced",
    "quackae loop": "original forced",
    "quackae sample": "original sampled",
    "quackae sample, greedy": "original sampled",
    "quackae sample-loop": "original sampled",
    "quackae mixed (p=0.5) *": "original mixed (p=0.5) *",
}


def train_step_fn(model: nn.Module, loss_fn: Callable[[], Tensor]) -> Callable[[], None]:
    """Forward + backward + AdamW step on ``model`` with loss ``loss_fn``."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn()
        loss.backward()
        optimizer.step()

    return step


def peers_at(x: Tensor, args: argparse.Namespace) -> dict[str, Callable[[], None]]:
    """Every peer's training step on batch ``x``; the original's only when it is here."""
    peers: dict[str, Callable[[], None]] = {}
    torch.manual_seed(0)
    model = QuackAutoEncoder(args.vocab, args.embed, args.hidden, layers=args.layers)
    if seed_original.reference_dir() is None:
        print(f"  {seed_original.missing_reason()}")
    else:
        torch.manual_seed(0)
        original = seed_original.build(
            args.vocab, args.embed, args.hidden, args.layers, x.shape[1], pad_id=0
        )
        model.load_state_dict(seed_original.quackae_state(original))
        for forced, name in ((True, "original forced"), (False, "original sampled")):
            peers[name] = train_step_fn(
                original, lambda f=forced: seed_original.step(original, x, teacher_forcing=f)
            )
    greedy = QuackAutoEncoder(
        args.vocab, args.embed, args.hidden, layers=args.layers, sampling="greedy"
    )
    greedy.load_state_dict(model.state_dict())
    modes = [("quackae fast", model, "fast"), ("quackae sample", model, "sample")]
    modes.append(("quackae sample, greedy", greedy, "sample"))
    if args.loops:
        modes += [("quackae loop", model, "loop"), ("quackae sample-loop", model, "sample-loop")]
    for name, m, mode in modes:
        peers[name] = train_step_fn(m, lambda m=m, mode=mode: m.decode_loss(x, mode)[0])
    return peers


def compare_at(length: int, args: argparse.Namespace, timer: Callable[[], float]) -> None:
    """Time and print every peer at one sequence length, with the peak measured beside them."""
    x = make_batch(args.batch, length, args.vocab, seed=length)
    tokens = int(x.ne(0).sum())
    flops = train_flops(x, args.embed, args.hidden, args.vocab, args.layers)
    peers = peers_at(x, args)
    peaks: list[float] = []
    peers["(matmul peak)"] = lambda: peaks.append(matmul_peak(timer=timer))
    seconds = alternate(peers, args.rounds, warmup=1, timer=timer)
    del seconds["(matmul peak)"]
    peak = statistics.median(peaks)
    for forced, sampled, mixed in (
        ("original forced", "original sampled", "original mixed (p=0.5) *"),
        ("quackae fast", "quackae sample", "quackae mixed (p=0.5) *"),
    ):
        if forced in seconds and sampled in seconds:
            seconds[mixed] = 0.5 * (seconds[forced] + seconds[sampled])
    print(
        f"T={length}: {tokens:,} non-pad tokens per step, {flops / 1e9:.1f} GFLOP per step; "
        f"matmul peak {peak / 1e9:.1f} GFLOP/s (median of the rounds')"
    )
    for name, sec in seconds.items():
        base = seconds.get(BASELINE.get(name, ""))
        ratio = f"{base / sec:6.2f}x original" if base else ""
        target = TARGETS.get(name)
        goal = f"  (target >= {target:.0%})" if target else ""
        print(
            f"  {name:<26}{sec:8.2f} s/step{tokens / sec:9,.0f} tokens/s  MFU "
            f"{flops / sec / peak:6.1%}  {ratio}{goal}"
        )


def time_call(fn: Callable[[], object], timer: Callable[[], float], repeats: int = 7) -> float:
    """Median seconds of ``fn`` after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = timer()
        fn()
        times.append(timer() - t0)
    return statistics.median(times)


def profile_calls(args: argparse.Namespace, timer: Callable[[], float]) -> None:
    """Each library call of one sampled decoder step on the real shapes, and each way to draw."""
    b, e, h, v = args.batch, args.embed, args.hidden, args.vocab
    gen = torch.Generator().manual_seed(0)
    y, w3, b3 = (
        torch.randn(b, h, generator=gen),
        torch.randn(v, h, generator=gen) * 0.05,
        torch.zeros(v),
    )
    logits = torch.addmm(b3, y, w3.t())
    probs = logits.softmax(dim=1)
    out = torch.empty_like(logits)
    w_hh, w_ih = torch.randn(3 * h, h, generator=gen), torch.randn(3 * h, e, generator=gen)
    emb, hid = torch.randn(b, e, generator=gen), torch.randn(b, h, generator=gen)
    w1 = torch.randn(h, 2 * h, generator=gen)
    feats = torch.randn(b, 2 * h, generator=gen)

    def inverse_cdf() -> Tensor:
        weights = torch.sub(logits, logits.amax(dim=1, keepdim=True), out=out).exp_()
        return draw(weights, torch.rand(b))

    calls: dict[str, tuple[Callable[[], object], float]] = {
        "output projection addmm (B,H)x(H,V)": (
            lambda: torch.addmm(b3, y, w3.t(), out=out),
            2 * b * h * v,
        ),
        "GRU cell W_hh addmm (B,H)x(H,3H)": (lambda: hid @ w_hh.t(), 2 * b * h * 3 * h),
        "GRU cell W_ih addmm (B,E)x(E,3H)": (lambda: emb @ w_ih.t(), 2 * b * e * 3 * h),
        "MLP layer 1 addmm (B,2H)x(2H,H)": (lambda: feats @ w1.t(), 2 * b * 2 * h * h),
        "LeakyReLU + LayerNorm (B,H)": (lambda: F.layer_norm(F.leaky_relu(hid), (h,)), 0),
        "softmax (B,V)": (lambda: logits.softmax(dim=1), 0),
        "draw: torch.multinomial(softmax, 1) (the seed's)": (
            lambda: torch.multinomial(logits.softmax(dim=1), 1),
            0,
        ),
        "draw: multinomial(p, replacement=True)": (
            lambda: torch.multinomial(probs, 1, replacement=True),
            0,
        ),
        "draw: Gumbel-max argmax(l - log E)": (
            lambda: (logits - torch.empty_like(logits).exponential_().log_()).argmax(dim=1),
            0,
        ),
        "draw: inverse CDF, 1 uniform per row (quackae)": (inverse_cdf, 0),
        "greedy: argmax (B,V)": (lambda: logits.argmax(dim=1), 0),
    }
    for length in args.lengths:
        keys, states = (
            torch.randn(b, h, length, generator=gen),
            torch.randn(b, length, h, generator=gen),
        )
        calls[f"attention scores + context, T={length}"] = (
            lambda k=keys, s=states: torch.bmm(torch.bmm(hid.unsqueeze(1), k).softmax(-1), s),
            4 * b * h * length,
        )
    print(f"Per-call times of one sampled decoder step, B={b} E={e} H={h} V={v} (median of 7):")
    output = None
    for name, (fn, flop) in calls.items():
        sec = time_call(fn, timer)
        output = output or sec
        rate = f"  {flop / sec / 1e9:6.1f} GFLOP/s" if flop else ""
        print(f"  {name:<52}{sec * 1e3:9.3f} ms  {sec / output:6.2f}x the output projection{rate}")


def parse_args() -> argparse.Namespace:
    """Command-line flags."""
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--rounds", type=int, default=3, help="timed alternating rounds after 1 warm-up")
    p.add_argument("--lengths", type=int, nargs="+", default=[64, 256])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--embed", type=int, default=128)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--vocab", type=int, default=7069)
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--clock", choices=CLOCKS, default="wall", help="what a second is")
    p.add_argument("--profile", action="store_true", help="first time each library call")
    p.add_argument("--loops", action="store_true", help="also time the step-by-step references")
    p.add_argument(
        "--no_tune_allocator",
        action="store_true",
        help="leave glibc malloc returning freed memory to the OS (for every peer)",
    )
    return p.parse_args()


def main() -> None:
    """Run every peer at every length and print the table."""
    args = parse_args()
    warnings.filterwarnings("ignore")  # the original's self.log without a Trainer warns per call
    if args.threads:
        torch.set_num_threads(args.threads)
    timer = clock(args.clock)
    print(
        "command: python benchmarks/train_step.py "
        + " ".join(
            f"--{k} {' '.join(map(str, v)) if isinstance(v, list) else v}"
            for k, v in vars(args).items()
        )
    )
    tuned = False if args.no_tune_allocator else tune_cpu_allocator()
    print(
        f"B={args.batch} E={args.embed} H={args.hidden} V={args.vocab} layers={args.layers}; row "
        f"lengths uniform in [T/2, T]; fp32; clock {args.clock}; tuned malloc {tuned}; "
        f"{machine_line()}"
    )
    if args.profile:
        profile_calls(args, timer)
    if args.rounds > 0:
        for length in args.lengths:
            compare_at(length, args, timer)
        print(
            f"s/step: median of {args.rounds} alternating rounds after 1 warm-up step per peer; "
            f"end: {machine_line()}"
        )
        print(
            "* mean step time of the forced and sampled sides: what training with "
            "teacher_forcing=0.5 averages to"
        )


if __name__ == "__main__":
    main()
