"""The seed's controller: configure and launch Lightning's Trainer for ``QuackAutoEncoder``.

Training wires the data module, the model, a Ray Train strategy (``--ray_nodes`` workers of
one CPU each; 0 trains in-process), a logger (Comet when configured, else CSV under
``--storage_path``), a learning-rate monitor, checkpoints, early stopping and a device-stats
monitor, then tests the held-out split. With ``--encode`` a trained checkpoint runs the
predict loop and ``AutoencoderWriter`` stores one embedding per selected record.

``--storage_path`` (and ``--checkpoint_path``, ``--resume``) may be object-store URIs
(``gs://``, ``s3://``, any form ``pyarrow.fs`` takes; see ``storage``). Training then stages
Lightning's checkpoints and CSV logs in a local directory and mirrors each checkpoint to the
store as it is saved (and deleted as top-k drops it), so a killed run can ``--resume`` from any
machine; Ray Train persists its own reported checkpoints under ``URI/ray``; the run summary and
logs are uploaded at the end. Embeddings are written to the store directly.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from quackae.io import folders
from quackae.io import storage as objstore
from quackae.io.atomic import atomic_write
from quackae.model.config import ControllerConfig, from_namespace

__all__ = [
    "ControllerConfig",
    "ProcessorError",
    "build_data",
    "build_model",
    "encode",
    "main",
    "train",
]

SUMMARY = "train_summary.json"
QUIET_WARNINGS = (  # Lightning notices that say nothing to a user of this controller
    r".*isinstance\(treespec, LeafSpec\).*",
    r".*Couldn't infer the batch indices.*",
    r".*is smaller than the logging interval.*",
    r".*exists and is not empty.*",
    r".*does not have many workers.*",
    r".*litlogger.*",
)


def quiet_warnings() -> None:
    """Silence the known-harmless Lightning warnings (in this process and in Ray workers)."""
    import warnings

    for pattern in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)


COMET_PROJECT = "censored-planet"


class ProcessorError(Exception):
    """A user error of the controller; printed as one line."""


# --------------------------------------------------------------------------- shared wiring


def _check_ray_resources(args: ControllerConfig) -> None:
    """Fail at once, with what to pass, when the workers asked for cannot all start."""
    if args.ray_nodes < 0:
        raise ProcessorError("--ray_nodes must be 0 (no Ray) or more")
    if args.ray_nodes == 0 or args.ray_address:
        return
    cpus = os.cpu_count() or 1
    if args.ray_nodes > cpus:
        raise ProcessorError(
            f"--ray_nodes {args.ray_nodes} asks for {args.ray_nodes} one-CPU workers but this "
            f"machine has {cpus} CPUs: pass --ray_nodes {cpus} (or 0 to run without Ray, or "
            "--ray_address to join a cluster)"
        )


def make_logger(args: ControllerConfig, storage: Path, rank: int = 0):
    """CometLogger when Comet is configured (or asked for), else a CSV logger under storage.

    Only rank 0 makes a Comet experiment; other Ray workers get a CSV logger, which writes
    nothing off rank 0. ``--comet_offline DIR``: Lightning 2.6's ``CometLogger(online=False)``
    disables Comet altogether, so the offline mode is chosen through ``COMET_START_ONLINE=0``
    with ``online`` left unset; ``finish_logger`` ends the experiment, which writes the archive.
    """
    want_comet = args.logger == "comet" or (
        args.logger == "auto" and (os.environ.get("COMET_API_KEY") or args.comet_offline)
    )
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    if want_comet and rank == 0:
        try:
            import comet_ml  # noqa: F401
            from lightning.pytorch.loggers import CometLogger
        except ImportError:
            raise ProcessorError(
                "Comet logging asked for (COMET_API_KEY, --comet_offline or --logger comet) but "
                "comet-ml is not installed: pip install 'quackae[comet]', or use --logger csv"
            ) from None
        if not (os.environ.get("COMET_API_KEY") or args.comet_offline):
            raise ProcessorError(
                "--logger comet needs COMET_API_KEY in the environment or --comet_offline DIR"
            )
        if args.comet_offline:
            offline = Path(args.comet_offline).resolve()
            offline.mkdir(parents=True, exist_ok=True)
            os.environ["COMET_START_ONLINE"] = "0"
            return CometLogger(
                project=COMET_PROJECT,
                name=f"{args.exp_label}: {stamp}",
                offline_directory=str(offline),
                log_code=False,
                log_git_metadata=False,
                log_git_patch=False,
                log_env_gpu=False,
                log_env_host=False,
                display_summary_level=0,
            )
        return CometLogger(project=COMET_PROJECT, name=f"{args.exp_label}: {stamp}", online=True)
    from lightning.pytorch.loggers import CSVLogger

    return CSVLogger(save_dir=str(storage), name="logs", version=args.exp_label.replace("/", "_"))


def finish_logger(logger) -> None:
    """End a Comet experiment once fit and test are done: an offline one writes its archive."""
    experiment = getattr(logger, "_experiment", None)
    if experiment is not None and hasattr(experiment, "end"):
        experiment.end()


def trainer_kwargs(args: ControllerConfig) -> dict[str, Any]:
    """The Trainer arguments of the run: the user's, and a finite default number of epochs."""
    return args.trainer_settings()


