"""Variant families, the benign principles and latent-neighbourhood evidence, on small worlds."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from quackae import synth
from quackae.detect.detector import Detector
from quackae.detect.features import received_page, same_site_redirect
from quackae.detect.neighbours import LATENT_NUMERIC, LatentSpace, fit_space, latent_evidence
from quackae.ingest.signatures import load_signatures
from quackae.synth import evaluate


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> evaluate.World:
    """A small world with the variant families and kinds, flattened with every signature."""
    return evaluate.make_world(tmp_path_factory.mktemp("variants"), 0, 1500, None, variants=True)


def full_texts(archive: Path) -> list[tuple[int, int, str]]:
    """(line, try index, full received text) of every object response of an archive."""
    with tarfile.open(archive) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("results.json"))
        lines = tar.extractfile(member).read().decode().splitlines()  # type: ignore[union-attr]
    out = []
    for no, line in enumerate(lines, 1):
        for i, e in enumerate(json.loads(line)["response"]):
            rec = e.get("response")
            if isinstance(rec, dict):
                heads = [f"{k}: {v}" for k, vs in rec["headers"].items() for v in vs]
                out.append((no, i, "\n".join([rec["status_line"], *heads, rec["body"]])))
    return out


def test_variant_signatures_match_their_own_pages_only(tmp_path: Path) -> None:
    fams = set(synth.FAMILIES) | set(synth.VARIANT_FAMILIES)
    kinds = set(synth.BENIGN_PATTERNS) | set(synth.VARIANT_KINDS)
    matcher = load_signatures(synth.write_signatures(tmp_path / "sigs", fams, kinds))
    result = synth.write_archive(tmp_path, 2500, seed=4, fmt="v2", scan="http", variants=True)
    truth = {
        (t["line"], t["try_index"]): t["family"]
        for t in map(json.loads, result.truth.read_text().splitlines())
    }
    seen: dict[str, set[str]] = {}
    for line, index, text in full_texts(result.archive):
        if (line, index) not in truth:
            continue  # a control try (the ISP notice answers those too)
        family = truth[(line, index)]
        hit = matcher.match(text)[1]
        if family in synth.VARIANT_FAMILIES:
            assert hit == f"a_synth_{family}", (family, hit)
            title = text.split("<title>")[1].split("<")[0] if "<title>" in text else ""
            seen.setdefault(family, set()).add(text.split("\n")[0] + title)
        elif family in synth.VARIANT_KINDS:
            assert hit == f"x_fp_synth_{family}", (family, hit)
        else:
            assert hit.removeprefix("a_synth_").removeprefix("x_fp_synth_") not in (
                set(synth.VARIANT_FAMILIES) | set(synth.VARIANT_KINDS)
            )
    assert len(seen) >= 8
    # the habits split templates: most families show many (status line, title) pairs
    assert sum(len(v) >= 4 for v in seen.values()) >= 6, {k: len(v) for k, v in seen.items()}


def test_default_world_has_no_variants(tmp_path: Path) -> None:
    result = synth.write_archive(tmp_path, 1500, seed=4, fmt="v2", scan="http")
    families = {json.loads(t)["family"] for t in result.truth.read_text().splitlines()}
    assert not families & (set(synth.VARIANT_FAMILIES) | set(synth.VARIANT_KINDS))


@pytest.mark.parametrize(
    ("text", "domain", "same"),
    [
        ("302 Found\nLocation: https://[DOMAIN]/login?next=%2F\n", "shop.com", True),
        ("301 Moved Permanently\nLocation: http://www.[DOMAIN]/\n", "shop.com", True),
        ("301 Moved Permanently\nLocation: https://shop.com/en/\n", "www.shop.com", True),
        ("307 Temporary Redirect\nLocation: /welcome\n", "shop.com", True),
        ("302 Found\nLocation: http://zapret.uzel-svyazi.net/?site=[DOMAIN]\n", "shop.com", False),
        ("302 Found\nLocation: //evil.example/\n", "shop.com", False),
        ("200 OK\nLocation: https://[DOMAIN]/\n<title>x</title>", "shop.com", False),
    ],
)
def test_same_site_redirect_principle(text: str, domain: str, same: bool) -> None:
    assert same_site_redirect(text, domain) is same


def test_same_site_redirects_are_no_evidence_in_a_world(world: evaluate.World) -> None:
    rf = world.rf
    redirects = rf.scored & (world.family == "site_redirect_variants")
    redirects &= received_page(rf.template)
    assert redirects.sum() >= 10
    assert rf.same_site[redirects].mean() >= 0.95
    assert not rf.same_site[world.mechanism == "blockpage"].any()  # censors send elsewhere
    det = Detector(seed=0).fit(rf, world.labels)
    prob, candidate, reason = det.predict(rf)
    assert not candidate[rf.same_site].any()
    first = int(np.flatnonzero(rf.same_site & rf.controls_ok)[0])
    assert reason[first] == "redirect to the tested site itself: not evidence"


def test_variant_pages_split_templates_but_gather_in_a_latent_neighbourhood(
    world: evaluate.World,
) -> None:
    """Templates give a varying censor's page few domains; its neighbours, even in a token SVD,
    give many."""
    rf = world.rf
    latents = evaluate.token_latents(world.rf, 0, 48)  # the autoencoder's baseline
    pages = rf.scored & rf.evidence_allowed & rf.has_page
    fp = np.where(world.labels == 1, rf.column("fingerprint"), "").astype(object)
    space = fit_space(latents, pages, fp)
    near, _ = latent_evidence(space, latents, rf, rf.scored & rf.evidence_allowed)
    assert near.shape == (len(rf.template), len(LATENT_NUMERIC))
    tmpl = rf.numeric[:, 0]  # log_domains_in_country by template
    checked = 0
    for fam in ("tr_incident_nonce", "ae_multilingual_gateway", "ir_case_order"):
        rows = pages & (world.family == fam)
        if rows.sum() < 5:
            continue
        checked += 1
        assert np.rint(np.expm1(np.median(near[rows, 0]))) >= 2 * np.expm1(np.median(tmpl[rows])), (
            fam
        )
    assert checked >= 2


def test_protocol_on_a_small_world_is_deterministic(world: evaluate.World) -> None:
    plan = evaluate.fold_plan(2, 0, variants=True)
    held = [f for fams, _ in plan for f in fams if f in synth.VARIANT_FAMILIES]
    assert sorted(held) == sorted(synth.VARIANT_FAMILIES)  # each in exactly one group
    assert not plan[0][1] & set(synth.VARIANT_KINDS)  # variant kinds only in reported folds
    assert {k for _, kinds in plan[1:] for k in kinds} >= set(synth.VARIANT_KINDS)
    a = evaluate.evaluate_world(world, 2, lexical=False)
    b = evaluate.evaluate_world(world, 2, lexical=False)
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    cells = evaluate.table_cells([a])
    assert set(cells) == set(evaluate.COLUMNS)
    for c in cells.values():
        assert c["folds"] >= 1 and 0 <= c["recall"] <= 1 and 0 <= (c["fpr"] or 0) <= 1


def oracle_vectors(world: evaluate.World, noise: float, seed: int = 0) -> np.ndarray:
    """One random direction per true family or kind, plus per-row Gaussian noise.

    Every direction lies sqrt(32) (a Gaussian's expected length) from the pages' mean, so after
    the detector's centring every family is as tight as another (a kind with many pages does not
    pull the mean towards itself and spread wider): ``noise`` alone sets the spread.
    """
    rng = np.random.default_rng(seed)
    names = sorted(set(world.family.tolist()))
    raw = rng.normal(size=(len(names), 32))
    rf = world.rf
    pages = rf.scored & rf.evidence_allowed & rf.has_page
    index = {f: i for i, f in enumerate(names)}
    mean = raw[[index[f] for f in world.family[pages].tolist()]].mean(axis=0)
    away = raw - mean
    raw = mean + away * np.sqrt(32) / np.linalg.norm(away, axis=1, keepdims=True)
    dirs = dict(zip(names, raw, strict=True))
    x = np.stack([dirs[f] for f in world.family.tolist()])
    return (x + noise * rng.normal(size=x.shape)).astype(np.float32)


def test_latent_site_principle_clears_a_hosting_networks_varying_page(
    world: evaluate.World,
) -> None:
    """A bot check whose title varies per response follows its site in latent space, not templates.

    The ceiling is the share of bot-check rows whose domain got the page in 3+ countries.
    """
    rf = world.rf
    pages = rf.scored & rf.evidence_allowed & rf.has_page
    bot = pages & (world.family == "cdn_bot_check")
    domain, country = rf.column("domain").astype(str), rf.column("country_code").astype(str)
    ceiling = np.mean(
        [len(set(country[bot & (domain == domain[i])])) >= 3 for i in np.flatnonzero(bot)]
    )
    assert bot.sum() >= 50 and ceiling >= 0.5
    latents = oracle_vectors(world, 0.3)
    fp = np.where(world.labels == 1, rf.column("fingerprint"), "").astype(object)
    space = fit_space(latents, pages, fp)
    assert space.radius > 0
    _, site = latent_evidence(space, latents, rf, rf.scored & rf.evidence_allowed)
    assert site[bot].mean() >= 0.6 * ceiling, (site[bot].mean(), ceiling)
    assert rf.site_bound is not None and not rf.site_bound[bot].any()  # templates cannot
    assert not site[pages & (world.mechanism == "blockpage")].any()  # no censor's page cleared


def test_latent_detector_round_trips_its_space(world: evaluate.World, tmp_path: Path) -> None:
    """A saved detector with latent evidence predicts the same after loading (radius kept)."""
    latents = oracle_vectors(world, 0.3)
    det = Detector(seed=0).fit(world.rf, world.labels, latents)
    assert det.space is not None and det.space.radius > 0
    back = Detector.load(Path(det.save(tmp_path)).parent)
    assert back.space is not None and back.space.radius == det.space.radius
    a, b = det.predict(world.rf, latents), back.predict(world.rf, latents)
    np.testing.assert_allclose(a[0], b[0])
    assert a[2] == b[2]


def test_known_blockpages_are_not_a_sites_page(world: evaluate.World) -> None:
    """A domain blocked by several countries' censors is not "its site's page" in latent space.

    Every censor's page gets one direction (censors' pages lie near each other, as a trained
    autoencoder puts them); one family is held out (unlabelled). Counting the labelled censors'
    pages as the domain's page in other countries clears the held-out censor's page by the site
    principle; not counting known blockpages keeps it.
    """
    rf = world.rf
    pages = rf.scored & rf.evidence_allowed & rf.has_page
    rng = np.random.default_rng(0)
    family = np.where(world.mechanism == "blockpage", "blockpage", world.family)
    names = sorted(set(family.tolist()))
    dirs = dict(zip(names, rng.normal(size=(len(names), 32)), strict=True))
    latents = np.stack([dirs[f] for f in family.tolist()])
    latents = (latents + 0.2 * rng.normal(size=latents.shape)).astype(np.float32)
    held = pages & (world.family == "ae_multilingual_gateway")  # held out: no label
    known = (world.labels == 1) & ~held
    fp = np.where(known, rf.column("fingerprint"), "").astype(object)
    space = fit_space(latents, pages, fp)
    consider = rf.scored & rf.evidence_allowed
    _, site_all = latent_evidence(space, latents, rf, consider)
    _, site_known = latent_evidence(space, latents, rf, consider, known)
    assert site_all[held].sum() >= 5  # the test has teeth: the old count clears censors' pages
    assert site_known[held].mean() < 0.25 * site_all[held].mean()
    bot = pages & (world.family == "cdn_bot_check")
    assert site_known[bot].mean() == site_all[bot].mean()  # a site's own page: unchanged


def test_other_censors_pages_of_a_domain_are_not_its_sites_page(world: evaluate.World) -> None:
    """With no blockpage known, censors' pages of a domain blocked in several countries stay.

    Censors' pages share a direction (an autoencoder puts blockpages near each other), each
    censor tight around its own; one censor's pages vary widely (a multilingual family). The
    site principle's radius is a typical censor's spread: the widest family's spread (as wide as
    the gap between two censors) would clear other censors' pages as "the site's page".
    """
    rf = world.rf
    pages = rf.scored & rf.evidence_allowed & rf.has_page
    rng = np.random.default_rng(1)
    names = sorted(set(world.family.tolist()))
    dirs = dict(zip(names, rng.normal(size=(len(names), 32)), strict=True))
    censor = rng.normal(size=32) * 2.0
    blockpage = world.mechanism == "blockpage"
    wide = world.family == "ae_multilingual_gateway"
    x = np.stack([dirs[f] * 0.5 for f in world.family.tolist()])
    x[blockpage] += censor
    noise = np.where(wide, 0.9, 0.1)[:, None] * rng.normal(size=x.shape)
    latents = (x + noise).astype(np.float32)
    fp = np.where(world.labels == 1, rf.column("fingerprint"), "").astype(object)
    space = fit_space(latents, pages, fp)
    z = space.embed(latents[pages & wide])
    widest = float(np.quantile(np.sqrt(np.maximum(2 - 2 * z @ z.T, 0)), 0.9))
    assert widest > 1.5 * space.radius
    consider = rf.scored & rf.evidence_allowed
    _, site = latent_evidence(space, latents, rf, consider)  # no page known to be a blockpage
    wider = LatentSpace(space.mean, space.scale, widest)
    _, site_wide = latent_evidence(wider, latents, rf, consider)
    held = pages & blockpage & ~wide
    assert site_wide[held].mean() > 0.05  # the test has teeth: a wide radius clears censors
    assert site[held].mean() < 0.1 * site_wide[held].mean()
