"""The sequence-to-sequence autoencoder over tokenized Censored Planet measurements.

Architecture (as the seed project's model):

* token embedding (``padding_idx = pad_id``);
* encoder: bidirectional GRU (Cho et al., 2014) over the real tokens of each row,
  ``hidden_size / 2`` per direction; the latent is both directions' final states, (B, H);
* decoder: a stack of ``layers`` GRU cells, each started from the latent; the first input is
  each row's last real token, later inputs are the previous target token (teacher forcing)
  or the previous greedy prediction (sampling);
* dot-product attention over the encoder states, scaled by sqrt(H), padding masked
  (Luong et al., 2015, "Effective Approaches to Attention-based Neural Machine Translation");
* an MLP on [decoder state ; context] predicts each token; cross-entropy ignores padding.

The loss is the mean cross-entropy over all real target tokens of the batch (the seed summed
the per-step batch means over time instead: here every token weighs the same and the scale
does not grow with T).

Four ways to decode (:meth:`QuackAutoEncoder.decode_loss` ``mode``), two maths:

``"fast"``         teacher forcing: every decoder input is known, so the decoder runs as one
                   GRU scan (:mod:`quackae.model.gru`), attention is one batched matmul and the MLP
                   and loss run once over all real positions.
``"loop"``         teacher forcing, one Python step per token with autograd through every
                   step (the reference ``"fast"`` must match).
``"sample"``       greedy sampling: a rollout without autograd picks each step's input (the
                   previous step's argmax; a choice carries no gradient), then the decoder is
                   replayed over those inputs as in ``"fast"``, with gradients.
``"sample-loop"``  greedy sampling, one Python step per token with autograd through every step
                   (the reference ``"sample"`` must match).

Training picks ``"fast"`` with probability ``teacher_forcing`` per batch, else ``"sample"``.
Validation and test do the same by default (``eval_decoding = "coin"``, the seed's), with a coin
seeded per batch index; ``eval_decoding = "forced"`` teacher-forces them. Both log the loss on
the token mean (``val_loss``) and on the seed's scale (``val_loss_seed``, :func:`seed_scale_loss`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import numpy as np
import pyarrow as pa
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import BasePredictionWriter
from torch import Tensor, nn

from quackae.dataset.embeddings import EmbeddingStore
from quackae.model.gru import FastGRU, GRUCellStack, active_rows

DecodeMode = Literal["fast", "sample", "loop", "sample-loop"]
DECODE_MODES = ("fast", "sample", "loop", "sample-loop")
#: What ``predict_step`` (``--encode``) writes per record: ``"final"`` the encoder's final states
#: (the seed's latent), ``"mean"`` the encoder states averaged over the record's text tokens.
LATENTS = ("final", "mean")
#: How validation and test decode: ``"coin"`` as training (the seed's), ``"forced"`` always
#: teacher-forced.
EVAL_DECODINGS = ("coin", "forced")
EVAL_STAGES = ("val", "test")


class QuackAutoEncoder(pl.LightningModule):
    """Sequence-to-sequence GRU autoencoder with attention; the latent is the encoder's final state.

    Batches are (B, T) int64 token ids right-padded with ``pad_id``; every row has at least
    one real token. All constructor arguments are stored in ``hparams`` (and checkpoints).
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
    ) -> None:
        super().__init__()
        if hidden_size % 2:
            raise ValueError(
                f"hidden_size must be even (two encoder directions), got {hidden_size}"
            )
        self.save_hyperparameters()
        self.pad_id = pad_id
        self.hidden_size = hidden_size
        self.max_decode_length = max_decode_length
        self.teacher_forcing = teacher_forcing
        self.text_offset = int((layout or {}).get("text_offset", 0))
        self.latent = (
            "final"  # what predict_step writes (LATENTS); an encode-time choice, not a weight
        )
        # how validation and test decode (EVAL_DECODINGS) and the seed of their per-batch coin:
        # run settings the controller sets (--eval_decoding, --seed), not weights
        self.eval_decoding = "coin"
        self.eval_seed = 0
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

    def decode_loop(self, x: Tensor, states: Tensor, latent: Tensor, sample: bool) -> Tensor:
        """Step-by-step decoder with autograd; logits (B, S, V). ``sample``: feed back the argmax.

        Per step: the GRU cell stack, attention against precomputed keys, the MLP. The step
        outputs are stacked once at the end (writing them into a preallocated buffer under
        autograd would copy the whole buffer's gradient per step: the O(T^2) trap).
        """
        steps = self._decode_steps(x)
        keys_t, bias = self._keys(states), self._attention_bias(x, states.dtype)
        hidden = [latent] * len(self.decoder.cells)
        token = self._first_input(x)
        cell0 = self.decoder.cells[0]
        gi0 = None
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
            if sample:
                token = logits[-1].detach().argmax(dim=-1)
        return torch.stack(logits, dim=1)

    def teacher_inputs(self, x: Tensor, steps: int) -> Tensor:
        """Teacher-forced decoder inputs (B, S): last real token, then targets 0..S-2."""
        return torch.cat([self._first_input(x).unsqueeze(1), x[:, : steps - 1]], dim=1)

    def greedy_inputs(self, x: Tensor, states: Tensor, latent: Tensor, steps: int) -> Tensor:
        """Decoder inputs (B, S) of greedy sampling: last real token, then each step's argmax.

        Only token choices come out of this rollout, and a choice (argmax) has no gradient,
        so it runs without autograd; :meth:`decode_loss` then replays the decoder over these
        inputs with :meth:`decode_fast`, which gives the loss and gradients of the sampling
        loop (``mode="sample-loop"``) without a per-step backward. Step t runs only the rows
        that have a real position t + 1 (rows sorted longest first): an input at a padding
        position never reaches a real one, so it is left as padding.
        """
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
                inputs[:n, t + 1] = self.predict_word(features.squeeze(1)).argmax(dim=-1)
            unsorted = torch.empty_like(inputs)
            unsorted[order] = inputs
        return unsorted

    def decode_logits(self, x: Tensor, mode: DecodeMode = "fast") -> tuple[Tensor, Tensor, Tensor]:
        """Encode and decode ``x`` (B, T): logits (N, V) and targets (N,) of the N real positions.

        Also returns the (B, S) mask of real target positions (row-major order of the N), so a
        caller can group positions by decode step. ``mode`` picks the decoder (module docstring).
        """
        latent, states = self(x)
        steps = self._decode_steps(x)
        targets = x[:, :steps]
        real = targets.ne(self.pad_id)
        if mode in ("fast", "sample"):
            inputs = (
                self.teacher_inputs(x, steps)
                if mode == "fast"
                else self.greedy_inputs(x, states, latent, steps)
            )
            logits = self.predict_word(self.decode_fast(x, states, latent, inputs)[real])
        elif mode in ("loop", "sample-loop"):
            logits = self.decode_loop(x, states, latent, sample=mode == "sample-loop")[real]
        else:
            raise ValueError(f"unknown decode mode {mode!r}; expected one of {DECODE_MODES}")
        return logits, targets[real], real

    def decode_loss(self, x: Tensor, mode: DecodeMode = "fast") -> tuple[Tensor, Tensor, Tensor]:
        """Encode and decode ``x`` (B, T); returns (mean loss, correct tokens, real tokens).

        The loss is the cross-entropy averaged over the real (non-pad) target positions;
        ``mode`` picks the decoder (module docstring). The counts are 0-dim int64 tensors.
        """
        logits, wanted, real = self.decode_logits(x, mode)
        loss = F.cross_entropy(logits, wanted)
        correct = logits.detach().argmax(dim=-1).eq(wanted).sum()
        return loss, correct, real.sum()

    # ----------------------------------------------------------------- Lightning hooks

    def training_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        """Teacher-forced (fast) with probability ``teacher_forcing``, else greedy sampling.

        Logs ``train_loss``. Raises ``FloatingPointError`` when the loss is not finite, so a
        diverged run stops at once instead of training on NaN weights.
        """
        forced = torch.rand(()).item() < self.teacher_forcing
        loss, _, tokens = self.decode_loss(batch, "fast" if forced else "sample")
        self.log("train_loss", loss, prog_bar=True, batch_size=int(tokens))
        check_finite(loss, "train_loss", self.global_step)
        return loss

    def eval_teacher_forced(self, stage: str, batch_idx: int) -> bool:
        """Whether validation or test batch ``batch_idx`` is teacher-forced (``eval_decoding``).

        ``"coin"`` (the seed's: its validation and test steps toss the training coin): teacher
        forcing with probability ``teacher_forcing``, drawn from (``eval_seed``, stage, batch
        index) only, so every validation compares the same batches decoded the same way, and
        every Ray rank makes the same choice (each logs the same metrics). ``"forced"``: always.
        """
        if self.eval_decoding == "forced":
            return True
        if self.eval_decoding != "coin":
            raise ValueError(f"unknown eval_decoding {self.eval_decoding!r}; expected coin|forced")
        key = [int(self.eval_seed) & 0xFFFFFFFF, EVAL_STAGES.index(stage), int(batch_idx)]
        return bool(np.random.default_rng(key).random() < self.teacher_forcing)

    def _eval_step(self, batch: Tensor, batch_idx: int, stage: str) -> Tensor:
        """Loss on both scales and token accuracy over non-pad positions.

        Logs ``{stage}_loss`` (mean over real tokens), ``{stage}_loss_seed`` (the seed's scale,
        :func:`seed_scale_loss`, averaged over rows as the seed's Lightning did), ``{stage}_acc``,
        and the loss again as ``{stage}_loss_forced`` or ``{stage}_loss_sampled`` by the batch's
        decoding, so each mode's mean is there beside the mixture.
        """
        forced = self.eval_teacher_forced(stage, batch_idx)
        logits, wanted, real = self.decode_logits(batch, "fast" if forced else "sample")
        per_token = F.cross_entropy(logits.float(), wanted, reduction="none")
        loss = per_token.mean()
        n, rows = int(real.sum()), int(batch.shape[0])
        correct = logits.detach().argmax(dim=-1).eq(wanted).sum()
        self.log(f"{stage}_loss", loss, sync_dist=True, batch_size=n, prog_bar=stage == "val")
        self.log(
            f"{stage}_loss_seed",
            seed_scale_loss(per_token, real),
            sync_dist=True,
            batch_size=rows,
            prog_bar=stage == "val",
        )
        self.log(f"{stage}_acc", correct.float() / n, sync_dist=True, batch_size=n)
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