@contextlib.contextmanager
def local_checkpoint(path: str | None, flag: str = "--checkpoint_path") -> Iterator[str | None]:
    """``path`` itself when local; an object-store checkpoint downloaded to a temporary file."""
    if path is None or not objstore.is_uri(path):
        yield path
        return
    source = objstore.resolve(path)
    if not source.is_file():
        raise ProcessorError(
            f"{flag} {path}: no such object; pass the URI of a .ckpt (e.g. "
            "<storage_path>/last.ckpt)"
        )
    with tempfile.TemporaryDirectory(prefix="quackae-ckpt-") as tmp:
        local = Path(tmp) / source.name
        _copy(source, objstore.resolve(str(local)))
        yield str(local)


def _copy(source: objstore.Location, target: objstore.Location) -> None:
    """Stream one file between filesystems (local <-> object store) without holding it in memory."""
    import pyarrow.fs as pafs

    if not target.remote:
        Path(target.path).parent.mkdir(parents=True, exist_ok=True)
    pafs.copy_files(
        source.path, target.path, source_filesystem=source.fs, destination_filesystem=target.fs
    )


def _load_weights(path: str) -> dict[str, Any]:
    """A checkpoint's contents (a local path or a URI), loaded with ``weights_only=True``."""
    with local_checkpoint(path) as local:
        return _load_local_weights(local, path)


def _check_checkpoint_file(local: str, path: str) -> None:
    """One line for a checkpoint path that is a folder, missing, or no ``torch.save`` file."""
    import zipfile

    remedy = (
        "pass a .ckpt written by `quackae train` (last.ckpt or a best one in its --storage_path)"
    )
    if Path(local).is_dir():
        raise ProcessorError(f"--checkpoint_path {path} is a folder, not a file; {remedy}")
    if not Path(local).is_file():
        raise ProcessorError(f"--checkpoint_path {path}: no such file; {remedy}")
    if not zipfile.is_zipfile(local):  # torch.save (and so Lightning) writes a zip archive
        raise ProcessorError(
            f"--checkpoint_path {path} is not a PyTorch checkpoint (no torch.save file); {remedy}"
        )


