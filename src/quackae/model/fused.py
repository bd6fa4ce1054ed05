"""Pieces of the sampled decoder that compute each value once: packed layout, draws, given outputs.

A sampled decoder step needs the previous step's prediction, so its forward runs one Python step
per token. Its backward does not: once the rollout has run, every decoder input is known. The
rollout therefore runs without autograd and writes what the backward needs into preallocated
buffers laid out as a packed sequence (:class:`Packed`: step ``t`` holds the ``n_t`` rows, sorted
longest first, that still have a real target at ``t``; finished rows drop out). Autograd then
sees the decoder as a few functions whose forward returns the buffer the rollout filled
(:class:`LinearGiven`, :class:`LinearCrossEntropyGiven`, :class:`quackae.model.gru.PackedGRU`)
and whose backward is one large matmul per weight over all ``N`` real positions: no forward
matmul runs twice.

The draw (:func:`draw`) is exact sampling from the softmax by inverse CDF: one uniform per row
against running sums of ``exp(logit - max)``, the distribution ``torch.multinomial`` samples, for
a block reduction and two small cumulative sums instead of one exponential variate per vocabulary
entry (``torch.multinomial`` on CPU draws an exponential per entry, with or without replacement at
one sample: it cost as much as the step's output projection).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "BLOCK",
    "LinearCrossEntropyGiven",
    "LinearGiven",
    "Packed",
    "SoftmaxStats",
    "block_sums",
    "draw",
    "draw_from_logits",
    "linear_cross_entropy",
    "new_stats",
    "onednn_linear",
    "packed_layout",
    "softmax_stats",
]


@dataclass(frozen=True)
class Packed:
    """A packed-sequence layout of rows sorted longest first (as ``PackedSequence``).

    Position ``p`` of the packed axis is (time ``times[p]``, sorted row ``rows[p]``); step ``t``
    occupies ``offsets[t] : offsets[t] + sizes[t]``, its rows ``0 .. sizes[t] - 1``.
    """

    order: Tensor  #: (B,) original row of each sorted row
    lengths: Tensor  #: (B,) sorted lengths, capped at the decoded steps
    sizes: list[int]  #: rows still running at each step, non-increasing
    offsets: list[int]  #: start of each step on the packed axis; offsets[-1] = N
    rows: Tensor  #: (N,) sorted row of each position
    times: Tensor  #: (N,) step of each position
    prev: Tensor  #: (N,) position of the same row one step earlier; N + row at step 0

    @property
    def total(self) -> int:
        """N, the number of packed positions (real targets)."""
        return self.offsets[-1]

    def span(self, t: int) -> slice:
        """The packed positions of step ``t``."""
        return slice(self.offsets[t], self.offsets[t] + self.sizes[t])

    def gather(self, padded: Tensor) -> Tensor:
        """Packed (N, ...) values of a sorted, batch-first (B, S, ...) tensor."""
        return padded[self.rows, self.times]


def packed_layout(lengths: Tensor, steps: int) -> Packed:
    """The layout of rows with ``lengths`` real positions (each >= 1), capped at ``steps``."""
    capped = lengths.clamp(max=steps)
    sorted_lengths, order = capped.sort(descending=True, stable=True)
    span = int(sorted_lengths[0])
    counts = torch.bincount(sorted_lengths.cpu(), minlength=span + 1)[:span]
    sizes_t = len(sorted_lengths) - counts.cumsum(0)  # rows with length > t
    sizes = sizes_t.tolist()
    offsets_t = torch.cat([sizes_t.new_zeros(1), sizes_t.cumsum(0)])
    offsets = offsets_t.tolist()
    device = lengths.device
    times = torch.repeat_interleave(torch.arange(span), sizes_t).to(device)
    off = offsets_t.to(device)
    rows = torch.arange(offsets[-1], device=device) - off[times]
    prev = torch.where(times > 0, off[(times - 1).clamp(min=0)] + rows, offsets[-1] + rows)
    return Packed(order, sorted_lengths, sizes, offsets, rows, times, prev)


#: Width of the blocks :func:`draw` sums first (a vectorised reduction) before one cumulative sum
#: over the block totals and one within the chosen block.
BLOCK = 64


@dataclass
class SoftmaxStats:
    """What :func:`softmax_stats` writes per row (n,): the loss, the hit, the normaliser."""

    losses: Tensor  #: cross-entropy of the target, ``logsumexp - logit[target]``
    hits: Tensor  #: whether the target's logit is the row's maximum
    inv_totals: Tensor  #: ``1 / sum_j exp(logit_j - max)``: the softmax is ``weights * this``


def softmax_stats(
    logits: Tensor, weights: Tensor, targets: Tensor, stats: SoftmaxStats, blocks: bool
) -> Tensor | None:
    """Write ``exp(logits - max)`` into ``weights`` (n, V) and each row's loss, hit, normaliser.

    ``weights`` may be ``logits`` itself (in place). The loss comes from the max-shifted target
    logit, so it stays finite when the target's probability underflows. The softmax itself is
    left unnormalised (``weights * inv_totals``): the backward folds the scale into its one pass.
    With ``blocks``, returns the sums of ``BLOCK``-wide column blocks (n, ceil(V / BLOCK)) for
    :func:`draw`, and the totals come from them.
    """
    top = logits.amax(dim=1, keepdim=True)
    torch.sub(logits, top, out=weights)
    shifted_target = weights.gather(1, targets.unsqueeze(1)).squeeze(1)
    torch.eq(shifted_target, 0, out=stats.hits)
    weights.exp_()
    sums = block_sums(weights) if blocks else None
    totals = sums.sum(dim=1) if sums is not None else weights.sum(dim=1)
    torch.sub(totals.log(), shifted_target, out=stats.losses)
    torch.reciprocal(totals, out=stats.inv_totals)
    return sums


def block_sums(weights: Tensor) -> Tensor:
    """Sums of ``BLOCK``-wide column blocks of ``weights`` (n, V): (n, ceil(V / BLOCK))."""
    n, vocab = weights.shape
    full = vocab // BLOCK
    parts = [weights[:, : full * BLOCK].reshape(n, full, BLOCK).sum(dim=2)]
    if vocab > full * BLOCK:
        parts.append(weights[:, full * BLOCK :].sum(dim=1, keepdim=True))
    return torch.cat(parts, dim=1)


def draw(weights: Tensor, uniform: Tensor, sums: Tensor | None = None) -> Tensor:
    """One index per row of ``weights`` (n, V) >= 0, with probability ``w_j / sum_j w_j``.

    Inverse CDF with one uniform per row (``uniform`` (n,) in [0, 1)): the first block whose
    running block total passes ``u * total``, then the first column of that block whose running
    sum passes what is left; a zero weight is never picked (up to float rounding at a boundary).
    That is the categorical distribution ``torch.multinomial(weights, 1)`` samples, for a
    reduction and two small cumulative sums instead of one exponential variate per entry.
    ``sums`` are the block sums (:func:`block_sums`) when already computed.
    """
    n, vocab = weights.shape
    if sums is None:
        sums = block_sums(weights)
    running = sums.cumsum(dim=1)
    total = running[:, -1:]
    # u * total < total, also after rounding: some block's running sum passes the target
    target = torch.minimum(
        uniform.to(weights.dtype).unsqueeze(1) * total, total.nextafter(0 * total)
    )
    block = torch.searchsorted(running, target, right=True).clamp_(max=sums.shape[1] - 1)
    before = torch.where(block > 0, running.gather(1, (block - 1).clamp(min=0)), 0.0)
    start = block * BLOCK  # (n, 1)
    offsets = torch.arange(BLOCK, device=weights.device)
    cols = start + offsets
    within = weights.gather(1, cols.clamp(max=vocab - 1)) * (cols < vocab)
    picked = torch.searchsorted(within.cumsum(dim=1), target - before, right=True)
    # rounding between the block total and the sum inside it: stay on a positive weight
    last = torch.where(within > 0, offsets, -1).amax(dim=1, keepdim=True)
    # clamped into the vocabulary: NaN weights (a diverged model) still give valid ids, and the
    # NaN loss then stops training (check_finite)
    return (start + torch.minimum(picked, last)).squeeze(1).clamp_(0, vocab - 1)


def draw_from_logits(logits: Tensor, uniform: Tensor) -> Tensor:
    """:func:`draw` from the softmax of ``logits`` (n, V): the seed's multinomial feedback."""
    return draw((logits - logits.amax(dim=1, keepdim=True)).exp_(), uniform)


