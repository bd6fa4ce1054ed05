"""QuackAutoEncoder: path equivalence, learning, Lightning wiring, shapes."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence
from torch.utils.data import DataLoader

from quackae.model.autoencoder import QuackAutoEncoder, check_finite

VOCAB, EMBED, HIDDEN = 23, 6, 8


pytestmark = pytest.mark.usefixtures("one_thread")


def padded_batch(lengths: list[int], width: int, pad: int = 0, seed: int = 0) -> Tensor:
    """(B, width) int64 tokens in [4, VOCAB) right-padded with ``pad``."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(4, VOCAB, (len(lengths), width), generator=gen)
    for row, n in enumerate(lengths):
        x[row, n:] = pad
    return x


def model(layers: int = 1, **kwargs: object) -> QuackAutoEncoder:
    torch.manual_seed(0)
    return QuackAutoEncoder(VOCAB, EMBED, HIDDEN, layers=layers, **kwargs)


def loss_and_grads(m: QuackAutoEncoder, x: Tensor, mode: str) -> tuple[Tensor, dict[str, Tensor]]:
    m.zero_grad(set_to_none=True)
    loss, _, _ = m.decode_loss(x, mode)
    loss.backward()
    return loss.detach(), {k: p.grad.clone() for k, p in m.named_parameters() if p.grad is not None}


def test_forward_shapes_and_latent_matches_packed_nn_gru() -> None:
    m = model(layers=2).double()
    x = padded_batch([7, 3, 1, 5], 8)
    latent, states = m(x)
    assert latent.shape == (4, HIDDEN) and states.shape == (4, 8, HIDDEN)
    assert states[1, 3:].abs().max() == 0

    ref = nn.GRU(EMBED, HIDDEN // 2, 2, batch_first=True, bidirectional=True).double()
    ref.load_state_dict(m.encoder.state_dict())
    lengths = x.ne(0).sum(dim=1)
    packed = pack_padded_sequence(m.embed(x), lengths, batch_first=True, enforce_sorted=False)
    _, h_n = ref(packed)
    want = h_n.view(2, 2, 4, HIDDEN // 2)[-1].permute(1, 0, 2).reshape(4, HIDDEN)
    torch.testing.assert_close(latent, want)


def seeded_loss_and_grads(
    m: QuackAutoEncoder, x: Tensor, mode: str, reduction: str = "token"
) -> tuple[Tensor, dict[str, Tensor]]:
    """:func:`loss_and_grads` with torch's generator seeded first (the same draws each call)."""
    m.zero_grad(set_to_none=True)
    torch.manual_seed(7)
    loss, _, _ = m.decode_loss(x, mode, reduction)
    loss.backward()
    return loss.detach(), {k: p.grad.clone() for k, p in m.named_parameters() if p.grad is not None}


@pytest.mark.parametrize(("layers", "max_len"), [(1, None), (2, None), (2, 5)])
@pytest.mark.parametrize(
    ("fast", "loop", "sampling"),
    [("fast", "loop", "multinomial"), ("sample", "sample-loop", "multinomial")]
    + [("sample", "sample-loop", "greedy")],
)
@pytest.mark.parametrize("reduction", ["token", "seed"])
def test_fast_paths_match_step_loops(
    layers: int, max_len: int | None, fast: str, loop: str, sampling: str, reduction: str
) -> None:
    m = model(layers=layers, max_decode_length=max_len, sampling=sampling).double()
    x = padded_batch([9, 4, 1, 6, 9], 9, seed=layers)
    loss_fast, grads_fast = seeded_loss_and_grads(m, x, fast, reduction)
    loss_loop, grads_loop = seeded_loss_and_grads(m, x, loop, reduction)
    torch.testing.assert_close(loss_fast, loss_loop)
    assert grads_fast.keys() == grads_loop.keys()
    assert len(grads_fast) == len(list(m.parameters()))
    for name, grad in grads_loop.items():
        torch.testing.assert_close(grads_fast[name], grad, msg=name)


@pytest.mark.parametrize("mode", ["fast", "sample"])
def test_packed_cpu_path_matches_the_padded_replay_path(mode: str) -> None:
    """What CPU runs (packed, fused) equals the padded path CUDA and autocast take, same draws."""
    m = model(layers=2).double()
    x = padded_batch([9, 4, 1, 6, 9, 2], 9, seed=4)
    loss_packed, grads_packed = seeded_loss_and_grads(m, x, mode)
    m._fused_ok = lambda x: False  # type: ignore[method-assign]
    loss_padded, grads_padded = seeded_loss_and_grads(m, x, mode)
    torch.testing.assert_close(loss_packed, loss_padded)
    for name, grad in grads_padded.items():
        torch.testing.assert_close(grads_packed[name], grad, msg=name)


def test_sampled_step_draws_repeat_under_a_seed_and_vary_without() -> None:
    m = model()
    x = padded_batch([8, 8, 5, 3], 8)
    latent, states = m(x)
    runs = []
    for seed in (1, 1, 2):
        torch.manual_seed(seed)
        runs.append(m.packed_decode(x, states, latent, 8, sample=True).inputs)
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])
    greedy = model(sampling="greedy")
    first = greedy.packed_decode(x, states, latent, 8, sample=True).inputs
    assert torch.equal(first, greedy.packed_decode(x, states, latent, 8, sample=True).inputs)
    with pytest.raises(ValueError, match="unknown sampling"):
        model(sampling="beam")
    with pytest.raises(ValueError, match="unknown reduction"):
        m.decode_loss(x, "fast", "sum")  # type: ignore[arg-type]


