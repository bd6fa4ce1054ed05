"""Classify autoencoder latents as censored or not, to find censorship the fingerprints miss.

``train_classifier`` fits ``QuackLatentClassifier`` (the seed's MLP head) by a named recipe
(:mod:`quackae.classify.recipes`: quackae's, or the seed's as it published it) on the labelled
latents of an embeddings directory (``--filtered``), measures it on a held-out split (quackae's:
stable by row id; the seed's: its random 70/20/10, seeded), and fits a model without the
autoencoder on the same split for comparison: logistic regression on the bag of token ids (text
tokens and static-feature tokens) read from the dataset. ``predict`` scores every row of an
embeddings directory (``--evaluate``), shard by shard (``quackae.report`` turns the scores into
the candidates report).

Files under ``storage_path``::

    classifier-*.ckpt          best checkpoint(s) by validation loss (the seed's recipes: top 3
                               and last.ckpt), Lightning, plain tensors
    baseline.npz               the baseline's coefficients (allow_pickle=False)
    metrics.json               held-out metrics of both models, the seed's metrics, which wins
    logs/classifier/metrics.csv  per-epoch train/val/test loss, accuracy, F1, ROC-AUC
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch import nn

from quackae.classify.baseline import (
    BASELINE_FILE,
    BagOfTokensBaseline,
    fit_baseline,
    open_dataset_tokens,
)
from quackae.classify.calibration import (
    CALIBRATIONS,
    binary_metrics,
    calibrate,
)
from quackae.classify.latents import SPLIT_FRACTIONS, SPLITS, LatentDataModule
from quackae.classify.predictions import PREDICTIONS_META
from quackae.classify.recipes import Recipe, recipe, seed_f1, seed_metrics
from quackae.dataset import store
from quackae.dataset.embeddings import (
    embedding_matrix,
    read_meta,
    shard_paths,
)
from quackae.io.atomic import TMP_SUFFIX, atomic_path, atomic_write

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
TIE_MARGIN = 0.005  # ROC-AUC difference below which neither model "wins"


# --------------------------------------------------------------------------- reading latents


# --------------------------------------------------------------------------- the model


class QuackLatentClassifier(pl.LightningModule):
    """MLP head H -> H/4 -> H/8 -> 1 with LeakyReLU, BCE-with-logits, AdamW + cosine schedule.

    The seed's ``QuackLatentClassifier`` in shape; its settings are the ``seed`` recipe
    (:mod:`quackae.classify.recipes`). With ``standardise`` the inputs are centred and scaled by
    the training split's mean and scale, kept as buffers so a checkpoint carries them (the seed
    fed raw latents). While training, the standardised inputs can be regularised by dropout
    (``input_dropout``) and additive Gaussian noise (``input_noise``, in standard deviations):
    the labelled rows come from a few known page templates, and perturbing their latents keeps
    the head from keying on template-exact coordinates.
    """

    def __init__(
        self,
        input_dim: int,
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-2,
        max_epochs: int = 20,
        threshold: float = 0.5,
        input_dropout: float = 0.0,
        input_noise: float = 0.0,
        leak: float = 0.01,
        standardise: bool = True,
        learning_rate_min: float = 0.0,
        lr_max_epochs: int = -1,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        h4, h8 = max(input_dim // 4, 1), max(input_dim // 8, 1)
        self.net = nn.Sequential(
            nn.Linear(input_dim, h4),
            nn.LeakyReLU(leak),
            nn.Linear(h4, h8),
            nn.LeakyReLU(leak),
            nn.Linear(h8, 1),
        )
        self.register_buffer("mean", torch.zeros(input_dim))
        self.register_buffer("scale", torch.ones(input_dim))
        self.loss_fn = nn.BCEWithLogitsLoss()
        self._outputs: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {s: [] for s in SPLITS}

    def set_standardisation(self, x: np.ndarray) -> None:
        """Centre and scale inputs by the statistics of ``x`` (the training latents), if asked."""
        if not self.hparams.get("standardise", True):
            return
        self.mean.copy_(torch.from_numpy(x.mean(axis=0)))
        self.scale.copy_(torch.from_numpy(np.maximum(x.std(axis=0), 1e-6)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits, shape ``(B,)``."""
        z = (x - self.mean) / self.scale
        if self.training:
            p, sigma = (
                float(self.hparams.get("input_dropout", 0.0)),
                float(self.hparams.get("input_noise", 0.0)),
            )
            if p > 0:
                z = nn.functional.dropout(z, p)
            if sigma > 0:
                z = z + sigma * torch.randn_like(z)
        return self.net(z).squeeze(-1)

    @torch.inference_mode()
    def probability(self, x: np.ndarray, batch_size: int = 8192) -> np.ndarray:
        """Sigmoid probabilities of a float32 array, in batches."""
        self.eval()
        out = [
            torch.sigmoid(self(torch.from_numpy(x[i : i + batch_size])))
            for i in range(0, len(x), batch_size)
        ]
        return torch.cat(out).numpy().astype(np.float32) if out else np.zeros(0, np.float32)

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = self.loss_fn(logits, y)
        self.log(
            f"{stage}_loss",
            loss,
            on_step=False,
            on_epoch=True,
            prog_bar=stage != "test",
            batch_size=len(y),
        )
        self._outputs[stage].append((torch.sigmoid(logits).detach(), y.detach()))
        return loss

    def training_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int
    ) -> torch.Tensor:
        """One optimisation step."""
        return self._step(batch, "train")

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        """Validation loss; metrics at epoch end."""
        self._step(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        """Test loss; metrics at epoch end."""
        self._step(batch, "test")

    def _epoch_metrics(self, stage: str) -> None:
        outputs, self._outputs[stage] = self._outputs[stage], []
        if not outputs:
            return
        prob = torch.cat([p for p, _ in outputs]).float().cpu().numpy()
        target = torch.cat([t for _, t in outputs]).cpu().numpy()
        m = binary_metrics(target, prob, self.hparams.threshold)
        self.log(f"{stage}_acc", float(m["accuracy"]))
        self.log(f"{stage}_f1", float(m["f1"]))
        self.log(f"{stage}_f1_seed", seed_f1(target, prob >= self.hparams.threshold))
        self.log(f"{stage}_auc", float("nan") if m["roc_auc"] is None else m["roc_auc"])

    def on_train_epoch_end(self) -> None:
        """Training accuracy, F1, ROC-AUC of the epoch."""
        self._epoch_metrics("train")

    def on_validation_epoch_end(self) -> None:
        """Validation accuracy, F1, ROC-AUC."""
        self._epoch_metrics("val")

    def on_test_epoch_end(self) -> None:
        """Test accuracy, F1, ROC-AUC."""
        self._epoch_metrics("test")

    def configure_optimizers(self) -> dict[str, Any]:
        """AdamW, the rate cosine-annealed to ``learning_rate_min`` over ``lr_max_epochs``.

        ``lr_max_epochs <= 0`` anneals over ``max_epochs`` (the seed passed its -1 to
        ``CosineAnnealingLR``, which swings every epoch; ``lr_max_epochs=1`` does that).
        """
        hp = self.hparams
        opt = torch.optim.AdamW(
            self.parameters(), lr=hp.learning_rate, weight_decay=hp.weight_decay
        )
        length = int(hp.get("lr_max_epochs", -1))
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(
            opt,
            T_max=length if length > 0 else max(int(hp.max_epochs), 1),
            eta_min=float(hp.get("learning_rate_min", 0.0)),
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}


def load_classifier(checkpoint: Path) -> QuackLatentClassifier:
    """A trained classifier from a checkpoint, loaded with ``weights_only=True``."""
    remedy = "pass a classifier-*.ckpt written by `quackae classify train`"
    if Path(checkpoint).is_dir():
        raise ValueError(f"--checkpoint_path {checkpoint} is a folder, not a file; {remedy}")
    if not Path(checkpoint).is_file():
        raise ValueError(f"--checkpoint_path {checkpoint}: no such file; {remedy}")
    try:
        ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - not a checkpoint (or one holding code): a user error
        raise ValueError(
            f"--checkpoint_path {checkpoint} is not a PyTorch checkpoint quackae can read; {remedy}"
        ) from None
    hp = (ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None) or {}
    if "input_dim" not in hp:
        raise ValueError(
            f"--checkpoint_path {checkpoint} is not a latent classifier's checkpoint (no "
            f"input_dim; an autoencoder's is used by `quackae encode`); {remedy}"
        )
    model = QuackLatentClassifier(
        **{
            k: hp[k]
            for k in (
                "input_dim",
                "learning_rate",
                "weight_decay",
                "max_epochs",
                "threshold",
                "input_dropout",
                "input_noise",
                "leak",
                "standardise",
                "learning_rate_min",
                "lr_max_epochs",
            )
            if k in hp
        }
    )
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()


# --------------------------------------------------------------------------- data


def verdict(classifier: dict[str, Any], baseline: dict[str, Any]) -> tuple[str, str]:
    """Which model wins on held-out ROC-AUC (F1 breaks near-ties), and a sentence saying so."""
    if baseline.get("skipped"):
        return "classifier (no baseline)", f"baseline skipped: {baseline['skipped']}"
    a, b = classifier.get("roc_auc"), baseline.get("roc_auc")
    if a is None or b is None:
        a, b, by = classifier["f1"], baseline["f1"], "F1"
    else:
        by = "ROC-AUC"
    if abs(a - b) < TIE_MARGIN:
        fa, fb = classifier["f1"], baseline["f1"]
        if abs(fa - fb) < TIE_MARGIN:
            return (
                "tie",
                f"tie: {by} {a:.4f} (latent classifier) vs {b:.4f} (bag-of-tokens baseline), F1 "
                "equal too",
            )
        a, b, by = fa, fb, f"F1 ({by} within {TIE_MARGIN})"
    win = "classifier" if a > b else "baseline"
    names = {"classifier": "the latent classifier", "baseline": "the bag-of-tokens baseline"}
    return (
        win,
        f"{names[win]} wins on held-out {by}: {a:.4f} (latent classifier) vs {b:.4f} (baseline)",
    )


# --------------------------------------------------------------------------- training


def _quiet_lightning() -> None:
    from quackae.model.console import quiet_lightning

    for pattern in (
        ".*does not have many workers.*",
        ".*LeafSpec.*",
        ".*is deprecated.*",
        ".*Checkpoint directory.*exists and is not empty.*",
        ".*Experiment logs directory.*exists and is not empty.*",
    ):
        warnings.filterwarnings("ignore", message=pattern)
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    logging.getLogger("lightning.pytorch.accelerators.cuda").setLevel(logging.WARNING)
    quiet_lightning()


def _head(dim: int, settings: Recipe) -> QuackLatentClassifier:
    """An untrained head with a recipe's settings."""
    return QuackLatentClassifier(
        dim,
        learning_rate=settings.learning_rate,
        weight_decay=settings.weight_decay,
        max_epochs=settings.max_epochs,
        threshold=settings.threshold,
        input_dropout=settings.input_dropout,
        input_noise=settings.input_noise,
        leak=settings.leak,
        standardise=settings.standardise,
        learning_rate_min=settings.learning_rate_min,
        lr_max_epochs=settings.lr_max_epochs,
    )


def _fit_head(
    dm: LatentDataModule, settings: Recipe, checkpoints: Path, logger: Any, progress: bool
) -> tuple[QuackLatentClassifier, Path, pl.Trainer, QuackLatentClassifier]:
    """Train one head on ``dm``'s train split: the best epoch by val loss, its file, the trainer,
    and the head as fit ended (the final weights)."""
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

    from quackae.model.console import console_callbacks

    model = _head(dm.dim, settings)
    model.set_standardisation(dm.part("train")[0])
    checkpoint = ModelCheckpoint(
        dirpath=str(checkpoints),
        filename="classifier-{epoch:02d}-{val_loss:.4f}",
        monitor="val_loss",
        mode="min",
        save_top_k=settings.save_top_k,
        save_last=settings.save_last,
    )
    callbacks: list[Any] = [checkpoint]
    if settings.patience or settings.stopping_threshold is not None:
        callbacks.append(
            EarlyStopping(
                "val_loss",
                mode="min",
                patience=settings.patience or settings.max_epochs + 1,
                stopping_threshold=settings.stopping_threshold,
                check_finite=True,
            )
        )
    trainer = pl.Trainer(
        max_epochs=settings.max_epochs,
        accelerator="cpu",
        devices=1,
        logger=logger,
        callbacks=[*callbacks, *console_callbacks(progress, False)],  # "Epoch 2/20", no v_num
        enable_progress_bar=progress,
        enable_model_summary=False,
        log_every_n_steps=1,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, datamodule=dm)
    best = Path(checkpoint.best_model_path)
    return load_classifier(best), best, trainer, model.eval()


def _stopped(trainer: pl.Trainer) -> str:
    """Why a head's fit ended: early stopping's reason, or max_epochs."""
    from lightning.pytorch.callbacks import EarlyStopping

    for cb in trainer.callbacks:
        if isinstance(cb, EarlyStopping) and cb.stopping_reason.name != "NOT_STOPPED":
            return cb.stopping_reason.name.lower()
    return "max_epochs"


def fit_recipe(
    dm: LatentDataModule,
    settings: Recipe,
    storage: Path,
    seed: int = 0,
    progress: bool = False,
    target_fpr: float = 0.01,
    logger: Any = False,
) -> dict[str, Any]:
    """Train a head by ``settings`` on ``dm``, calibrate its threshold, measure it on the test
    split.

    Returns the head the predictions use (``model``: the best checkpoint's, as the seed's
    ``latent_predict.sh`` used a kept checkpoint), its ``checkpoint``, the threshold rule, and
    the test split's metrics from the weights ``settings.test_weights`` names: quackae's
    (``classifier``: :func:`binary_metrics` at the calibrated threshold) and the seed's
    (``seed``: :func:`seed_metrics` at 0.5, recall at ``target_fpr`` set on the validation split).
    """
    import tempfile

    pl.seed_everything(seed, verbose=False)
    model, best, trainer, final = _fit_head(dm, settings, storage, logger, progress)
    x_va, y_va, _ = dm.part("val")

    def held_out(view: LatentDataModule, mask: np.ndarray) -> np.ndarray:
        pl.seed_everything(seed, verbose=False)
        with tempfile.TemporaryDirectory(dir=storage) as tmp:
            head = _fit_head(view, settings, Path(tmp), False, False)[0]
        return head.probability(dm.x[mask])

    tested = final if settings.test_weights == "final" else model
    val_prob = tested.probability(x_va)
    rule = calibrate(
        settings.threshold, settings.calibration, target_fpr, val_prob[y_va == 0], dm, held_out
    )
    model.hparams.threshold = tested.hparams.threshold = rule["threshold"]
    epochs = trainer.current_epoch
    trainer.test(tested, datamodule=dm, verbose=False)
    x_te, y_te, _ = dm.part("test")
    prob = tested.probability(x_te)
    return {
        "model": model,
        "checkpoint": best,
        "threshold_rule": rule,
        "threshold": rule["threshold"],
        "classifier": {
            "model": "QuackLatentClassifier on autoencoder latents",
            **binary_metrics(y_te, prob, rule["threshold"]),
        },
        "seed": seed_metrics(y_te, prob, val_prob[y_va == 0], target_fpr, settings.threshold),
        "epochs": epochs,
        "stopped": _stopped(trainer),
        "test_weights": settings.test_weights,
    }


def train_classifier(
    embeddings: Path,
    storage_path: Path,
    max_epochs: int | None = None,
    lr: float | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    threshold: float | None = None,
    progress: bool = True,
    weight_decay: float | None = None,
    input_dropout: float | None = None,
    input_noise: float | None = None,
    patience: int | None = None,
    target_fpr: float = 0.01,
    calibration: str | None = None,
    recipe_name: str = "quackae",
    lr_min: float | None = None,
    lr_max_epochs: int | None = None,
) -> dict[str, Any]:
    """Train the latent classifier and the baseline on one split; write and return metrics.json.

    ``recipe_name`` (:data:`quackae.classify.recipes.RECIPES`) gives every setting; an argument
    that is not None replaces the recipe's. ``patience`` stops training when the validation loss
    has not improved for that many epochs (the best checkpoint by validation loss is kept either
    way). The decision threshold of each model is ``threshold``, raised by ``calibration``
    (labelled rows only, never the rows being scored): ``"validation"`` to keep the
    false-positive rate on the validation split <= ``target_fpr``; ``"novel-kind"`` also on
    every held-out kind of benign page (:func:`novel_kind_threshold`); ``"none"`` keeps
    ``threshold``. Held-out metrics of both models are taken at their own thresholds; the seed's
    own metrics (``seed``) beside them.
    """
    settings = recipe(
        recipe_name,
        max_epochs=max_epochs,
        learning_rate=lr,
        batch_size=batch_size,
        threshold=threshold,
        weight_decay=weight_decay,
        input_dropout=input_dropout,
        input_noise=input_noise,
        patience=patience,
        calibration=calibration,
        learning_rate_min=lr_min,
        lr_max_epochs=lr_max_epochs,
    )
    if settings.calibration not in CALIBRATIONS:
        raise ValueError(
            f"unknown calibration {settings.calibration!r}; expected one of {CALIBRATIONS}"
        )
    if not 0 <= target_fpr < 1:
        raise ValueError(f"target_fpr must be in [0, 1), got {target_fpr}")
    _quiet_lightning()
    from lightning.pytorch.loggers import CSVLogger

    storage = Path(storage_path)
    storage.mkdir(parents=True, exist_ok=True)
    pl.seed_everything(seed, verbose=False)
    meta = read_meta(embeddings)
    dm = LatentDataModule(
        embeddings, batch_size=settings.batch_size, seed=seed, split=settings.split
    )
    dm.setup()
    fit = fit_recipe(
        dm,
        settings,
        storage,
        seed,
        progress,
        target_fpr,
        CSVLogger(str(storage), name="logs", version="classifier"),
    )
    clf, best = fit["classifier"], fit["checkpoint"]
    base = _baseline_metrics(
        meta, dm, storage, seed, settings.threshold, target_fpr, settings.calibration
    )
    winner, sentence = verdict(clf, base)
    metrics = {
        "kind": "classifier_metrics",
        "embeddings": str(Path(embeddings).resolve()),
        "dataset": meta.get("dataset"),
        "dim": dm.dim,
        "latent": meta.get("latent", "final"),
        "seed": seed,
        "recipe": settings.as_dict(),
        "split": _split_shares(settings.split),
        "target_fpr": target_fpr,
        "threshold": fit["threshold"],
        "threshold_rule": fit["threshold_rule"],
        "checkpoint": str(best.resolve()),
        "counts": dm.counts(),
        "accuracy": clf["accuracy"],
        "f1": clf["f1"],
        "roc_auc": clf["roc_auc"],
        "classifier": clf,
        "seed_metrics": fit["seed"],
        "test_weights": fit["test_weights"],
        "baseline": base,
        "winner": winner,
        "winner_by": "held-out ROC-AUC (F1 breaks ties)",
        "verdict": sentence,
        "epochs": fit["epochs"],
        "stopped": fit["stopped"],
    }
    atomic_write(storage / METRICS_FILE, json.dumps(metrics, indent=1))
    return metrics


def _split_shares(rule: str) -> dict[str, float]:
    """The train/val/test shares of a split rule."""
    shares = SPLIT_FRACTIONS if rule == "row_hash" else (0.7, 0.1, 0.2)
    return dict(zip(SPLITS, shares, strict=True))


def _baseline_metrics(
    meta: dict[str, Any],
    dm: LatentDataModule,
    storage: Path,
    seed: int,
    threshold: float,
    target_fpr: float,
    calibration: str,
) -> dict[str, Any]:
    """Fit, save and measure the baseline, or say why it was skipped."""
    try:
        model, metrics = fit_baseline(
            open_dataset_tokens(meta), dm, seed, threshold, target_fpr, calibration
        )
    except (ValueError, store.StoreError) as e:
        log.warning("baseline skipped: %s", e)
        return {"skipped": str(e)}
    model.save(storage / BASELINE_FILE)
    return {**metrics, "path": str((storage / BASELINE_FILE).resolve())}


# --------------------------------------------------------------------------- prediction


def _prediction_table(table: pa.Table, prob: np.ndarray, base: np.ndarray | None) -> pa.Table:
    table = table.drop_columns(["embedding"]).append_column(
        "probability", pa.array(prob, pa.float32())
    )
    if base is None:
        base_arr = pa.nulls(len(prob), pa.float32())
    else:
        base_arr = pa.array(base.astype(np.float32), pa.float32(), mask=np.isnan(base))
    return table.append_column("baseline_probability", base_arr)


def _open_baseline(
    checkpoint: Path, meta: dict[str, Any]
) -> tuple[BagOfTokensBaseline | None, store.DatasetTokens | None, str]:
    path = Path(checkpoint).parent / BASELINE_FILE
    if not path.is_file():
        return None, None, f"no {BASELINE_FILE} next to the checkpoint"
    try:
        tokens = open_dataset_tokens(meta)
    except (ValueError, OSError, store.StoreError) as e:
        return None, None, str(e)
    model = BagOfTokensBaseline.load(path)
    if model.n_features != tokens.vocab_size or model.tokenizer_sha256 != tokens.tokenizer_sha256:
        return None, None, "the baseline was fitted on a dataset with another tokenizer"
    return model, tokens, ""


def predict(
    embeddings: Path, checkpoint: Path, out: Path, threshold: float = 0.5
) -> dict[str, Any]:
    """Score every row of an embeddings directory, shard by shard.

    Writes ``out/shards/<shard>.parquet`` (metadata + ``probability`` + ``baseline_probability``,
    one output shard per input shard) and ``out/predictions.json``.
    """
    meta = read_meta(embeddings)
    model = load_classifier(Path(checkpoint))
    dim, want = int(meta["dim"]), int(model.hparams.input_dim)
    if dim != want:
        raise ValueError(
            f"{embeddings} holds {dim}-dimensional embeddings but {checkpoint} was trained "
            f"on {want}-dimensional ones; use embeddings of the same autoencoder"
        )
    baseline, tokens, why = _open_baseline(Path(checkpoint), meta)
    shards = Path(out) / "shards"
    shards.mkdir(parents=True, exist_ok=True)
    for old in [*shards.glob("*.parquet"), *shards.glob(f".*{TMP_SUFFIX}")]:
        old.unlink()
    rows = candidates = base_candidates = 0
    for path in shard_paths(embeddings):
        table = pq.read_table(path)
        prob = model.probability(embedding_matrix(table.column("embedding"), dim))
        base = None
        if baseline is not None and tokens is not None:
            ids = table.column("row_id").to_numpy()
            base = np.where(
                tokens.index_of(ids) >= 0,
                baseline.probability(BagOfTokensBaseline.features(tokens, ids)),
                np.nan,
            )
            base_candidates += int((base >= threshold).sum())
        with atomic_path(shards / f"{path.stem}.parquet") as tmp:
            pq.write_table(_prediction_table(table, prob, base), tmp, compression="zstd")
        rows, candidates = rows + len(prob), candidates + int((prob >= threshold).sum())
    summary = {
        "kind": "predictions",
        "embeddings": str(Path(embeddings).resolve()),
        "checkpoint": str(Path(checkpoint).resolve()),
        "dataset": meta.get("dataset"),
        "mode": meta.get("mode"),
        "complete": bool(meta.get("complete")),
        "dim": dim,
        "threshold": threshold,
        "rows": rows,
        "candidates": candidates,
        "baseline": None if baseline is None else str(Path(checkpoint).parent / BASELINE_FILE),
        "baseline_missing_reason": why or None,
        "baseline_candidates": base_candidates if baseline else None,
    }
    atomic_write(Path(out) / PREDICTIONS_META, json.dumps(summary, indent=1))
    return summary


def trained_metrics(checkpoint: Path) -> dict[str, Any] | None:
    """The ``metrics.json`` ``classify train`` wrote beside ``checkpoint``, if any."""
    path = Path(checkpoint).parent / METRICS_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def trained_threshold(checkpoint: Path) -> float:
    """The threshold ``classify train`` chose for ``checkpoint`` (its metrics.json), else 0.5."""
    path = Path(checkpoint).parent / METRICS_FILE
    if path.is_file():
        metrics = json.loads(path.read_text())
        if Path(metrics.get("checkpoint", "")).resolve() == Path(checkpoint).resolve():
            return float(metrics["threshold"])
    return 0.5
