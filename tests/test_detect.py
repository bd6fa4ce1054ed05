"""The detector, leave-family-out evaluation and proposed signatures, on small generated worlds."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from tests.conftest import run_cli

from quackae import synth
from quackae.classify.calibration import PlattScaler
from quackae.dataset import store
from quackae.detect import pipeline, proposals
from quackae.detect.features import row_features
from quackae.ingest.flatten import Options, flatten
from quackae.ingest.signatures import Matcher, Signature
from quackae.synth import evaluate, truth


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> evaluate.World:
    """One small world flattened with every signature (the evaluation's starting point)."""
    return evaluate.make_world(tmp_path_factory.mktemp("world"), seed=0, measurements=900)


def test_fold_split_holds_families_out(world):
    plan = evaluate.fold_plan(4, seed=0)
    families = [f for fams, _ in plan for f in fams]
    kinds = [k for _, ks in plan for k in ks]
    assert sorted(families) == sorted(synth.FAMILIES) and len(set(families)) == len(families)
    assert sorted(kinds) == sorted(k for k in synth.BENIGN_KINDS if k != "noise")
    assert plan == evaluate.fold_plan(4, seed=0) and plan != evaluate.fold_plan(4, seed=1)
    fingerprint = world.rf.column("fingerprint")
    for fams, ks in plan[1:]:
        labels = evaluate.fold_labels(world, fams, ks)
        page, benign = evaluate.held_out_masks(world, fams, ks)
        assert (labels[page | benign] == 0).all()  # no held-out row keeps a label
        held = [evaluate.blockpage_signature(f) for f in fams] + [
            evaluate.benign_signature(k) for k in ks
        ]
        assert not np.isin(fingerprint[labels != 0], held).any()
        kept = (world.labels != 0) & ~np.isin(fingerprint, held)
        assert (labels[kept] == world.labels[kept]).all()  # everything else keeps its label
    assert (
        world.labels[world.mechanism == "blockpage"] == 1
    ).mean() > 0.95  # full knowledge labels pages


def test_platt_scaling_ranks_without_saturating():
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(200), np.ones(200)]
    score = 40 * (y - 0.5) + rng.normal(0, 15, len(y))  # over-confident raw scores
    p = PlattScaler.fit(score, y)(score)
    assert np.all(np.diff(p[np.argsort(score)]) >= 0)  # monotone: the ranking is kept
    assert ((p > 0.02) & (p < 0.98)).mean() > 0.2  # not saturated to 0/1
    assert abs(p[y == 1].mean() - 0.5) < 0.45 and p[y == 1].mean() > p[y == 0].mean()
    assert PlattScaler.fit(score, np.ones(len(y)))(np.array([0.0]))[0] == 0.5  # one class: identity


def test_flags_come_from_the_static_tokens(world):
    rf = world.rf
    host = np.isin(world.family, list(synth.HOST_KINDS))
    assert (
        host.any() and rf.flags["controls_failed"][host].all()
    )  # CP: the host answers the control alike
    assert not rf.flags["controls_failed"][world.mechanism == "blockpage"].any()
    assert (rf.flags["success"][world.mechanism == "none"] == 1).all()


def test_predict_writes_probability_candidate_reason(world, tmp_path):
    dataset = world.rf.tokens.dataset.root
    assert (
        run_cli(
            "detect", "train", "--data_dir", dataset, "--storage_path", tmp_path / "det"
        ).returncode
        == 0
    )
    r = run_cli(
        "detect",
        "predict",
        "--data_dir",
        dataset,
        "--checkpoint_path",
        tmp_path / "det",
        "--storage_path",
        tmp_path / "pred",
    )
    assert r.returncode == 0, r.stderr
    t = pq.read_table(tmp_path / "pred" / pipeline.PREDICTIONS_FILE)
    assert (
        t.num_rows
        == world.rf.table.num_rows
        == store.Dataset(dataset).read_columns(["row_id"]).num_rows
    )
    prob, cand = (
        t.column("probability").to_numpy(),
        t.column("candidate").to_numpy(zero_copy_only=False),
    )
    reason = np.array(t.column("reason").to_pylist(), dtype=object)
    threshold = json.loads((tmp_path / "pred" / pipeline.SUMMARY_FILE).read_text())["threshold"]
    assert ((prob >= threshold) == cand).all() and cand.any() and not cand.all()
    assert all(r and r != "no evidence" for r in reason[cand])
    order = np.argsort(t.column("row_id").to_numpy())
    rf_order = np.argsort(world.rf.row_ids)
    host = np.isin(world.family, list(synth.HOST_KINDS))[rf_order]
    none = (world.mechanism == "none")[rf_order]
    assert (
        set(reason[order][host]) == {"controls failed: not evidence"}
        and not cand[order][host].any()
    )
    assert set(reason[order][none]) == {"expected response (template match)"}
    pages = cand & (prob > 0)
    assert len(np.unique(np.round(prob[pages], 3))) > 5  # probabilities rank, not a 0/1 step


