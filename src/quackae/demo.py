"""``quackae demo``: the whole pipeline on bundled synthetic data, scored against ground truth.

synth -> flatten -> train (ae_processor) -> encode --filtered, --evaluate and every row ->
classify train -> classify predict -> report -> plots -> evaluate (with its own world's
autoencoder) -> detect (with the latents of every row) -> HTML report. Every artefact lands
under one output folder:

    OUT/raw/          archives + ground-truth sidecars      OUT/dataset/        the dataset
    OUT/autoencoder/  checkpoints, logs        OUT/encoded_filtered/, OUT/encoded_evaluate/,
    OUT/encoded/      latents of every row (what the detector reads)
    OUT/classifier/   classifier, metrics.json OUT/candidates/  predictions + report.md
    OUT/plots/        PNGs                                   OUT/summary.json    the final scores
    OUT/detector/, OUT/detections/  detect train/predict   OUT/report/index.html  the HTML report
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from quackae.io.atomic import atomic_write
from quackae.io.folders import check_output, claim_output

MARKER = ".quackae-demo"  # marks a folder as a demo's output, which the next demo may replace

# (format, scan, measurements per unit of --scale); a few thousand measurements in all
EVAL_MEASUREMENTS = 3000  # per unit of --scale: the leave-family-out world
EVAL_FOLDS = 5
EVAL_PATIENCE = 3  # the evaluation world's autoencoder: validations without a better val_loss
ARCHIVES = (
    ("v2", "http", 2200),
    ("v1", "https", 900),
    ("v2", "https", 700),
    ("v1", "echo", 500),
    ("v2", "discard", 300),
)


class Stages:
    """Run named stages in order, printing one progress line per stage with its duration."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.started = time.perf_counter()

    def run(
        self, name: str, fn: Callable[[], Any], note: Callable[[Any], str] = lambda _: ""
    ) -> Any:
        """Run one stage and print ``[i/n] name: note (seconds)``."""
        self.done += 1
        print(f"[{self.done}/{self.total}] {name} ...", flush=True)
        t = time.perf_counter()
        result = fn()
        print(
            f"[{self.done}/{self.total}] {name}: {note(result)} ({time.perf_counter() - t:.1f}s)",
            flush=True,
        )
        return result

    @property
    def elapsed(self) -> float:
        """Seconds since the first stage started."""
        return time.perf_counter() - self.started


