"""Leave-family-out evaluation on generated data: can the detector find pages nobody has seen?

Per seed: one synthetic world (``quackae.synth``), flattened once with signatures for
*every* blockpage family and benign kind, and (optionally) one autoencoder trained on all of its
rows (unsupervised: it may see every row, as it would in practice). Families and benign kinds are
then split into ``folds + 1`` groups by a seeded shuffle. Group 0 is the *development* fold:
settings (the false-positive budget of the threshold rule and the combiner's regularisation) are
chosen on it and it is never reported. For every other fold, the fold's families and kinds lose
their signatures: their rows are relabelled undetermined (each synth signature matches exactly its
own family or kind, so this equals flattening again without them), the detector is fitted on what is
left, and the held-out rows are scored: recall per held-out blockpage family and false-positive rate
per held-out benign kind. The same command twice gives the same numbers.

With ``real_pages`` the corpus of real pages (``synth.real_pages``) is one more archive of the
world (``synth.real_world``), with no signature: real censors and real benign kinds are dealt into
the same folds (leave-page-out, by the page's ``name``) and scored as their own column.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from quackae import synth
from quackae.detect.detector import (
    Detector,
    lexical_features,
    load_latents,
    top_lexical_weights,
)
from quackae.detect.features import RowFeatures, row_features
from quackae.detect.proposals import propose
from quackae.io.atomic import atomic_write
from quackae.synth import real_world, truth

log = logging.getLogger(__name__)

# (format, scan, share of the measurements): web scans carry the pages
WORLD_MIX = (("v2", "http", 0.55), ("v1", "http", 0.2), ("v2", "https", 0.25))
TARGET_FPRS = (0.005, 0.01, 0.02)
COMBINER_CS = (0.1, 1.0)
DEV_MAX_FPR = 0.02  # the dev fold's false-positive budget when choosing settings
RESULT_FILE = "evaluation.json"


@dataclass
class World:
    """One seed's flattened world and its ground truth per row (``family``, ``mechanism``)."""

    seed: int
    rf: RowFeatures
    family: np.ndarray  # per row: blockpage family, benign kind, "noise" or ""
    mechanism: np.ndarray
    censored_truth: np.ndarray
    labels: np.ndarray  # the full-knowledge labels (every signature known)
    latents: np.ndarray | None = None
    variants: bool = False  # the world has the variant families and kinds (``synth.variants``)
    autoencoder: dict[str, Any] | None = None  # how its latents were trained (val_loss, epochs)
    real_pages: bool = False  # the real-page archive is in the world (``synth.real_world``)
    real_labelled: int = 0  # real rows a world's signature had labelled (labels dropped)


def blockpage_signature(family: str) -> str:
    """The fingerprint name ``synth.write_signatures`` gives a family."""
    return f"a_synth_{family}"


def benign_signature(kind: str) -> str:
    """The fingerprint name ``synth.write_signatures`` gives a benign kind."""
    return f"x_fp_synth_{kind}"


def world_families(variants: bool) -> list[str]:
    """The blockpage families of a world (the variant families after the default ones)."""
    return sorted(synth.FAMILIES) + (sorted(synth.VARIANT_FAMILIES) if variants else [])


def world_kinds(variants: bool) -> list[str]:
    """The benign kinds of a world that folds hold out (network noise never is)."""
    base = sorted(k for k in synth.BENIGN_KINDS if k != "noise")
    return base + (sorted(synth.VARIANT_KINDS) if variants else [])


