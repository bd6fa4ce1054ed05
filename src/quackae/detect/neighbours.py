"""Latent-neighbourhood evidence: cluster evidence over the autoencoder's latent space.

Templates group a censor's pages when they are one page with placeholders; a censor whose pages
vary per response (nonces, wording, languages, cut pages, rotating status lines) splits into
many templates of a few domains each. Its pages still lie close in latent space, so the same
cluster evidence is counted over *latent neighbours* instead: the distinct domains and vantage
points in the row's country, and the countries, among the pages within ``radius`` of the row.
The same neighbours give the site principle: a page its domain also got, within the radius, in
``SITE_COUNTRIES`` or more countries follows the site (a hosting network's page), not the path.
Pages known to be blockpages (labelled censored) are not a site's page and are not counted: a
domain blocked in several countries gets several censors' pages, which lie near one another.

``radius`` is set from labelled blockpages: the median over fingerprints of the 0.9 quantile
(``RADIUS_QUANTILE``) of the distance between two pages of one fingerprint (how far apart two
pages of one known censor lie; at most 200 pages per fingerprint, seeded). The site principle uses
the same radius: a wider one (the widest fingerprint's spread) reached other censors' pages of a
domain blocked in several countries (found on development worlds). The search is scikit-learn's
``NearestNeighbors`` (exact; tree or brute force as it chooses), over standardised, unit-length
latents.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from quackae.detect.features import SITE_COUNTRIES, RowFeatures, has_content

LATENT_NUMERIC = (
    "log_latent_domains_in_country",
    "log_latent_vps_in_country",
    "log_latent_countries",
)
NEIGHBOURS = 30  # neighbours searched per page
RADIUS_QUANTILE = 0.9  # which quantile of one fingerprint's pair distances is "the same page"


@dataclass
class LatentSpace:
    """How latents are scaled before the search, and the radius of "the same page".

    ``radius`` (a typical known family's spread) counts neighbourhood evidence and decides the
    site principle.
    """

    mean: np.ndarray
    scale: np.ndarray
    radius: float

    def embed(self, x: np.ndarray) -> np.ndarray:
        """Standardised latents scaled to unit length (Euclidean distance ~ cosine)."""
        z = (np.asarray(x, np.float32) - self.mean) / self.scale
        return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-6)


def _knn(z: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.neighbors import NearestNeighbors

    k = max(1, min(k, len(z)))
    return NearestNeighbors(n_neighbors=k).fit(z).kneighbors(z)


def fit_space(latents: np.ndarray, pages: np.ndarray, fingerprint: np.ndarray) -> LatentSpace:
    """Scaling from the rows ``pages``; radius from the labelled pages (``fingerprint`` != "")."""
    x = np.asarray(latents[pages], np.float32)
    mean, scale = x.mean(axis=0), np.maximum(x.std(axis=0), 1e-6)
    space = LatentSpace(mean, scale, 0.0)
    spreads = []
    rng = np.random.default_rng(0)
    for fp in sorted(set(fingerprint[pages].tolist()) - {""}):
        rows = np.flatnonzero(pages & (fingerprint == fp))
        if len(rows) >= 2:
            rows = rows if len(rows) <= 200 else np.sort(rng.choice(rows, 200, replace=False))
            z = space.embed(latents[rows])
            d = np.sqrt(np.maximum(2 - 2 * z @ z.T, 0))[np.triu_indices(len(rows), 1)]
            spreads.append(float(np.quantile(d, RADIUS_QUANTILE)))
    if spreads:
        space.radius = float(np.median(spreads))
    else:  # no labelled family: the median distance to a page's nearest neighbour
        dist, _ = _knn(space.embed(x), 2)
        space.radius = float(np.median(dist[:, -1]))
    return space


def _distinct(codes: np.ndarray) -> np.ndarray:
    """Per row of a (rows, k) int array: the number of distinct values >= 0."""
    s = np.sort(codes, axis=1)
    first = np.ones_like(s, dtype=bool)
    first[:, 1:] = s[:, 1:] != s[:, :-1]
    return (first & (s >= 0)).sum(axis=1)


def latent_evidence(
    space: LatentSpace,
    latents: np.ndarray,
    rf: RowFeatures,
    consider: np.ndarray,
    known: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``LATENT_NUMERIC`` per row, and which rows' pages follow their site (``site_bound``).

    ``known``: rows labelled censored, which the site principle does not count (None: none).
    """
    n = len(rf.template)
    out = np.zeros((n, len(LATENT_NUMERIC)))
    site = np.zeros(n, bool)
    use = np.flatnonzero(consider & rf.has_page)
    if len(use) < 2:
        return out, site
    z = space.embed(latents[use])
    dist, idx = _knn(z, NEIGHBOURS)
    near = dist <= space.radius
    codes = {
        name: np.unique(rf.column(name)[use].astype(str), return_inverse=True)[1]
        for name in ("domain", "ip", "country_code")
    }
    country = codes["country_code"]
    same_cc = near & (country[idx] == country[:, None])
    out[use, 0] = np.log1p(_distinct(np.where(same_cc, codes["domain"][idx], -1)))
    out[use, 1] = np.log1p(_distinct(np.where(same_cc, codes["ip"][idx], -1)))
    out[use, 2] = np.log1p(_distinct(np.where(near, country[idx], -1)))
    blockpage = np.zeros(len(use), bool) if known is None else np.asarray(known, bool)[use]
    counted = _site_countries(z, codes["domain"], country, space.radius, blockpage)
    site[use] = counted >= SITE_COUNTRIES
    return out, site & has_content(rf.template)


def _site_countries(
    z: np.ndarray, domain: np.ndarray, country: np.ndarray, radius: float, blockpage: np.ndarray
) -> np.ndarray:
    """Per row: distinct countries among its own domain's pages within ``radius`` (the row's
    own country included), not counting pages in ``blockpage``."""
    from sklearn.neighbors import NearestNeighbors

    out = np.ones(len(z), np.int64)
    for d in np.unique(domain):
        rows = np.flatnonzero(domain == d)
        if len(rows) < SITE_COUNTRIES:
            continue
        found = NearestNeighbors(radius=radius).fit(z[rows]).radius_neighbors(z[rows])[1]
        keep = ~blockpage[rows]
        out[rows] = [
            len(set(country[rows[j[keep[j]]]].tolist()) | {country[r]})
            for r, j in zip(rows, found, strict=True)
        ]
    return out
