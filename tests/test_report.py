"""Candidates report structure and scoring against synth ground truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from quackae import synth
from quackae.classify import calibration
from quackae.dataset.pages import page_signature
from quackae.report import markdown as report
from quackae.synth import truth
from test_classifier import demo_run


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return demo_run(tmp_path_factory)


def test_report_json_structure(run):
    r = json.loads((run / "candidates" / report.REPORT_JSON).read_text())
    for key in ("threshold", "rows", "candidates", "confidence", "metrics", "groups", "top"):
        assert key in r
    assert r["metrics"]["winner"] in ("classifier", "baseline", "tie")
    assert r["candidates"] > 0 and r["rows"] >= r["candidates"]
    assert set(report.GROUP_KEYS) == set(r["groups"])  # page signatures need the dataset: present
    for groups in r["groups"].values():
        assert groups
        counts = [g["count"] for g in groups]
        assert counts == sorted(counts, reverse=True)
        assert all(g["mean_probability"] >= r["threshold"] for g in groups)
        assert {"key", "count", "mean_probability", "example_domains", "example_ips"} <= set(
            groups[0]
        )
    assert sum(g["count"] for g in r["groups"]["country"]) == r["candidates"]
    probs = [row["probability"] for row in r["top"]]
    assert probs == sorted(probs, reverse=True) and min(probs) >= r["threshold"]
    assert all(row["page"] for row in r["top"])


def test_report_markdown(run):
    md = (run / "candidates" / report.REPORT_MD).read_text()
    assert (
        md.index("Which wins") < md.index("What newly looks censored") < md.index("### By country")
    )
    for key in report.GROUP_KEYS:
        assert f"### By {key}" in md


def test_score_against_truth(run):
    files = sorted((run / "raw").glob("*.truth.jsonl"))
    s = truth.score_against_truth(run / "candidates", files, threshold=0.5)
    assert s["matched"] == s["rows"] > 0 and s["unmatched"] == 0
    clf = s["classifier"]
    assert clf["roc_auc"] > 0.9  # evaluate latents are separated by ground truth
    assert clf["at_threshold"]["recall"] > 0.8 and clf["at_threshold"]["fpr"] < 0.2
    assert clf["at_fpr"]["fpr"] <= 0.02
    unfingerprinted = set(synth.FAMILIES) - synth.DEFAULT_FINGERPRINTED
    assert set(clf["at_threshold"]["recall_by_unfingerprinted_family"]) <= unfingerprinted
    assert clf["at_threshold"]["recall_by_mechanism"]
    assert s["baseline"] is not None and "at_fpr" in s["baseline"]


def test_threshold_for_fpr():
    neg = np.linspace(0, 1, 101)
    t = calibration.threshold_for_fpr(neg, 0.02)
    assert (neg >= t).mean() <= 0.02 and (neg >= np.nextafter(t, -1) - 0.011).mean() > 0.02


def test_page_signature_and_stem():
    text = "200 OK\nServer: gw\n<html><head><title>Access  Denied</title></head>"
    assert page_signature(text) == "200 OK | title: Access Denied"
    assert page_signature("read tcp [ADDR]->[ADDR]: i/o timeout").startswith("read tcp")
    assert page_signature("") == "(nothing received)"
    assert (
        truth.archive_stem("CP_Quack-http-2021-10-11-01-01-01.tar.gz")
        == "CP_Quack-http-2021-10-11-01-01-01"
    )