def test_sampling_differs_from_teacher_forcing_in_float32() -> None:
    m = model()
    x = padded_batch([8, 5, 3], 8)
    assert not torch.equal(m.decode_loss(x, "fast")[0], m.decode_loss(x, "sample")[0])
    with pytest.raises(ValueError, match="unknown decode mode"):
        m.decode_loss(x, "beam")  # type: ignore[arg-type]


def test_tiny_model_overfits_a_tiny_batch() -> None:
    m = model()
    x = padded_batch([8, 6, 5, 3], 8)
    optimizer = torch.optim.AdamW(m.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        optimizer.zero_grad()
        loss = m.decode_loss(x, "fast")[0]
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_lightning_fit_validate_test_predict() -> None:
    m = model(teacher_forcing=0.5, tokenizer_sha256="abc", layout={"text_offset": 4})
    batches = [padded_batch([6, 4, 2], 6, seed=i) for i in range(3)]
    loader = DataLoader(batches, batch_size=None)
    trainer = pl.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(m, train_dataloaders=loader, val_dataloaders=loader)
    metrics = trainer.callback_metrics
    for key in ("train_loss", "val_loss", "val_acc"):
        assert key in metrics and torch.isfinite(metrics[key]), key
    assert 0.0 <= metrics["val_acc"] <= 1.0
    assert trainer.lr_scheduler_configs[0].scheduler.T_max == 2
    trainer.test(m, dataloaders=loader, verbose=False)
    assert {"test_loss", "test_acc"} <= set(trainer.callback_metrics)

    meta = [{"row": i} for i in range(3)]
    out = trainer.predict(m, dataloaders=DataLoader([(meta, batches[0])], batch_size=None))
    got_meta, latent = out[0]
    assert got_meta == meta and latent.shape == (3, HIDDEN)


def test_hparams_pad_id_and_scheduler_without_trainer() -> None:
    m = model(pad_id=3, tokenizer_sha256="f00", layout={"a": 1}, lr_max_epochs=-1)
    assert m.pad_id == 3 and m.embed.padding_idx == 3
    for key, value in {
        "teacher_forcing": 0.5,
        "pad_id": 3,
        "tokenizer_sha256": "f00",
        "layout": {"a": 1},
        "num_embeddings": VOCAB,
        "hidden_size": HIDDEN,
    }.items():
        assert m.hparams[key] == value
    sched = m.configure_optimizers()["lr_scheduler"]["scheduler"]
    assert sched.T_max == 1 and sched.eta_min == 1e-4
    x = padded_batch([5, 2], 5, pad=3)
    loss, correct, tokens = m.decode_loss(x)
    assert torch.isfinite(loss) and tokens == 7 and 0 <= correct <= 7
    with pytest.raises(ValueError, match="even"):
        QuackAutoEncoder(VOCAB, EMBED, 7)


def test_non_finite_loss_raises_floating_point_error() -> None:
    m = model()
    with torch.no_grad():
        m.predict_word[-1].bias.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="train_loss"):
        m.training_step(padded_batch([4, 2], 4), 0)
    check_finite(torch.tensor(1.0), "x", 0)