def run_demo(
    out: Path,
    scale: float = 1.0,
    seed: int = 0,
    epochs: int = 8,
    ray_nodes: int = 0,
    anomalies: bool = True,
    latent: str = "mean",
) -> dict[str, Any]:
    """Run every stage into ``out``; return the summary (also written to ``out/summary.json``)."""
    from quackae import synth

    out = Path(out)
    _check_demo_out(out)  # a wrong folder: one line, before the stages' imports (torch)
    from quackae.classify.classifier import predict, train_classifier
    from quackae.ingest.flatten import Options, flatten
    from quackae.model import controller
    from quackae.model.config import ControllerConfig
    from quackae.report.markdown import write_report
    from quackae.report.plots import plot_all
    from quackae.synth.evaluate import render as render_evaluation
    from quackae.synth.evaluate import run_evaluation, table_cells
    from quackae.synth.truth import labeller, score_against_truth

    if out.exists():
        shutil.rmtree(out)
    claim_output(out, "--storage_path", "quackae demo")
    atomic_write(
        out / MARKER, "written by `quackae demo`: this folder is replaced by the next demo run\n"
    )
    stages = Stages(11)
    raw = out / "raw"

    def make_raw() -> list[Any]:
        return [
            synth.write_archive(raw, max(int(n * scale), 20), seed=seed + i, fmt=fmt, scan=scan)
            for i, (fmt, scan, n) in enumerate(ARCHIVES)
        ]

    archives = stages.run(
        "synth",
        make_raw,
        lambda r: (
            f"{sum(a.measurements for a in r)} measurements, "
            f"{sum(a.tries for a in r)} tries in {len(r)} archives -> {raw}"
        ),
    )
    dataset = out / "dataset"
    stages.run(
        "flatten",
        lambda: flatten(
            [a.archive for a in archives],
            dataset,
            Options(
                max_tokens=128,
                anomalies=anomalies,
                signatures=synth.write_signatures(raw / "signatures"),
            ),
            progress=False,
            vocab_size=2048,
        ),
        lambda s: (
            f"{s.rows} rows (censored {s.labels[1]}, undetermined {s.labels[0]}, uncensored "
            f"{s.labels[-1]})"
        ),
    )
    common = ControllerConfig(
        data_dir=str(dataset),
        embed_size=64,
        hidden_size=128,
        batch_size=32,
        ray_nodes=ray_nodes,
        seed=seed,
        trainer={"enable_progress_bar": False, "enable_model_summary": False},
    )
    ae_dir = out / "autoencoder"
    training = common.replace(
        storage_path=str(ae_dir),
        bucketing=True,
        l_rate=3e-3,
        l_rate_min=3e-4,
        exp_label="demo",
        max_epochs=epochs,
        num_sanity_val_steps=0,
        # a fixed number of epochs, checked after each, teacher-forced: not the seed's loop
        stopping_threshold=None,
        checkpoint_every_n_steps=0,
        eval_decoding="forced",
    )
    summary_ae = stages.run(
        "train autoencoder",
        lambda: controller.train(training),
        lambda _: f"checkpoints in {ae_dir}",
    )
    ckpt = summary_ae["best_checkpoint"] or summary_ae["last_checkpoint"]
    for mode in ("filtered", "evaluate", ""):
        folder = out / (f"encoded_{mode}" if mode else "encoded")
        encoding = common.replace(
            encode=True,
            checkpoint_path=ckpt,
            latent=latent,
            storage_path=str(folder),
            **({mode: True} if mode else {}),
        )
        stages.run(
            f"encode --{mode}" if mode else "encode every row",
            lambda encoding=encoding: controller.encode(encoding),
            lambda _, folder=folder: f"-> {folder}",
        )
    metrics = stages.run(
        "classify train",
        # threshold: 0.5, raised to keep FPR <= 1% on the labelled validation split and on every
        # kind of benign page held out of training in turn (labelled rows only, never the truth)
        lambda: train_classifier(
            out / "encoded_filtered",
            out / "classifier",
            max_epochs=60,
            lr=5e-3,
            seed=seed,
            weight_decay=0.3,
            input_dropout=0.1,
            input_noise=0.3,
            progress=False,
            patience=10,
            target_fpr=0.01,
            calibration="novel-kind",
        ),
        lambda m: f"held-out ROC-AUC {m['roc_auc']:.3f}, F1 {m['f1']:.3f}; {m['verdict']}",
    )
    threshold = float(metrics.get("threshold", 0.5))

    def classify_and_report() -> dict[str, Any]:
        predict(
            out / "encoded_evaluate",
            Path(metrics["checkpoint"]),
            out / "candidates",
            threshold=threshold,
        )
        truth = score_against_truth(
            out / "candidates",
            sorted(raw.glob("*.truth.jsonl")),
            threshold=threshold,
            baseline_threshold=metrics.get("baseline", {}).get("threshold"),
        )
        write_report(out / "candidates", threshold, metrics, truth)
        return truth

    truth = stages.run(
        "classify predict + report",
        classify_and_report,
        lambda _: f"-> {out / 'candidates' / 'report.md'}",
    )
    plots = stages.run(
        "plots",
        lambda: plot_all(out, labeller(sorted(raw.glob("*.truth.jsonl")))),
        lambda p: f"{len(p)} PNGs -> {out / 'plots'}",
    )
    evaluation = stages.run(
        "evaluate (leave-family-out)",
        # a second world of this seed, every try flattened, one fold of families and benign kinds
        # at a time without signature or label: what the detector finds that nobody has seen
        lambda: run_evaluation(
            out / "evaluation",
            [seed],
            folds=EVAL_FOLDS,
            measurements=max(int(EVAL_MEASUREMENTS * scale), 400),
            # the world's own autoencoder (unsupervised: every row), as the demo's own was trained
            autoencoder={"epochs": epochs, "patience": EVAL_PATIENCE},
            variants=True,
        ),
        lambda r: f"-> {out / 'evaluation' / 'evaluation.json'}",
    )
    report = stages.run(
        "detect + HTML report",
        lambda: detect_and_report(dataset, out, seed, out / "encoded"),
        lambda index: f"-> {index}",
    )
    summary = {
        "out": str(out),
        "report": str(report),
        "seconds": round(stages.elapsed, 1),
        "autoencoder": summary_ae,
        "classifier": {
            k: metrics.get(k) for k in ("accuracy", "f1", "roc_auc", "winner", "verdict")
        },
        "truth": truth,
        "evaluation": {
            **{k: evaluation[k] for k in ("folds", "measurements", "features", "summary")},
            "autoencoders": [p.get("autoencoder") for p in evaluation["per_seed"]],
        },
        "evaluation_text": render_evaluation(evaluation),
        "table_row": table_cells(evaluation["per_seed"]),
        "plots": [str(p) for p in plots],
    }
    atomic_write(out / "summary.json", json.dumps(summary, indent=1, default=str))
    print(render_summary(summary))
    return summary


