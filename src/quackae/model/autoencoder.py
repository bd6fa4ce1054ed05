"""The sequence-to-sequence autoencoder over tokenized Censored Planet measurements.

Architecture (as the seed project's model):

* token embedding (``padding_idx = pad_id``);
* encoder: bidirectional GRU (Cho et al., 2014) over the real tokens of each row,
  ``hidden_size / 2`` per direction; the latent is both directions' final states, (B, H);
* decoder: a stack of ``layers`` GRU cells, each started from the latent; the first input is
  each row's last real token, later inputs are the previous target token (teacher forcing)
  or, when sampling, a token drawn from the softmax of the previous step's prediction (the
  seed's ``torch.multinomial(F.softmax(logits), 1)``; ``sampling="greedy"`` takes the argmax
  instead, quackae's earlier behaviour);
* dot-product attention over the encoder states, scaled by sqrt(H), padding masked
  (Luong et al., 2015, "Effective Approaches to Attention-based Neural Machine Translation");
* an MLP on [decoder state ; context] predicts each token; cross-entropy ignores padding.

The training loss is the mean cross-entropy over all real target tokens of the batch; the seed
summed the per-step batch means over time instead (``decode_loss(..., reduction="seed")``
gives that scale): here every token weighs the same and the scale does not grow with T.

Four ways to decode (:meth:`QuackAutoEncoder.decode_loss` ``mode``), two maths:

``"fast"``         teacher forcing: every decoder input is known; on CPU the decoder runs over
                   the real positions only (:meth:`QuackAutoEncoder.packed_decode`: one packed
                   GRU recurrence per layer, batched attention, one fused output projection and
                   cross-entropy); on CUDA as one cuDNN scan over the padded batch.
``"loop"``         teacher forcing, one Python step per token with autograd through every
                   step (the reference ``"fast"`` must match).
``"sample"``       sampling: on CPU one rollout without autograd draws each step's input and
                   keeps every value the backward needs, then autograd runs over those buffers
                   without recomputing the rollout's matmuls (:mod:`quackae.model.fused`); on
                   CUDA and under autocast the rollout keeps only the drawn inputs and the
                   decoder is replayed over them as in ``"fast"``. A drawn token carries no
                   gradient, as in the seed.
``"sample-loop"``  sampling, one Python step per token with autograd through every step
                   (the reference ``"sample"`` must match: same uniforms, same draws).

Training picks ``"fast"`` with probability ``teacher_forcing`` per batch, else ``"sample"``.
Every draw of a batch comes from one ``torch.rand`` call (:meth:`QuackAutoEncoder.draw_uniforms`),
so a seeded run repeats its draws. Validation and test toss the same coin by default
(``eval_decoding = "coin"``, the seed's), seeded per batch index; ``eval_decoding = "forced"``
teacher-forces them. Both log the loss on the token mean (``val_loss``) and on the seed's scale
(``val_loss_seed``, :func:`seed_scale_loss`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import lightning.pytorch as pl
import numpy as np
import pyarrow as pa
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import BasePredictionWriter
from torch import Tensor, nn

from quackae.dataset.embeddings import EmbeddingStore
from quackae.model.fused import (
    LinearCrossEntropyGiven,
    LinearGiven,
    Packed,
    SoftmaxStats,
    draw,
    draw_from_logits,
    linear_cross_entropy,
    new_stats,
    onednn_linear,
    packed_layout,
    softmax_stats,
)
from quackae.model.gru import (
    FastGRU,
    GRUCellStack,
    PackedGRU,
    PackedGRUState,
    active_rows,
    empty_state,
    packed_cell_,
    use_native,
)

DecodeMode = Literal["fast", "sample", "loop", "sample-loop"]
DECODE_MODES = ("fast", "sample", "loop", "sample-loop")
#: How a sampled step picks its next input: a draw from the softmax (the seed's), or the argmax.
SAMPLINGS = ("multinomial", "greedy")
Reduction = Literal["token", "seed"]
#: Encoder states per block of rows in the sampled rollout's attention (about an L2 cache).
ATTENTION_BLOCK_BYTES = 2 << 20
#: ``decode_loss`` scales: quackae's token mean, the seed's sum over steps of per-step means.
REDUCTIONS = ("token", "seed")
#: What ``predict_step`` (``--encode``) writes per record: ``"final"`` the encoder's final states
#: (the seed's latent), ``"mean"`` the encoder states averaged over the record's text tokens.
LATENTS = ("final", "mean")
#: How validation and test decode: ``"coin"`` as training (the seed's), ``"forced"`` always
#: teacher-forced.
EVAL_DECODINGS = ("coin", "forced")
EVAL_STAGES = ("val", "test")


class PositionLosses(NamedTuple):
    """Per real target position (N,) of a decoded batch (:meth:`QuackAutoEncoder.decode_positions`).

    The order of the N positions is the decoder's (packed on CPU, row-major otherwise); every
    reduction here is order-free.
    """

    losses: Tensor  #: cross-entropy of each real target (with autograd)
    hits: Tensor  #: whether the argmax was the target
    sizes: Tensor  #: rows with a real target at the position's step

    def reduce(self, reduction: str) -> Tensor:
        """The token mean (``"token"``) or the seed's per-step means summed (``"seed"``)."""
        if reduction == "token":
            return self.losses.mean()
        return (self.losses / self.sizes).sum()