def make_world(
    out: Path,
    seed: int,
    measurements: int,
    autoencoder: dict[str, Any] | None = None,
    variants: bool = False,
    real_pages: bool = False,
) -> World:
    """Generate, flatten (every try, every signature) and optionally encode one seed's world.

    ``real_pages`` adds the real-page archive (``real_world.write_real_archive``); its rows get no
    label (no signature of the world is theirs; one that matched by chance is dropped).
    """
    from quackae.ingest.flatten import Options, flatten

    out = Path(out)
    archives = [
        synth.write_archive(
            out / "raw",
            max(int(measurements * share), 20),
            seed=seed * 10 + i,
            fmt=fmt,
            scan=scan,
            variants=variants,
        )
        for i, (fmt, scan, share) in enumerate(WORLD_MIX)
    ]
    if real_pages:
        archives.append(real_world.write_real_archive(out / "raw", seed, variants))
    sigs = synth.write_signatures(
        out / "signatures",
        fingerprinted=set(world_families(variants)),
        false_positive_kinds=set(world_kinds(variants)) - {"binary_garbage"},
    )
    dataset = out / "dataset"
    flatten(
        [a.archive for a in archives],
        dataset,
        Options(max_tokens=128, signatures=sigs),
        progress=False,
        vocab_size=2048,
    )
    rf = row_features(dataset)
    joined = truth.join_truth(
        rf.table.select(["source", "line", "try_index"]).append_column(
            "_row", pa.array(np.arange(rf.table.num_rows))
        ),
        truth.load_truth([a.truth for a in archives]),
    )
    rows = joined.column("_row").to_numpy()
    cols = truth.truth_columns(joined)
    n = rf.table.num_rows
    family, mechanism = np.full(n, "", dtype=object), np.full(n, "", dtype=object)
    censored = np.zeros(n, bool)
    family[rows], mechanism[rows], censored[rows] = (
        cols["family"],
        cols["mechanism"],
        cols["censored"],
    )
    world = World(seed, rf, family, mechanism, censored, rf.column("censored").astype(np.int64))
    world.variants = variants
    world.real_pages = real_pages
    if real_pages:
        real = real_world.is_real(family)
        world.real_labelled = int((world.labels[real] != 0).sum())
        world.labels[real] = 0  # what the detector must find: never a label, in any fold
    if autoencoder is not None:
        world.latents, world.autoencoder = train_and_encode(out, dataset, seed, **autoencoder)
    return world


