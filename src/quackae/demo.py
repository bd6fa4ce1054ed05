"""``quackae demo``: the whole pipeline on bundled synthetic data, scored against ground truth.

synth -> flatten -> train (ae_processor) -> encode --filtered and --evaluate -> classify train ->
classify predict -> report -> plots. Every artefact lands under one output folder:

    OUT/raw/          archives + ground-truth sidecars      OUT/dataset/        the dataset
    OUT/autoencoder/  checkpoints, logs                      OUT/encoded_filtered/, OUT/encoded_evaluate/
    OUT/classifier/   classifier, baseline, metrics.json     OUT/candidates/     predictions + report.md
    OUT/plots/        PNGs                                   OUT/summary.json    the final scores
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# (format, scan, measurements per unit of --scale); a few thousand measurements in all
ARCHIVES = (("v2", "http", 2200), ("v1", "https", 900), ("v2", "https", 700), ("v1", "echo", 500), ("v2", "discard", 300))


class Stages:
    """Run named stages in order, printing one progress line per stage with its duration."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.started = time.perf_counter()

    def run(self, name: str, fn: Callable[[], Any], note: Callable[[Any], str] = lambda _: "") -> Any:
        """Run one stage and print ``[i/n] name: note (seconds)``."""
        self.done += 1
        print(f"[{self.done}/{self.total}] {name} ...", flush=True)
        t = time.perf_counter()
        result = fn()
        print(f"[{self.done}/{self.total}] {name}: {note(result)} ({time.perf_counter() - t:.1f}s)", flush=True)
        return result

    @property
    def elapsed(self) -> float:
        """Seconds since the first stage started."""
        return time.perf_counter() - self.started


def _controller(argv: list[str]) -> None:
    from quackae import ae_processor

    args = ae_processor.build_parser().parse_args(argv)
    ae_processor.main(args)


