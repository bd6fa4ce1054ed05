"""Fast GRU recurrences for CPU training.

The GRU (Cho et al., 2014, "Learning Phrase Representations using RNN Encoder-Decoder for
Statistical Machine Translation") with PyTorch's gate order and equations::

    r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
    z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
    h' = (1 - z) * n + z * h

Why not ``nn.GRU`` / ``nn.GRUCell``: on CPU their training backward slices the output per
time step and zero-fills a full-size gradient buffer for every slice, so a step costs O(T^2).
Here the input-to-hidden part is one matmul over all steps (done by ordinary autograd ops),
and only the hidden-to-hidden part runs per step, inside :class:`_GRUScan`, an autograd
Function with a hand-written backward: buffers are allocated once, the loop over t runs
backwards computing only ``dh``, and ``dW_hh`` is one matmul over all steps at the end.

Without autograd (encoding) there is no backward to save for: :func:`gru_infer` runs the
rows sorted by length, longest first, so step ``t`` multiplies only the rows still running
(as a packed ``nn.GRU`` does) while the input gates of all steps and both directions stay one
matmul; nothing per step is kept but the states asked for. On CUDA every recurrence that can
be one (the encoder, the teacher-forced decoder scan) runs as cuDNN's GRU (:func:`native_gru`),
with or without autograd.

Parameters use the names and shapes of ``nn.GRU`` (``weight_ih_l0``, ``weight_hh_l0_reverse``,
...) and ``nn.GRUCell`` (``cells.0.weight_ih``, ...), so weights copy over with
``load_state_dict``.
"""

from __future__ import annotations

import ctypes
import math
from typing import TYPE_CHECKING, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

if TYPE_CHECKING:
    from quackae.model.fused import Packed

__all__ = [
    "FastGRU",
    "GRUCellStack",
    "PackedGRU",
    "PackedGRUState",
    "empty_state",
    "flatten_for_cudnn",
    "is_flat",
    "packed_cell_",
    "gru_cell",
    "gru_infer",
    "gru_scan",
    "native_gru",
    "reverse_index",
    "tune_cpu_allocator",
    "use_native",
]

#: Which recurrence ran last in :class:`FastGRU` / :class:`GRUCellStack` (``last_kernel``):
#: ``"scan"`` the autograd scan, ``"sorted"`` the no-grad length-sorted kernel, ``"native"``
#: torch's own GRU kernel (cuDNN on CUDA).
KERNELS = ("scan", "sorted", "native")