def _load_local_weights(local: str, path: str) -> dict[str, Any]:
    import torch

    _check_checkpoint_file(local, path)
    try:
        ckpt = torch.load(local, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable checkpoint is a user error here
        # PyTorch's own text suggests weights_only=False, which would run the file's code: not shown
        why = (
            "it holds more than tensors and plain values"
            if "weights only load failed" in str(e).lower()
            else "not a PyTorch checkpoint, or a truncated one"
        )
        raise ProcessorError(
            f"--checkpoint_path {path} is not a checkpoint quackae can read ({why}); pass a .ckpt "
            "written by `quackae train` (last.ckpt or a best one in its --storage_path)"
        ) from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ProcessorError(
            f"--checkpoint_path {path} is not a Lightning checkpoint (no state_dict); pass a .ckpt "
            "written by `quackae train` (last.ckpt or a best one in its --storage_path)"
        )
    return ckpt


def check_fits(ckpt: dict[str, Any], dm, path: str) -> dict[str, Any]:
    """The checkpoint's hyperparameters, after refusing a dataset it was not trained for."""
    hp = dict(ckpt.get("hyper_parameters", {}))
    if "num_embeddings" not in hp and "input_dim" in hp:
        raise ProcessorError(
            f"--checkpoint_path {path} is a latent classifier's checkpoint (`quackae classify "
            "train`), not an autoencoder's; pass a .ckpt written by `quackae train`"
        )
    sha = hp.get("tokenizer_sha256", "")
    if sha and sha != dm.tokenizer_sha256:
        raise ProcessorError(
            f"checkpoint {path} was trained on a dataset with another tokenizer "
            f"({sha[:12]} vs {dm.tokenizer_sha256[:12]} in {dm.data_dir}); use that dataset or "
            "flatten this one with --tokenizer from the checkpoint's dataset"
        )
    if hp.get("layout") and hp["layout"] != dm.layout:
        raise ProcessorError(
            f"checkpoint {path} uses another token layout than {dm.data_dir}; re-flatten the "
            "sources with this quackae version or use the matching checkpoint"
        )
    if hp.get("num_embeddings", dm.num_embeddings) != dm.num_embeddings:
        raise ProcessorError(
            f"checkpoint {path} has {hp['num_embeddings']} token ids but {dm.data_dir} has "
            f"{dm.num_embeddings}; they do not fit together"
        )
    return hp


def _dataset_dir(args: ControllerConfig) -> str:
    """The local directory the dataset is read from (``--data_dir``; URI datasets: its mirror)."""
    from quackae.dataset import store

    if not objstore.is_uri(args.data_dir) and Path(args.data_dir).is_file():
        raise ProcessorError(
            f"--data_dir {args.data_dir} is a file, not a folder; pass a dataset folder written "
            "by `quackae flatten`"
        )
    return str(store.local_dataset(args.data_dir))


def _dataset_identity(args: ControllerConfig) -> str:
    """How the embeddings' metadata names the dataset: the URI as given, or the absolute path."""
    return args.data_dir if objstore.is_uri(args.data_dir) else str(Path(args.data_dir).resolve())


def build_data(args: ControllerConfig, mode: str = "all"):
    """The data module of this run (raises the store's clear error when there is no dataset)."""
    from quackae.model.datamodule import QuackTokenizedDataModule

    return QuackTokenizedDataModule(
        _dataset_dir(args),
        batch_size=args.batch_size,
        workers=args.num_workers,
        seed=args.seed,
        bucketing=args.bucketing,
        mode=mode,
    )


def build_model(args: ControllerConfig, dm):
    """QuackAutoEncoder sized from the dataset manifest, optionally from a checkpoint's weights."""
    import torch

    from quackae.model.autoencoder import QuackAutoEncoder

    torch.manual_seed(args.seed)
    model = QuackAutoEncoder(
        num_embeddings=dm.num_embeddings,
        embed_size=args.embed_size,
        hidden_size=args.hidden_size,
        layers=args.layers,
        max_decode_length=dm.get_width(),
        learning_rate=args.l_rate,
        learning_rate_min=args.l_rate_min,
        lr_max_epochs=args.l_rate_max_epoch,
        teacher_forcing=args.teacher_forcing,
        sampling=args.sampling,
        pad_id=dm.pad_id,
        tokenizer_sha256=dm.tokenizer_sha256,
        layout=dm.layout,
    )
    model.eval_decoding, model.eval_seed = args.eval_decoding, args.seed
    if args.checkpoint_path:
        ckpt = _load_weights(args.checkpoint_path)
        check_fits(ckpt, dm, args.checkpoint_path)
        try:
            model.load_state_dict(ckpt["state_dict"])
        except (KeyError, RuntimeError) as e:
            raise ProcessorError(
                f"checkpoint {args.checkpoint_path} does not fit this model (--embed_size, "
                f"--hidden_size, --layers must match the checkpoint's): {_load_problem(e)}"
            ) from None
    return model


def _load_problem(exc: BaseException) -> str:
    """The first specific line of a ``load_state_dict`` error (its first line is only a title)."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    specific = [ln for ln in lines if not ln.lower().startswith("error(s) in loading")]
    return (specific or lines or [type(exc).__name__])[0][:200]


def _resume_path(args: ControllerConfig) -> str | None:
    """The checkpoint ``--resume`` names: an absolute local path, or a URI that exists."""
    if args.resume is None:
        return None
    if args.resume == "last":
        target = objstore.resolve(args.storage_path).child("last.ckpt")
    else:
        target = objstore.resolve(args.resume)
    if not target.is_file():
        raise ProcessorError(
            f"--resume: no checkpoint at {target.uri}; train without --resume first"
        )
    return target.uri if target.remote else str(Path(target.path).resolve())


def staging_dir(storage_path: str) -> Path:
    """Where Lightning writes checkpoints and logs: the storage path itself when it is local,
    else a directory on this node named after the URI (the same for a resumed run)."""
    if not objstore.is_uri(storage_path):
        return Path(storage_path)
    digest = hashlib.sha256(storage_path.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / "quackae-staging" / digest


def _clear_staging(staging: Path) -> None:
    """Drop a previous run's files from a staging directory (a fresh run of the same URI)."""
    for entry in (staging / "logs", *staging.glob("*.ckpt")):
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


# --------------------------------------------------------------------------- training


def _checkpoint_callback(remote: str | None, **kwargs):
    """``ModelCheckpoint`` that also saves when training ends, and mirrors to ``remote``.

    The end of training saves top-k (when validation ran) and ``last.ckpt`` unless the last
    save was at the final step: with the seed's 2000-step interval a shorter run would
    otherwise end without a checkpoint to encode with, and a longer one would lose its last
    steps. With ``remote`` a URI, each saved checkpoint is copied there (rank 0 saves, so rank 0
    uploads) and one that top-k drops is deleted there too, so the store holds what the staging
    directory holds (``last.ckpt`` included, for ``--resume``).
    """
    import torch
    from lightning.pytorch.callbacks import ModelCheckpoint

    class QuackCheckpoint(ModelCheckpoint):
        @property
        def state_key(self) -> str:  # ModelCheckpoint's key: checkpoints stay interchangeable
            return super().state_key.replace(
                type(self).__qualname__, ModelCheckpoint.__qualname__, 1
            )

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            self._step_epoch = trainer.current_epoch  # the epoch the final step belongs to
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

        def on_train_end(self, trainer, pl_module) -> None:
            if trainer.fast_dev_run or self._last_global_step_saved == trainer.global_step:
                return super().on_train_end(trainer, pl_module)
            candidates = self._monitor_candidates(trainer)
            # named by the epoch its last step trained in, as a save at that validation would be
            candidates["epoch"] = torch.tensor(getattr(self, "_step_epoch", trainer.current_epoch))
            if self.monitor is None or self.monitor in candidates:
                self._save_topk_checkpoint(trainer, candidates)
            self._save_last_checkpoint(trainer, candidates)

        def _save_checkpoint(self, trainer, filepath: str) -> None:
            super()._save_checkpoint(trainer, filepath)
            if remote and trainer.is_global_zero:
                _copy(
                    objstore.resolve(filepath), objstore.resolve(remote).child(Path(filepath).name)
                )

        def _remove_checkpoint(self, trainer, filepath: str) -> None:
            super()._remove_checkpoint(trainer, filepath)
            if remote and trainer.is_global_zero:
                objstore.resolve(remote).child(Path(filepath).name).delete()

    return QuackCheckpoint(**kwargs)


#: What the controller's checkpoints and early stopping watch: the loss on the seed's scale,
#: so the seed's thresholds (200) and rankings mean what they meant there.
MONITOR = "val_loss_seed"


def training_callbacks(args: ControllerConfig, storage: Path, remote: str | None = None) -> list:
    """The seed's set: LearningRateMonitor, ModelCheckpoint, EarlyStopping, DeviceStatsMonitor.

    As the seed's ``ae_processor``: checkpoints every ``--checkpoint_every_n_steps`` (2000)
    training steps, top 3 by the monitored loss and ``last.ckpt``; early stopping on the same
    loss with ``--patience`` (10) and ``--stopping_threshold`` (200), and on a non-finite loss.
    Added: a checkpoint when training ends (``_checkpoint_callback``). ``remote``: the
    object-store URI the checkpoints in ``storage`` (a staging directory) mirror to.
    """
    from lightning.pytorch.callbacks import DeviceStatsMonitor, EarlyStopping, LearningRateMonitor

    validating = args.trainer_arg("limit_val_batches") not in (0, 0.0)
    every = args.checkpoint_every_n_steps or None  # 0: after every validation (Lightning's None)
    callbacks = [
        LearningRateMonitor(logging_interval="epoch"),
        _checkpoint_callback(
            remote,
            dirpath=str(storage),
            filename="{epoch}-{step}-{val_loss:.4f}-{val_loss_seed:.2f}"
            if validating
            else "{epoch}-{step}",
            monitor=MONITOR if validating else None,
            mode="min",
            save_top_k=3 if validating else 1,
            save_last=True,
            every_n_train_steps=every,
        ),
        DeviceStatsMonitor(),
    ]
    if validating:  # with --limit_val_batches 0 there is no loss to stop on
        callbacks.append(
            EarlyStopping(
                monitor=MONITOR,
                patience=args.patience,
                stopping_threshold=args.stopping_threshold or None,
                mode="min",
                check_finite=True,
            )
        )
    return callbacks


def _progress_probe():
    """A callback recording where this process's fit started and how many batches it trained.

    A resumed run (``--resume`` or a Ray Train restart) starts at the checkpoint's step and
    trains only the remaining batches; the run summary reports both, so a restore is visible.
    """
    from lightning.pytorch.callbacks import Callback

    class ProgressProbe(Callback):
        def __init__(self) -> None:
            self.start_step: int | None = None
            self.start_epoch: int | None = None
            self.batches = 0

        def on_train_start(self, trainer, pl_module) -> None:
            self.start_step, self.start_epoch = int(trainer.global_step), int(trainer.current_epoch)

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            self.batches += 1

    return ProgressProbe()


def train_worker(config: dict[str, Any]) -> dict[str, Any]:
    """Fit then test on one process: the in-process path and each Ray Train worker's loop."""
    import lightning.pytorch as pl
    import torch

    from quackae.model.console import console_callbacks, quiet_lightning
    from quackae.model.gru import tune_cpu_allocator

    quiet_warnings()
    quiet_lightning()  # no tips or device notices; warnings still show
    tune_cpu_allocator()  # steady-state steps reuse touched pages instead of faulting fresh ones
    args = ControllerConfig.from_dict(config["args"])
    remote = args.storage_path if objstore.is_uri(args.storage_path) else None
    storage = staging_dir(args.storage_path)
    storage.mkdir(parents=True, exist_ok=True)
    in_ray = config.get("ray", False)
    dm = build_data(args)
    model = build_model(args, dm)
    callbacks = training_callbacks(args, storage, remote)
    probe = _progress_probe()
    callbacks.append(probe)
    callbacks += console_callbacks(
        args.trainer_arg("enable_progress_bar"), args.trainer_arg("enable_model_summary")
    )
    kwargs = trainer_kwargs(args)
    rank = 0
    restored = None  # Ray Train's checkpoint after a worker restart
    if in_ray:
        import ray.train
        from ray.train.lightning import (
            RayDDPStrategy,
            RayLightningEnvironment,
            RayTrainReportCallback,
            prepare_trainer,
        )

        rank = ray.train.get_context().get_world_rank()
        torch.set_num_threads(1)
        restored = ray.train.get_checkpoint()
        callbacks.append(RayTrainReportCallback())
        kwargs.update(
            devices="auto", strategy=RayDDPStrategy(), plugins=[RayLightningEnvironment()]
        )
    logger = make_logger(args, storage, rank)
    trainer = pl.Trainer(
        logger=logger,
        callbacks=callbacks,
        use_distributed_sampler=False,
        **kwargs,
    )
    resume = config.get("resume")
    if in_ray:
        trainer = prepare_trainer(trainer)
    if restored is not None:
        with restored.as_directory() as d:
            trainer.fit(
                model, datamodule=dm, ckpt_path=str(Path(d) / "checkpoint.ckpt"), weights_only=True
            )
    else:
        if remote and resume is None and rank == 0:
            _clear_staging(
                storage
            )  # a fresh run: no earlier run's last.ckpt to count versions from
        with local_checkpoint(resume, "--resume") as local:
            trainer.fit(model, datamodule=dm, ckpt_path=local, weights_only=True)
    checkpoint = trainer.checkpoint_callback
    best = checkpoint.best_model_path if checkpoint else ""
    validated = _metrics(trainer, ("val_loss", "val_loss_seed", "val_acc"))
    # --test_weights final: the weights fit ended with (the seed's trainer.test(model))
    tested_on = best if args.test_weights == "best" and best else None
    tested = trainer.test(
        model, datamodule=dm, ckpt_path=tested_on, weights_only=True, verbose=False
    )
    finish_logger(logger)
    summary = {
        "epochs": trainer.current_epoch,
        "steps": trainer.global_step,
        "monitor": MONITOR if checkpoint and checkpoint.monitor else None,
        "best_score": float(checkpoint.best_model_score)
        if checkpoint and checkpoint.best_model_score is not None
        else None,
        "last_validation": validated,
        "stopped": _stopping(trainer),
        "tested_weights": "best" if tested_on else "final",
        "best_checkpoint": _published(best, remote),
        "last_checkpoint": _published(str(storage / "last.ckpt"), remote),
        "test": {k: float(v) for k, v in (tested[0] if tested else {}).items()},
        "storage_path": remote or str(storage),
        "workers": int(trainer.world_size),
        "resumed_from": {"step": probe.start_step, "epoch": probe.start_epoch},
        "batches_this_run": probe.batches,
    }
    if trainer.global_rank == 0:
        if remote:
            _upload_logs(storage, remote)
            objstore.resolve(remote).child(SUMMARY).write_bytes(
                json.dumps(summary, indent=1).encode()
            )
        else:
            atomic_write(storage / SUMMARY, json.dumps(summary, indent=1))
    if in_ray:
        ray.train.report({k: v for k, v in summary["test"].items()})
    return summary


def _metrics(trainer, names: tuple[str, ...]) -> dict[str, float]:
    """The named metrics of the trainer's last logging (the last validation's, after fit)."""
    found = trainer.callback_metrics
    return {n: float(found[n]) for n in names if n in found}


def _stopping(trainer) -> dict[str, Any]:
    """Why fit ended: early stopping's reason (patience, threshold, non-finite) or the limits."""
    from lightning.pytorch.callbacks import EarlyStopping

    for cb in trainer.callbacks:
        if isinstance(cb, EarlyStopping) and cb.stopping_reason.name != "NOT_STOPPED":
            return {"by": cb.stopping_reason.name.lower(), "epoch": int(cb.stopped_epoch)}
    return {"by": "limits", "epoch": int(trainer.current_epoch)}


def _published(path: str, remote: str | None) -> str:
    """Where a staged checkpoint is for the user: the path itself, or its copy on the store."""
    if not remote or not path:
        return path
    return objstore.resolve(remote).child(Path(path).name).uri


def _upload_logs(staging: Path, remote: str) -> None:
    """Copy the CSV logs (``logs/...``) from the staging directory to the store."""
    logs = staging / "logs"
    if logs.is_dir():
        for path in sorted(p for p in logs.rglob("*") if p.is_file()):
            _copy(
                objstore.resolve(str(path)),
                objstore.resolve(remote).child(str(path.relative_to(staging))),
            )


def _ray_init(args: ControllerConfig) -> None:
    import ray

    from quackae.io.cluster import connect

    if ray.is_initialized():
        return
    # a refused connection or an open cluster refused: ClusterError, one line
    connect(args.ray_address, os.cpu_count(), allow_open=args.allow_open_cluster)
    if args.ray_address:
        cpus = int(ray.cluster_resources().get("CPU", 0))
        if args.ray_nodes > cpus:
            raise ProcessorError(
                f"--ray_nodes {args.ray_nodes} exceeds the {cpus} CPUs of the Ray cluster at "
                f"{args.ray_address}: pass --ray_nodes {cpus} or add nodes"
            )


def run_ray(args: ControllerConfig, worker, name: str, extra: dict[str, Any]) -> Any:
    """Run ``worker`` on ``--ray_nodes`` Ray Train workers; one-line error if it fails."""
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    _ray_init(args)
    if objstore.is_uri(args.storage_path):
        storage = args.storage_path
        ray_storage = objstore.resolve(storage).child("ray").uri  # the query string stays last
    else:
        storage = str(Path(args.storage_path).resolve())
        ray_storage = str(Path(storage) / "ray")
    config = {"args": {**args.to_dict(), "storage_path": storage}, "ray": True, **extra}
    use_gpu = str(args.trainer_arg("accelerator")).lower() in ("gpu", "cuda")
    trainer = TorchTrainer(
        worker,
        train_loop_config=config,
        scaling_config=ScalingConfig(
            num_workers=args.ray_nodes, use_gpu=use_gpu, resources_per_worker={"CPU": 1}
        ),
        run_config=RunConfig(
            name=name,
            storage_path=ray_storage,
            failure_config=FailureConfig(max_failures=args.max_failures),
        ),
    )
    try:
        return trainer.fit()
    except Exception as e:  # noqa: BLE001 - surfaced as one line with the worker's cause
        cause = _root_cause(e)
        raise ProcessorError(f"Ray Train run failed: {cause}") from None


def _root_cause(exc: BaseException) -> str:
    seen = exc
    while seen.__cause__ is not None:
        seen = seen.__cause__
    text = str(seen).strip().splitlines()
    for line in reversed(text):
        if line.strip():
            return line.strip()
    return type(seen).__name__


def check_schedule(args: ControllerConfig) -> None:
    """Refuse ``--l_rate_max_epoch -1`` when the Trainer's epoch count is unbounded.

    -1 anneals over ``--max_epochs``; with ``--max_steps`` or ``--max_time`` and no
    ``--max_epochs`` Lightning runs unbounded epochs, and a cosine over an unknown length would
    fall back to the seed's every-epoch swing, which no one asked for.
    """
    if args.l_rate_max_epoch > 0:
        return
    epochs = args.trainer_arg("max_epochs")
    limited = args.trainer_arg("max_steps") != -1 or args.trainer_arg("max_time") is not None
    if epochs == -1 or (epochs is None and limited):
        raise ProcessorError(
            "--l_rate_max_epoch -1 anneals the learning rate over --max_epochs, but the epochs "
            "are unbounded here (--max_steps or --max_time without --max_epochs): pass "
            "--l_rate_max_epoch N (or --max_epochs N)"
        )


def train(args: ControllerConfig) -> dict[str, Any]:
    """Fit, test, write and return the run summary."""
    check_schedule(args)
    target = objstore.resolve(args.storage_path)
    # a new, empty or earlier training folder only: checkpoints never land among the user's files
    owned = {"flag": "--storage_path", "command": "quackae train", "proof": (SUMMARY, "last.ckpt")}
    folders.check_output(target, **owned)  # refused before the dataset is even read
    build_data(args)  # a missing dataset fails here, before Ray starts
    _check_ray_resources(args)
    folders.claim_output(target, **owned)
    target.info()  # an unreachable store: one line now, not a traceback at the first checkpoint
    config = {"resume": _resume_path(args)}
    if args.ray_nodes == 0:
        return train_worker({"args": args.to_dict(), **config})
    run_ray(args, train_worker, f"{args.exp_label}-{time.strftime('%Y%m%d-%H%M%S')}", config)
    return json.loads(target.child(SUMMARY).read_bytes())


def render_summary(s: dict[str, Any]) -> str:
    """One line: epochs, why fit ended, best monitored loss, test metrics, where checkpoints are."""
    test = ", ".join(f"{k} {v:.4f}" for k, v in sorted(s["test"].items()))
    best = s["best_score"]
    best_text = f"{best:.4f}" if isinstance(best, float) and math.isfinite(best) else "n/a"
    last = ", ".join(f"{k} {v:.4f}" for k, v in s.get("last_validation", {}).items())
    return (
        f"trained {s['epochs']} epoch(s), {s['steps']} step(s) on {s['workers']} worker(s), "
        f"stopped by {s['stopped']['by']}; best {s['monitor'] or 'checkpoint'} {best_text}; "
        f"last validation: {last or 'n/a'}; test ({s['tested_weights']} weights): "
        f"{test or 'n/a'}; checkpoints in {s['storage_path']}"
    )


# --------------------------------------------------------------------------- encoding


def encode_mode(args: ControllerConfig) -> str:
    """Which rows --encode writes: --evaluate wins over --filtered (the original's semantics)."""
    return "evaluate" if args.evaluate else "filtered" if args.filtered else "all"


def predict_device_stats():
    """``DeviceStatsMonitor`` beside the writer, as the seed's ``--encode``, logging in predict.

    The seed attached it to its predict Trainer, where it logged nothing: Lightning 1.5's has
    training hooks only, and 2.x's training, validation and test hooks. This one also logs
    each predict batch's device stats (CPU utilisation and memory via psutil on a CPU run,
    the accelerator's on a GPU), keyed by batch index.
    """
    from lightning.pytorch.callbacks import DeviceStatsMonitor

    class PredictDeviceStats(DeviceStatsMonitor):
        def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, *_) -> None:
            if self._cpu_stats is False and trainer.strategy.root_device.type == "cpu":
                return
            stats = trainer.accelerator.get_device_stats(trainer.strategy.root_device)
            key = f"{DeviceStatsMonitor.__qualname__}.on_predict_batch_end"
            for logger in trainer.loggers:
                sep = logger.group_separator
                logger.log_metrics({f"{key}{sep}{k}": v for k, v in stats.items()}, step=batch_idx)

    return PredictDeviceStats()


