"""quackae's model beside the seed's original ``autoencoder.py``, with the same weights.

The original is imported by path through ``benchmarks/seed_original.py`` (stand-ins for
``pytorch_lightning`` 1.5 and ``cp_flatten``; one patch, ``batch_first``); the test skips where
``../shared/reference/cp_learning/`` is absent. Batches are padded with the seed's pad id (1).
"""

from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats
from torch import Tensor

from quackae.model.autoencoder import QuackAutoEncoder

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "seed_original.py"
_SPEC = importlib.util.spec_from_file_location("seed_original", _PATH)
assert _SPEC is not None and _SPEC.loader is not None
seed_original = importlib.util.module_from_spec(_SPEC)
sys.modules.setdefault("seed_original", seed_original)
_SPEC.loader.exec_module(seed_original)

pytestmark = [
    pytest.mark.skipif(
        seed_original.reference_dir() is None, reason=seed_original.missing_reason()
    ),
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.filterwarnings("ignore"),  # the original's self.log without a Trainer warns
]

PAD = seed_original.SEED_PAD
VOCAB, EMBED, HIDDEN = 40, 10, 12
LENGTHS = [9, 4, 1, 6, 9, 2]  # one row fills the width, as the seed's collate guarantees


def batch(lengths: list[int] = LENGTHS, width: int = 9, seed: int = 0) -> Tensor:
    """(B, width) tokens in [4, VOCAB) right-padded with the seed's pad id."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(4, VOCAB, (len(lengths), width), generator=gen)
    for row, n in enumerate(lengths):
        x[row, n:] = PAD
    return x


def pair(layers: int = 1, fix_batch_first: bool = True, vocab: int = VOCAB, **kw: object):
    """The original (its own init, seeded) and quackae's model with its weights copied in."""
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        original = seed_original.build(
            vocab, EMBED, HIDDEN, layers, 9, pad_id=PAD, fix_batch_first=fix_batch_first
        ).double()
    ours = QuackAutoEncoder(vocab, EMBED, HIDDEN, layers=layers, pad_id=PAD, **kw).double()
    ours.load_state_dict(seed_original.quackae_state(original))
    return original, ours


@pytest.mark.parametrize("layers", [1, 2])
def test_same_latents_and_states_on_a_padded_batch(layers: int) -> None:
    original, ours = pair(layers)
    x = batch()
    want_latent, want_states = original(x)
    latent, states = ours(x)
    torch.testing.assert_close(latent, want_latent)
    torch.testing.assert_close(states, want_states)
    with torch.no_grad():  # the encode path (no-grad kernel) writes the same latent
        torch.testing.assert_close(ours.embed_rows(x, "final"), want_latent)


def test_unpatched_original_mixes_rows_in_its_attention_states() -> None:
    """The defect quackae fixed: without ``batch_first`` (T, B, H) states are read as (B, T, H)."""
    original, ours = pair(fix_batch_first=False)
    x = batch()
    latent, states = original(x)
    want_latent, want_states = ours(x)
    torch.testing.assert_close(latent, want_latent)  # the latent is unaffected
    b, t, h = want_states.shape
    torch.testing.assert_close(states, want_states.transpose(0, 1).reshape(b, t, h))
    assert not torch.allclose(states, want_states)
    forced = seed_original.step(original, x, teacher_forcing=True)
    assert abs(float(forced) - float(ours.decode_loss(x, "fast", "seed")[0])) > 1e-3


@pytest.mark.parametrize("layers", [1, 2])
def test_same_teacher_forced_loss_and_gradients_on_the_seeds_scale(layers: int) -> None:
    original, ours = pair(layers)
    x = batch(seed=layers)
    want = seed_original.step(original, x, teacher_forcing=True)
    want.backward()
    loss, _, tokens = ours.decode_loss(x, "fast", reduction="seed")
    loss.backward()
    torch.testing.assert_close(loss, want)
    grads = {k: p.grad for k, p in original.named_parameters()}
    for name in seed_original.quackae_state(original):
        ours_grad = dict(ours.named_parameters())[name].grad
        theirs = grads[seed_original.MANGLED + name.replace("decoder.cells.", "decoder.")]
        if name == "predict_word.0.weight":
            theirs = torch.cat([theirs[:, HIDDEN:], theirs[:, :HIDDEN]], dim=1)
        torch.testing.assert_close(ours_grad, theirs, msg=name)
    # quackae's training loss is the token mean of the same cross-entropies
    token_mean = ours.decode_loss(x, "fast")[0]
    assert tokens == sum(LENGTHS) and float(token_mean) < float(loss)


def first_draws(calls: int, sample) -> np.ndarray:
    """(calls, b, 2) the tokens fed after decode steps 0 and 1, per row, over repeated calls."""
    return np.stack([sample() for _ in range(calls)])


