"""PNG plots of a run: training curves, 2-D maps of the latents, probability histograms.

Everything is drawn with matplotlib's Agg backend (no display needed). ``plot_all(run_dir)``
finds what it can in a demo output folder (``autoencoder/``, ``classifier/``,
``encoded_filtered/``, ``encoded_evaluate/``, ``candidates/``) and redraws every plot into
``run_dir/plots/``. Ground truth, where the caller has it (generated data), comes in as a
``Truth``: a function giving each row 1 (truly censored), -1 (truly not) or 0 (unknown).
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

from quackae.classify.predictions import prediction_paths, read_predictions  # noqa: E402
from quackae.dataset.embeddings import read_embeddings  # noqa: E402
from quackae.io.atomic import atomic_path  # noqa: E402

#: rows (with ``source``, ``line``, ``try_index``) -> 1 truly censored, -1 truly not, 0 unknown
Truth = Callable[[pa.Table], np.ndarray]

log = logging.getLogger(__name__)

LABEL_NAMES = {1: "censored", 0: "undetermined", -1: "uncensored"}
LABEL_COLOURS = {1: "tab:red", 0: "tab:gray", -1: "tab:blue"}
TRAIN_KEYS = ("train_loss", "train_loss_epoch", "train_loss_step")
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


def plot_training_curves(metrics_csvs: Sequence[Path], out: Path) -> Path | None:
    """One panel per ``metrics.csv``: training and validation loss against the global step."""
    metrics_csvs = [Path(p) for p in metrics_csvs if Path(p).is_file()]
    if not metrics_csvs:
        return None
    fig, axes = plt.subplots(
        1, len(metrics_csvs), figsize=(5.5 * len(metrics_csvs), 4), squeeze=False
    )
    for ax, path in zip(axes[0], metrics_csvs, strict=True):
        for keys, colour in ((TRAIN_KEYS, "tab:blue"), (VAL_KEYS, "tab:orange")):
            steps, values, key = read_curve(path, keys)
            if len(steps):
                ax.plot(
                    steps,
                    values,
                    marker="o" if len(steps) < 40 else None,
                    ms=3,
                    color=colour,
                    label=key,
                )
        ax.set(title=_run_label(path), xlabel="step", ylabel="loss")
        ax.grid(alpha=0.3)
        ax.legend()
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


def _scatter(ax, xy: np.ndarray, labels: np.ndarray, names: dict[int, str], title: str) -> None:
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
    ax.set(title=title, xticks=[], yticks=[])
    ax.legend(markerscale=3, fontsize=8)


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
        _scatter(ax, xy, lab, names, f"{method.upper()} of latents, {title}")
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
            title="classifier" if col == "probability" else "bag-of-tokens baseline",
            xlabel="probability of censorship",
            ylabel="tries",
        )
        ax.legend(fontsize=8)
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
    return sorted((run_dir / "autoencoder").glob("logs/**/metrics.csv")) + sorted(
        (run_dir / "classifier").glob("logs/**/metrics.csv")
    )


def plot_all(run_dir: Path, truth: Truth | None = None) -> list[Path]:
    """Redraw every plot the files of a demo output folder allow, into ``run_dir/plots``."""
    run_dir = Path(run_dir)
    plots = run_dir / "plots"
    encoded = [run_dir / "encoded_filtered", run_dir / "encoded_evaluate"]
    jobs = [
        lambda: plot_training_curves(_metrics_csvs(run_dir), plots / "training_curves.png"),
        lambda: plot_embedding_map(encoded, plots / "embeddings_pca.png", truth, "pca"),
        lambda: plot_probability_histograms(
            run_dir / "candidates", plots / "probabilities.png", truth
        ),
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