def encode_worker(config: dict[str, Any]) -> None:
    """Predict loop with AutoencoderWriter on one process (in-process or a Ray Train worker)."""
    import lightning.pytorch as pl
    import torch

    from quackae.dataset.embeddings import read_array
    from quackae.model.autoencoder import AutoencoderWriter
    from quackae.model.console import console_callbacks, quiet_lightning

    quiet_warnings()
    quiet_lightning()
    args = ControllerConfig.from_dict(config["args"])
    in_ray = config.get("ray", False)
    dm = build_data(args, mode=encode_mode(args))
    dm.exclude_rows(read_array(config["done_rows_file"]).tolist())
    model = build_model(args, dm)
    model.freeze()
    model.latent = getattr(args, "latent", "final")
    writer = AutoencoderWriter(args.storage_path, run_id=config["run_id"])
    kwargs = trainer_kwargs(args)
    kwargs.update(max_epochs=None, enable_checkpointing=False)
    rank = 0
    if in_ray:
        import ray.train
        from ray.train.lightning import RayDDPStrategy, RayLightningEnvironment, prepare_trainer

        rank = ray.train.get_context().get_world_rank()
        torch.set_num_threads(1)
        kwargs.update(
            devices="auto", strategy=RayDDPStrategy(), plugins=[RayLightningEnvironment()]
        )
    logger = make_logger(
        args, staging_dir(args.storage_path), rank
    )  # predict logs stay on this node
    trainer = pl.Trainer(
        logger=logger,
        callbacks=[
            writer,
            predict_device_stats(),
            *console_callbacks(args.trainer_arg("enable_progress_bar"), False),
        ],
        use_distributed_sampler=False,
        **kwargs,
    )
    if in_ray:
        trainer = prepare_trainer(trainer)
    trainer.predict(model, datamodule=dm, return_predictions=False)
    finish_logger(logger)