class _GRUScan(torch.autograd.Function):
    """The hidden-to-hidden recurrence of ``D`` independent GRUs (e.g. two directions) at once.

    Inputs: ``gi`` (D, T, B, 3H) input gates with ``b_ih`` already added, ``w_hh`` (D, 3H, H),
    ``b_hh`` (D, 3H), ``h0`` (D, B, H). Output: hidden states (D, T, B, H).
    """

    @staticmethod
    @torch.amp.custom_fwd(
        device_type="cpu", cast_inputs=torch.float32
    )  # under autocast: scan in fp32
    def forward(ctx, gi: Tensor, w_hh: Tensor, b_hh: Tensor, h0: Tensor) -> Tensor:  # type: ignore[override]
        d, steps, b, g = gi.shape
        hid = g // 3
        out = gi.new_empty(d, steps, b, hid)
        rz = gi.new_empty(d, steps, b, 2 * hid)  # sigmoid gates r, z
        n = gi.new_empty(d, steps, b, hid)  # candidate state
        ghn = gi.new_empty(d, steps, b, hid)  # W_hn h + b_hn (needed for dr)
        w_t = w_hh.transpose(1, 2)
        bias = b_hh.unsqueeze(1)
        h = h0
        for t in range(steps):
            gh = torch.baddbmm(bias, h, w_t)  # (D, B, 3H)
            g_t = gi[:, t]
            torch.sigmoid(g_t[..., : 2 * hid] + gh[..., : 2 * hid], out=rz[:, t])
            ghn[:, t] = gh[..., 2 * hid :]
            torch.tanh(
                torch.addcmul(g_t[..., 2 * hid :], rz[:, t, :, :hid], gh[..., 2 * hid :]),
                out=n[:, t],
            )
            torch.lerp(n[:, t], h, rz[:, t, :, hid:], out=out[:, t])  # n + z (h - n)
            h = out[:, t]
        ctx.save_for_backward(w_hh, h0, out, rz, n, ghn)
        return out

    @staticmethod
    @torch.amp.custom_bwd(device_type="cpu")
    def backward(ctx, dout: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:  # type: ignore[override]
        w_hh, h0, out, rz, n, ghn = ctx.saved_tensors
        d, steps, b, hid = out.shape
        dgi = out.new_empty(d, steps, b, 3 * hid)  # gradient of the input gates (returned)
        dghn = out.new_empty(d, steps, b, hid)  # gradient of W_hn h + b_hn = dgi_n * r
        w_rz, w_n = w_hh[:, : 2 * hid], w_hh[:, 2 * hid :]
        dh = torch.zeros_like(h0)
        for t in range(steps - 1, -1, -1):
            h_prev = out[:, t - 1] if t else h0
            r, z, n_t = rz[:, t, :, :hid], rz[:, t, :, hid:], n[:, t]
            dh = dh + dout[:, t]
            dn = dh - dh * z  # dh (1 - z)
            dn_pre = torch.addcmul(dn, dn * n_t, n_t, value=-1, out=dgi[:, t, :, 2 * hid :])
            torch.mul(dn_pre * ghn[:, t], r - r * r, out=dgi[:, t, :, :hid])
            torch.mul(dh * (h_prev - n_t), z - z * z, out=dgi[:, t, :, hid : 2 * hid])
            torch.mul(dn_pre, r, out=dghn[:, t])
            dh = torch.baddbmm(dh * z, dgi[:, t, :, : 2 * hid], w_rz)
            dh = torch.baddbmm(dh, dghn[:, t], w_n)
        dw = torch.cat([_outer_sum(dgi[..., : 2 * hid], out, h0), _outer_sum(dghn, out, h0)], dim=1)
        db = torch.cat([dgi[..., : 2 * hid].sum(dim=(1, 2)), dghn.sum(dim=(1, 2))], dim=1)
        return dgi, dw, db, dh


class PackedGRUState(NamedTuple):
    """What one GRU layer's forward over a packed sequence keeps for its backward, (N, ...) each.

    ``gates`` holds ``[r ; z ; W_hn h + b_hn]`` (N, 3H), ``cand`` the candidate ``n``, ``out`` the
    new states.
    """

    out: Tensor
    gates: Tensor
    cand: Tensor


def packed_cell_(
    gi: Tensor, h: Tensor, w_hh_t: Tensor, b_hh: Tensor, state: PackedGRUState, span: slice
) -> Tensor:
    """One GRU step of ``n`` rows, written into ``state[span]``; returns the new states (n, H).

    ``gi`` (n, 3H) are the input gates with ``b_ih`` added, ``h`` (n, H) the previous states,
    ``w_hh_t`` the transposed (H, 3H) recurrent weight. Fused: one ``addmm`` for all three hidden
    gates, then four in-place elementwise calls (add + sigmoid on r and z, addcmul + tanh, lerp).
    """
    hid = h.shape[1]
    gates, cand, out = state.gates[span], state.cand[span], state.out[span]
    torch.addmm(b_hh, h, w_hh_t, out=gates)
    gates[:, : 2 * hid].add_(gi[:, : 2 * hid]).sigmoid_()
    torch.addcmul(gi[:, 2 * hid :], gates[:, :hid], gates[:, 2 * hid :], out=cand).tanh_()
    return torch.lerp(cand, h, gates[:, hid : 2 * hid], out=out)  # n + z (h - n)


def empty_state(like: Tensor, total: int, hid: int) -> PackedGRUState:
    """Uninitialised buffers for a layer's packed forward of ``total`` positions."""
    return PackedGRUState(
        like.new_empty(total, hid), like.new_empty(total, 3 * hid), like.new_empty(total, hid)
    )


class PackedGRU(torch.autograd.Function):
    """One GRU layer over a packed sequence (rows sorted longest first; finished rows drop out).

    Inputs: ``x`` (N, F) the layer's inputs at every packed position, the layer's four weights,
    ``h0`` (B, H) initial states of the sorted rows, the :class:`~quackae.model.fused.Packed`
    layout, and optionally the ``given`` :class:`PackedGRUState` a no-grad pass (the sampled
    decoder's rollout) already computed with the same inputs; then the forward only returns
    ``given.out``. Output: the states (N, H). The backward runs the recurrence backwards over the
    running rows only and then forms every weight gradient as one matmul over all N positions.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        x: Tensor,
        w_ih: Tensor,
        b_ih: Tensor,
        w_hh: Tensor,
        b_hh: Tensor,
        h0: Tensor,
        layout: Packed,
        given: PackedGRUState | None = None,
    ) -> Tensor:
        hid = h0.shape[1]
        state = given
        if state is None:
            gi = torch.addmm(b_ih, x, w_ih.t())
            state = empty_state(h0, layout.total, hid)
            h, w_t = h0, w_hh.t()
            for t in range(len(layout.sizes)):
                span = layout.span(t)
                h = packed_cell_(gi[span], h[: layout.sizes[t]], w_t, b_hh, state, span)
        ctx.layout = layout
        ctx.save_for_backward(x, w_ih, w_hh, h0, *state)
        return state.out

    @staticmethod
    def backward(ctx, dout: Tensor):  # type: ignore[override]
        x, w_ih, w_hh, h0, out, gates, cand = ctx.saved_tensors
        layout: Packed = ctx.layout
        hid = h0.shape[1]
        dgh = out.new_empty(layout.total, 3 * hid)  # [dr ; dz ; d(W_hn h + b_hn)]
        dgi_n = out.new_empty(layout.total, hid)  # d(W_in x + b_in)
        dh = torch.zeros_like(h0)
        for t in range(len(layout.sizes) - 1, -1, -1):
            n, span = layout.sizes[t], layout.span(t)
            if t:
                start = layout.offsets[t - 1]
                h_prev = out[start : start + n]
            else:
                h_prev = h0[:n]
            r, z = gates[span, :hid], gates[span, hid : 2 * hid]
            ghn, c = gates[span, 2 * hid :], cand[span]
            d = dh[:n].add_(dout[span])
            dn_pre = torch.mul(d - d * z, 1 - c * c, out=dgi_n[span])
            torch.mul(dn_pre * ghn, r - r * r, out=dgh[span, :hid])
            torch.mul(d * (h_prev - c), z - z * z, out=dgh[span, hid : 2 * hid])
            torch.mul(dn_pre, r, out=dgh[span, 2 * hid :])
            dh[:n] = torch.addmm(d * z, dgh[span], w_hh)
        h_prev_all = torch.cat([out, h0]).index_select(0, layout.prev)
        dgi = torch.cat([dgh[:, : 2 * hid], dgi_n], dim=1)
        return (
            dgi @ w_ih,
            dgi.t() @ x,
            dgi.sum(0),
            dgh.t() @ h_prev_all,
            dgh.sum(0),
            dh,
            None,
            None,
        )


def _outer_sum(grad: Tensor, out: Tensor, h0: Tensor) -> Tensor:
    """``sum_t grad[:, t]^T h_{t-1}`` (D, G, H) with ``h_{-1} = h0``, as two matmuls."""
    d, steps, b, g = grad.shape
    hid = out.shape[-1]
    acc = torch.bmm(grad[:, 0].transpose(1, 2), h0)
    if steps > 1:
        later = grad[:, 1:].reshape(d, (steps - 1) * b, g)
        acc = torch.baddbmm(
            acc, later.transpose(1, 2), out[:, :-1].reshape(d, (steps - 1) * b, hid)
        )
    return acc


def gru_scan(gi: Tensor, w_hh: Tensor, b_hh: Tensor, h0: Tensor) -> Tensor:
    """Run ``D`` GRU recurrences over precomputed input gates; see :class:`_GRUScan`.

    Returns the hidden state after every step, shape (D, T, B, H).
    """
    return _GRUScan.apply(gi, w_hh, b_hh, h0)


def active_rows(sorted_lengths: Tensor) -> list[int]:
    """Rows still running at each step ``t`` (length > t) of rows sorted longest first."""
    steps = int(sorted_lengths[0]) if len(sorted_lengths) else 0
    ends = torch.bincount(sorted_lengths.cpu(), minlength=steps + 1)[:steps]
    return (len(sorted_lengths) - ends.cumsum(0)).tolist()


def gru_infer(
    gi: Tensor,
    w_hh: Tensor,
    b_hh: Tensor,
    active: list[int],
    keep_states: bool = True,
    pool: Tensor | None = None,
    ids: Tensor | None = None,
) -> tuple[Tensor | None, Tensor]:
    """``D`` GRU recurrences without autograd over rows sorted longest first; h0 = 0.

    ``gi`` (D, T, B, 3H) input gates with ``b_ih`` added (overwritten: used as scratch);
    ``active[t]`` rows run at step t. Returns the states (D, T, B, H), zero where a row has
    ended (None unless ``keep_states``), and each row's state at its own end, (D, B, H).
    With ``pool`` (D, T, B, 1) weights, the first result is instead ``sum_t pool * state``,
    (D, B, H), accumulated as the scan goes. With token ``ids`` (D, T, B), ``gi`` is instead a
    per-token gate table (D, V, 3H) and step t gathers only its running rows' gates into a small
    reused buffer (no (D, T, B, 3H) tensor is written). One ``addmm`` per direction and step
    touches only the running rows.
    """
    d, steps, b = ids.shape if ids is not None else gi.shape[:3]
    g = gi.shape[-1]
    hid = g // 3
    step_gates = gi.new_empty(d, b, g) if ids is not None else None
    h = gi.new_zeros(d, b, hid)
    gh = gi.new_empty(d, b, g)
    out = gi.new_empty(d, steps, b, hid) if keep_states and pool is None else None
    acc = gi.new_zeros(d, b, hid) if pool is not None else None
    w_t = [w_hh[i].t() for i in range(d)]
    for t in range(steps):
        n = active[t]
        for i in range(d):
            torch.addmm(b_hh[i], h[i, :n], w_t[i], out=gh[i, :n])
            if step_gates is not None:
                torch.index_select(gi[i], 0, ids[i, t, :n], out=step_gates[i, :n])
        g_t = gi[:, t, :n] if step_gates is None else step_gates[:, :n]
        gh_t, h_t = gh[:, :n], h[:, :n]
        rz = g_t[..., : 2 * hid].add_(gh_t[..., : 2 * hid]).sigmoid_()
        cand = g_t[..., 2 * hid :].addcmul_(rz[..., :hid], gh_t[..., 2 * hid :]).tanh_()
        torch.lerp(cand, h_t, rz[..., hid:], out=h_t)  # n + z (h - n), in place
        if out is not None:
            out[:, t, :n] = h_t
            out[:, t, n:] = 0
        if acc is not None:
            acc[:, :n].addcmul_(pool[:, t, :n], h_t)
    return (acc if acc is not None else out), h


def use_native(x: Tensor) -> bool:
    """True where torch's own GRU kernel beats the scans: CUDA (cuDNN)."""
    return x.is_cuda


def flatten_for_cudnn(
    weights: list[Tensor], input_size: int, hidden_size: int, num_layers: int, bidirectional: bool
) -> bool:
    """Make ``weights`` views of one buffer in cuDNN's layout, as ``nn.GRU.flatten_parameters``.

    ``weights`` are per layer and direction ``[w_ih, w_hh, b_ih, b_hh]`` (``nn.GRU``'s order).
    Without it cuDNN copies separate weight tensors into one chunk on every call (and warns
    "RNN module weights are not part of single contiguous chunk of memory"). The parameters stay
    the same objects (an optimizer holding them is unaffected). Returns whether it flattened: only
    CUDA tensors of one dtype that cuDNN accepts, none aliasing another.
    """
    first = weights[0]
    for w in weights:
        if w.dtype != first.dtype or not w.is_cuda or not torch.backends.cudnn.is_acceptable(w):
            return False
    if len({w.data_ptr() for w in weights}) != len(weights):
        return False
    import torch.backends.cudnn.rnn as cudnn_rnn

    with torch.cuda.device_of(first), torch.no_grad():
        if not torch._use_cudnn_rnn_flatten_weight():
            return False
        torch._cudnn_rnn_flatten_weight(
            weights,
            4,
            input_size,
            cudnn_rnn.get_cudnn_mode("GRU"),
            hidden_size,
            0,
            num_layers,
            True,
            bidirectional,
        )
    return True


def is_flat(weights: list[Tensor]) -> bool:
    """Whether ``weights`` all live in one storage (what :func:`flatten_for_cudnn` makes)."""
    return len({w.untyped_storage().data_ptr() for w in weights}) == 1


def native_gru(
    x: Tensor,
    lengths: Tensor | None,
    weights: list[Tensor],
    hx: Tensor,
    num_layers: int,
    bidirectional: bool,
    keep_states: bool = True,
) -> tuple[Tensor | None, Tensor]:
    """Torch's GRU kernel (cuDNN on CUDA) over ``x`` (B, T, F), packed by ``lengths`` if given.

    ``weights`` are per layer and direction ``[w_ih, w_hh, b_ih, b_hh]``, ``hx`` the initial
    states (layers*D, B, H). Returns outputs (B, T, D*H), zero at padding (None when a packed call
    need not ``keep_states``: no unpacking kernels), and the final states (layers*D, B, H) at each
    row's real end: what ``nn.GRU`` gives for the same weights.
    """
    train = torch.is_grad_enabled()  # cuDNN's backward needs its training-mode workspace
    if lengths is None:
        out, h_n = torch._VF.gru(x, hx, weights, True, num_layers, 0.0, train, bidirectional, True)
        return out, h_n
    packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    hx = hx.index_select(1, packed.sorted_indices)
    data, h_n = torch._VF.gru(
        packed.data, packed.batch_sizes, hx, weights, True, num_layers, 0.0, train, bidirectional
    )
    if not keep_states:
        return None, h_n.index_select(1, packed.unsorted_indices)
    out, _ = pad_packed_sequence(
        packed._replace(data=data), batch_first=True, total_length=x.shape[1]
    )
    return out, h_n.index_select(1, packed.unsorted_indices)


def gru_cell(
    x: Tensor | None,
    h: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor,
    b_hh: Tensor,
    gi: Tensor | None = None,
) -> Tensor:
    """One GRU step with plain autograd ops (for loops that cannot be scanned).

    ``gi`` may carry a precomputed ``x @ w_ih.T + b_ih``; then ``x`` is ignored.
    """
    hid = h.shape[-1]
    if gi is None:
        if x is None:
            raise ValueError("gru_cell needs x or gi")
        gi = F.linear(x, w_ih, b_ih)
    # under autocast the linear layers may come back in bf16: keep the state in h's dtype
    gi, gh = gi.to(h.dtype), F.linear(h, w_hh, b_hh).to(h.dtype)
    rz = torch.sigmoid(gi[:, : 2 * hid] + gh[:, : 2 * hid])
    n = torch.tanh(torch.addcmul(gi[:, 2 * hid :], rz[:, :hid], gh[:, 2 * hid :]))
    return torch.lerp(n, h, rz[:, hid:])


def reverse_index(lengths: Tensor, steps: int) -> Tensor:
    """Time index (T, B) that reverses each sequence within its own length.

    Position ``t < len`` maps to ``len - 1 - t``; padding maps to itself. Applying it twice
    is the identity, so the same index reverses and un-reverses.
    """
    t = torch.arange(steps, device=lengths.device).unsqueeze(1)
    ln = lengths.unsqueeze(0)
    return torch.where(t < ln, ln - 1 - t, t)


def _time_gather(x: Tensor, index: Tensor) -> Tensor:
    """Gather a time-major (T, B, F) tensor with a (T, B) time index."""
    batch = torch.arange(x.shape[1], device=x.device).unsqueeze(0)
    return x[index, batch]


class FastGRU(nn.Module):
    """Multi-layer, optionally bidirectional GRU over right-padded batches (``batch_first``).

    Same results as ``nn.GRU`` run on a packed sequence: the reverse direction of each
    sequence starts at its own last real token, the final state of each direction is the
    state at the sequence's real end, and outputs at padding are zero.
    """

    def __init__(
        self, input_size: int, hidden_size: int, num_layers: int = 1, bidirectional: bool = False
    ) -> None:
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.num_directions = 2 if bidirectional else 1
        self.last_kernel = ""  # which of KERNELS ran last
        for layer in range(num_layers):
            layer_in = input_size if layer == 0 else hidden_size * self.num_directions
            for sfx in self._suffixes():
                self.register_parameter(
                    f"weight_ih_l{layer}{sfx}", nn.Parameter(torch.empty(3 * hidden_size, layer_in))
                )
                self.register_parameter(
                    f"weight_hh_l{layer}{sfx}",
                    nn.Parameter(torch.empty(3 * hidden_size, hidden_size)),
                )
                self.register_parameter(
                    f"bias_ih_l{layer}{sfx}", nn.Parameter(torch.empty(3 * hidden_size))
                )
                self.register_parameter(
                    f"bias_hh_l{layer}{sfx}", nn.Parameter(torch.empty(3 * hidden_size))
                )
        self.reset_parameters()

    def _apply(self, fn, recurse: bool = True):  # type: ignore[override]
        """Move or cast as ``nn.Module`` does, then :meth:`flatten_parameters` (as ``nn.GRU``)."""
        out = super()._apply(fn, recurse)
        self.flatten_parameters()
        return out

    def flatten_parameters(self) -> bool:
        """One cuDNN weight buffer for all parameters on CUDA (:func:`flatten_for_cudnn`)."""
        return flatten_for_cudnn(
            self.flat_weights(),
            self.input_size,
            self.hidden_size,
            self.num_layers,
            self.num_directions == 2,
        )

    def _suffixes(self) -> list[str]:
        """Parameter-name suffix per direction, as in ``nn.GRU``."""
        return ["", "_reverse"][: self.num_directions]

    def reset_parameters(self) -> None:
        """Uniform(-1/sqrt(H), 1/sqrt(H)) initialisation, as ``nn.GRU``."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def _stacked(self, name: str, layer: int) -> Tensor:
        """One parameter of all directions of a layer, stacked on a new first axis."""
        return torch.stack([getattr(self, f"{name}_l{layer}{sfx}") for sfx in self._suffixes()])

    def flat_weights(self) -> list[Tensor]:
        """Parameters in ``nn.GRU``'s order: per layer and direction w_ih, w_hh, b_ih, b_hh."""
        return [
            getattr(self, f"{name}_l{layer}{sfx}")
            for layer in range(self.num_layers)
            for sfx in self._suffixes()
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        ]

    def _needs_grad(self, x: Tensor) -> bool:
        """Whether autograd will record this call (then the backward-saving scan runs)."""
        return torch.is_grad_enabled() and (
            x.requires_grad or any(p.requires_grad for p in self.parameters())
        )

    def forward(
        self, x: Tensor, lengths: Tensor | None = None, keep_states: bool = True
    ) -> tuple[Tensor | None, Tensor]:
        """Encode ``x`` (B, T, F) whose rows have ``lengths`` real steps (all T if None).

        Returns outputs (B, T, D*H), zero at padding (None when ``keep_states`` is False and
        the no-grad kernel runs), and final states (layers*D, B, H). The kernel that ran is
        recorded in ``last_kernel`` (see :data:`KERNELS`).
        """
        b, steps, _ = x.shape
        if lengths is None:
            lengths = torch.full((b,), steps, dtype=torch.long, device=x.device)
        lengths = lengths.to(x.device)
        if use_native(x):
            self.last_kernel = "native"
            hx = x.new_zeros(self.num_layers * self.num_directions, b, self.hidden_size)
            return native_gru(
                x,
                lengths,
                self.flat_weights(),
                hx,
                self.num_layers,
                self.num_directions == 2,
                keep_states,
            )
        if not self._needs_grad(x):
            self.last_kernel = "sorted"
            return self._forward_sorted(x, lengths, keep_states)
        self.last_kernel = "scan"
        return self._forward_scan(x, lengths)

    def _layer_gates(self, inp: Tensor, rev: Tensor | None, layer: int) -> Tensor:
        """Input gates (D, T, B, 3H) of one layer, both directions in one batched matmul."""
        steps, b, _ = inp.shape
        dirs = [inp] if rev is None else [inp, _time_gather(inp, rev)]
        xs = torch.stack(dirs).reshape(len(dirs), steps * b, -1)
        gi = torch.baddbmm(
            self._stacked("bias_ih", layer).unsqueeze(1),
            xs,
            self._stacked("weight_ih", layer).transpose(1, 2),
        )
        return gi.view(len(dirs), steps, b, -1)

    def _forward_sorted(
        self,
        x: Tensor,
        lengths: Tensor,
        keep_states: bool,
        pool: Tensor | None = None,
        table: Tensor | None = None,
    ) -> tuple[Tensor | None, Tensor]:
        """No-grad forward with :func:`gru_infer` on rows sorted longest first, unsorted at the end.

        With ``pool`` (B, T) weights the first result is the weighted sum over time (B, D*H).
        With a gate ``table`` (D, V, 3H), ``x`` holds token ids (B, T) and layer 0's input gates
        are rows of the table instead of a matmul.
        """
        with torch.autocast(
            device_type=x.device.type, enabled=False
        ):  # the kernel's buffers are fp32
            if x.is_floating_point():
                x = x.to(self.weight_hh_l0.dtype)
            return self._forward_sorted_fp(x, lengths, keep_states, pool, table)

    def _forward_sorted_fp(
        self,
        x: Tensor,
        lengths: Tensor,
        keep_states: bool,
        pool: Tensor | None,
        table: Tensor | None,
    ) -> tuple[Tensor | None, Tensor]:
        """:meth:`_forward_sorted` with autocast off and ``x`` in the weights' dtype."""
        b, steps = x.shape[:2]
        sorted_lengths, order = lengths.sort(descending=True)
        active = active_rows(sorted_lengths)
        span = len(active)  # the longest row; later columns are padding in every row
        inp = x[order, :span].transpose(0, 1)  # (S, B, F) or (S, B) ids, time-major, sorted
        rev = reverse_index(sorted_lengths, span) if self.num_directions == 2 else None
        dtype = self.weight_hh_l0.dtype
        weights = None
        if pool is not None:  # per direction, in the order that direction runs its steps
            w = pool[order, :span].t().unsqueeze(-1).to(dtype)  # (S, B, 1)
            weights = torch.stack([w] if rev is None else [w, _time_gather(w, rev)])
        finals: list[Tensor] = []
        for layer in range(self.num_layers):
            top = layer == self.num_layers - 1
            with torch.no_grad():
                ids = None
                if layer == 0 and table is not None:
                    gi, ids = (
                        table,
                        torch.stack([inp] if rev is None else [inp, inp.gather(0, rev)]),
                    )
                else:
                    gi = self._layer_gates(inp, rev, layer)
                hs, ends = gru_infer(
                    gi,
                    self._stacked("weight_hh", layer),
                    self._stacked("bias_hh", layer),
                    active,
                    keep_states or not top,
                    weights if top else None,
                    ids,
                )
            finals.extend(ends.unbind(0))
            if hs is not None and not (top and weights is not None):
                inp = torch.cat(
                    [hs[0]] if rev is None else [hs[0], _time_gather(hs[1], rev)], dim=-1
                )
        unsort = torch.empty_like(order)
        unsort[order] = torch.arange(b, device=order.device)
        final = torch.stack(finals).index_select(1, unsort)
        if weights is not None:
            assert hs is not None
            return torch.cat(hs.unbind(0), dim=-1).index_select(0, unsort), final
        if not keep_states:
            return None, final
        out = inp.new_zeros(b, steps, self.num_directions * self.hidden_size)
        out[:, :span] = inp.transpose(0, 1).index_select(0, unsort)
        return out, final

    def forward_tokens(
        self,
        ids: Tensor,
        lengths: Tensor,
        embedding: nn.Embedding,
        keep_states: bool = True,
        pool: Tensor | None = None,
    ) -> tuple[Tensor | None, Tensor]:
        """:meth:`forward` (or :meth:`pooled`, given ``pool`` weights) of ``embedding(ids)``.

        On the no-grad CPU path layer 0's input gates ``W_ih e + b_ih`` are looked up per token in
        a table computed once for the whole vocabulary (:meth:`gate_table`, cached while the weights
        are unchanged): a third of the encoder's matmul FLOPs become a row copy.
        """
        lengths = lengths.to(ids.device)
        grad = torch.is_grad_enabled() and (
            embedding.weight.requires_grad or any(p.requires_grad for p in self.parameters())
        )
        if use_native(ids) or grad:
            x = embedding(ids)
            return self(x, lengths, keep_states) if pool is None else self.pooled(x, lengths, pool)
        self.last_kernel = "sorted"
        if any(p.is_inference() for p in [embedding.weight, *self.parameters()]):
            # weights made under inference_mode carry no version counter to key the table cache on
            return self._forward_sorted(embedding(ids), lengths, keep_states, pool)
        return self._forward_sorted(
            ids, lengths, keep_states, pool, self.gate_table(embedding.weight)
        )

    def gate_table(self, embedding: Tensor) -> Tensor:
        """Layer 0's input gates of every vocabulary entry (D, V, 3H), redone on weight change."""
        parts = [embedding] + [
            getattr(self, f"{n}_l0{sfx}")
            for sfx in self._suffixes()
            for n in ("weight_ih", "bias_ih")
        ]
        key = tuple((p.data_ptr(), p._version, p.dtype, p.device) for p in parts)
        cached = getattr(self, "_gate_table", None)
        if cached is None or cached[0] != key:
            with torch.no_grad(), torch.autocast(device_type=embedding.device.type, enabled=False):
                table = torch.baddbmm(
                    self._stacked("bias_ih", 0).unsqueeze(1),
                    embedding.unsqueeze(0).expand(self.num_directions, -1, -1),
                    self._stacked("weight_ih", 0).transpose(1, 2),
                )
            cached = (key, table)
            self._gate_table = cached
        return cached[1]

    def pooled(self, x: Tensor, lengths: Tensor, weights: Tensor) -> tuple[Tensor, Tensor]:
        """Weighted sum of the top layer's outputs over time, (B, D*H), and the final states.

        ``weights`` (B, T) are zero at padding. Without autograd (CPU) the sum accumulates inside
        :func:`gru_infer`, so the (B, T, D*H) outputs are never written; otherwise it is taken
        over :meth:`forward`'s outputs.
        """
        if use_native(x) or self._needs_grad(x):
            out, final = self(x, lengths)
            assert out is not None
            return (out * weights.unsqueeze(-1).to(out.dtype)).sum(dim=1), final
        self.last_kernel = "sorted"
        return self._forward_sorted(x, lengths.to(x.device), False, weights)

    def _forward_scan(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Forward through :func:`gru_scan` (autograd, O(T) backward) over the padded batch."""
        b, steps, _ = x.shape
        valid = torch.arange(steps, device=x.device).unsqueeze(1) < lengths.unsqueeze(0)
        valid = valid.unsqueeze(-1).to(x.dtype)  # (T, B, 1)
        rev = reverse_index(lengths, steps) if self.num_directions == 2 else None
        last = (lengths - 1).view(1, b, 1)
        inp = x.transpose(0, 1)  # (T, B, F), time-major
        finals = []
        for layer in range(self.num_layers):
            gi = self._layer_gates(inp, rev, layer)
            h0 = x.new_zeros(gi.shape[0], b, self.hidden_size)
            hs = gru_scan(
                gi, self._stacked("weight_hh", layer), self._stacked("bias_hh", layer), h0
            )
            for d in range(gi.shape[0]):
                finals.append(hs[d].gather(0, last.expand(1, b, self.hidden_size)).squeeze(0))
            outs = [hs[0]] if rev is None else [hs[0], _time_gather(hs[1], rev)]
            inp = torch.cat(outs, dim=-1) * valid
        return inp.transpose(0, 1), torch.stack(finals)


class GRUCellStack(nn.Module):
    """A stack of GRU cells (``nn.GRUCell`` parameters), run step by step or over a sequence.

    Layer ``l`` feeds its new state to layer ``l + 1`` as input, as a decoder built from
    ``nn.GRUCell`` in a Python loop does; :meth:`forward` gives the same result for a whole
    known input sequence using :func:`gru_scan`.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.cells = nn.ModuleList(
            [
                nn.GRUCell(input_size if i == 0 else hidden_size, hidden_size)
                for i in range(num_layers)
            ]
        )
        self.last_kernel = ""

    def flat_weights(self) -> list[Tensor]:
        """The cells' parameters in ``nn.GRU``'s order: per layer w_ih, w_hh, b_ih, b_hh."""
        return [w for c in self.cells for w in (c.weight_ih, c.weight_hh, c.bias_ih, c.bias_hh)]

    def _apply(self, fn, recurse: bool = True):  # type: ignore[override]
        """Move or cast as ``nn.Module`` does, then :meth:`flatten_parameters` (as ``nn.GRU``)."""
        out = super()._apply(fn, recurse)
        self.flatten_parameters()
        return out

    def flatten_parameters(self) -> bool:
        """One cuDNN weight buffer for the stack on CUDA: it runs as one multi-layer GRU."""
        cell = self.cells[0]
        return flatten_for_cudnn(
            self.flat_weights(), cell.input_size, self.hidden_size, len(self.cells), False
        )

    def forward(self, x: Tensor, h0: list[Tensor]) -> Tensor:
        """Run the stack over ``x`` (B, S, F) from per-layer states ``h0``; top states (B, S, H)."""
        if use_native(x):  # the stack is a multi-layer GRU with per-layer h0: cuDNN runs it whole
            self.last_kernel = "native"
            out = native_gru(x, None, self.flat_weights(), torch.stack(h0), len(self.cells), False)
            assert out[0] is not None
            return out[0]
        self.last_kernel = "scan"
        inp = x.transpose(0, 1)  # (S, B, F)
        for cell, h in zip(self.cells, h0, strict=True):
            gi = F.linear(inp, cell.weight_ih, cell.bias_ih).unsqueeze(0)  # (1, S, B, 3H)
            hs = gru_scan(
                gi, cell.weight_hh.unsqueeze(0), cell.bias_hh.unsqueeze(0), h.unsqueeze(0)
            )
            inp = hs[0]
        return inp.transpose(0, 1)

    def step(self, x: Tensor | None, h: list[Tensor], gi0: Tensor | None = None) -> list[Tensor]:
        """One step of the stack: input ``x`` (B, F), states ``h``; returns the new states.

        ``gi0`` may carry layer 0's precomputed input gates for this step.
        """
        new: list[Tensor] = []
        inp = x
        for i, (cell, h_l) in enumerate(zip(self.cells, h, strict=True)):
            inp = gru_cell(
                inp,
                h_l,
                cell.weight_ih,
                cell.weight_hh,
                cell.bias_ih,
                cell.bias_hh,
                gi=gi0 if i == 0 else None,
            )
            new.append(inp)
        return new


def tune_cpu_allocator() -> bool:
    """Keep freed memory in the process (glibc) so big per-step buffers reuse touched pages.

    Training allocates hundreds of MB per step; by default glibc hands blocks over 32 MB back
    to the OS on free, and every fresh page then costs a page fault on first write. Disabling
    mmap-backed blocks and heap trimming makes steady-state steps fault-free. Process-wide;
    resident memory stays at its peak. Returns False where glibc's ``mallopt`` is unavailable.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_max = -1, -4
        ok = libc.mallopt(m_mmap_max, 0) == 1
        return bool(libc.mallopt(m_trim_threshold, 2**31 - 1) == 1 and ok)
    except (OSError, AttributeError):
        return False
