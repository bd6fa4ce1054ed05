"""The fused decoder's pieces: packed layout, inverse-CDF draw, given-output autograd functions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from quackae.model.fused import (
    BLOCK,
    draw,
    draw_from_logits,
    linear_cross_entropy,
    onednn_linear,
    packed_layout,
)
from quackae.model.gru import PackedGRU

pytestmark = pytest.mark.usefixtures("one_thread")


def test_packed_layout_orders_rows_longest_first_and_drops_finished_ones() -> None:
    lengths = torch.tensor([2, 5, 1, 5, 3])
    layout = packed_layout(lengths, steps=4)  # capped at 4 decoded steps
    assert layout.order.tolist() == [1, 3, 4, 0, 2]  # stable: equal lengths keep their order
    assert layout.sizes == [5, 4, 3, 2] and layout.offsets == [0, 5, 9, 12, 14]
    assert layout.total == int(lengths.clamp(max=4).sum())
    assert layout.times.tolist() == [0] * 5 + [1] * 4 + [2] * 3 + [3] * 2
    assert layout.rows[layout.span(2)].tolist() == [0, 1, 2]
    # prev: the same row one step earlier (or N + row at step 0)
    assert layout.prev[:5].tolist() == [14, 15, 16, 17, 18]
    assert layout.prev[layout.span(3)].tolist() == [9, 10]
    padded = torch.arange(5 * 4).view(5, 4)  # (sorted row, step)
    assert layout.gather(padded).tolist() == [0, 4, 8, 12, 16, 1, 5, 9, 13, 2, 6, 10, 3, 7]


@pytest.mark.parametrize("vocab", [7, BLOCK, 3 * BLOCK + 5])
def test_draw_samples_the_categorical_distribution(vocab: int) -> None:
    """Inverse-CDF draws against the exact probabilities; zero weights are never drawn."""
    gen = torch.Generator().manual_seed(vocab)
    logits = torch.randn(1, vocab, generator=gen, dtype=torch.float64) * 1.5
    logits[0, 2] = -1e4  # exp underflows to 0: never drawn
    n = 20000
    picks = draw_from_logits(logits.expand(n, -1).clone(), torch.rand(n, generator=gen))
    counts = np.bincount(picks.numpy(), minlength=vocab)
    assert counts[2] == 0
    probs = logits.softmax(dim=1)[0].numpy()
    keep = probs * n >= 5
    observed = np.append(counts[keep], counts[~keep].sum())
    expected = np.append(probs[keep], probs[~keep].sum()) * n
    if expected[-1] < 5:
        observed, expected = (
            observed[:-1],
            expected[:-1] * observed[:-1].sum() / expected[:-1].sum(),
        )
    assert stats.chisquare(observed, expected).pvalue > 1e-3
    # the edges: u = 0 picks the first positive weight, u -> 1 the last
    weights = torch.tensor([[0.0, 0.0, 1.0, 2.0, 0.0]])
    assert draw(weights, torch.tensor([0.0])).item() == 2
    assert draw(weights, torch.tensor([1 - 1e-9])).item() == 3


def test_linear_cross_entropy_matches_torch_in_value_and_gradient() -> None:
    gen = torch.Generator().manual_seed(0)
    y = torch.randn(37, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(11, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.randn(11, generator=gen, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 11, (37,), generator=gen)
    scale = torch.rand(37, generator=gen, dtype=torch.float64)
    losses, hits = linear_cross_entropy(y, w, b, targets, chunk=8)  # several chunks
    (losses * scale).sum().backward()
    got = [p.grad.clone() for p in (y, w, b)]
    for p in (y, w, b):
        p.grad = None
    logits = F.linear(y, w, b)
    want = F.cross_entropy(logits, targets, reduction="none")
    (want * scale).sum().backward()
    torch.testing.assert_close(losses, want)
    assert torch.equal(hits, logits.argmax(dim=1).eq(targets))
    for g, p in zip(got, (y, w, b), strict=True):
        torch.testing.assert_close(g, p.grad)
    with pytest.raises(RuntimeError, match="runs once"):
        lo, _ = linear_cross_entropy(y, w, b, targets)
        lo.sum().backward(retain_graph=True)
        lo.sum().backward()


def test_linear_cross_entropy_stays_finite_when_the_target_probability_underflows() -> None:
    y = torch.tensor([[1.0]], requires_grad=True)
    w = torch.tensor([[200.0], [-200.0]])
    losses, _ = linear_cross_entropy(y, w, torch.zeros(2), torch.tensor([1]))
    assert torch.isfinite(losses).all() and abs(float(losses[0].detach()) - 400.0) < 1e-3


def test_packed_gru_gradcheck_and_matches_cell_steps() -> None:
    gen = torch.Generator().manual_seed(1)
    lengths = torch.tensor([4, 1, 3, 4])
    layout = packed_layout(lengths, 4)
    feat, hid = 3, 5
    x = torch.randn(layout.total, feat, generator=gen, dtype=torch.float64, requires_grad=True)
    params = [
        torch.randn(*shape, generator=gen, dtype=torch.float64, requires_grad=True)
        for shape in ((3 * hid, feat), (3 * hid,), (3 * hid, hid), (3 * hid,), (4, hid))
    ]
    fn = lambda *a: PackedGRU.apply(*a[:6], layout, None)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, *params))
    # forward = nn.GRUCell stepped over each sorted row's own positions
    cell = torch.nn.GRUCell(feat, hid).double()
    with torch.no_grad():
        w_ih, b_ih, w_hh, b_hh = params[:4]
        for p, q in ((cell.weight_ih, w_ih), (cell.bias_ih, b_ih), (cell.weight_hh, w_hh)):
            p.copy_(q)
        cell.bias_hh.copy_(b_hh)
        out = fn(x, *params)
        for row in range(4):
            h = params[4][row : row + 1]
            for t in range(int(layout.lengths[row])):
                p = layout.offsets[t] + row
                h = cell(x[p : p + 1], h)
                torch.testing.assert_close(out[p : p + 1], h)


def test_onednn_linear_matches_addmm_or_is_absent() -> None:
    gen = torch.Generator().manual_seed(2)
    w, b = torch.randn(300, 16, generator=gen), torch.randn(300, generator=gen)
    project = onednn_linear(w, 8)
    if project is None:
        pytest.skip("oneDNN's prepacked linear is not available in this torch build")
    for rows in (8, 3, 1):
        x = torch.randn(rows, 16, generator=gen)
        torch.testing.assert_close(project(x, b), torch.addmm(b, x, w.t()))
    assert onednn_linear(w.double(), 8) is None  # fp32 only: others take addmm