def encode(args: ControllerConfig) -> dict[str, Any]:
    """Write embeddings of the selected rows; resumes a killed run; returns the inspect summary."""
    import numpy as np

    from quackae.dataset import store
    from quackae.dataset.embeddings import META as EMBEDDINGS_META
    from quackae.dataset.embeddings import SHARDS, EmbeddingStore, check_version
    from quackae.dataset.inspection import inspect_embeddings

    if not args.checkpoint_path:
        raise ProcessorError(
            "--encode needs --checkpoint_path: an untrained model's features are noise; train "
            "first (without --encode) and pass one of its checkpoints"
        )
    args = args.replace(batch_size=args.encode_batch_size)  # inference: the seed's 4 is training's
    if not objstore.is_uri(args.checkpoint_path):  # a wrong file: one line, before any import
        _check_checkpoint_file(args.checkpoint_path, args.checkpoint_path)
    folders.check_output(
        args.storage_path, "--storage_path", "quackae encode", proof=(EMBEDDINGS_META, SHARDS)
    )
    dm = build_data(args, mode=encode_mode(args))
    _check_ray_resources(args)
    ckpt = _load_weights(args.checkpoint_path)
    hp = check_fits(ckpt, dm, args.checkpoint_path)
    # the architecture is the checkpoint's, whatever --embed_size/--hidden_size say
    for flag, key in (
        ("embed_size", "embed_size"),
        ("hidden_size", "hidden_size"),
        ("layers", "layers"),
    ):
        if key in hp:
            setattr(args, flag, int(hp[key]))
    out = EmbeddingStore(args.storage_path)
    out.check_owned()
    meta = {
        "mode": encode_mode(args),
        "dim": int(hp.get("hidden_size", args.hidden_size)),
        "checkpoint": args.checkpoint_path
        if objstore.is_uri(args.checkpoint_path)
        else str(Path(args.checkpoint_path).resolve()),
        "dataset": _dataset_identity(args),
        "tokenizer_sha256": dm.tokenizer_sha256,
        "seed": args.seed,
        "latent": args.latent,
        "dataset_version": store.dataset_version(dm.manifest),
    }
    summarise = out.summary if out.remote else lambda: inspect_embeddings(out.storage)
    with out.lock():  # one writer per embeddings directory (locally a second one waits)
        existing = out.read_meta()
        try:
            out.check_identity(meta)
            check_version(
                out.storage, existing, dm.manifest, meta["mode"]
            )  # refuses a changed dataset
            if (
                existing
                and existing.get("complete")
                and all(existing.get(k) == v for k, v in meta.items())
            ):
                return {**summarise(), "new": 0}  # the same command again: nothing to do
            done = out.begin(meta)
        except ValueError as e:
            raise ProcessorError(str(e)) from None
        # the rows already written, where every Ray worker can read them (the store itself)
        done_file = out.write_array(
            ".done_rows.npy", np.fromiter(done, dtype=np.int64, count=len(done))
        )
        config = {
            "done_rows_file": done_file,
            "run_id": new_run_id(),
        }
        if args.ray_nodes == 0:
            encode_worker({"args": args.to_dict(), **config})
        else:
            run_ray(args, encode_worker, f"encode-{time.strftime('%Y%m%d-%H%M%S')}", config)
        objstore.resolve(done_file).delete()
        out.finish(expected=len(dm.predict_indices()))
        info = summarise()
    return {**info, "new": info["length"] - len(done)}