def run_demo(out: Path, scale: float = 1.0, seed: int = 0, epochs: int = 8, ray_nodes: int = 0,
             anomalies: bool = True, latent: str = "mean") -> dict[str, Any]:
    """Run every stage into ``out``; return the summary (also written to ``out/summary.json``)."""
    from quackae import synth
    from quackae.classifier import predict, train_classifier
    from quackae.flatten import Options, flatten
    from quackae.plots import plot_all
    from quackae.report import write_report
    from quackae.truth import score_against_truth

    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    stages = Stages(8)
    raw = out / "raw"

    def make_raw() -> list[Any]:
        return [
            synth.write_archive(raw, max(int(n * scale), 20), seed=seed + i, fmt=fmt, scan=scan)
            for i, (fmt, scan, n) in enumerate(ARCHIVES)
        ]

    archives = stages.run("synth", make_raw, lambda r: f"{sum(a.measurements for a in r)} measurements, "
                          f"{sum(a.tries for a in r)} tries in {len(r)} archives -> {raw}")  # fmt: skip
    dataset = out / "dataset"
    stages.run(
        "flatten",
        lambda: flatten([a.archive for a in archives], dataset, Options(max_tokens=128, anomalies=anomalies, signatures=synth.write_signatures(raw / "signatures")), progress=False, vocab_size=2048),
        lambda s: f"{s.rows} rows (censored {s.labels[1]}, undetermined {s.labels[0]}, uncensored {s.labels[-1]})",
    )
    common = ["--data_dir", str(dataset), "--embed_size", "64", "--hidden_size", "128", "--batch_size", "32",
              "--ray_nodes", str(ray_nodes), "--seed", str(seed), "--enable_progress_bar", "false",
              "--enable_model_summary", "false"]  # fmt: skip
    ae_dir = out / "autoencoder"
    stages.run(
        "train autoencoder",
        lambda: _controller([*common, "--storage_path", str(ae_dir), "--max_epochs", str(epochs), "--bucketing",
                             "--l_rate", "3e-3", "--l_rate_min", "3e-4", "--exp_label", "demo",
                             "--num_sanity_val_steps", "0"]),  # fmt: skip
        lambda _: f"checkpoints in {ae_dir}",
    )
    summary_ae = json.loads((ae_dir / "train_summary.json").read_text())
    ckpt = summary_ae["best_checkpoint"] or summary_ae["last_checkpoint"]
    for mode in ("filtered", "evaluate"):
        stages.run(
            f"encode --{mode}",
            lambda mode=mode: _controller([*common, "--encode", f"--{mode}", "--checkpoint_path", ckpt, "--latent", latent,
                                           "--storage_path", str(out / f"encoded_{mode}")]),  # fmt: skip
            lambda _, mode=mode: f"-> {out / f'encoded_{mode}'}",
        )
    metrics = stages.run(
        "classify train",
        # threshold: 0.5, raised to keep FPR <= 1% on the labelled validation split and on every
        # kind of benign page held out of training in turn (labelled rows only, never the truth)
        lambda: train_classifier(out / "encoded_filtered", out / "classifier", max_epochs=60, lr=5e-3, seed=seed,
                                 weight_decay=0.3, input_dropout=0.1, input_noise=0.3, progress=False, patience=10,
                                 target_fpr=0.01, calibration="novel-kind"),
        lambda m: f"held-out ROC-AUC {m['roc_auc']:.3f}, F1 {m['f1']:.3f}; {m['verdict']}",
    )
    threshold = float(metrics.get("threshold", 0.5))

    def classify_and_report() -> dict[str, Any]:
        predict(out / "encoded_evaluate", Path(metrics["checkpoint"]), out / "candidates", threshold=threshold)
        truth = score_against_truth(out / "candidates", sorted(raw.glob("*.truth.jsonl")), threshold=threshold,
                                    baseline_threshold=metrics.get("baseline", {}).get("threshold"))  # fmt: skip
        write_report(out / "candidates", threshold, metrics, truth)
        return truth

    truth = stages.run("classify predict + report", classify_and_report, lambda _: f"-> {out / 'candidates' / 'report.md'}")
    plots = stages.run("plots", lambda: plot_all(out), lambda p: f"{len(p)} PNGs -> {out / 'plots'}")
    summary = {
        "out": str(out),
        "seconds": round(stages.elapsed, 1),
        "autoencoder": summary_ae,
        "classifier": {k: metrics.get(k) for k in ("accuracy", "f1", "roc_auc", "winner", "verdict")},
        "truth": truth,
        "plots": [str(p) for p in plots],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    print(render_summary(summary))
    return summary


def _fmt(x: Any) -> str:
    return f"{x:.3f}" if isinstance(x, (int, float)) else "n/a"


def _truth_lines(name: str, score: dict[str, Any]) -> list[str]:
    at = score["at_threshold"]
    lines = [
        f"  {name}: recall {_fmt(at.get('recall'))} on truly censored undetermined tries, "
        f"false-positive rate {_fmt(at.get('fpr'))} on truly uncensored ones "
        f"(threshold {_fmt(at.get('threshold'))}, ROC-AUC {_fmt(score.get('roc_auc'))})"
    ]
    vendors = at.get("recall_by_unfingerprinted_family") or {}
    if vendors:
        lines.append("    blockpages of unfingerprinted families: "
                     + ", ".join(f"{v} {_fmt(r)}" for v, r in vendors.items()))  # fmt: skip
    mechanisms = at.get("recall_by_mechanism") or {}
    if mechanisms:
        lines.append("    recall by mechanism: " + ", ".join(f"{m} {_fmt(r)}" for m, r in mechanisms.items()))
    fpr = at.get("fpr_by_mechanism") or {}
    if fpr:
        lines.append("    false positives by kind: " + ", ".join(f"{m} {_fmt(r)}" for m, r in fpr.items()))
    return lines


def render_summary(s: dict[str, Any]) -> str:
    """The final lines: how well the candidates match the synthetic ground truth."""
    t = s["truth"]
    lines = [
        "",
        f"demo finished in {s['seconds']:.0f}s; everything is under {s['out']}",
        f"  autoencoder: best val_loss {_fmt(s['autoencoder']['best_val_loss'])}, "
        f"test token accuracy {_fmt(s['autoencoder']['test'].get('test_acc'))}",
        f"  held-out labelled rows: latent classifier ROC-AUC {_fmt(s['classifier']['roc_auc'])}, "
        f"F1 {_fmt(s['classifier']['f1'])}; {s['classifier']['verdict']}",
        "  undetermined tries scored against the generator's ground truth (each model's threshold "
        "chosen on labelled rows only: the validation split and each benign kind held out in turn):",
        *_truth_lines("latent classifier", t["classifier"]),
    ]
    if t.get("baseline") and t["baseline"].get("at_threshold"):
        lines += _truth_lines("bag-of-tokens baseline", t["baseline"])
    lines.append(f"  report: {s['out']}/candidates/report.md   plots: {s['out']}/plots/")
    return "\n".join(lines)


def add_demo_arguments(sub: argparse._SubParsersAction) -> None:
    """``quackae demo``: the whole pipeline on generated data (what `make demo` runs)."""
    p = sub.add_parser(
        "demo",
        help="run the whole pipeline on generated data and score it against ground truth",
        description="synth -> flatten -> train -> encode --filtered/--evaluate -> classify -> "
        "report -> plots, all under --out, then a summary scored against the synthetic ground truth.",
    )
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder, replaced if present (default %(default)s)")
    p.add_argument("--scale", type=float, default=1.0, help="multiply the number of generated measurements (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data and the models (default %(default)s)")
    p.add_argument("--epochs", type=int, default=8, help="autoencoder epochs (default %(default)s)")
    p.add_argument("--ray_nodes", type=int, default=0, help="train and encode on this many Ray workers; 0 = in-process (default %(default)s)")
    p.add_argument("--all_tries", action="store_true", help="flatten every try, not only the anomalous ones the original research trained on")
    p.add_argument("--latent", choices=("final", "mean"), default="mean",
                   help="the feature encoded per record (ae_processor --latent): the encoder's final states, as the seed, "
                        "or its states averaged over the text tokens, which carries a page's wording (default %(default)s)")  # fmt: skip
    p.set_defaults(func=lambda a: run_demo(a.out, a.scale, a.seed, a.epochs, a.ray_nodes, not a.all_tries, a.latent) and 0)