def _flatten(raw: list[Path], sigs: Path, out: Path) -> Path:
    flatten(raw, out, Options(max_tokens=128, signatures=sigs), progress=False, vocab_size=2048)
    return out


def test_proposed_signatures_round_trip(tmp_path):
    """Held-out family -> candidates -> proposed signature -> flatten again -> labelled censored."""
    arcs = [synth.write_archive(tmp_path / "raw", 1500, seed=3, fmt="v2", scan="http")]
    raw, files = [a.archive for a in arcs], [a.truth for a in arcs]
    t = truth.load_truth(files)
    pages = Counter(
        f
        for f, m in zip(
            t.column("family").to_pylist(), t.column("mechanism").to_pylist(), strict=True
        )
        if m == "blockpage" and synth.FAMILIES[f].mechanism != "near-empty"
    )
    held = pages.most_common(1)[0][0]  # a near-empty page has nothing a signature could name
    sigs = synth.write_signatures(
        tmp_path / "sigs",
        set(synth.FAMILIES) - {held},
        set(synth.BENIGN_KINDS) - {"noise", "binary_garbage"},
    )
    ds = _flatten(raw, sigs, tmp_path / "ds")
    pipeline.train(ds, tmp_path / "det")
    summary = pipeline.predict(ds, tmp_path / "det", tmp_path / "pred")
    assert summary["proposals"] >= 1
    merged = proposals.merge_signatures(
        sigs, tmp_path / "pred" / proposals.PROPOSALS_FILE, tmp_path / "merged"
    )
    again = _flatten(raw, merged, tmp_path / "ds2")
    cols = store.Dataset(again).read_columns(
        ["source", "line", "try_index", "censored", "fingerprint"]
    )
    joined = truth.join_truth(
        cols.rename_columns(["source", "line", "try_index", "label", "fingerprint"]), t
    )
    family = np.array(joined.column("family").to_pylist(), dtype=object)
    label = joined.column("label").to_numpy()
    fingerprint = np.array(joined.column("fingerprint").to_pylist(), dtype=object)
    mech = np.array(joined.column("mechanism").to_pylist(), dtype=object)
    proposed = np.char.startswith(fingerprint.astype(str), "proposed_")
    page = (family == held) & (mech == "blockpage")
    assert (label[page] == 1).mean() >= 0.9 and proposed[page].mean() >= 0.9
    assert not (
        proposed & np.isin(mech, ["benign", "none", "noise"])
    ).any()  # no benign page matched


def test_evaluation_is_deterministic(tmp_path):
    args = ["evaluate", "--seeds", "0", "--folds", "2", "--measurements", "500"]
    a = run_cli(*args, "--storage_path", tmp_path / "a")
    b = run_cli(*args, "--storage_path", tmp_path / "b")
    assert a.returncode == 0, a.stderr
    ra = json.loads((tmp_path / "a" / evaluate.RESULT_FILE).read_text())
    rb = json.loads((tmp_path / "b" / evaluate.RESULT_FILE).read_text())
    assert ra["summary"] == rb["summary"] and ra["per_seed"] == rb["per_seed"]
    assert (
        a.stdout.splitlines()[:-1] == b.stdout.splitlines()[:-1]
    )  # the last line is the time taken
    assert ra["summary"]["reported_folds"] == 2 and ra["per_seed"][0]["dev_fold"]["chosen"]
    fold = ra["per_seed"][0]["folds"][0]
    assert set(fold["family_recall"]) <= set(fold["families"]) and fold["pages"] > 0
    # each reported fold names the lexical model's strongest tokens, both ways, readable
    weights = fold["lexical_weights"]
    assert len(weights["censored"]) == len(weights["benign"]) == 8
    assert all(w > 0 for _, w in weights["censored"]) and all(w < 0 for _, w in weights["benign"])
    assert all(isinstance(t, str) and t for t, _ in weights["censored"] + weights["benign"])