def new_run_id() -> str:
    """A name part no other encode run gets: shards of two runs never share a name.

    Nanoseconds and the process id; whole seconds were not enough (two runs a second apart in
    one process, as when a dataset grows and encoding resumes at once, overwrote each other's
    first shard).
    """
    return f"{time.time_ns()}{os.getpid() % 1000:03d}"


# --------------------------------------------------------------------------- entry points


def main(args: argparse.Namespace | ControllerConfig) -> None:
    """The executable logic of the controller (the seed's ``main``): train, or ``--encode``."""
    args = from_namespace(args)
    if args.encode:
        info = encode(args)
        print(
            f"encoded {info['new']} new record(s); {info['length']} in all ({info['mode']}): "
            f"censored {info['censored']}, "
            f"undetermined {info['undetermined']}, uncensored {info['uncensored']}; "
            f"dim {info['dim']} ({info['latent']} latent) -> {info['path']}"
        )
    else:
        print(render_summary(train(args)))


def user_errors() -> tuple[type[Exception], ...]:
    """Exceptions printed as one line by the command-line entry point."""
    from quackae.dataset.store import StoreError
    from quackae.io.cluster import ClusterError

    # FloatingPointError: the model's NaN/inf loss check ("train_loss is nan at step N ...")
    return (ProcessorError, StoreError, FloatingPointError, ClusterError, objstore.StorageError)