def train_and_encode(
    out: Path,
    dataset: Path,
    seed: int,
    epochs: int = 3,
    batch_size: int = 32,
    patience: int = 2,
    embed_size: int = 64,
    hidden_size: int = 128,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Train one autoencoder on every row until validation loss stops improving; every latent.

    At most ``epochs`` epochs; early stopping on ``val_loss`` with ``patience`` checks (one per
    epoch). Returns the latents (mean over text tokens) and what training reached.
    """
    from quackae.model import controller
    from quackae.model.config import ControllerConfig

    common = ControllerConfig(
        data_dir=str(dataset),
        embed_size=embed_size,
        hidden_size=hidden_size,
        batch_size=batch_size,
        ray_nodes=0,
        seed=seed,
        trainer={"enable_progress_bar": False, "enable_model_summary": False},
    )
    ae_dir = out / "autoencoder"
    summary = controller.train(
        common.replace(
            storage_path=str(ae_dir),
            max_epochs=epochs,
            bucketing=True,
            l_rate=3e-3,
            l_rate_min=3e-4,
            exp_label="evaluate",
            num_sanity_val_steps=0,
            # a fixed number of epochs, checked after each, teacher-forced: not the seed's loop
            stopping_threshold=None,
            checkpoint_every_n_steps=0,
            eval_decoding="forced",
            patience=patience,
        )
    )
    ckpt = summary["best_checkpoint"] or summary["last_checkpoint"]
    controller.encode(
        common.replace(
            encode=True, checkpoint_path=ckpt, latent="mean", storage_path=str(out / "encoded")
        )
    )
    rf_ids = row_features(dataset).row_ids
    x, have = load_latents(out / "encoded", rf_ids)
    if not have.all():
        raise ValueError(f"{int((~have).sum())} rows were not encoded")
    info = {
        "best_score": summary.get("best_score"),  # of the checkpoint monitor (val_loss_seed)
        "monitor": summary.get("monitor"),
        "last_val_loss": summary.get("last_validation", {}).get("val_loss"),
        "epochs_run": summary.get("epochs"),
        "stopped_by": (summary.get("stopped") or {}).get("by"),
        "stopped_early": (summary.get("epochs") or 0) < epochs,
        "test": summary.get("test"),
        "max_epochs": epochs,
        "patience": patience,
        "embed_size": embed_size,
        "hidden_size": hidden_size,
    }
    return x, info


TOKEN_DIM = 64  # dimensions of the bag-of-tokens stand-in for the autoencoder's latents


def token_latents(rf: RowFeatures, seed: int, dim: int = TOKEN_DIM) -> np.ndarray:
    """Latent semantic analysis of every row: TF-IDF of the detector's token bag, truncated SVD.

    The baseline an autoencoder must beat (Deerwester et al., 1990): the same detector given these
    vectors instead of the latents shows what the latents add over a linear embedding of the same
    tokens, with no training.
    """
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfTransformer

    x = TfidfTransformer(sublinear_tf=True).fit_transform(lexical_features(rf))
    dim = max(1, min(dim, x.shape[1] - 1))
    return TruncatedSVD(dim, random_state=seed).fit_transform(x).astype(np.float32)


def fold_plan(
    folds: int, seed: int, variants: bool = False, real_pages: bool = False
) -> list[tuple[frozenset[str], frozenset[str]]]:
    """``folds + 1`` (families, benign kinds) groups; group 0 is the development fold.

    The variant families and kinds, if any, are shuffled on their own and dealt after the
    default ones, so every fold holds some of each; the default deal is as without them. Real
    censors and real benign kinds (``real_pages``) are shuffled last, by the same generator, and
    dealt over every group, the development fold included (its real pages are never reported).
    """
    rng = np.random.default_rng(seed)
    fams = np.array(sorted(synth.FAMILIES), dtype=object)[rng.permutation(len(synth.FAMILIES))]
    kinds_all = sorted(k for k in synth.BENIGN_KINDS if k != "noise")
    kinds = np.array(kinds_all, dtype=object)[rng.permutation(len(kinds_all))]
    n = folds + 1
    plan = [[set(fams[i::n].tolist()), set(kinds[i::n].tolist())] for i in range(n)]
    if variants:
        vf = sorted(synth.VARIANT_FAMILIES)
        vk = sorted(synth.VARIANT_KINDS)
        vf = [vf[j] for j in rng.permutation(len(vf))]
        vk = [vk[j] for j in rng.permutation(len(vk))]
        for i in range(n):
            plan[i][0].update(vf[i::n])
            plan[i][1].update(vk[i - 1 :: n - 1] if i else [])  # kinds to the reported folds
    if real_pages:
        rf, rk = real_world.real_families(), real_world.real_kinds()
        rf = [rf[j] for j in rng.permutation(len(rf))]
        rk = [rk[j] for j in rng.permutation(len(rk))]
        for i in range(n):
            plan[i][0].update(rf[i::n])
            plan[i][1].update(rk[i::n])
    return [(frozenset(f), frozenset(k)) for f, k in plan]


def fold_labels(world: World, families: frozenset[str], kinds: frozenset[str]) -> np.ndarray:
    """The labels with the fold's signatures removed: their rows become undetermined (0)."""
    held = {blockpage_signature(f) for f in families} | {benign_signature(k) for k in kinds}
    fingerprint = world.rf.column("fingerprint")
    labels = world.labels.copy()
    labels[np.isin(fingerprint, list(held))] = 0
    return labels


def held_out_masks(
    world: World, families: frozenset[str], kinds: frozenset[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Scored rows of the fold's blockpage families and of its benign kinds."""
    scored = world.rf.scored
    page = scored & (world.mechanism == "blockpage") & np.isin(world.family, list(families))
    benign = scored & (world.mechanism == "benign") & np.isin(world.family, list(kinds))
    return page, benign


def score_fold(
    world: World,
    families: frozenset[str],
    kinds: frozenset[str],
    c: float,
    target_fprs: tuple[float, ...],
    lexical: bool = True,
    propose_signatures: bool = False,
    latents: bool = True,
) -> dict[float, dict[str, Any]]:
    """Fit without the fold's families and kinds; rates on them at each target FPR's threshold.

    ``latents`` False leaves the world's latents out (the same detector without them).
    """
    lat = world.latents if latents else None
    labels = fold_labels(world, families, kinds)
    page, benign = held_out_masks(world, families, kinds)
    leak = int((labels[page | benign] != 0).sum())
    if leak:
        raise AssertionError(f"{leak} held-out rows kept a label")
    if world.real_pages and (labels[real_world.is_real(world.family)] != 0).any():
        raise AssertionError("a real page's row has a label")
    det = Detector(seed=world.seed, c_combiner=c, lexical=lexical).fit(world.rf, labels, lat)
    prob, candidate, _ = det.predict(world.rf, lat, labels)
    from quackae.classify.calibration import threshold_for_fpr

    train_neg = (labels == -1) & world.rf.scored & world.rf.evidence_allowed
    base = det.platt(det.combiner.logit(det.features_of(world.rf, lat, labels)[train_neg]))  # type: ignore[union-attr]
    proposal_scores = (
        score_proposals(world, labels, candidate, page) if propose_signatures else None
    )
    weights = top_lexical_weights(det, world.rf) if propose_signatures else None
    out = {}
    for target in target_fprs:
        threshold = max(0.5, threshold_for_fpr(base, target))
        hit = prob >= threshold
        out[target] = {
            "threshold": round(float(threshold), 4),
            "recall": _rate(hit, page),
            "fpr": _rate(hit, benign),
            "noise_fpr": _rate(hit, world.rf.scored & (world.mechanism == "noise")),
            "family_recall": {
                f: _rate(hit, page & (world.family == f))
                for f in sorted(families)
                if (page & (world.family == f)).any()
            },
            "kind_fpr": {
                k: _rate(hit, benign & (world.family == k))
                for k in sorted(kinds)
                if (benign & (world.family == k)).any()
            },
            "pages": int(page.sum()),
            "benign_rows": int(benign.sum()),
            "family_rows": {f: int((page & (world.family == f)).sum()) for f in sorted(families)},
            "kind_rows": {k: int((benign & (world.family == k)).sum()) for k in sorted(kinds)},
            "proposals": proposal_scores,
            "lexical_weights": weights,
        }
    return out


def score_proposals(
    world: World, labels: np.ndarray, candidate: np.ndarray, page: np.ndarray
) -> dict[str, Any]:
    """Propose signatures from a fold's candidates; coverage of held-out pages, benign hits."""
    from quackae.ingest.signatures import Matcher, Signature

    proposals = propose(
        world.rf, candidate & (labels == 0), labels == -1, world.seed
    )  # negatives: + every unflagged page
    if not proposals:
        return {"proposals": 0, "coverage": 0.0, "benign_hits": 0}
    matcher = Matcher([], [Signature(p.fingerprint, p.pattern) for p in proposals])
    rf = world.rf
    benign = (world.mechanism == "benign") | (world.mechanism == "none")
    benign_rows = np.flatnonzero(benign & (rf.template != "(nothing received)"))
    rows = np.flatnonzero(page)
    hit = np.array(
        [matcher.match(t)[0] == 1 for t in rf.tokens.texts(rf.row_ids[rows])], dtype=bool
    )
    benign_hits = sum(matcher.match(t)[0] == 1 for t in rf.tokens.texts(rf.row_ids[benign_rows]))
    covered = {
        f: int(hit[world.family[rows] == f].sum()) for f in sorted(set(world.family[rows].tolist()))
    }
    return {
        "proposals": len(proposals),
        "coverage": round(float(np.mean(hit)), 4) if len(hit) else None,
        "family_covered": covered,
        "benign_hits": int(benign_hits),
        "benign_pages_checked": int(len(benign_rows)),
        "clusters": [
            {"fingerprint": p.fingerprint, "pattern": p.pattern, **p.summary} for p in proposals
        ],
    }


def _rate(hit: np.ndarray, mask: np.ndarray) -> float | None:
    return round(float(hit[mask].mean()), 4) if mask.any() else None


def evaluate_world(
    world: World, folds: int, lexical: bool = True, latents: bool = True
) -> dict[str, Any]:
    """Choose settings on the development fold, then score every reported fold with them."""
    plan = fold_plan(folds, world.seed, world.variants, world.real_pages)
    dev_fams, dev_kinds = plan[0]
    dev = {
        c: score_fold(world, dev_fams, dev_kinds, c, TARGET_FPRS, lexical, latents=latents)
        for c in COMBINER_CS
    }
    options = [(c, t, r) for c, by_t in dev.items() for t, r in by_t.items()]
    ok = [o for o in options if (o[2]["fpr"] or 0) <= DEV_MAX_FPR] or options
    c, target, dev_result = max(
        ok, key=lambda o: ((o[2]["recall"] or 0), -(o[2]["fpr"] or 0), -o[1], o[0])
    )
    reported = []
    for i, (fams, kinds) in enumerate(plan[1:], start=1):
        r = score_fold(world, fams, kinds, c, (target,), lexical, True, latents)[target]
        reported.append({"fold": i, "families": sorted(fams), "kinds": sorted(kinds), **r})
    return {
        "seed": world.seed,
        "real_pages": world.real_pages,
        "real_labelled": world.real_labelled,
        "dev_fold": {
            "families": sorted(dev_fams),
            "kinds": sorted(dev_kinds),
            "chosen": {"c_combiner": c, "target_fpr": target},
            "recall": dev_result["recall"],
            "fpr": dev_result["fpr"],
        },
        "folds": reported,
    }


def summarise(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and worst fold over seeds; recall per family and FPR per kind (mean over seeds)."""
    folds = [f for s in per_seed for f in s["folds"]]
    recalls = [f["recall"] for f in folds if f["recall"] is not None]
    fprs = [f["fpr"] for f in folds if f["fpr"] is not None]
    fam: dict[str, list[float]] = {}
    kind: dict[str, list[float]] = {}
    for f in folds:
        for k, v in f["family_recall"].items():
            fam.setdefault(k, []).append(v)
        for k, v in f["kind_fpr"].items():
            kind.setdefault(k, []).append(v)
    pages = sum(f["pages"] for f in folds)
    props = [f["proposals"] for f in folds if f.get("proposals")]
    covered = sum((p["coverage"] or 0) * f["pages"] for f, p in zip(folds, props, strict=False))
    pooled = sum(f["recall"] * f["pages"] for f in folds if f["recall"] is not None) / max(pages, 1)
    return {
        "seeds": [s["seed"] for s in per_seed],
        "reported_folds": len(folds),
        "mean_recall": round(float(np.mean(recalls)), 4) if recalls else None,
        "worst_fold_recall": round(float(np.min(recalls)), 4) if recalls else None,
        "pooled_recall": round(pooled, 4),
        "mean_family_recall": round(float(np.mean([np.mean(v) for v in fam.values()])), 4)
        if fam
        else None,
        "mean_fpr": round(float(np.mean(fprs)), 4) if fprs else None,
        "mean_noise_fpr": round(
            float(np.mean([f["noise_fpr"] for f in folds if f["noise_fpr"] is not None] or [0])), 4
        ),
        "worst_fold_fpr": round(float(np.max(fprs)), 4) if fprs else None,
        "proposed_signatures": sum(p["proposals"] for p in props),
        "proposal_coverage": round(covered / max(pages, 1), 4),
        "proposal_benign_hits": sum(p["benign_hits"] for p in props),
        "family_recall": {k: round(float(np.mean(v)), 4) for k, v in sorted(fam.items())},
        "family_proposal_coverage": _family_coverage(folds),
        "kind_fpr": {k: round(float(np.mean(v)), 4) for k, v in sorted(kind.items())},
    }


def _family_coverage(folds: list[dict[str, Any]]) -> dict[str, float]:
    """Per held-out family: the share of its pages, over all reported folds, a proposal matches."""
    pages: dict[str, int] = {}
    covered: dict[str, int] = {}
    for f in folds:
        for k, n in f["family_rows"].items():
            pages[k] = pages.get(k, 0) + n
        for k, n in ((f.get("proposals") or {}).get("family_covered") or {}).items():
            covered[k] = covered.get(k, 0) + n
    return {k: round(covered.get(k, 0) / n, 4) for k, n in sorted(pages.items()) if n}


def run_evaluation(
    out: Path,
    seeds: list[int],
    folds: int = 5,
    measurements: int = 3000,
    autoencoder: dict[str, Any] | None = None,
    lexical: bool = True,
    seed_rows: tuple[str, ...] = (),
    seed_scale: Any = None,
    variants: bool = False,
    real_pages: bool = False,
) -> dict[str, Any]:
    """Evaluate every seed into ``out/seed<N>/`` and write ``out/evaluation.json``.

    ``seed_rows``: settings of ``synth.seed_row.SETTINGS`` whose row (the seed's latent
    classifier on the same folds) is added, scaled by ``seed_scale`` (a ``seed_row.Scale``).
    """
    import shutil

    from quackae.synth import seed_row

    out = Path(out)
    started = time.perf_counter()
    per_seed, seed_results = [], []
    for seed in seeds:
        d = out / f"seed{seed}"
        if d.exists():
            shutil.rmtree(d)
        world = make_world(d, seed, measurements, autoencoder, variants, real_pages)
        per_seed.append(evaluate_world(world, folds, lexical))
        if world.autoencoder is not None:  # how the latents were trained, beside their figures
            per_seed[-1]["autoencoder"] = world.autoencoder
        if seed_rows:
            seed_results.append(seed_row.run_seed_rows(world, d, folds, seed_rows, seed_scale))
            per_seed[-1]["seed_classifier"] = seed_results[-1]
    result = {
        "kind": "leave_family_out",
        "folds": folds,
        "measurements": measurements,
        "features": "cluster + contrast"
        + (" + lexical" if lexical else "")
        + (" + latent" if autoencoder else ""),
        "autoencoder": autoencoder,
        "summary": summarise(per_seed),
        "seed_classifier": seed_row.summarise(seed_results) if seed_rows else None,
        "variants": variants,
        "real_pages": table_cells(per_seed)[REAL_COLUMN] if real_pages else None,
        "per_seed": per_seed,
        "seconds": round(time.perf_counter() - started, 1),
    }
    atomic_write(out / RESULT_FILE, json.dumps(result, indent=1))
    return result


def render(result: dict[str, Any]) -> str:
    """The evaluation as a few lines of text (the numbers of ``evaluation.json``)."""
    s = result["summary"]
    lines = [
        f"leave-family-out: seeds {s['seeds']}, {result['folds']} reported folds each (+1 "
        "development fold), "
        f"{result['measurements']} measurements per seed, features: {result['features']}",
        f"  held-out blockpage families: mean recall {s['mean_recall']}, worst fold "
        f"{s['worst_fold_recall']}, "
        f"pooled {s['pooled_recall']}, mean per family {s['mean_family_recall']}",
        f"  held-out benign kinds: mean FPR {s['mean_fpr']}, worst fold {s['worst_fold_fpr']}; "
        f"network noise: FPR {s['mean_noise_fpr']}",
        f"  proposed signatures: {s['proposed_signatures']} over all folds, covering "
        f"{s['proposal_coverage']} of the "
        f"held-out families' pages, {s['proposal_benign_hits']} matches on benign or expected "
        "pages",
        "  settings chosen on each seed's development fold: "
        + "; ".join(f"seed {p['seed']}: {p['dev_fold']['chosen']}" for p in result["per_seed"]),
    ]
    misses = {k: v for k, v in s["family_recall"].items() if v < 0.75}
    if misses:
        lines.append(
            "  families under 0.75 recall: " + ", ".join(f"{k} {v:.2f}" for k, v in misses.items())
        )
    uncovered = {k: v for k, v in s.get("family_proposal_coverage", {}).items() if v < 0.9}
    if uncovered:
        lines.append(
            "  families whose pages proposals cover under 0.9: "
            + ", ".join(f"{k} {v:.2f}" for k, v in uncovered.items())
        )
    fps = {k: v for k, v in s["kind_fpr"].items() if v > 0}
    lines.append(
        "  benign kinds flagged: " + (", ".join(f"{k} {v:.3f}" for k, v in fps.items()) or "none")
    )
    if result.get("real_pages"):
        lines.append(
            "  real pages (leave-page-out; recall / worst fold / FPR (worst fold) / coverage): "
            + render_cell(result["real_pages"])
        )
    if result.get("seed_classifier"):
        from quackae.synth import seed_row

        lines += seed_row.render(result["seed_classifier"], seed_row.Scale().target_fpr)
    return "\n".join(lines)


REAL_COLUMN = "real pages"
#: The table's columns: which held-out families and benign kinds each one scores.
COLUMNS = {
    "today's families": (tuple(sorted(synth.FAMILIES)), tuple(world_kinds(False))),
    "variant families": (tuple(sorted(synth.VARIANT_FAMILIES)), tuple(sorted(synth.VARIANT_KINDS))),
}
#: The real-pages column (only for results of a world with real pages).
REAL_COLUMNS = {REAL_COLUMN: (tuple(real_world.real_families()), tuple(real_world.real_kinds()))}


def column_summary(
    per_seed: list[dict[str, Any]], families: tuple[str, ...], kinds: tuple[str, ...]
) -> dict[str, Any]:
    """One cell: recall (pooled per fold over ``families``), worst fold, FPR, proposal coverage.

    Per reported fold, the recall over the column's held-out pages and the FPR over its held-out
    benign pages (folds holding none of them are skipped); mean and worst over folds and seeds.
    Coverage is the share of the column's held-out pages a fold's proposals match, pooled.
    """
    recalls, fprs = [], []
    pages = covered = 0
    proposed = False  # a row that proposes no signatures (the seed's classifier) has no coverage
    for seed in per_seed:
        for f in seed["folds"]:
            n = {k: v for k, v in f["family_rows"].items() if k in families and v}
            if n:
                hit = sum(f["family_recall"].get(k, 0.0) * v for k, v in n.items())
                recalls.append(hit / sum(n.values()))
                pages += sum(n.values())
                proposed = proposed or "proposals" in f
                got = (f.get("proposals") or {}).get("family_covered") or {}
                covered += sum(got.get(k, 0) for k in n)
            b = {k: v for k, v in f.get("kind_rows", {}).items() if k in kinds and v}
            if b:
                fprs.append(
                    sum(f["kind_fpr"].get(k, 0.0) * v for k, v in b.items()) / sum(b.values())
                )
    r4 = lambda v: round(float(v), 4) if v is not None else None  # noqa: E731
    return {
        "recall": r4(np.mean(recalls)) if recalls else None,
        "worst_fold_recall": r4(np.min(recalls)) if recalls else None,
        "fpr": r4(np.mean(fprs)) if fprs else None,
        "worst_fold_fpr": r4(np.max(fprs)) if fprs else None,
        "coverage": r4(covered / pages) if pages and proposed else None,
        "folds": len(recalls),
    }


def table_cells(per_seed: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every column's cell for one detector's per-seed results (real pages where they were run)."""
    columns = dict(COLUMNS)
    if any(s.get("real_pages") for s in per_seed):
        columns.update(REAL_COLUMNS)
    return {name: column_summary(per_seed, f, k) for name, (f, k) in columns.items()}


def render_cell(c: dict[str, Any] | None) -> str:
    """``recall / worst fold recall / FPR (worst fold) / coverage`` of one cell."""
    if not c or c.get("recall") is None:
        return "n/a"
    cov = "n/a" if c["coverage"] is None else f"{c['coverage']:.3f}"
    return (
        f"{c['recall']:.3f} / {c['worst_fold_recall']:.3f} / {c['fpr'] or 0:.4f} "
        f"({c['worst_fold_fpr'] or 0:.4f}) / {cov}"
    )


def render_row(name: str, cells: dict[str, dict[str, Any]]) -> str:
    """One table row in words (a column no fold scored: "not run")."""
    parts = [
        f"{column}: {render_cell(c) if c and c.get('folds') else 'not run'}"
        for column, c in cells.items()
    ]
    return f"{name}: " + "; ".join(parts)