def test_features_of_a_dataset_without_pages(small_dataset):
    rf = row_features(small_dataset)
    assert rf.numeric.shape == (rf.table.num_rows, 6) and np.isfinite(rf.numeric).all()


def test_proposals_merge_one_page_split_over_templates(world):
    """A page whose template varies (status, a cut title, a bare status line) gets one signature."""
    rf = world.rf
    page = rf.scored & rf.has_page & (world.mechanism == "blockpage")
    held = ["kr_card", "kz_meta_refresh", "us_silent_empty", "ru_silent_dpi"]
    for (
        family
    ) in held:  # each is split over several (template, country) groups, mostly under MIN_PAGES
        assert len(set(rf.template[page & (world.family == family)])) >= 3, family
    candidate = page & np.isin(world.family, held)
    labels = world.labels.copy()
    labels[candidate] = 0
    rejected: list = []
    found = proposals.propose(rf, candidate, labels == -1, 0, rejected)
    matcher = Matcher([], [Signature(p.fingerprint, p.pattern) for p in found])
    for family in held:
        rows = np.flatnonzero(page & (world.family == family))
        hit = [matcher.match(t)[0] == 1 for t in rf.tokens.texts(rf.row_ids[rows])]
        assert np.mean(hit) >= 0.9, family
    assert all(len(set(world.family[p.rows])) == 1 for p in found)  # one family per proposal
    benign = np.flatnonzero(
        np.isin(world.mechanism, ["benign", "none"]) & (rf.template != "(nothing received)")
    )
    assert not any(matcher.match(t)[0] == 1 for t in rf.tokens.texts(rf.row_ids[benign]))
    accounted = np.concatenate([p.rows for p in found] + [r for _, r, _ in rejected])
    assert (
        sorted(accounted.tolist()) == np.flatnonzero(candidate).tolist()
    )  # every page: proposed or a reason


def _covered(rf, found, rows: np.ndarray) -> float:
    """The share of ``rows`` whose page a proposal matches."""
    matcher = Matcher([], [Signature(p.fingerprint, p.pattern) for p in found])
    return float(np.mean([matcher.match(t)[0] == 1 for t in rf.tokens.texts(rf.row_ids[rows])]))


def test_pages_the_detector_missed_do_not_veto_their_familys_line(world):
    """A family flagged on most of its pages gets its signature, covering the pages it missed;
    a benign kind flagged on a few of its pages gets none (its unflagged pages outweigh them)."""
    rf = world.rf
    page = rf.scored & rf.has_page & rf.evidence_allowed
    family = np.flatnonzero(page & (world.family == "tr_court_center"))
    kind = np.flatnonzero(page & (world.family == "maintenance"))
    assert len(family) >= 8 and len(kind) >= 10
    rng = np.random.default_rng(0)
    missed = rng.choice(family, max(1, len(family) // 8), replace=False)
    flagged_benign = rng.choice(kind, max(3, len(kind) // 10), replace=False)
    candidate = np.zeros(len(page), bool)
    candidate[np.setdiff1d(family, missed)] = True
    candidate[flagged_benign] = True
    labels = world.labels.copy()
    labels[np.concatenate([family, kind])] = 0  # neither is known
    found = proposals.propose(rf, candidate, labels == -1, 0)
    assert _covered(rf, found, family) >= 0.9  # the missed pages included
    assert _covered(rf, found, kind) == 0.0


def test_a_standard_headers_name_anchors_no_line():
    """``Expires: [DATE]`` is on most pages; a custom header or a header's value may anchor."""
    text = "403 Forbidden\nExpires: [DATE]\nContent-Length: 2211\nX-Filter-Verdict: deny\n"
    lines = proposals._lines(text)
    assert "X-Filter-Verdict: deny" in lines
    assert not any(line.startswith(("Expires", "Content-Length")) for line in lines)
    assert "Server: AkamaiGHost" in proposals._lines("Server: AkamaiGHost")
    assert not proposals._lines("Set-Cookie: a=[HEX]; expires=[DATE]; path=/; HttpOnly")