def original_sampler(original, x: Tensor):
    """One sampled step of the original; the tokens it drew after steps 0 and 1, (B, 2)."""
    seen: list[Tensor] = []
    embed = seed_original.parts(original)["embed"]
    hook = embed.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].clone()))

    def sample() -> np.ndarray:
        seen.clear()
        with torch.no_grad():
            seed_original.step(original, x, teacher_forcing=False)
        # calls: the encoder's (B, T) input, the first decoder input, then one draw per step
        return torch.stack([seen[2], seen[3]], dim=1).numpy()

    sample.hook = hook  # type: ignore[attr-defined]  # kept alive with the sampler
    return sample


def quackae_sampler(ours: QuackAutoEncoder, x: Tensor):
    """One fused sampled decode of quackae's; the tokens it drew after steps 0 and 1, (B, 2)."""

    def sample() -> np.ndarray:
        with torch.no_grad():
            latent, states = ours(x)
            out = ours.packed_decode(x, states, latent, x.shape[1], sample=True)
        got = np.zeros((len(x), 2), dtype=np.int64)
        layout = out.layout
        for t in (1, 2):
            span = layout.span(t)
            got[layout.order[: layout.sizes[t]].numpy(), t - 1] = out.inputs[span].numpy()
        return got

    return sample


def step0_probabilities(ours: QuackAutoEncoder, x: Tensor) -> np.ndarray:
    """The exact softmax of each row's first prediction, (B, V): what the first draw samples."""
    with torch.no_grad():
        latent, states = ours(x)
        logits = ours.decode_loop(x, states, latent, sample=False)[:, 0]
    return logits.softmax(dim=-1).numpy()


def goodness_of_fit(draws: np.ndarray, probs: np.ndarray) -> float:
    """p-value of draws (calls,) of one row against its probabilities (V,), rare cells pooled."""
    counts = np.bincount(draws, minlength=len(probs)).astype(float)
    expected = probs * len(draws)
    keep = expected >= 5
    obs = np.append(counts[keep], counts[~keep].sum())
    exp = np.append(expected[keep], expected[~keep].sum())
    if exp[-1] < 5:  # too little mass left over to be its own cell: fold it into the largest
        obs[np.argmax(exp[:-1])] += obs[-1]
        exp[np.argmax(exp[:-1])] += exp[-1]
        obs, exp = obs[:-1], exp[:-1]
    return float(stats.chisquare(obs, exp * obs.sum() / exp.sum()).pvalue)


def test_sampled_steps_draw_from_the_softmax_like_the_originals() -> None:
    """Both draw the first fed-back token from the same softmax; both draw the second alike."""
    vocab = 8  # few classes: a few hundred draws fill every cell of the tests
    original, ours = pair(vocab=vocab)
    greedy = QuackAutoEncoder(vocab, EMBED, HIDDEN, pad_id=PAD, sampling="greedy").double()
    greedy.load_state_dict(ours.state_dict())
    gen = torch.Generator().manual_seed(3)
    x = torch.randint(4, vocab, (4, 6), generator=gen)
    x[1, 4:] = PAD
    calls = 400
    torch.manual_seed(11)
    np.random.seed(11)
    theirs = first_draws(calls, original_sampler(original, x))
    mine = first_draws(calls, quackae_sampler(ours, x))
    greedy_draws = first_draws(20, quackae_sampler(greedy, x))
    probs = step0_probabilities(ours, x)
    for row in range(len(x)):
        # first draw: each against the exact distribution (greedy fails this)
        assert goodness_of_fit(theirs[:, row, 0], probs[row]) > 1e-3
        assert goodness_of_fit(mine[:, row, 0], probs[row]) > 1e-3
        assert len(set(greedy_draws[:, row, 0])) == 1
        assert goodness_of_fit(np.repeat(greedy_draws[:1, row, 0], calls), probs[row]) < 1e-6
        # second draw (depends on the first): the two samplers' distributions agree
        table = np.stack(
            [np.bincount(d, minlength=vocab) for d in (theirs[:, row, 1], mine[:, row, 1])]
        )
        table = table[:, table.sum(axis=0) > 0]
        assert stats.chi2_contingency(table).pvalue > 1e-3
        assert len(set(mine[:, row, 1])) > 1  # a spread, not one token


def test_sampled_loss_spread_matches_the_originals() -> None:
    """Over repeated sampled steps the seed-scale losses of both models have one distribution."""
    original, ours = pair()
    x = batch(seed=4)
    torch.manual_seed(5)
    np.random.seed(5)
    with torch.no_grad():
        theirs = [float(seed_original.step(original, x, False)) for _ in range(150)]
        mine = [float(ours.decode_loss(x, "sample", "seed")[0]) for _ in range(150)]
    assert np.std(mine) > 0 and np.std(theirs) > 0
    assert stats.ks_2samp(theirs, mine).pvalue > 1e-3