def detect_and_report(dataset: Path, out: Path, seed: int, embeddings: Path | None = None) -> Path:
    """Fit the detector on the dataset's labels (and latents), score every row, write the report."""
    from quackae.detect import pipeline
    from quackae.report.site import build_report

    pipeline.train(dataset, out / "detector", embeddings=embeddings, seed=seed)
    pipeline.predict(dataset, out / "detector", out / "detections", embeddings=embeddings)
    return build_report(dataset, out / "detections", out / "report").index


def _check_demo_out(out: Path) -> None:
    """Refuse to replace a folder that is not empty and not a previous demo's output."""
    check_output(out, "--storage_path", "quackae demo", proof=(MARKER,))


def _fmt(x: Any) -> str:
    return f"{x:.3f}" if isinstance(x, (int, float)) else "n/a"


def render_summary(s: dict[str, Any]) -> str:
    """The final lines: the leave-family-out figures, then the autoencoder and its classifier."""
    lines = [
        "",
        f"demo finished in {s['seconds']:.0f}s; everything is under {s['out']}",
        "finding pages nobody has seen (families and benign kinds held out of signatures and "
        "labels, "
        "settings chosen on a separate development fold):",
        *("  " + line for line in s["evaluation_text"].splitlines()),
        f"  autoencoder: last val_loss "
        f"{_fmt(s['autoencoder']['last_validation'].get('val_loss'))}, "
        f"test token accuracy {_fmt(s['autoencoder']['test'].get('test_acc'))}; latent "
        "classifier on held-out "
        f"labelled rows: ROC-AUC {_fmt(s['classifier']['roc_auc'])}, F1 "
        f"{_fmt(s['classifier']['f1'])}",
        f"  report: {s['out']}/candidates/report.md (the latent classifier's candidates, scored "
        "against the truth)   "
        f"evaluation: {s['out']}/evaluation/evaluation.json   plots: {s['out']}/plots/",
        f"  HTML report (open in a browser): {s['report']}",
    ]
    if s.get("table_row"):
        from quackae.synth.evaluate import render_row

        lines.append(
            "  this seed's row of the evaluation table (cell: recall / worst fold / FPR (worst "
            "fold) / proposal coverage; all rows: python benchmarks/evaluate.py):"
        )
        lines.append("    " + render_row("+ latents (the default detector)", s["table_row"]))
        ae = next(iter(s["evaluation"].get("autoencoders") or []), None)
        if ae:
            lines.append(
                f"    its world's autoencoder: {ae.get('epochs_run')} of {ae.get('max_epochs')} "
                f"epochs (stopped by {ae.get('stopped_by')}), last val_loss "
                f"{_fmt(ae.get('last_val_loss'))}"
            )
    return "\n".join(lines)
