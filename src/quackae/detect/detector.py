"""A detector of censorship that generalises to blockpage families no signature or label knows.

Evidence per row (``features``): Censored Planet's flags (a try whose controls failed is no
evidence unless the block was stateful), cluster evidence of the page template (distinct domains
and vantage points in the row's country, the number of countries, ICLab's URL-to-country ratio),
contrast (the share of the vantage point's tested domains that got the same page), and two
learned scores: a lexical one (logistic regression on the bag of token ids) and, when embeddings
are given, a latent one (logistic regression on the autoencoder's latents).

The learned scores are *cross-fitted by kind*: a labelled row's score comes from a model fitted
without its whole kind (its fingerprint), so the combiner learns how far lexical and latent
scores carry to kinds they never saw, and weighs the cluster evidence against them. The combiner
is an L2 logistic regression fitted on the training split of the labelled rows; Platt scaling
on the validation split turns its score into a probability that ranks. The threshold is the
lowest one (at least 0.5) keeping the false-positive rate on the cross-fitted labelled negatives
within ``target_fpr``. Rows that received no page (resets, timeouts, refusals) are not scored:
no labelled row teaches the difference between a censor's reset and network noise.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from quackae.classify.baseline import BagOfTokensBaseline
from quackae.classify.calibration import PlattScaler, threshold_for_fpr
from quackae.classify.latents import split_of
from quackae.dataset.embeddings import embedding_matrix, read_meta, shard_paths
from quackae.detect.features import NUMERIC, RowFeatures
from quackae.detect.neighbours import LATENT_NUMERIC, LatentSpace, fit_space, latent_evidence
from quackae.io.atomic import atomic_write

LEARNED = ("lexical", "latent")
MODEL_FILE = "detector.json"
VECTORS_FILE = "detector.npz"
PREDICTIONS_DIR = "shards"
KIND_FOLDS = 5  # groups of labelled kinds for cross-fitting the learned scores
REASON_MIN = 0.5  # a feature "fired" when it adds at least this much to the combiner's logit
LEXICAL_STATIC = ("outcome", "scan", "tls_version", "certificate")  # static tokens it reads


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


def load_latents(embeddings: Path, row_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Latents aligned to ``row_ids`` (zeros where missing) and a mask of the rows that have one."""
    dim = int(read_meta(embeddings)["dim"])
    x = np.zeros((len(row_ids), dim), np.float32)
    have = np.zeros(len(row_ids), bool)
    order = np.argsort(row_ids)
    for path in shard_paths(embeddings):
        t = pq.read_table(path, columns=["row_id", "embedding"])
        ids = t.column("row_id").to_numpy()
        pos = np.clip(np.searchsorted(row_ids, ids, sorter=order), 0, len(row_ids) - 1)
        idx = order[pos]
        ok = row_ids[idx] == ids
        x[idx[ok]] = embedding_matrix(t.column("embedding"), dim)[ok]
        have[idx[ok]] = True
    return x, have


def lexical_features(rf: RowFeatures) -> Any:
    """Log1p counts of the text tokens and the outcome token of every row (no address octets).

    The vantage point's address octets are left out on purpose: they would let the model learn
    which networks censor (so network noise there looks censored) instead of what a page says.
    """
    from scipy.sparse import diags

    x = BagOfTokensBaseline.features(rf.tokens, rf.row_ids)
    static = rf.tokens.dataset.manifest["layout"]["static"]
    keep = np.zeros(x.shape[1], bool)
    keep[rf.tokens.text_offset :] = True
    for name in LEXICAL_STATIC:
        start, size = static[name]
        keep[start : start + size] = True
    x = (x @ diags(keep.astype(np.float32))).tocsr()
    x.eliminate_zeros()
    return x


@dataclass
class Linear:
    """A fitted logistic regression over some feature matrix: coefficients, intercept, scaling."""

    coef: np.ndarray
    intercept: float
    mean: np.ndarray | None = None
    scale: np.ndarray | None = None

    def logit(self, x: Any) -> np.ndarray:
        """Linear score of the rows of ``x`` (dense or sparse)."""
        if self.mean is not None:
            x = (np.asarray(x, np.float64) - self.mean) / self.scale
        return np.asarray(x @ self.coef, np.float64).ravel() + self.intercept


def fit_linear(x: Any, y: np.ndarray, seed: int, c: float, standardise: bool = False) -> Linear:
    """L2 logistic regression (balanced classes); a constant model when ``y`` has one class."""
    from sklearn.linear_model import LogisticRegression

    mean = scale = None
    if standardise:
        x = np.asarray(x, np.float64)
        mean, scale = x.mean(axis=0), np.maximum(x.std(axis=0), 1e-6)
        x = (x - mean) / scale
    if len(np.unique(y)) < 2:
        return Linear(np.zeros(x.shape[1]), 8.0 if len(y) and y[0] else -8.0, mean, scale)
    lr = LogisticRegression(C=c, max_iter=3000, class_weight="balanced", random_state=seed)
    lr.fit(x, y)
    return Linear(lr.coef_[0].astype(np.float64), float(lr.intercept_[0]), mean, scale)


