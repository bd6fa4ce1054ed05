"""The seed project's own ``autoencoder.py``, imported by path, for same-run comparisons.

The file is read at run time from ``../shared/reference/cp_learning/`` (GPL-3.0; nothing of it is
copied into this repository). The benchmarks and ``tests/test_seed_parity.py`` import this module
by its path; nothing in ``src/`` imports it.

What the original needs that today's libraries lack, and what stands in for it:

* ``pytorch_lightning`` (1.5): the package is not installed here; its two names the file uses,
  ``LightningModule`` and ``callbacks.BasePredictionWriter``, are the same classes in
  ``lightning.pytorch`` 2.x, so ``lightning.pytorch`` stands in for the module while the file is
  executed (and is removed from ``sys.modules`` afterwards, so Ray and Lightning see no alias).
* ``cp_flatten``: the real module imports fairseq 0.10, webdataset 0.1.62, geoip2 and urlextract at
  import time (none installs with torch 2.13); the autoencoder takes only
  ``QuackConstants.XLMR_PAD`` from it, ``cp_tokenized_data.py`` also ``VOCAB``, ``cp_dataset.py``
  the ``TokenizedQuackData`` TypedDict: an enum of those two constants (the seed's values, except
  that a caller feeding batches padded with another id passes that pad) and ``dict`` stand in.
* ``pytorch_lightning.utilities.types`` (``cp_tokenized_data.py``'s dataloader type aliases): the
  same names in ``lightning.pytorch.utilities.types``.

One patch, and only with ``fix_batch_first=True`` (the default): the original calls
``pad_packed_sequence(encoded_sequence)`` without ``batch_first=True``, so its (T, B, H) encoder
states are then ``view``-ed as (B, T, H) and attention reads other rows' states (a defect; the
latent is unaffected). The patched name passes ``batch_first=True``; everything else runs as
written. Like the original, the patched call needs one row of every batch to fill its full width
(the seed's collate pads to the longest row), else the original's ``view`` fails or mis-shapes.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import importlib.util
import itertools
import os
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

#: The seed's pad id (XLM-R's ``<pad>``), ``cp_flatten.QuackConstants.XLMR_PAD``.
SEED_PAD = 1
#: ``cp_flatten.QuackConstants.VOCAB``: the seed's remapped XLM-R vocabulary size.
SEED_VOCAB = 6813
#: Where the reference checkout sits relative to a checkout of quackae (``../shared/reference``).
RELATIVE = Path("shared") / "reference" / "cp_learning"
#: The original's private attribute prefix (name mangling of ``self.__embed`` and so on).
MANGLED = "_QuackAutoEncoder__"
_LOADS = itertools.count()


def reference_dir() -> Path | None:
    """The seed's ``cp_learning`` folder: ``$QUACKAE_REFERENCE``, else ``../shared/reference``.

    ``../`` is searched upwards from this repository (a worktree under ``/work/wt/<name>`` finds
    ``/work/shared`` as ``/work/main`` does); None when absent.
    """
    env = os.environ.get("QUACKAE_REFERENCE")
    if env:
        path = Path(env) / "cp_learning" if (Path(env) / "cp_learning").is_dir() else Path(env)
        return path if (path / "autoencoder.py").is_file() else None
    for parent in Path(__file__).resolve().parents[1:]:
        candidate = parent / RELATIVE
        if (candidate / "autoencoder.py").is_file():
            return candidate
    return None


def missing_reason() -> str:
    """The one line a benchmark prints (and a test skips with) when the original is absent."""
    return (
        "the seed's original model is not here (../shared/reference/cp_learning/autoencoder.py; "
        "set QUACKAE_REFERENCE to its folder): skipped the same-run comparison with it"
    )


def _batch_first(sequence: PackedSequence, *args: Any, **kwargs: Any) -> tuple[Tensor, Tensor]:
    """``pad_packed_sequence`` with ``batch_first=True``: the one patch of the original."""
    kwargs["batch_first"] = True
    return pad_packed_sequence(sequence, *args, **kwargs)


def _cp_flatten(pad_id: int) -> types.ModuleType:
    """The stand-in ``cp_flatten``: the two names the model and data files take from it."""
    module = types.ModuleType("cp_flatten")
    # XLMR_PAD: the pad id; VOCAB: the shift cp_tokenized_data adds to static values (the seed's)
    module.QuackConstants = enum.Enum(  # type: ignore[attr-defined]
        "QuackConstants", {"XLMR_PAD": pad_id, "VOCAB": SEED_VOCAB}
    )
    module.TokenizedQuackData = dict  # type: ignore[attr-defined]  # a TypedDict: a dict
    return module


@contextlib.contextmanager
def _stand_ins(pad_id: int, extra: dict[str, types.ModuleType]) -> Iterator[None]:
    """Stand-ins (and already loaded seed modules) in ``sys.modules`` while a seed file runs."""
    import lightning.pytorch as lp
    import lightning.pytorch.callbacks as lp_callbacks
    import lightning.pytorch.utilities as lp_utilities
    import lightning.pytorch.utilities.types as lp_types

    stand_ins = {
        "pytorch_lightning": lp,
        "pytorch_lightning.callbacks": lp_callbacks,
        "pytorch_lightning.utilities": lp_utilities,
        "pytorch_lightning.utilities.types": lp_types,
        "cp_flatten": _cp_flatten(pad_id),
        **extra,
    }
    saved = {name: sys.modules.get(name) for name in stand_ins}
    sys.modules.update(stand_ins)
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def load_file(stem: str, pad_id: int = SEED_PAD, **extra: types.ModuleType) -> types.ModuleType:
    """Execute the seed's ``<stem>.py`` as a fresh module, ``extra`` seed modules importable."""
    folder = reference_dir()
    if folder is None:
        raise FileNotFoundError(missing_reason())
    name = f"seed_{stem}_{next(_LOADS)}"
    spec = importlib.util.spec_from_file_location(name, folder / f"{stem}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    with _stand_ins(pad_id, extra):
        spec.loader.exec_module(module)
    return module


def load(pad_id: int = SEED_PAD, fix_batch_first: bool = True) -> types.ModuleType:
    """The original ``autoencoder.py`` as a fresh module (FileNotFoundError if absent).

    ``pad_id`` is the stand-in ``XLMR_PAD``; ``fix_batch_first`` applies the one patch.
    """
    module = load_file("autoencoder", pad_id)
    if fix_batch_first:
        module.pad_packed_sequence = _batch_first  # type: ignore[attr-defined]
    return module


def load_data(pad_id: int = SEED_PAD) -> types.ModuleType:
    """The seed's ``cp_tokenized_data.py`` (its collate ``pad_right_with_meta``), with the seed's
    ``cp_dataset.py`` (``QuackIterableDataset``, the pickle store's reader) as ``.cp_dataset``.

    Both run unchanged; ``cp_flatten`` is the stand-in (the dataset module takes only the
    ``TokenizedQuackData`` TypedDict from it, a plain dict).
    """
    dataset = load_file("cp_dataset", pad_id)
    data = load_file("cp_tokenized_data", pad_id, cp_dataset=dataset)
    data.cp_dataset = dataset  # type: ignore[attr-defined]
    return data


def build(
    vocab: int,
    embed: int,
    hidden: int,
    layers: int = 1,
    max_decode_length: int = 10**9,
    pad_id: int = SEED_PAD,
    fix_batch_first: bool = True,
) -> nn.Module:
    """The original ``QuackAutoEncoder`` at these sizes (its own initialisation, torch's RNG).

    ``max_decode_length`` must be an int: the original computes ``min(max_decode_length, T)``.
    """
    module = load(pad_id, fix_batch_first)
    return module.QuackAutoEncoder(vocab, embed, hidden, layers, max_decode_length)


def parts(original: nn.Module) -> dict[str, nn.Module]:
    """The original's sub-modules by their plain names: embed, encoder, decoder, predict_word."""
    return {
        n: getattr(original, MANGLED + n) for n in ("embed", "encoder", "decoder", "predict_word")
    }


def quackae_state(original: nn.Module) -> dict[str, Tensor]:
    """The original's weights under quackae's parameter names, ready for ``load_state_dict``.

    Every tensor maps by name, except the first prediction layer's input columns: the original
    feeds ``[context ; h]``, quackae ``[h ; context]``, so its two halves are swapped.
    """
    out: dict[str, Tensor] = {}
    for key, value in original.state_dict().items():
        name = key.removeprefix(MANGLED)
        if name.startswith("decoder."):
            name = "decoder.cells." + name.removeprefix("decoder.")
        if name == "predict_word.0.weight":
            half = value.shape[1] // 2
            value = torch.cat([value[:, half:], value[:, :half]], dim=1)
        out[name] = value.detach().clone()
    return out


def step(original: nn.Module, x: Tensor, teacher_forcing: bool, stage: str = "train") -> Tensor:
    """One ``_common_step`` of the original, its teacher-forcing coin set to ``teacher_forcing``.

    The original draws the coin as ``np.random.choice((True, False))``, its first use of numpy's
    global generator in the step, so numpy is seeded to a seed whose first draw is the wanted side
    (no code of the original is changed). Returns its loss: a sum over decode steps of per-step
    mean cross-entropy (the seed's scale).
    """
    np.random.seed(coin_seed(teacher_forcing))
    return original._common_step(x, 0, stage)


@functools.lru_cache(maxsize=2)
def coin_seed(teacher_forcing: bool) -> int:
    """The smallest numpy seed whose first ``np.random.choice((True, False))`` is that side."""
    for seed in range(100):
        np.random.seed(seed)
        if bool(np.random.choice((True, False))) == teacher_forcing:
            return seed
    raise RuntimeError("no numpy seed in 0..99 gives that coin")  # pragma: no cover