def onednn_linear(weight: Tensor, rows: int):
    """``x -> x @ weight.T`` through oneDNN with the weight packed once, or None where it fails.

    For the rollout's per-step output projection, a (rows, H) by (H, V) product with a weight
    that stays fixed for the whole rollout: oneDNN's prepacked kernel (the one torch's Inductor
    uses on CPU) ran it at 65 GFLOP/s where ``addmm`` ran at 47 (one thread, this machine,
    ``benchmarks/train_step.py --profile``). fp32 CPU tensors only; any error falls back.
    """
    if weight.device.type != "cpu" or weight.dtype != torch.float32:
        return None
    try:
        packed = torch.ops.mkldnn._reorder_linear_weight(weight, rows)
        probe = weight.new_zeros(1, weight.shape[1])
        torch.ops.mkldnn._linear_pointwise(probe, packed, None, "none", [], "")
    except (RuntimeError, AttributeError, NotImplementedError):
        return None

    def apply(x: Tensor, bias: Tensor) -> Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")

    return apply


class LinearGiven(torch.autograd.Function):
    """``x @ w.T + b`` whose value ``out`` a no-grad pass already computed; backward only.

    The backward uses the ``x`` autograd passes in (the replay's value of what the rollout fed),
    so gradients are those of the linear map at the rollout's point.
    """

    @staticmethod
    def forward(ctx, x: Tensor, w: Tensor, b: Tensor, out: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, w)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor, Tensor, None]:  # type: ignore[override]
        x, w = ctx.saved_tensors
        return grad @ w, grad.t() @ x, grad.sum(0), None