def test_mean_latent_averages_text_states_and_falls_back_to_all_tokens() -> None:
    m = model(layout={"text_offset": 10}).double()
    x = padded_batch([7, 3, 5], 8)
    x[:, 0] = 1  # START, and statics below the text offset in row 2 only
    x[2, :5] = torch.tensor([1, 4, 5, 6, 3])
    final, states = m(x)
    torch.testing.assert_close(m.embed_rows(x, "final"), final)
    mean = m.embed_rows(x, "mean")
    for row in range(3):
        real = x[row].ne(0)
        text = real & x[row].ge(10)
        use = text if text.any() else real  # row 2 has no text token: every real token counts
        torch.testing.assert_close(mean[row], states[row][use].mean(dim=0))
    assert not x[2].ge(10).any() and x[0].ge(10).any()
    with pytest.raises(ValueError, match="unknown latent"):
        m.embed_rows(x, "max")
    m.latent = "mean"
    meta, out = m.predict_step((["a", "b", "c"], x))
    assert meta == ["a", "b", "c"]
    torch.testing.assert_close(out, mean)


@pytest.mark.parametrize("latent", ["final", "mean"])
def test_encode_path_uses_no_grad_kernel_and_matches_training_scan(latent: str) -> None:
    """What --encode writes (embed_rows, no grad: sorted kernel) equals the training scan, fp32."""
    torch.manual_seed(0)
    m = QuackAutoEncoder(VOCAB, EMBED, 16, layout={"text_offset": 10})
    x = padded_batch([12, 1, 5, 12, 3, 1, 8], 12, seed=3)
    want = m.embed_rows(x, latent)  # grad enabled: the autograd scan
    assert m.encoder.last_kernel == "scan"
    m.freeze()
    with torch.inference_mode():
        _, got = (
            m.predict_step(([None] * 7, x))
            if latent == m.latent
            else (None, m.embed_rows(x, latent))
        )
    assert m.encoder.last_kernel == "sorted"
    torch.testing.assert_close(got, want.detach(), atol=1e-5, rtol=0)


def test_bf16_encode_agrees_with_fp32_and_inference_made_weights_work() -> None:
    """bf16 latents within cosine 0.9999 of fp32, with weights made normally (gate table) or
    under inference_mode (no version counter: embedding matmul instead)."""
    import copy

    torch.manual_seed(0)
    m = QuackAutoEncoder(VOCAB, 32, 64, layout={"text_offset": 10}).eval()
    x = padded_batch([40, 1, 17, 40, 33], 40, seed=5)
    low = copy.deepcopy(m).to(torch.bfloat16)
    with torch.inference_mode():
        low_inf = copy.deepcopy(m).to(torch.bfloat16)  # its parameters are inference tensors
        for latent in ("final", "mean"):
            want = m.embed_rows(x, latent)
            for half in (low, low_inf):
                got = half.embed_rows(x, latent).float()
                assert half.encoder.last_kernel == "sorted"
                assert torch.nn.functional.cosine_similarity(got, want, dim=1).min() > 0.9999
