"""quackae.model.gru against torch's own GRU / GRUCell: outputs, final states and gradients."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from quackae.model.gru import FastGRU, GRUCellStack, gru_scan, native_gru, reverse_index, use_native

DT = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")


def _reference_gru(ref: nn.GRU, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
    """nn.GRU over a packed sequence, padded back to x's length."""
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, h_n = ref(packed)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    return out, h_n


def _grads(module: nn.Module) -> dict[str, Tensor]:
    """Parameter gradients by name."""
    return {k: p.grad.clone() for k, p in module.named_parameters()}


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("layers", [1, 2])
def test_fast_gru_matches_packed_nn_gru(bidirectional: bool, layers: int) -> None:
    torch.manual_seed(layers)
    ref = nn.GRU(5, 4, layers, batch_first=True, bidirectional=bidirectional).to(DT)
    fast = FastGRU(5, 4, layers, bidirectional=bidirectional).to(DT)
    fast.load_state_dict(ref.state_dict())
    lengths = torch.tensor([6, 2, 4, 1, 6])
    x = torch.randn(5, 6, 5, dtype=DT, requires_grad=True)
    out, h_n = fast(x, lengths)
    out_ref, h_ref = _reference_gru(ref, x, lengths)
    torch.testing.assert_close(out, out_ref)
    torch.testing.assert_close(h_n, h_ref)

    g_out, g_h = torch.randn_like(out), torch.randn_like(h_n)
    ((out * g_out).sum() + (h_n * g_h).sum()).backward()
    dx, x.grad = x.grad.clone(), None
    ((out_ref * g_out).sum() + (h_ref * g_h).sum()).backward()
    torch.testing.assert_close(dx, x.grad)
    got, want = _grads(fast), _grads(ref)
    assert got.keys() == want.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], msg=name)


def test_fast_gru_without_lengths_and_padding_outputs_zero() -> None:
    torch.manual_seed(0)
    ref = nn.GRU(3, 4, batch_first=True, bidirectional=True)
    fast = FastGRU(3, 4, bidirectional=True)
    fast.load_state_dict(ref.state_dict())
    x = torch.randn(2, 5, 3)
    out, h_n = fast(x)
    out_ref, h_ref = ref(x)
    torch.testing.assert_close(out, out_ref)
    torch.testing.assert_close(h_n, h_ref)
    out, _ = fast(x, torch.tensor([5, 3]))
    assert out[1, 3:].abs().max() == 0


def test_gru_scan_gradcheck() -> None:
    torch.manual_seed(0)
    d, t, b, h = 2, 4, 3, 3
    gi = torch.randn(d, t, b, 3 * h, dtype=DT, requires_grad=True)
    w = torch.randn(d, 3 * h, h, dtype=DT, requires_grad=True)
    bias = torch.randn(d, 3 * h, dtype=DT, requires_grad=True)
    h0 = torch.randn(d, b, h, dtype=DT, requires_grad=True)
    assert torch.autograd.gradcheck(gru_scan, (gi, w, bias, h0))


def test_fast_gru_gradcheck_variable_lengths() -> None:
    torch.manual_seed(1)
    fast = FastGRU(2, 3, 2, bidirectional=True).to(DT)
    x = torch.randn(3, 4, 2, dtype=DT, requires_grad=True)
    lengths = torch.tensor([4, 1, 3])

    def run(inp: Tensor) -> tuple[Tensor, Tensor]:
        return fast(inp, lengths)

    assert torch.autograd.gradcheck(run, (x,))


def _reference_cells(cells: nn.ModuleList, x: Tensor, h0: list[Tensor]) -> Tensor:
    """nn.GRUCell stack stepped in Python; top state per step (B, S, H)."""
    h = list(h0)
    tops = []
    for t in range(x.shape[1]):
        inp = x[:, t]
        for i, cell in enumerate(cells):
            inp = h[i] = cell(inp, h[i])
        tops.append(inp)
    return torch.stack(tops, dim=1)