class LinearCrossEntropyGiven(torch.autograd.Function):
    """Per-position cross-entropy (N,) of the logits ``y @ w.T + b``, given by a no-grad pass.

    ``weights`` (N, V) and ``stats`` are what :func:`softmax_stats` left. The backward turns the
    weights in place into the loss's gradient with respect to the logits,
    ``(softmax - onehot(target)) * grad`` (so it runs once: the buffer is consumed), and returns
    one matmul per input; the logits themselves are never kept.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx, y: Tensor, w: Tensor, b: Tensor, weights: Tensor, stats: SoftmaxStats, targets: Tensor
    ) -> Tensor:
        ctx.save_for_backward(y, w)
        ctx.buffers = (weights, stats.inv_totals, targets)
        return stats.losses

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        y, w = ctx.saved_tensors
        if ctx.buffers is None:
            raise RuntimeError(
                "a fused cross-entropy's backward runs once (its buffer is consumed)"
            )
        dlogits, inv_totals, targets = ctx.buffers
        ctx.buffers = None
        dlogits.mul_((grad * inv_totals).unsqueeze(1))
        dlogits.scatter_add_(1, targets.unsqueeze(1), -grad.unsqueeze(1).to(dlogits.dtype))
        return dlogits @ w, dlogits.t() @ y, dlogits.sum(0), None, None, None


def new_stats(like: Tensor, n: int) -> SoftmaxStats:
    """Uninitialised :class:`SoftmaxStats` for ``n`` rows."""
    hits = torch.empty(n, dtype=torch.bool, device=like.device)
    return SoftmaxStats(like.new_empty(n), hits, like.new_empty(n))


def linear_cross_entropy(
    y: Tensor, w: Tensor, b: Tensor, targets: Tensor, chunk: int = 1024
) -> tuple[Tensor, Tensor]:
    """Per-row cross-entropy (N,) of ``y @ w.T + b`` against ``targets``, and the hits (N,).

    The logits are computed without autograd ``chunk`` rows at a time (through oneDNN's
    prepacked kernel where available: 73-76 GFLOP/s against ``addmm``'s 55 on (1024, 512) by
    (512, 7069), one thread) and turned at once, while in cache, into what the backward needs
    (:func:`softmax_stats`); the backward is :class:`LinearCrossEntropyGiven`'s: no log-softmax
    is kept or differentiated.
    """
    with torch.no_grad():
        weights = y.new_empty(len(y), w.shape[0])
        stats = new_stats(y, len(y))
        project = onednn_linear(w, min(chunk, len(y)))
        w_t = w.t().contiguous() if project is None else None
        for start in range(0, len(y), chunk):
            rows = slice(start, start + chunk)
            part = SoftmaxStats(stats.losses[rows], stats.hits[rows], stats.inv_totals[rows])
            if project is None:
                logits = torch.addmm(b, y[rows], w_t, out=weights[rows])
            else:
                logits = project(y[rows], b)
            softmax_stats(logits, weights[rows], targets[rows], part, blocks=False)
    return LinearCrossEntropyGiven.apply(y, w, b, weights, stats, targets), stats.hits
