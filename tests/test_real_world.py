"""Real pages as one more archive of a world, and leave-page-out scoring (``--real_pages``).

The corpus of ``synth.real_pages`` served by ``synth.real_world``: its rows join their truth,
carry no label, are dealt into the folds by the page's name and scored as their own column, on
reported folds only. Small worlds keep each test within seconds.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter

import numpy as np
import pyarrow as pa
import pytest

from conftest import run_cli
from quackae.synth import evaluate, real_world, truth
from quackae.synth import real_pages as rp


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> evaluate.World:
    """A small variant world with the real-page archive flattened in."""
    out = tmp_path_factory.mktemp("real_world")
    return evaluate.make_world(out, 0, 300, variants=True, real_pages=True)


def test_real_archive_is_deterministic_and_served_like_its_network(tmp_path) -> None:
    a = real_world.write_real_archive(tmp_path / "a", 3)
    b = real_world.write_real_archive(tmp_path / "b", 3)
    c = real_world.write_real_archive(tmp_path / "c", 4)
    digest = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()  # noqa: E731
    assert digest(a.archive) == digest(b.archive) and digest(a.truth) == digest(b.truth)
    assert digest(a.archive) != digest(c.archive)
    pages = {p.id: p for p in rp.load_real_pages()}
    served: dict[str, dict[str, set[str]]] = {}
    for page, vp, country, domain, fail in real_world.plan_measurements(3):
        if page is None:
            continue
        s = served.setdefault(page.id, {"vp": set(), "country": set(), "domain": set()})
        s["vp"].add(vp), s["country"].add(country), s["domain"].add(domain)
        assert fail == (page.kind == "benign" and page.scope == "isp")
    assert set(served) == set(pages)  # every page is served
    for pid, s in served.items():
        page = pages[pid]
        if page.kind == "censor":
            assert s["country"] == {page.country or real_world.DEFAULT_COUNTRY}
            assert 2 <= len(s["vp"]) <= 3 and 6 <= len(s["domain"]) <= 10
        elif page.scope != "isp":
            assert len(s["country"]) >= 3 and 2 <= len(s["domain"]) <= 4  # follows the site


def test_real_archive_flattens_and_every_page_joins_its_truth(world, tmp_path) -> None:
    """(a) Rows per real page in the dataset = tries the sidecar holds for it; no label kept."""
    raw = real_world.write_real_archive(tmp_path, 0, variants=True)  # the world's own bytes
    t = truth.load_truth([raw.truth])
    want = Counter(t["detail"].to_pylist())  # page id per try ("" for an expected response)
    rows = world.rf.table.select(["source", "line", "try_index"]).append_column(
        "_row", pa.array(np.arange(world.rf.table.num_rows))
    )
    joined = truth.join_truth(rows, t)
    got = Counter(joined["detail"].to_pylist())
    assert got == want  # every try of every page (and every expected try) is a joined row
    pages = rp.load_real_pages()
    assert {p.id for p in pages} <= set(got)
    for page in pages:
        assert got[page.id] >= 2 * real_world.TRIES, page.id
    real = real_world.is_real(world.family)
    assert real.sum() == sum(got[p.id] for p in pages)
    assert set(world.family[real]) == set(real_world.real_families() + real_world.real_kinds())
    assert (world.labels[real] == 0).all()  # no signature of the world labels a real page
    censor = real & (world.mechanism == "blockpage")
    assert world.censored_truth[censor].all() and not world.censored_truth[real & ~censor].any()


def test_real_pages_are_dealt_by_name_and_scored_on_reported_folds_only(world) -> None:
    """(b) and (c): the real-pages column pools reported folds only; the same call, same numbers."""
    plan = evaluate.fold_plan(2, 0, variants=True, real_pages=True)
    assert [p[0] - set(real_world.real_families()) for p in plan] == [
        p[0] for p in evaluate.fold_plan(2, 0, variants=True)
    ]  # the synthetic deal is unchanged
    dealt = [f for fams, kinds in plan for f in (fams | kinds) if f.startswith("real_")]
    assert sorted(dealt) == sorted(real_world.real_families() + real_world.real_kinds())
    dev_real = {f for f in plan[0][0] | plan[0][1] if f.startswith("real_")}
    assert dev_real  # the development fold holds real pages too, never reported
    a = evaluate.evaluate_world(world, 2)
    b = evaluate.evaluate_world(world, 2)
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    cells = evaluate.table_cells([a])
    assert set(cells) == {*evaluate.COLUMNS, evaluate.REAL_COLUMN}
    real = cells[evaluate.REAL_COLUMN]
    fams, kinds = evaluate.REAL_COLUMNS[evaluate.REAL_COLUMN]
    recalls, fprs, pages, covered = [], [], 0, 0
    for fold in a["folds"]:
        assert not dev_real & (set(fold["families"]) | set(fold["kinds"]))
        assert not dev_real & set(fold["family_rows"]) and not dev_real & set(fold["kind_rows"])
        n = {k: v for k, v in fold["family_rows"].items() if k in fams and v}
        recalls.append(sum(fold["family_recall"][k] * v for k, v in n.items()) / sum(n.values()))
        pages += sum(n.values())
        covered += sum(fold["proposals"]["family_covered"].get(k, 0) for k in n)
        m = {k: v for k, v in fold["kind_rows"].items() if k in kinds and v}
        fprs.append(sum(fold["kind_fpr"][k] * v for k, v in m.items()) / sum(m.values()))
    assert real["folds"] == 2
    assert real["recall"] == round(float(np.mean(recalls)), 4)
    assert real["worst_fold_recall"] == round(float(np.min(recalls)), 4)
    assert real["fpr"] == round(float(np.mean(fprs)), 4)
    assert real["coverage"] == round(covered / pages, 4)
    # a reported fold's positives are that fold's real censors' rows, nothing else
    fold = a["folds"][0]
    held = [k for k in fold["families"] if k.startswith("real_")]
    rows = world.rf.scored & np.isin(world.family, held) & (world.mechanism == "blockpage")
    assert sum(fold["family_rows"][k] for k in held) == int(rows.sum())


def test_a_labelled_real_row_is_refused_before_fitting(world) -> None:
    """No fold is fitted with a label on any real page (one of another fold's included)."""
    plan = evaluate.fold_plan(2, 0, variants=True, real_pages=True)
    labels = world.labels
    try:
        world.labels = labels.copy()
        other = real_world.is_real(world.family) & ~np.isin(world.family, list(plan[1][0]))
        world.labels[np.flatnonzero(other & ~np.isin(world.family, list(plan[1][1])))[0]] = -1
        with pytest.raises(AssertionError, match="real page"):
            evaluate.score_fold(world, *plan[1], 1.0, (0.01,))
    finally:
        world.labels = labels


def test_evaluate_real_pages_cli(tmp_path) -> None:
    """(d) ``quackae evaluate --real_pages``: its help, and a tiny run with a real-pages line."""
    help_text = run_cli("evaluate", "--help", timeout=120)
    assert help_text.returncode == 0 and "--real_pages" in help_text.stdout
    assert "leave-page-out" in " ".join(help_text.stdout.split())
    out = tmp_path / "eval"
    done = run_cli(
        "evaluate",
        "--storage_path",
        out,
        "--seeds",
        "0",
        "--folds",
        "2",
        "--measurements",
        "200",
        "--real_pages",
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "real pages (leave-page-out" in done.stdout
    result = json.loads((out / evaluate.RESULT_FILE).read_text())
    assert result["real_pages"]["folds"] == 2 and 0 <= result["real_pages"]["recall"] <= 1


def test_a_page_cut_before_its_body_is_named_by_its_headers_and_follows_its_site(world) -> None:
    """Akamai's real "Access Denied" page: its headers fill the 128-token budget, so the body is
    cut; its template names the product by its headers (not a bare ``403 Forbidden``), it counts
    as a page that says something, and the site principle clears it (3-5 countries per domain).
    """
    from quackae.detect.features import has_content, template_of

    rf = world.rf
    rows = np.flatnonzero(world.family == "real_cdn_access_denied")
    assert len(rows) >= 10
    templates = set(rf.template[rows].tolist())
    assert templates == {t for t in templates if "| cut: AkamaiGHost;" in t}, templates
    assert has_content(rf.template[rows]).all()
    assert rf.site_bound is not None and rf.site_bound[rows].mean() >= 0.5
    assert template_of("403 Forbidden\nContent-Length: 0\nServer: x\n") == "403 Forbidden"