class PackedDecode(NamedTuple):
    """A packed decode (:meth:`QuackAutoEncoder.packed_decode`), per real target position (N,).

    Position p is (step ``layout.times[p]``, row ``layout.order[layout.rows[p]]`` of the batch).
    """

    losses: Tensor  #: cross-entropy of each real target (with autograd)
    hits: Tensor  #: whether the argmax was the target
    sizes: Tensor  #: rows decoded at p's step (the seed's per-step mean divides by it)
    inputs: Tensor  #: the decoder input at p: the row's last real token at step 0, then draws
    layout: Packed


@dataclass
class Rollout:
    """The packed buffers a sampled rollout fills (:meth:`QuackAutoEncoder._rollout`)."""

    inputs: Tensor  #: (N,) decoder inputs
    grus: list[PackedGRUState]  #: per decoder layer
    a1: Tensor  #: (N, H) first MLP layer's pre-activation
    a2: Tensor  #: (N, H) second MLP layer's pre-activation
    weights: Tensor  #: (N, V) exp(logits - max)
    stats: SoftmaxStats  #: per-position loss, hit, normaliser


class QuackAutoEncoder(pl.LightningModule):
    """Sequence-to-sequence GRU autoencoder with attention; the latent is the encoder's final state.

    Batches are (B, T) int64 token ids right-padded with ``pad_id``; every row has at least
    one real token. ``sampling`` is how a sampled training batch picks its next inputs:
    ``"multinomial"`` (default, the seed's: a draw from the softmax) or ``"greedy"`` (the
    argmax). All constructor arguments are stored in ``hparams`` (and checkpoints).
    """

    def __init__(
        self,
        num_embeddings: int,
        embed_size: int,
        hidden_size: int,
        layers: int = 1,
        max_decode_length: int | None = None,
        learning_rate: float = 1e-1,
        learning_rate_min: float = 1e-4,
        lr_max_epochs: int = -1,
        teacher_forcing: float = 0.5,
        pad_id: int = 0,
        tokenizer_sha256: str = "",
        layout: dict | None = None,
        sampling: str = "multinomial",
    ) -> None:
        super().__init__()
        if sampling not in SAMPLINGS:
            raise ValueError(f"unknown sampling {sampling!r}; expected one of {SAMPLINGS}")
        if hidden_size % 2:
            raise ValueError(
                f"hidden_size must be even (two encoder directions), got {hidden_size}"
            )
        self.save_hyperparameters()
        self.pad_id = pad_id
        self.hidden_size = hidden_size
        self.max_decode_length = max_decode_length
        self.teacher_forcing = teacher_forcing
        self.sampling = sampling
        # how validation and test decode (EVAL_DECODINGS) and the seed of their per-batch coin:
        # run settings the controller sets (--eval_decoding, --seed), not weights
        self.eval_decoding = "coin"
        self.eval_seed = 0
        self.text_offset = int((layout or {}).get("text_offset", 0))
        self.latent = (
            "final"  # what predict_step writes (LATENTS); an encode-time choice, not a weight
        )
        self.embed = nn.Embedding(num_embeddings, embed_size, padding_idx=pad_id)
        self.encoder = FastGRU(embed_size, hidden_size // 2, layers, bidirectional=True)
        self.decoder = GRUCellStack(embed_size, hidden_size, layers)
        self.predict_word = nn.Sequential(
            nn.Linear(2 * hidden_size, hidden_size),
            nn.LeakyReLU(),
            nn.LayerNorm(hidden_size),
            nn.Linear(hidden_size, hidden_size),
            nn.LeakyReLU(),
            nn.LayerNorm(hidden_size),
            nn.Linear(hidden_size, num_embeddings),
        )

    # ----------------------------------------------------------------- encoder

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Encode ``x`` (B, T): latent (B, H) and encoder states (B, T, H), zero at padding."""
        latent, states = self.encode(x)
        assert states is not None
        return latent, states

    def encode(self, x: Tensor, keep_states: bool = True) -> tuple[Tensor, Tensor | None]:
        """Latent (B, H) and, if ``keep_states``, encoder states (B, T, H).

        Without autograd the encoder runs its no-grad kernel (:func:`quackae.model.gru.gru_infer`;
        cuDNN on CUDA), which may skip materialising the states when they are not wanted.
        """
        lengths = x.ne(self.pad_id).sum(dim=1)
        states, finals = self.encoder.forward_tokens(x, lengths, self.embed, keep_states)
        latent = finals[-2:].transpose(0, 1).reshape(x.shape[0], self.hidden_size)
        return latent, states

    def embed_rows(self, x: Tensor, latent: str = "final") -> Tensor:
        """The feature of each row written by ``--encode``, (B, H); ``latent`` is one of LATENTS.

        ``"mean"`` averages the encoder states over text tokens (ids >= the layout's text offset),
        or over all real tokens for a row without text (a reset, a timeout). A page's wording
        then weighs more than the static tokens that the final states summarise last.
        """
        if latent not in LATENTS:
            raise ValueError(f"unknown latent {latent!r}; expected one of {LATENTS}")
        if latent == "final":
            return self.encode(x, keep_states=False)[0]
        real = x.ne(self.pad_id)
        text = real & x.ge(self.text_offset) if self.text_offset else real
        weights = torch.where(text.any(dim=1, keepdim=True), text, real).to(self.embed.weight.dtype)
        weights = weights / weights.sum(dim=1, keepdim=True)
        return self.encoder.forward_tokens(x, real.sum(dim=1), self.embed, pool=weights)[0]

    # ----------------------------------------------------------------- decoder

    def _decode_steps(self, x: Tensor) -> int:
        """Number of decoded positions: T, capped by ``max_decode_length``."""
        steps = x.shape[1]
        return steps if self.max_decode_length is None else min(steps, self.max_decode_length)

    def _first_input(self, x: Tensor) -> Tensor:
        """The decoder's first input token: each row's last real token, (B,)."""
        last = x.ne(self.pad_id).sum(dim=1, keepdim=True) - 1
        return x.gather(1, last).squeeze(1)

    def _attention_bias(self, x: Tensor, dtype: torch.dtype) -> Tensor:
        """Additive attention mask (B, 1, T): 0 at real tokens, -inf at padding."""
        bias = torch.zeros(x.shape, dtype=dtype, device=x.device)
        return bias.masked_fill_(x.eq(self.pad_id), float("-inf")).unsqueeze(1)

    def _attend(self, h: Tensor, keys_t: Tensor, states: Tensor, bias: Tensor) -> Tensor:
        """Dot-product attention for queries ``h`` (B, S, H): [h ; context] (B, S, 2H).

        ``keys_t`` are the encoder states pre-scaled by 1/sqrt(H) and transposed, (B, H, T).
        """
        weights = torch.baddbmm(bias, h, keys_t).softmax(dim=-1)  # (B, S, T)
        return torch.cat([h, torch.bmm(weights, states)], dim=-1)

    def _keys(self, states: Tensor) -> Tensor:
        """Attention keys, computed once per batch: states / sqrt(H), as (B, H, T)."""
        return (states * (1.0 / math.sqrt(self.hidden_size))).transpose(1, 2)

    def decode_fast(self, x: Tensor, states: Tensor, latent: Tensor, inputs: Tensor) -> Tensor:
        """Teacher-forced decoder over known ``inputs`` (B, S): features [h ; context], 2H wide."""
        h0 = [latent] * len(self.decoder.cells)
        h = self.decoder(self.embed(inputs), h0)
        return self._attend(h, self._keys(states), states, self._attention_bias(x, h.dtype))

    def decode_loop(
        self,
        x: Tensor,
        states: Tensor,
        latent: Tensor,
        sample: bool,
        uniforms: Tensor | None = None,
    ) -> Tensor:
        """Step-by-step decoder with autograd; logits (B, S, V). ``sample``: feed back draws.

        Per step: the GRU cell stack, attention against precomputed keys, the MLP; when sampling,
        the next input is drawn by :meth:`next_tokens` from step t's logits with ``uniforms[t]``.
        The step outputs are stacked once at the end (writing them into a preallocated buffer
        under autograd would copy the whole buffer's gradient per step: the O(T^2) trap).
        """
        steps = self._decode_steps(x)
        keys_t, bias = self._keys(states), self._attention_bias(x, states.dtype)
        hidden = [latent] * len(self.decoder.cells)
        token = self._first_input(x)
        cell0 = self.decoder.cells[0]
        gi0 = None
        if sample and uniforms is None:
            uniforms = self.draw_uniforms(x, steps)
        if not sample:  # all inputs known: layer 0's input gates in one matmul
            inputs = self.teacher_inputs(x, steps)
            gi0 = F.linear(self.embed(inputs), cell0.weight_ih, cell0.bias_ih)
        logits: list[Tensor] = []
        for t in range(steps):
            if gi0 is None:
                hidden = self.decoder.step(self.embed(token), hidden)
            else:
                hidden = self.decoder.step(None, hidden, gi0=gi0[:, t])
            features = self._attend(hidden[-1].unsqueeze(1), keys_t, states, bias).squeeze(1)
            logits.append(self.predict_word(features))
            if sample and t < steps - 1:
                assert uniforms is not None
                token = self.next_tokens(logits[-1].detach(), uniforms[t])
        return torch.stack(logits, dim=1)

    def teacher_inputs(self, x: Tensor, steps: int) -> Tensor:
        """Teacher-forced decoder inputs (B, S): last real token, then targets 0..S-2."""
        return torch.cat([self._first_input(x).unsqueeze(1), x[:, : steps - 1]], dim=1)

    def draw_uniforms(self, x: Tensor, steps: int) -> Tensor:
        """The uniforms of one sampled batch, (S - 1, B): row b's draw after step t uses [t, b].

        Drawn up front from torch's generator in one call, so every sampled path (fused, replay,
        step loop) consumes the same numbers and draws the same tokens from the same logits.
        """
        return torch.rand(max(steps - 1, 0), x.shape[0], device=x.device)

    def next_tokens(self, logits: Tensor, uniform: Tensor) -> Tensor:
        """The next decoder inputs from logits (n, V): a draw from their softmax, or the argmax.

        ``sampling="multinomial"`` (the seed's ``torch.multinomial(F.softmax(logits), 1)``) draws
        by inverse CDF with one uniform per row (:func:`quackae.model.fused.draw`);
        ``"greedy"`` takes the argmax and ignores ``uniform``.
        """
        if self.sampling == "greedy":
            return logits.argmax(dim=-1)
        return draw_from_logits(logits, uniform)

    def sampled_inputs(
        self, x: Tensor, states: Tensor, latent: Tensor, steps: int, uniforms: Tensor | None = None
    ) -> Tensor:
        """Decoder inputs (B, S) of sampling: last real token, then each step's draw.

        Only token choices come out of this rollout, and a choice has no gradient, so it runs
        without autograd; :meth:`decode_loss` then replays the decoder over these inputs with
        :meth:`decode_fast` (the path on CUDA and under autocast; on CPU the fused rollout of
        :meth:`packed_decode` keeps its values instead of replaying them). Step t runs only the
        rows that have a real position t + 1 (rows sorted longest first): an input at a padding
        position never reaches a real one, so it is left as padding.
        """
        if uniforms is None:
            uniforms = self.draw_uniforms(x, steps)
        with torch.no_grad():
            lengths = x.ne(self.pad_id).sum(dim=1).clamp(max=steps)
            order = lengths.argsort(descending=True)  # longest first: running rows are a prefix
            running = active_rows(lengths[order]) + [0]
            xs, states, latent = x[order], states[order], latent[order]
            keys_t, bias = self._keys(states), self._attention_bias(xs, states.dtype)
            inputs = x.new_full((x.shape[0], steps), self.pad_id)  # no row reads its pad positions
            inputs[:, 0] = self._first_input(xs)
            hidden = [latent] * len(self.decoder.cells)
            for t in range(steps - 1):  # the last prediction is never fed back
                n = running[t + 1]  # rows that still have a real position t + 1 to feed
                if n == 0:
                    break
                hidden = self.decoder.step(self.embed(inputs[:n, t]), [h[:n] for h in hidden])
                features = self._attend(hidden[-1].unsqueeze(1), keys_t[:n], states[:n], bias[:n])
                logits = self.predict_word(features.squeeze(1))
                inputs[:n, t + 1] = self.next_tokens(logits, uniforms[t, order[:n]])
            unsorted = torch.empty_like(inputs)
            unsorted[order] = inputs
        return unsorted

    def _fused_ok(self, x: Tensor) -> bool:
        """Whether :meth:`packed_decode` runs: CPU without autocast (its rollout is fp32/fp64)."""
        return not use_native(x) and not torch.is_autocast_enabled(x.device.type)

    def packed_decode(
        self,
        x: Tensor,
        states: Tensor,
        latent: Tensor,
        steps: int,
        sample: bool,
        uniforms: Tensor | None = None,
    ) -> PackedDecode:
        """The decoder over the real target positions only, packed; see :class:`PackedDecode`.

        Rows are sorted longest first and each drops out once its targets end. Teacher-forced
        (``sample=False``): each layer's recurrence is one :class:`PackedGRU` over the known
        inputs. Sampled: :meth:`_rollout` runs the step loop once without autograd and keeps
        every value the backward needs in preallocated packed buffers (the GRU gates, the two
        hidden MLP pre-activations, the exponentiated logits); autograd is then built over those
        buffers (:class:`~quackae.model.fused.LinearGiven`, :class:`PackedGRU` with ``given``
        state): only attention, the LeakyReLUs and LayerNorms are recomputed (elementwise work
        and two batched matmuls), no matmul of the rollout runs again. Both end in one fused
        output projection and cross-entropy whose logits are never kept
        (:class:`~quackae.model.fused.LinearCrossEntropyGiven`). Losses and gradients are those
        of the step loops (``"loop"``, ``"sample-loop"``; the same draws given the same
        ``uniforms``).
        """
        layout = packed_layout(x.ne(self.pad_id).sum(dim=1), steps)
        order = layout.order
        xs, states_s, latent_s = x[order], states[order], latent[order]
        keys_t, bias = self._keys(states_s), self._attention_bias(xs, states_s.dtype)
        targets = layout.gather(xs)
        mlp = self.predict_word
        if sample:
            if uniforms is None:
                uniforms = self.draw_uniforms(x, steps)
            with torch.no_grad(), torch.autocast(x.device.type, enabled=False):
                roll = self._rollout(
                    xs, states_s, latent_s, keys_t, bias, layout, targets, uniforms
                )
            inputs, grus = roll.inputs, roll.grus
        else:
            inputs = layout.gather(self.teacher_inputs(xs, steps))
            grus = [None] * len(self.decoder.cells)
        top = self.embed(inputs)
        for cell, given in zip(self.decoder.cells, grus, strict=True):
            weights = (cell.weight_ih, cell.bias_ih, cell.weight_hh, cell.bias_hh)
            top = PackedGRU.apply(top, *weights, latent_s, layout, given)
        b, span = len(order), len(layout.sizes)
        padded = top.new_zeros(b, span, self.hidden_size).index_put(
            (layout.rows, layout.times), top
        )
        features = layout.gather(self._attend(padded, keys_t, states_s, bias))
        if sample:
            a = LinearGiven.apply(features, mlp[0].weight, mlp[0].bias, roll.a1)
            a = LinearGiven.apply(mlp[2](mlp[1](a)), mlp[3].weight, mlp[3].bias, roll.a2)
            y = mlp[5](mlp[4](a))
            losses = LinearCrossEntropyGiven.apply(
                y, mlp[6].weight, mlp[6].bias, roll.weights, roll.stats, targets
            )
            hits = roll.stats.hits
        else:
            losses, hits = linear_cross_entropy(
                mlp[:6](features), mlp[6].weight, mlp[6].bias, targets
            )
        sizes = torch.tensor(layout.sizes, device=x.device)[layout.times]
        return PackedDecode(losses, hits, sizes, inputs, layout)

    def _rollout(
        self,
        xs: Tensor,
        states: Tensor,
        latent: Tensor,
        keys_t: Tensor,
        bias: Tensor,
        layout: Packed,
        targets: Tensor,
        uniforms: Tensor,
    ) -> Rollout:
        """:meth:`packed_decode`'s no-grad sampled step loop over sorted rows: what it keeps.

        Per step and layer one ``addmm`` for the input gates and the fused cell
        (:func:`packed_cell_`), then attention (two batched matmuls), the MLP (its output
        projection through oneDNN's prepacked kernel where available), the loss statistics and
        the next inputs: the draw of :meth:`next_tokens`, from the same exponentiated logits.
        """
        total, hid = layout.total, self.hidden_size
        mlp = self.predict_word
        w1_t, w2_t = mlp[0].weight.t().contiguous(), mlp[3].weight.t().contiguous()
        vocab = mlp[6].weight.shape[0]
        project = onednn_linear(mlp[6].weight, layout.sizes[0])
        w3_t = mlp[6].weight.t().contiguous() if project is None else None
        cells = self.decoder.cells
        w_ih_t = [cell.weight_ih.t().contiguous() for cell in cells]
        w_hh_t = [cell.weight_hh.t().contiguous() for cell in cells]
        out = Rollout(
            inputs=targets.new_empty(total),
            grus=[empty_state(latent, total, hid) for _ in cells],
            a1=latent.new_empty(total, hid),
            a2=latent.new_empty(total, hid),
            weights=latent.new_empty(total, vocab),
            stats=new_stats(latent, total),
        )
        greedy = self.sampling == "greedy"
        features = latent.new_empty(layout.sizes[0], 2 * hid)  # [h ; context] of one step
        row_bytes = states.shape[1] * hid * states.element_size()
        rows_per_block = max(1, ATTENTION_BLOCK_BYTES // row_bytes)
        unif = uniforms[:, layout.order] if len(uniforms) else uniforms
        hidden = [latent] * len(cells)
        token = self._first_input(xs)
        last = len(layout.sizes) - 1
        for t, n in enumerate(layout.sizes):
            span = layout.span(t)
            out.inputs[span] = token[:n]
            inp = self.embed.weight.index_select(0, token[:n])
            for i, cell in enumerate(cells):
                gi = torch.addmm(cell.bias_ih, inp, w_ih_t[i])
                inp = hidden[i] = packed_cell_(
                    gi, hidden[i][:n], w_hh_t[i], cell.bias_hh, out.grus[i], span
                )
            features[:n, :hid] = inp
            self._rollout_context(inp, states, bias, features[:n, hid:], rows_per_block)
            y = torch.addmm(mlp[0].bias, features[:n], w1_t, out=out.a1[span])
            y = torch.addmm(mlp[3].bias, mlp[2](mlp[1](y)), w2_t, out=out.a2[span])
            y = mlp[5](mlp[4](y))
            weights = out.weights[span]
            if project is None:
                logits = torch.addmm(mlp[6].bias, y, w3_t, out=weights)
            else:
                logits = project(y, mlp[6].bias)
            stats = SoftmaxStats(
                out.stats.losses[span], out.stats.hits[span], out.stats.inv_totals[span]
            )
            drawing = t < last and not greedy
            if t < last and greedy:
                token = logits[: layout.sizes[t + 1]].argmax(dim=1)
            sums = softmax_stats(logits, weights, targets[span], stats, blocks=drawing)
            if drawing:
                m = layout.sizes[t + 1]
                token = draw(weights[:m], unif[t, :m], sums[:m] if sums is not None else None)
        return out

    def _rollout_context(
        self, h: Tensor, states: Tensor, bias: Tensor, out: Tensor, rows: int
    ) -> None:
        """One rollout step's attention context of ``h`` (n, H) into ``out`` (n, H).

        A batched matrix-vector product reads every encoder state once for the scores and once
        for the context; done ``rows`` rows at a time (about 2 MB of states), the second read
        finds them in cache, and the scores read the states themselves (transposed view) rather
        than a second copy: 2.1x faster at T=64, 1.5x at T=256 than whole-batch calls (one
        thread, this machine). The scale 1/sqrt(H) goes on the query.
        """
        query = (h * (1.0 / math.sqrt(self.hidden_size))).unsqueeze(1)
        context = out.unsqueeze(1)
        for start in range(0, len(h), rows):
            r = slice(start, min(start + rows, len(h)))
            scores = torch.baddbmm(bias[r], query[r], states[r].transpose(1, 2)).softmax(dim=-1)
            torch.bmm(scores, states[r], out=context[r])

    def decode_positions(
        self, x: Tensor, mode: DecodeMode = "fast", uniforms: Tensor | None = None
    ) -> PositionLosses:
        """Encode and decode ``x`` (B, T): the loss, hit and step size of each real target.

        ``mode`` picks the decoder (module docstring); ``uniforms`` (:meth:`draw_uniforms`'s
        shape) fix a sampled decode's draws, else they come from torch's generator.
        """
        if mode not in DECODE_MODES:
            raise ValueError(f"unknown decode mode {mode!r}; expected one of {DECODE_MODES}")
        latent, states = self(x)
        steps = self._decode_steps(x)
        if mode in ("fast", "sample") and self._fused_ok(x):
            out = self.packed_decode(
                x, states, latent, steps, sample=mode == "sample", uniforms=uniforms
            )
            return PositionLosses(out.losses, out.hits, out.sizes)
        targets = x[:, :steps]
        real = targets.ne(self.pad_id)
        wanted = targets[real]
        if mode in ("fast", "sample"):
            inputs = (
                self.teacher_inputs(x, steps)
                if mode == "fast"
                else self.sampled_inputs(x, states, latent, steps, uniforms)
            )
            logits = self.predict_word(self.decode_fast(x, states, latent, inputs)[real])
        else:
            logits = self.decode_loop(x, states, latent, sample=mode == "sample-loop")[real]
        losses = F.cross_entropy(logits, wanted, reduction="none")
        hits = logits.detach().argmax(dim=-1).eq(wanted)
        sizes = real.sum(dim=0, keepdim=True).expand_as(real)[real]
        return PositionLosses(losses, hits, sizes)

    def decode_loss(
        self, x: Tensor, mode: DecodeMode = "fast", reduction: Reduction = "token"
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Encode and decode ``x`` (B, T); returns (loss, correct tokens, real tokens).

        ``reduction="token"``: the cross-entropy averaged over the real (non-pad) target
        positions (quackae's training loss); ``"seed"``: the seed's scale, the sum over decode
        steps of each step's mean over the rows with a real target there. ``mode`` picks the
        decoder (module docstring). The counts are 0-dim int64 tensors.
        """
        if reduction not in REDUCTIONS:
            raise ValueError(f"unknown reduction {reduction!r}; expected one of {REDUCTIONS}")
        out = self.decode_positions(x, mode)
        return out.reduce(reduction), out.hits.sum(), x.new_tensor(len(out.losses))

    # ----------------------------------------------------------------- Lightning hooks

    def training_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        """Teacher-forced with probability ``teacher_forcing`` (the seed's coin), else sampled.

        Logs, token-weighted: ``train_loss`` (every batch), ``train_loss_forced`` and
        ``train_loss_sampled`` (the batches of each kind) as epoch means, one row per epoch in
        ``metrics.csv`` whatever the Trainer's ``log_every_n_steps``; and ``train_loss_step``,
        each step's loss, at the Trainer's logging interval and in the progress bar. Raises
        ``FloatingPointError`` when the loss is not finite, so a diverged run stops at once
        instead of training on NaN weights.
        """
        forced = torch.rand(()).item() < self.teacher_forcing
        loss, _, tokens = self.decode_loss(batch, "fast" if forced else "sample")
        n = int(tokens)
        kind = "train_loss_forced" if forced else "train_loss_sampled"
        for name in ("train_loss", kind):
            self.log(name, loss, on_step=False, on_epoch=True, batch_size=n)
        self.log("train_loss_step", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=n)
        check_finite(loss, "train_loss", self.global_step)
        return loss

    def eval_teacher_forced(self, stage: str, batch_idx: int) -> bool:
        """Whether validation or test batch ``batch_idx`` is teacher-forced (``eval_decoding``).

        ``"coin"`` (the seed's: its validation and test steps toss the training coin): teacher
        forcing with probability ``teacher_forcing``, drawn from (``eval_seed``, stage, batch
        index) only (as are a sampled batch's draws, :meth:`eval_uniforms`), so every validation
        compares the same batches decoded the same way, and every Ray rank makes the same choice
        (each logs the same metrics). ``"forced"``: always.
        """
        if self.eval_decoding == "forced":
            return True
        if self.eval_decoding != "coin":
            raise ValueError(f"unknown eval_decoding {self.eval_decoding!r}; expected coin|forced")
        return bool(self._eval_rng(stage, batch_idx).random() < self.teacher_forcing)

    def _eval_rng(self, stage: str, batch_idx: int) -> np.random.Generator:
        """The generator of (``eval_seed``, stage, batch index): the coin, then the draws."""
        key = [int(self.eval_seed) & 0xFFFFFFFF, EVAL_STAGES.index(stage), int(batch_idx)]
        return np.random.default_rng(key)

    def eval_uniforms(self, batch: Tensor, stage: str, batch_idx: int) -> Tensor:
        """A sampled validation or test batch's uniforms, from its own seed: every validation
        of the same weights draws the same tokens, so early stopping compares like with like.
        """
        shape = (max(self._decode_steps(batch) - 1, 0), batch.shape[0])
        seed = int(self._eval_rng(stage, batch_idx).integers(2**62)) + 1
        generator = torch.Generator().manual_seed(seed)
        return torch.rand(shape, generator=generator).to(batch.device)

    def _eval_step(self, batch: Tensor, batch_idx: int, stage: str) -> Tensor:
        """Loss on both scales and token accuracy over non-pad positions.

        Logs ``{stage}_loss`` (mean over real tokens), ``{stage}_loss_seed`` (the seed's scale,
        :func:`seed_scale_loss`, averaged over rows as the seed's Lightning did), ``{stage}_acc``,
        and the loss again as ``{stage}_loss_forced`` or ``{stage}_loss_sampled`` by the batch's
        decoding, so each mode's mean is there beside the mixture.
        """
        forced = self.eval_teacher_forced(stage, batch_idx)
        uniforms = None if forced else self.eval_uniforms(batch, stage, batch_idx)
        out = self.decode_positions(batch, "fast" if forced else "sample", uniforms)
        loss = out.reduce("token")
        n, rows = len(out.losses), int(batch.shape[0])
        self.log(f"{stage}_loss", loss, sync_dist=True, batch_size=n, prog_bar=stage == "val")
        self.log(
            f"{stage}_loss_seed",
            out.reduce("seed"),
            sync_dist=True,
            batch_size=rows,
            prog_bar=stage == "val",
        )
        self.log(f"{stage}_acc", out.hits.sum().float() / n, sync_dist=True, batch_size=n)
        mode = "forced" if forced else "sampled"
        self.log(f"{stage}_loss_{mode}", loss, sync_dist=True, batch_size=n)
        return loss

    def validation_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        """Log ``val_loss``, ``val_loss_seed``, ``val_acc``; decoding by ``eval_decoding``."""
        return self._eval_step(batch, batch_idx, "val")

    def test_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        """Log ``test_loss``, ``test_loss_seed``, ``test_acc``; decoding by ``eval_decoding``."""
        return self._eval_step(batch, batch_idx, "test")

    def predict_step(
        self, batch: tuple[Any, Tensor], batch_idx: int = 0, dataloader_idx: int = 0
    ) -> tuple[Any, Tensor]:
        """Encode ``(metadata, x)``: ``(metadata, latent)``, latent (B, H) by ``self.latent``."""
        metadata, x = batch
        return metadata, self.embed_rows(x, self.latent)

    def configure_optimizers(self) -> dict[str, Any]:
        """AdamW, cosine-annealed per epoch to ``learning_rate_min`` over ``lr_max_epochs``.

        ``lr_max_epochs = -1`` means the trainer's ``max_epochs`` (1 when that is unknown).
        """
        hp = self.hparams
        optimizer = torch.optim.AdamW(self.parameters(), lr=hp.learning_rate)
        t_max = hp.lr_max_epochs if hp.lr_max_epochs > 0 else self._trainer_max_epochs()
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=t_max, eta_min=hp.learning_rate_min
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"},
        }

    def _trainer_max_epochs(self) -> int:
        """The attached trainer's ``max_epochs`` when known and positive, else 1."""
        trainer = self._trainer
        epochs = getattr(trainer, "max_epochs", None) if trainer is not None else None
        return epochs if isinstance(epochs, int) and epochs > 0 else 1


def seed_scale_loss(per_token: Tensor, real: Tensor) -> Tensor:
    """The seed's loss of one batch: per decode step, the mean cross-entropy over the rows with
    a real target there, summed over the steps.

    ``per_token`` holds the cross-entropy of each real position (N,), in the row-major order of
    ``real`` (B, S). This is the original ``loss_over_time``: ``CrossEntropyLoss(ignore_index=
    pad)`` per step, added up; its scale grows with the batch's length, which is why its early
    stopping threshold (200) has no counterpart on the token mean. A step with no real target
    (the seed's would be NaN; a batch padded to its longest row has none) adds nothing.
    """
    step = real.nonzero()[:, 1]
    steps = real.shape[1]
    total = torch.zeros(steps, dtype=per_token.dtype, device=per_token.device)
    total.index_add_(0, step, per_token)
    count = real.sum(dim=0).to(per_token.dtype)
    return (total[count > 0] / count[count > 0]).sum()


def check_finite(loss: Tensor, name: str, step: int) -> None:
    """Raise ``FloatingPointError`` naming the metric and step when ``loss`` is NaN or inf."""
    if not torch.isfinite(loss).all():
        raise FloatingPointError(
            f"{name} is {loss.item()} at global step {step}; training diverged "
            "(try a lower learning_rate)"
        )


# =============================================================================================
# AutoencoderWriter: the predict loop's side effect (embedding shards), as a Lightning callback.
# =============================================================================================


class AutoencoderWriter(BasePredictionWriter):
    """Write each predicted batch's latents with their records' metadata to embedding shards.

    ``write_interval='batch'`` as in the seed: every batch is handed over as it is predicted and
    buffered only up to ``rows_per_shard`` rows, then committed as one atomic Parquet shard
    (``embeddings.EmbeddingStore``), so memory stays bounded and a killed run loses at most one
    shard's worth of work.
    """

    def __init__(
        self, storage_path: str | Path, run_id: str = "0", rows_per_shard: int = 4096
    ) -> None:
        super().__init__(write_interval="batch")
        self.store = EmbeddingStore(storage_path)
        self.run_id = run_id
        self.rows_per_shard = rows_per_shard
        self._rows: list[Any] = []
        self._latents: list[np.ndarray] = []
        self._buffered = 0
        self._shards = 0

    def write_on_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        prediction: Any,
        batch_indices: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Buffer one batch's ``(metadata, latent)``; commit a shard when the buffer is full."""
        metadata, latent = prediction
        self._rows.append(metadata)  # an Arrow table of the batch's rows (or a list of row dicts)
        self._latents.append(latent.detach().float().cpu().numpy())
        self._buffered += len(latent)
        if self._buffered >= self.rows_per_shard:
            self._flush(trainer.global_rank)

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Commit what is left in the buffer."""
        self._flush(trainer.global_rank)

    def _flush(self, rank: int) -> None:
        if not self._rows:
            return
        name = f"part-{self.run_id}-r{rank:03d}-{self._shards:05d}"
        tables = all(isinstance(r, pa.Table) for r in self._rows)
        rows = pa.concat_tables(self._rows) if tables else [r for part in self._rows for r in part]
        self.store.write_shard(name, rows, np.concatenate(self._latents))
        self._shards += 1
        self._rows, self._latents, self._buffered = [], [], 0
