"""PNG plots of a run: training curves, 2-D maps of the latents, probability histograms.

Everything is drawn with matplotlib's Agg backend (no display needed); every plot has a title,
axis labels with units and a legend. ``plot_all(run_dir)`` finds what it can in a demo output
folder (``autoencoder/``, ``classifier/``, ``encoded_filtered/``, ``encoded_evaluate/``,
``candidates/``, ``detections/``) or in one run folder of those kinds, and redraws every plot
into ``run_dir/plots/``. Ground truth, where the caller has it (generated data), comes in as a
``Truth``: a function giving each row 1 (truly censored), -1 (truly not) or 0 (unknown).
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from quackae.classify.predictions import prediction_paths, read_predictions  # noqa: E402
from quackae.dataset.embeddings import read_embeddings  # noqa: E402
from quackae.io.atomic import atomic_path  # noqa: E402
from quackae.report.queries import PREDICTIONS_FILE as DETECT_PREDICTIONS  # noqa: E402
from quackae.report.queries import SUMMARY_FILE as DETECT_SUMMARY  # noqa: E402

#: rows (with ``source``, ``line``, ``try_index``) -> 1 truly censored, -1 truly not, 0 unknown
Truth = Callable[[pa.Table], np.ndarray]

log = logging.getLogger(__name__)

LABEL_NAMES = {1: "censored", 0: "undetermined", -1: "uncensored"}
LABEL_COLOURS = {1: "tab:red", 0: "tab:gray", -1: "tab:blue"}
TRAIN_KEYS = ("train_loss", "train_loss_step", "train_loss_epoch")
# the autoencoder logs its teacher-forced and its sampled steps apart (the model stage's
# ``train_loss_forced`` / ``train_loss_sampled``): their losses differ by design, so one line
# through both zigzags between two curves
FORCED_KEYS = ("train_loss_forced", "train_loss_forced_step")
SAMPLED_KEYS = ("train_loss_sampled", "train_loss_sampled_step")
VAL_KEYS = ("val_loss", "val_loss_epoch")
MAX_POINTS = 5000
DPI = 110


# --------------------------------------------------------------------------- training curves


def read_curve(metrics_csv: Path, keys: Sequence[str]) -> tuple[np.ndarray, np.ndarray, str]:
    """(steps, values, column) of the first of ``keys`` present in a CSVLogger ``metrics.csv``."""
    with open(metrics_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    for key in keys:
        points = [
            (float(r["step"]), float(r[key]))
            for r in rows
            if r.get(key) not in (None, "") and r.get("step")
        ]
        if points:
            steps, values = zip(*points, strict=True)
            return np.array(steps), np.array(values), key
    return np.zeros(0), np.zeros(0), ""


def _run_label(metrics_csv: Path) -> str:
    parts = Path(metrics_csv).parts
    return "/".join(parts[-4:-1]) if len(parts) >= 4 else str(metrics_csv)


def running_median(values: np.ndarray, window: int) -> np.ndarray:
    """Median of each point's centred window (shorter at the ends): the trend of a noisy curve."""
    if window <= 1 or len(values) < 3:
        return values
    half = window // 2
    return np.array(
        [np.median(values[max(0, i - half) : i + half + 1]) for i in range(len(values))]
    )


def _is_classifier(metrics_csv: Path) -> bool:
    return "classifier" in Path(metrics_csv).parts


def _training_series(path: Path) -> list[tuple[str, np.ndarray, np.ndarray, str]]:
    """(legend, steps, values, colour) of the training losses of one ``metrics.csv``."""
    forced = read_curve(path, FORCED_KEYS)
    sampled = read_curve(path, SAMPLED_KEYS)
    if len(forced[0]) or len(sampled[0]):
        return [
            (name, steps, values, colour)
            for name, (steps, values, _), colour in (
                ("training, teacher-forced steps", forced, "tab:blue"),
                ("training, sampled steps (decoder fed its own output)", sampled, "tab:green"),
            )
            if len(steps)
        ]
    steps, values, key = read_curve(path, TRAIN_KEYS)
    if not len(steps):
        return []
    mixed = "" if _is_classifier(path) else " (teacher-forced and sampled steps mixed)"
    return [(f"training ({key}){mixed}", steps, values, "tab:blue")]