def kind_groups(kinds: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Group index per row: whole kinds assigned to ``n`` groups by a seeded shuffle."""
    names = np.array(sorted(set(kinds.tolist())), dtype=object)
    rng = np.random.default_rng(seed)
    names = names[rng.permutation(len(names))]
    group_of = {k: i % max(n, 1) for i, k in enumerate(names.tolist())}
    return np.array([group_of[k] for k in kinds.tolist()], dtype=np.int64)


@dataclass
class Detector:
    """The fitted detector: learned scorers, combiner, Platt scaler and threshold."""

    seed: int = 0
    target_fpr: float = 0.01
    c_combiner: float = 0.3
    lexical: bool = True
    scorers: dict[str, Linear] = field(default_factory=dict)
    combiner: Linear | None = None
    platt: PlattScaler = field(default_factory=PlattScaler)
    threshold: float = 0.5
    inputs: tuple[str, ...] = ()
    info: dict[str, Any] = field(default_factory=dict)
    neighbours: bool = True  # latent-neighbourhood evidence when latents are given
    space: LatentSpace | None = None

    # ------------------------------------------------------------------ inputs

    def _matrices(self, rf: RowFeatures, latents: np.ndarray | None) -> dict[str, Any]:
        out: dict[str, Any] = {"lexical": lexical_features(rf)} if self.lexical else {}
        if latents is not None:
            out["latent"] = latents
        return out

    def _design(
        self, rf: RowFeatures, learned: dict[str, np.ndarray], near: np.ndarray | None = None
    ) -> np.ndarray:
        cols = [learned[name] for name in LEARNED if name in learned]
        cols += [rf.numeric[:, i] for i in range(len(NUMERIC))]
        cols.append(rf.flags["stateful_block"].astype(np.float64))
        if near is not None:
            cols += [near[:, i] for i in range(near.shape[1])]
        return np.stack(cols, axis=1)

    def _near(
        self, rf: RowFeatures, latents: np.ndarray | None, labels: np.ndarray | None = None
    ) -> tuple[np.ndarray | None, np.ndarray]:
        """Latent-neighbourhood evidence and the rows whose page follows their site (if any).

        ``labels`` (default: the dataset's ``censored`` column) say which pages are known
        blockpages, which the site principle does not count as a site's page.
        """
        if self.space is None or latents is None:
            return None, np.zeros(len(rf.template), bool)
        labels = rf.column("censored") if labels is None else labels
        consider = rf.scored & rf.evidence_allowed
        return latent_evidence(self.space, latents, rf, consider, np.asarray(labels) == 1)

    def allowed(self, rf: RowFeatures, site_bound: np.ndarray) -> np.ndarray:
        """Rows the detector scores: evidence by every principle, and a page received."""
        return rf.scored & rf.evidence_allowed & rf.has_page & ~site_bound

    # ------------------------------------------------------------------ fitting

    def fit(
        self, rf: RowFeatures, labels: np.ndarray, latents: np.ndarray | None = None
    ) -> Detector:
        """Fit on rows labelled 1 / -1 in ``labels`` that are evidence (scored, controls fine)."""
        self.space = None
        if latents is not None and self.neighbours:
            pages = rf.scored & rf.evidence_allowed & rf.has_page
            fp = np.where(labels == 1, rf.column("fingerprint"), "").astype(object)
            self.space = fit_space(latents, pages, fp)
        near, site_bound = self._near(rf, latents, labels)
        train_rows = (labels != 0) & self.allowed(rf, site_bound)
        if train_rows.sum() < 10 or len(np.unique(labels[train_rows])) < 2:
            raise ValueError(
                "the detector needs labelled censored and uncensored rows (flatten with signatures)"
            )
        y = (labels[train_rows] == 1).astype(int)
        kinds = np.where(
            rf.column("fingerprint")[train_rows] == "",
            "template match",
            rf.column("fingerprint")[train_rows],
        ).astype(object)
        groups = kind_groups(kinds, KIND_FOLDS, self.seed)
        mats = self._matrices(rf, latents)
        self.inputs = tuple(name for name in LEARNED if name in mats)
        learned_train: dict[str, np.ndarray] = {}
        for name in self.inputs:
            x = mats[name][train_rows] if name == "lexical" else mats[name][train_rows]
            oof = np.zeros(len(y))
            for g in np.unique(groups):
                fit_on = groups != g
                m = fit_linear(x[fit_on], y[fit_on], self.seed, 1.0, standardise=name == "latent")
                oof[groups == g] = m.logit(x[groups == g])
            learned_train[name] = np.clip(oof, -10, 10)
            self.scorers[name] = fit_linear(x, y, self.seed, 1.0, standardise=name == "latent")
        design = self._design(
            _subset(rf, train_rows), learned_train, None if near is None else near[train_rows]
        )
        split = split_of(rf.row_ids[train_rows], self.seed)
        fit_on, val = split != 1, split == 1
        if len(np.unique(y[val])) < 2:
            fit_on = val = np.ones(len(y), bool)
        self.combiner = fit_linear(
            design[fit_on], y[fit_on], self.seed, self.c_combiner, standardise=True
        )
        self.platt = PlattScaler.fit(self.combiner.logit(design[val]), y[val])
        prob = self.platt(self.combiner.logit(design))
        self.threshold = max(0.5, threshold_for_fpr(prob[y == 0], self.target_fpr))
        self.info = {
            "train_rows": int(len(y)),
            "positives": int(y.sum()),
            "kinds": len(set(kinds.tolist())),
            "threshold_rule": f"max(0.5, FPR <= {self.target_fpr} on cross-fitted labelled "
            "negatives)",
        }
        return self

    # ------------------------------------------------------------------ scoring

    def features_of(
        self, rf: RowFeatures, latents: np.ndarray | None = None, labels: np.ndarray | None = None
    ) -> np.ndarray:
        """The combiner's design matrix for every row of ``rf``."""
        return self._features(rf, latents, labels)[0]

    def _features(
        self, rf: RowFeatures, latents: np.ndarray | None, labels: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        mats = self._matrices(rf, latents if "latent" in self.inputs else None)
        learned = {
            name: np.clip(self.scorers[name].logit(mats[name]), -10, 10) for name in self.inputs
        }
        near, site_bound = self._near(rf, latents, labels)
        return self._design(rf, learned, near), site_bound

    def predict(
        self, rf: RowFeatures, latents: np.ndarray | None = None, labels: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Probability, candidate (probability >= threshold, evidence allowed), reason per row.

        ``labels``: which rows are known blockpages (default: the dataset's ``censored``).
        """
        assert self.combiner is not None, "fit the detector first"
        design, site_bound = self._features(rf, latents, labels)
        prob = self.platt(self.combiner.logit(design))
        allowed = self.allowed(rf, site_bound)
        prob = np.where(allowed, prob, 0.0)
        candidate = prob >= self.threshold
        return prob, candidate, self.reasons(rf, design, allowed, site_bound)

    def reasons(
        self,
        rf: RowFeatures,
        design: np.ndarray,
        allowed: np.ndarray,
        site_bound: np.ndarray | None = None,
    ) -> list[str]:
        """Which evidence fired for each row, in words."""
        assert self.combiner is not None and self.combiner.mean is not None
        names = [*self.inputs, *NUMERIC, "stateful_block"]
        if self.space is not None:
            names += list(LATENT_NUMERIC)
        controls_ok = rf.controls_ok
        same = rf.same_site if rf.same_site is not None else np.zeros(len(design), bool)
        site = rf.site_bound if rf.site_bound is not None else np.zeros(len(design), bool)
        if site_bound is not None:
            site = site | site_bound
        contrib = (design - self.combiner.mean) / self.combiner.scale * self.combiner.coef
        out = []
        for i in range(len(design)):
            if not rf.scored[i]:
                out.append("expected response (template match)")
                continue
            if not controls_ok[i]:
                out.append("controls failed: not evidence")
                continue
            if same[i]:
                out.append("redirect to the tested site itself: not evidence")
                continue
            if site[i]:
                out.append("the site got this page in several countries: a hosting network's page")
                continue
            if not allowed[i]:
                out.append("no page received: not scored by this detector")
                continue
            fired = [names[j] for j in np.argsort(-contrib[i]) if contrib[i, j] >= REASON_MIN]
            out.append(", ".join(_describe(n, rf, i) for n in fired) or "no evidence")
        return out

    # ------------------------------------------------------------------ files

    def save(self, directory: Path) -> Path:
        """Write ``detector.json`` (settings, scalars) and ``detector.npz`` (vectors; no pickle)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        vectors: dict[str, np.ndarray] = {}
        scalars: dict[str, Any] = {}
        for name, lin in {**self.scorers, "combiner": self.combiner}.items():
            assert lin is not None
            vectors[f"{name}.coef"] = lin.coef
            if lin.mean is not None:
                vectors[f"{name}.mean"], vectors[f"{name}.scale"] = lin.mean, lin.scale
            scalars[name] = lin.intercept
        if self.space is not None:
            vectors["space.mean"], vectors["space.scale"] = self.space.mean, self.space.scale
        np.savez(directory / VECTORS_FILE, **vectors)
        meta = {
            "kind": "quackae_detector",
            "seed": self.seed,
            "target_fpr": self.target_fpr,
            "c_combiner": self.c_combiner,
            "lexical": self.lexical,
            "inputs": list(self.inputs),
            "intercepts": scalars,
            "platt": [self.platt.a, self.platt.b],
            "threshold": self.threshold,
            "info": self.info,
            "numeric": list(NUMERIC),
            "neighbours": self.neighbours,
            "radius": None if self.space is None else self.space.radius,
        }
        atomic_write(directory / MODEL_FILE, json.dumps(meta, indent=1))
        return directory / MODEL_FILE

    @classmethod
    def load(cls, directory: Path) -> Detector:
        """Read a detector written by ``save``."""
        directory = Path(directory)
        if not (directory / MODEL_FILE).is_file():
            raise ValueError(
                f"{directory} holds no {MODEL_FILE}; fit one with `quackae detect train`"
            )
        meta = json.loads((directory / MODEL_FILE).read_text())
        with np.load(directory / VECTORS_FILE, allow_pickle=False) as z:

            def lin(name: str) -> Linear:
                return Linear(
                    z[f"{name}.coef"],
                    float(meta["intercepts"][name]),
                    z.get(f"{name}.mean"),
                    z.get(f"{name}.scale"),
                )

            d = cls(
                seed=meta["seed"],
                target_fpr=meta["target_fpr"],
                c_combiner=meta["c_combiner"],
                lexical=meta["lexical"],
                scorers={n: lin(n) for n in meta["inputs"]},
                combiner=lin("combiner"),
                platt=PlattScaler(*meta["platt"]),
                threshold=meta["threshold"],
                inputs=tuple(meta["inputs"]),
                info=meta["info"],
                neighbours=meta.get("neighbours", True),
            )
            if meta.get("radius") is not None:
                d.space = LatentSpace(z["space.mean"], z["space.scale"], float(meta["radius"]))
        return d


def token_name(rf: RowFeatures, column: int) -> str:
    """The readable name of a lexical feature column (a BPE text token or a static token)."""
    tokens = rf.tokens
    if column >= tokens.text_offset:
        piece = tokens.tokenizer.id_to_token(column - tokens.text_offset)
        return repr(piece.replace("\u0120", " ").replace("\u010a", "\n").replace("\u010d", "\r"))
    for name, (start, size) in tokens.dataset.manifest["layout"]["static"].items():
        if start <= column < start + size:
            return f"[{name} {column - start}]"
    return f"[token {column}]"


def top_lexical_weights(det: Detector, rf: RowFeatures, k: int = 8) -> dict[str, list[list[Any]]]:
    """The lexical model's ``k`` most censored and most benign tokens, with their weights."""
    if "lexical" not in det.scorers:
        return {"censored": [], "benign": []}
    coef = det.scorers["lexical"].coef
    order = np.argsort(coef)
    pick = lambda idx: [[token_name(rf, int(j)), round(float(coef[j]), 3)] for j in idx]  # noqa: E731
    return {"censored": pick(order[::-1][:k]), "benign": pick(order[:k])}


def counted(n: float, noun: str, plural: str | None = None) -> str:
    """``1 country``, ``2 countries``: a rounded count with its noun in the right number."""
    k = int(round(float(n)))
    return f"{k} {noun if k == 1 else plural or noun + 's'}"


def _describe(name: str, rf: RowFeatures, i: int) -> str:
    """One reason in plain English ("same page for 12 domains in TR", "seen in 1 country")."""
    n = rf.numeric[i]
    if name == "log_domains_in_country":
        where = rf.column("country_code")[i] or "an unknown country"
        return f"same page for {counted(np.expm1(n[0]), 'domain')} in {where}"
    if name == "log_vps_in_country":
        return f"on {counted(np.expm1(n[1]), 'vantage point')}"
    if name == "log_countries":
        return f"page seen in {counted(np.expm1(n[2]), 'country', 'countries')}"
    if name == "log_url_country_ratio":
        return f"URL-to-country ratio {np.expm1(n[3]):.1f}"
    if name == "share_at_vp":
        return f"contrast: {n[4]:.0%} of the vantage point's domains got this page"
    if name == "has_page":
        return "a page where the expected response differs"
    if name == "stateful_block":
        return "stateful block"
    if name.startswith("log_latent_"):
        return "latent neighbours: " + name.removeprefix("log_latent_").replace("_", " ")
    return f"{name} model"


def _subset(rf: RowFeatures, mask: np.ndarray) -> RowFeatures:
    return RowFeatures(
        rf.table.filter(pa.array(mask)),
        {k: v[mask] for k, v in rf.flags.items()},
        rf.template[mask],
        rf.numeric[mask],
        rf.tokens,
        None if rf.same_site is None else rf.same_site[mask],
        None if rf.site_bound is None else rf.site_bound[mask],
    )