@pytest.mark.parametrize("layers", [1, 3])
def test_cell_stack_sequence_and_step_match_nn_grucell(layers: int) -> None:
    torch.manual_seed(layers)
    ref = nn.ModuleList([nn.GRUCell(3 if i == 0 else 4, 4) for i in range(layers)]).to(DT)
    stack = GRUCellStack(3, 4, layers).to(DT)
    stack.cells.load_state_dict(ref.state_dict())
    x = torch.randn(2, 5, 3, dtype=DT)
    h0 = [torch.randn(2, 4, dtype=DT) for _ in range(layers)]

    want = _reference_cells(ref, x, h0)
    want.square().sum().backward()
    got = stack(x, h0)
    got.square().sum().backward()
    torch.testing.assert_close(got, want)
    ref_grads = {f"cells.{k}": v for k, v in _grads(ref).items()}
    for name, grad in _grads(stack).items():
        torch.testing.assert_close(grad, ref_grads[name], msg=name)

    h = h0
    for t in range(x.shape[1]):
        h = stack.step(x[:, t], h)
    torch.testing.assert_close(h[-1], want[:, -1])


def test_reverse_index_is_an_involution_within_length() -> None:
    idx = reverse_index(torch.tensor([3, 1, 4]), 4)
    assert idx[:, 0].tolist() == [2, 1, 0, 3]
    assert idx[:, 1].tolist() == [0, 1, 2, 3]
    assert idx[:, 2].tolist() == [3, 2, 1, 0]
    cols = torch.arange(3)
    assert torch.equal(idx[idx, cols], torch.arange(4).unsqueeze(1).expand(4, 3))


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("bidirectional", [True, False])
def test_no_grad_sorted_kernel_matches_training_scan_fp32(layers: int, bidirectional: bool) -> None:
    torch.manual_seed(layers)
    fast = FastGRU(6, 8, layers, bidirectional=bidirectional)
    x = torch.randn(7, 9, 6)
    lengths = torch.tensor([9, 1, 4, 9, 2, 7, 1])  # full rows, length-1 rows, ties
    weights = torch.rand(7, 9) * (torch.arange(9) < lengths.unsqueeze(1))
    out_scan, h_scan = fast(x, lengths)
    assert fast.last_kernel == "scan"
    with torch.no_grad():
        out, h_n = fast(x, lengths)
        assert fast.last_kernel == "sorted"
        none, h_only = fast(x, lengths, keep_states=False)
        pooled, h_pool = fast.pooled(x, lengths, weights)
        assert fast.last_kernel == "sorted"
    assert none is None
    torch.testing.assert_close(out, out_scan, atol=1e-5, rtol=0)
    for h in (h_n, h_only, h_pool):
        torch.testing.assert_close(h, h_scan, atol=1e-5, rtol=0)
    want = (out_scan * weights.unsqueeze(-1)).sum(dim=1)
    torch.testing.assert_close(pooled, want, atol=1e-5, rtol=0)
    assert out[1, 1:].abs().max() == 0  # padding stays zero


def test_sorted_kernel_when_every_row_is_shorter_than_the_batch() -> None:
    torch.manual_seed(3)
    fast = FastGRU(3, 4, bidirectional=True)
    x = torch.randn(3, 6, 3)
    lengths = torch.tensor([2, 4, 1])
    out_scan, h_scan = fast(x, lengths)
    with torch.inference_mode():
        out, h_n = fast(x, lengths)
    assert out.shape == out_scan.shape == (3, 6, 8)
    torch.testing.assert_close(out, out_scan, atol=1e-6, rtol=0)
    torch.testing.assert_close(h_n, h_scan, atol=1e-6, rtol=0)


@pytest.mark.parametrize("layers", [1, 2])
def test_native_kernel_path_matches_scans(layers: int) -> None:
    """The cuDNN path's packing, weight order and unsorting, run by torch's CPU GRU kernel here."""
    torch.manual_seed(layers)
    fast = FastGRU(5, 4, layers, bidirectional=True).to(DT)
    x = torch.randn(5, 6, 5, dtype=DT)
    lengths = torch.tensor([6, 2, 4, 1, 6])
    out_scan, h_scan = fast(x, lengths)
    hx = x.new_zeros(2 * layers, 5, 4)
    out, h_n = native_gru(x, lengths, fast.flat_weights(), hx, layers, True)
    torch.testing.assert_close(out, out_scan)
    torch.testing.assert_close(h_n, h_scan)

    stack = GRUCellStack(5, 4, layers).to(DT)
    h0 = [torch.randn(5, 4, dtype=DT) for _ in range(layers)]
    weights = [w for c in stack.cells for w in (c.weight_ih, c.weight_hh, c.bias_ih, c.bias_hh)]
    top, _ = native_gru(x, None, weights, torch.stack(h0), layers, False)
    torch.testing.assert_close(top, stack(x, h0))
    assert stack.last_kernel == "scan" and not use_native(x)