def plot_training_curves(metrics_csvs: Sequence[Path], out: Path) -> Path | None:
    """One panel per ``metrics.csv``: training losses (per kind of step) and validation loss.

    Per-step losses are drawn as faint points with their running median as a line, so the
    trend reads at a glance; validation is one point per epoch.
    """
    metrics_csvs = [Path(p) for p in metrics_csvs if Path(p).is_file()]
    if not metrics_csvs:
        return None
    fig, axes = plt.subplots(
        1, len(metrics_csvs), figsize=(6.5 * len(metrics_csvs), 4.5), squeeze=False
    )
    for ax, path in zip(axes[0], metrics_csvs, strict=True):
        series = _training_series(path)
        if not series:
            ax.text(
                0.5,
                0.95,
                "no training loss in this log (a run of fewer steps than the Trainer's "
                "log_every_n_steps logs none)",
                transform=ax.transAxes,
                ha="center",
                va="top",
                fontsize=8,
                wrap=True,
            )
        for name, steps, values, colour in series:
            if len(steps) >= 40:
                ax.plot(steps, values, ".", ms=2, alpha=0.25, color=colour)
                trend = running_median(values, max(3, len(values) // 25))
                ax.plot(steps, trend, color=colour, lw=2, label=f"{name}, running median")
            else:
                ax.plot(steps, values, marker="o", ms=3, color=colour, label=name)
        steps, values, key = read_curve(path, VAL_KEYS)
        if len(steps):
            ax.plot(
                steps, values, marker="s", ms=4, color="tab:orange", label=f"validation ({key})"
            )
        classifier = _is_classifier(path)
        ax.set(
            title=f"{'Classifier' if classifier else 'Autoencoder'} training: {_run_label(path)}",
            xlabel="optimizer step",
            ylabel="binary cross-entropy (nats per row)"
            if classifier
            else "cross-entropy (nats per token)",
        )
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    return _save(fig, out)


# --------------------------------------------------------------------------- embedding maps


def _sample(n: int, limit: int, seed: int = 0) -> np.ndarray:
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


def load_points(
    embeddings_dirs: Sequence[Path], max_points: int = MAX_POINTS
) -> tuple[pa.Table, np.ndarray]:
    """Metadata and latents of a deterministic sample of rows from one or more embeddings dirs."""
    tables, xs = [], []
    share = max(max_points // max(len(embeddings_dirs), 1), 1)
    for d in embeddings_dirs:
        table, x = read_embeddings(Path(d), ("row_id", "censored", "source", "line", "try_index"))
        keep = _sample(len(x), share)
        tables.append(table.take(pa.array(keep)))
        xs.append(x[keep])
    return pa.concat_tables(tables), np.concatenate(xs)


def project(x: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """2-D projection of latents by PCA or (when installed) UMAP."""
    if len(x) < 3:
        return np.pad(x[:, :2], ((0, 0), (0, max(0, 2 - x.shape[1]))))
    if method == "umap":
        import umap  # optional extra

        return umap.UMAP(
            n_components=2, random_state=seed, n_neighbors=min(15, len(x) - 1)
        ).fit_transform(x)
    from sklearn.decomposition import PCA

    return PCA(n_components=min(2, x.shape[1]), random_state=seed).fit_transform(x)


def umap_available() -> bool:
    """Whether the optional ``umap-learn`` extra is importable."""
    try:
        import umap  # noqa: F401
    except ImportError:
        return False
    return True


def _scatter(
    ax, xy: np.ndarray, labels: np.ndarray, names: dict[int, str], title: str, method: str
) -> None:
    for value in (0, -1, 1):  # censored drawn last, on top
        m = labels == value
        if m.any():
            ax.scatter(
                xy[m, 0],
                xy[m, 1],
                s=5,
                alpha=0.6,
                c=LABEL_COLOURS[value],
                label=f"{names[value]} ({m.sum()})",
            )
    ax.set(
        title=title,
        xticks=[],
        yticks=[],
        xlabel=f"{method.upper()} component 1 (arbitrary units)",
        ylabel=f"{method.upper()} component 2 (arbitrary units)",
    )
    ax.legend(markerscale=3, fontsize=8, title="tries")


def plot_embedding_map(
    embeddings_dirs: Sequence[Path],
    out: Path,
    truth: Truth | None = None,
    method: str = "pca",
    max_points: int = MAX_POINTS,
) -> Path | None:
    """Latents projected to 2-D, coloured by label, and by ground truth when given."""
    dirs = [Path(d) for d in embeddings_dirs if (Path(d) / "embeddings.json").is_file()]
    if not dirs:
        return None
    table, x = load_points(dirs, max_points)
    xy = project(x, method)
    labels = table.column("censored").to_numpy().astype(np.int8)
    panels = [(labels, LABEL_NAMES, "by label (fingerprints)")]
    if truth is not None:
        truth_names = {1: "truly censored", 0: "no truth", -1: "truly not censored"}
        panels.append((truth(table), truth_names, "by ground truth"))
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 5), squeeze=False)
    for ax, (lab, names, title) in zip(axes[0], panels, strict=True):
        _scatter(ax, xy, lab, names, f"{method.upper()} of latents, {title}", method)
    return _save(fig, out)


# --------------------------------------------------------------------------- probabilities


def plot_probability_histograms(
    predictions: Path, out: Path, truth: Truth | None = None
) -> Path | None:
    """Histograms of the classifier's (and baseline's) probability, per true class when known."""
    if not prediction_paths(predictions):
        return None
    rows = read_predictions(
        predictions, ["source", "line", "try_index", "probability", "baseline_probability"]
    )
    known = truth(rows) if truth is not None else None
    if known is not None and (known != 0).any():
        groups = [
            ("truly censored", known == 1, "tab:red"),
            ("truly not censored", known == -1, "tab:blue"),
        ]
    else:
        groups = [("all scored rows", np.ones(rows.num_rows, bool), "tab:gray")]
    columns = [
        c
        for c in ("probability", "baseline_probability")
        if rows.column(c).null_count < rows.num_rows
    ]
    fig, axes = plt.subplots(1, len(columns), figsize=(5.5 * len(columns), 4), squeeze=False)
    bins = np.linspace(0, 1, 41)
    for ax, col in zip(axes[0], columns, strict=True):
        prob = rows.column(col).fill_null(math.nan).to_numpy(zero_copy_only=False)
        for name, mask, colour in groups:
            ax.hist(prob[mask], bins=bins, alpha=0.55, color=colour, label=f"{name} ({mask.sum()})")
        ax.set(
            title=("Latent classifier" if col == "probability" else "Bag-of-tokens baseline")
            + ": probabilities",
            xlabel="probability of censorship (0 to 1)",
            ylabel="tries (count)",
        )
        ax.legend(fontsize=8)
    return _save(fig, out)


# --------------------------------------------------------------------------- detections

DETECT_GROUPS = (
    ("labelled censored (signatures)", 1, "tab:red"),
    ("undetermined", 0, "tab:gray"),
    ("labelled uncensored", -1, "tab:blue"),
)


def _detections(pred_dir: Path) -> tuple[pa.Table, dict] | None:
    path, summary = Path(pred_dir) / DETECT_PREDICTIONS, Path(pred_dir) / DETECT_SUMMARY
    if not (path.is_file() and summary.is_file()):
        return None
    columns = ["probability", "candidate", "censored", "country_code", "timestamp"]
    return pq.read_table(path, columns=columns), json.loads(summary.read_text())


def plot_detect_probabilities(pred_dir: Path, out: Path) -> Path | None:
    """Histogram of the detector's probabilities per signature label, with its threshold."""
    found = _detections(pred_dir)
    if found is None:
        return None
    table, summary = found
    prob = table.column("probability").to_numpy(zero_copy_only=False)
    label = table.column("censored").to_numpy()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    bins = np.linspace(0, 1, 41)
    for name, value, colour in DETECT_GROUPS:
        m = label == value
        if m.any():
            ax.hist(prob[m], bins=bins, alpha=0.55, color=colour, label=f"{name} ({m.sum():,})")
    if summary.get("threshold") is not None:
        ax.axvline(
            summary["threshold"],
            color="black",
            ls="--",
            label=f"threshold {summary['threshold']:.3f}",
        )
    ax.set_yscale("log")
    ax.set(
        title="Detector: probability of censorship by signature label",
        xlabel="calibrated probability of censorship (0 to 1)",
        ylabel="tries (count, log scale)",
    )
    ax.legend(fontsize=8)
    return _save(fig, out)


def _by_country(table: pa.Table) -> tuple[list[str], np.ndarray, np.ndarray]:
    country = np.asarray(table.column("country_code").fill_null("").to_pylist(), dtype=object)
    label = table.column("censored").to_numpy()
    new = table.column("candidate").to_numpy(zero_copy_only=False) & (label == 0)
    names = sorted(set(country.tolist()))
    counts = {
        c: (int((new & (country == c)).sum()), int(((label == 1) & (country == c)).sum()))
        for c in names
    }
    order = sorted(names, key=lambda c: (-counts[c][0], -counts[c][1], c))
    order = [c for c in order if counts[c] != (0, 0)][:20]
    return (
        order,
        np.array([counts[c][0] for c in order]),
        np.array([counts[c][1] for c in order]),
    )


def plot_detect_countries(pred_dir: Path, out: Path) -> Path | None:
    """New candidates and labelled blocks per country (the 20 with the most), side by side."""
    found = _detections(pred_dir)
    if found is None:
        return None
    names, new, blocked = _by_country(found[0])
    if not names:
        return None
    fig, ax = plt.subplots(figsize=(7, 0.32 * len(names) + 1.6))
    y = np.arange(len(names))
    ax.barh(y - 0.2, new, 0.4, color="tab:purple", label="new candidates (no signature)")
    ax.barh(y + 0.2, blocked, 0.4, color="tab:red", label="labelled blocks (signatures)")
    ax.set_yticks(y, [n or "unknown" for n in names])
    ax.invert_yaxis()
    ax.set(
        title="Detector: flagged tries per country",
        xlabel="tries (count)",
        ylabel="country (ISO 3166 code)",
    )
    ax.legend(fontsize=8)
    return _save(fig, out)


def plot_detect_days(pred_dir: Path, out: Path, countries: int = 6) -> Path | None:
    """New candidates per UTC day for the countries with the most."""
    found = _detections(pred_dir)
    if found is None:
        return None
    table = found[0]
    ts = table.column("timestamp").to_numpy()
    label = table.column("censored").to_numpy()
    new = table.column("candidate").to_numpy(zero_copy_only=False) & (label == 0) & (ts > 0)
    if not new.any():
        return None
    country = np.asarray(table.column("country_code").fill_null("").to_pylist(), dtype=object)
    day = (ts // 86400).astype(np.int64)
    first, last = int(day[new].min()), int(day[new].max())
    span = np.arange(first, last + 1)
    top = _by_country(table)[0][:countries]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for c in top:
        m = new & (country == c)
        counts = np.bincount(day[m] - first, minlength=len(span))
        ax.plot(span.astype("datetime64[D]"), counts, marker="o", ms=3, label=c or "unknown")
    ax.set(
        title="Detector: new candidates per day",
        xlabel="day (UTC)",
        ylabel="new candidate tries per day (count)",
    )
    ax.legend(fontsize=8, title="country")
    fig.autofmt_xdate()
    return _save(fig, out)


# --------------------------------------------------------------------------- all of a run


def _save(fig, out: Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    with atomic_path(out) as tmp:  # a killed run never leaves half a PNG
        fig.savefig(tmp, dpi=DPI, format="png")
    plt.close(fig)
    return out


def _metrics_csvs(run_dir: Path) -> list[Path]:
    """CSVLogger files of a demo folder, of a training run folder, or of a classifier folder."""
    found = {
        *(run_dir / "autoencoder").glob("logs/**/metrics.csv"),
        *(run_dir / "classifier").glob("logs/**/metrics.csv"),
        *run_dir.glob("logs/**/metrics.csv"),
    }
    return sorted(found)


def recognised(run_dir: Path) -> list[str]:
    """What ``plot_all`` finds in a folder: any of training, embeddings, predictions, detections."""
    run_dir = Path(run_dir)
    kinds = []
    if _metrics_csvs(run_dir):
        kinds.append("training")
    if any((d / "embeddings.json").is_file() for d in _embedding_dirs(run_dir)):
        kinds.append("embeddings")
    if any(prediction_paths(d) for d in (run_dir / "candidates", run_dir)):
        kinds.append("predictions")
    if any(_detections(d) is not None for d in (run_dir / "detections", run_dir)):
        kinds.append("detections")
    return kinds


def _embedding_dirs(run_dir: Path) -> list[Path]:
    return [run_dir / "encoded_filtered", run_dir / "encoded_evaluate", run_dir]


def plot_all(run_dir: Path, truth: Truth | None = None, out: Path | None = None) -> list[Path]:
    """Redraw every plot the files of a run folder allow, into ``out`` (default ``run_dir/plots``).

    A demo folder, an autoencoder or classifier run folder (``logs/**/metrics.csv``), an
    embeddings folder, a ``classify predict`` output and a ``detect predict`` output are
    recognised, alone or as the subfolders of a demo.
    """
    run_dir = Path(run_dir)
    plots = Path(out) if out is not None else run_dir / "plots"
    encoded = _embedding_dirs(run_dir)
    candidates = next((d for d in (run_dir / "candidates", run_dir) if prediction_paths(d)), None)
    detections = next(
        (d for d in (run_dir / "detections", run_dir) if _detections(d) is not None), None
    )
    jobs = [
        lambda: plot_training_curves(_metrics_csvs(run_dir), plots / "training_curves.png"),
        lambda: plot_embedding_map(encoded, plots / "embeddings_pca.png", truth, "pca"),
    ]
    if candidates is not None:
        jobs.append(
            lambda: plot_probability_histograms(candidates, plots / "probabilities.png", truth)
        )
    if detections is not None:
        jobs += [
            lambda: plot_detect_probabilities(detections, plots / "detect_probabilities.png"),
            lambda: plot_detect_countries(detections, plots / "detect_countries.png"),
            lambda: plot_detect_days(detections, plots / "detect_days.png"),
        ]
    if umap_available():
        jobs.append(
            lambda: plot_embedding_map(encoded, plots / "embeddings_umap.png", truth, "umap")
        )
    written = []
    for job in jobs:
        try:
            path = job()
        except (ValueError, OSError, pa.ArrowException) as e:
            log.warning("plot skipped: %s", e)
            continue
        if path is not None:
            written.append(path)
    return written
