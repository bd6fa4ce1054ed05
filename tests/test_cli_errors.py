"""A new user's mistakes, each through the real command line: exit 2, one line, no traceback.

Every case fails before any training; the inputs are small files, the session's small dataset
(tests/conftest.py) and, for `detect predict`, a detector fitted here on that dataset's labels
and seeded random latents. Each case names the flag or file and the remedy in its one line, and
leaves nothing behind where it was refused.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import run_cli
from quackae.detect.detector import Detector
from quackae.detect.features import row_features
from quackae.io.folders import MARKER


@dataclass
class Case:
    """One mistake: the command, what its one line must say, and what must not appear."""

    argv: list[str]
    needles: tuple[str, ...]
    module: str = "quackae"
    absent: list[Path] = field(default_factory=list)  # paths the refused run must not create
    untouched: dict[Path, str] = field(default_factory=dict)  # user files that must stay


@pytest.fixture(scope="module")
def world(tmp_path_factory, small_dataset: Path, archive_v2_http, synth_signatures) -> dict:
    """The files the cases point at, made once."""
    d = tmp_path_factory.mktemp("mistakes")
    (d / "empty").mkdir()
    (d / "note.txt").write_text("not a measurement\n")
    (d / "afile").write_text("a file, not a folder\n")
    mine = d / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("the user's")
    # an archive's folder: signatures one level down, as `quackae synth` lays them out
    raw = d / "raw"
    raw.mkdir()
    shutil.copy(archive_v2_http.archive, raw)
    shutil.copytree(synth_signatures, raw / "signatures")
    # a dataset whose tokenizer learnt from five tries (as an older quackae allowed)
    poisoned = d / "poisoned"
    shutil.copytree(small_dataset, poisoned)
    manifest = json.loads((poisoned / "manifest.json").read_text())
    manifest["tokenizer_texts"] = 5
    (poisoned / "manifest.json").write_text(json.dumps(manifest))
    # a checkpoint of the latent classifier's shape, given where the autoencoder's belongs
    classifier = d / "classifier.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"input_dim": 8}}, classifier)
    # a detector fitted with a latent score, so predicting needs --embeddings
    rf = row_features(small_dataset)
    latents = np.random.default_rng(0).normal(size=(len(rf.row_ids), 8))
    det = Detector(seed=0).fit(rf, rf.column("censored").astype(np.int64), latents)
    det.save(d / "detector")
    (d / "detector" / MARKER).write_text(json.dumps({"written_by": "quackae detect train"}))
    return {"d": d, "ds": small_dataset, "archive": archive_v2_http.archive}


def cases(w: dict) -> dict[str, Case]:
    d, ds, archive = w["d"], w["ds"], str(w["archive"])
    mine = {d / "mine" / "thesis.tex": "the user's"}
    new = d / "never"  # each case gets its own (below): cases run two at a time
    named = {
        "flatten --signatures without signature files": Case(
            ["flatten", "--source", archive, "--storage_path", new, "--signatures", d / "empty"],
            ("--signatures", "blockpage_signatures.json"),
            absent=[new],
        ),
        "flatten --signatures the archives' folder": Case(
            ["flatten", "--source", archive, "--storage_path", new, "--signatures", d / "raw"],
            ("--signatures", f"pass --signatures {d / 'raw' / 'signatures'}"),
            absent=[new],
        ),
        "flatten an empty folder": Case(
            ["flatten", "--source", d / "empty", "--storage_path", new],
            ("no Hyperquack files", "--source"),
            absent=[new],
        ),
        "flatten a text file": Case(
            ["flatten", "--source", d / "note.txt", "--storage_path", new],
            ("0 readable tries", "at least 100", "--tokenizer"),
            absent=[new],
        ),
        "flatten --storage_path a file": Case(
            ["flatten", "--source", archive, "--storage_path", d / "afile"],
            ("is a file",),
        ),
        "flatten into the user's folder": Case(
            ["flatten", "--source", archive, "--storage_path", d / "mine"],
            ("not empty", "thesis.tex"),
            untouched=mine,
        ),
        "flatten --tokenizer a folder": Case(
            ["flatten", "--source", archive, "--storage_path", new, "--tokenizer", d / "empty"],
            ("--tokenizer", "tokenizer.json"),
            absent=[new],
        ),
        "flatten appends to a dataset with a starved tokenizer": Case(
            ["flatten", "--source", archive, "--storage_path", d / "poisoned", "--quiet"]
            + ["--signatures", d / "raw" / "signatures", "--max_tokens", "128"],
            ("trained on only 5 tries", "new --storage_path"),
        ),
        "a misspelt flag": Case(
            ["flatten", "--source", archive, "--storage_pth", new],
            ("did you mean --storage_path?",),
            absent=[new],
        ),
        "train --storage_path a file": Case(
            ["train", "--data_dir", ds, "--storage_path", d / "afile", "--ray_nodes", "0"],
            ("--storage_path", "is a file"),
        ),
        "train into the user's folder": Case(
            ["train", "--data_dir", ds, "--storage_path", d / "mine", "--ray_nodes", "0"],
            ("--storage_path", "not empty", "thesis.tex"),
            untouched=mine,
        ),
        "train --data_dir a file": Case(
            ["train", "--data_dir", d / "note.txt", "--storage_path", new, "--ray_nodes", "0"],
            ("--data_dir", "is a file"),
            absent=[new],
        ),
        "ae_processor into the user's folder": Case(
            ["--data_dir", ds, "--storage_path", d / "mine", "--ray_nodes", "0"],
            ("ae_processor: error:", "not empty"),
            module="quackae.ae_processor",
            untouched=mine,
        ),
        "encode --checkpoint_path a text file": Case(
            ["encode", "--data_dir", ds, "--checkpoint_path", d / "note.txt"]
            + ["--storage_path", new, "--ray_nodes", "0"],
            ("--checkpoint_path", "not a PyTorch checkpoint"),
            absent=[new],
        ),
        "encode --checkpoint_path a folder": Case(
            ["encode", "--data_dir", ds, "--checkpoint_path", d / "empty"]
            + ["--storage_path", new, "--ray_nodes", "0"],
            ("--checkpoint_path", "is a folder"),
            absent=[new],
        ),
        "encode with a classifier's checkpoint": Case(
            ["encode", "--data_dir", ds, "--checkpoint_path", d / "classifier.ckpt"]
            + ["--storage_path", new, "--ray_nodes", "0"],
            ("latent classifier's checkpoint", "quackae train"),
            absent=[new],
        ),
        "detect train into the user's folder": Case(
            ["detect", "train", "--data_dir", ds, "--storage_path", d / "mine"],
            ("quackae detect train: error:", "not empty"),
            untouched=mine,
        ),
        "detect train --data_dir a file": Case(
            ["detect", "train", "--data_dir", d / "note.txt", "--storage_path", new],
            ("--data_dir", "is a file"),
            absent=[new],
        ),
        "detect predict without the detector's --embeddings": Case(
            ["detect", "predict", "--data_dir", ds, "--checkpoint_path", d / "detector"]
            + ["--storage_path", d / "pred", "--quiet"],
            ("--embeddings", "quackae encode"),
            absent=[d / "pred"],
        ),
        "detect predict --storage_path a file": Case(
            ["detect", "predict", "--data_dir", ds, "--checkpoint_path", d / "detector"]
            + ["--storage_path", d / "afile"],
            ("--storage_path", "is a file"),
        ),
        "detect predict --checkpoint_path not a detector": Case(
            ["detect", "predict", "--data_dir", ds, "--checkpoint_path", d / "empty"]
            + ["--storage_path", new],
            ("--checkpoint_path", "detector.json"),
            absent=[new],
        ),
        "classify train into the user's folder": Case(
            ["classify", "train", "--embeddings", d / "empty", "--storage_path", d / "mine"],
            ("--storage_path", "not empty"),
            untouched=mine,
        ),
        "classify train --embeddings a file": Case(
            ["classify", "train", "--embeddings", d / "note.txt", "--storage_path", new],
            ("--embeddings", "is a file"),
            absent=[new],
        ),
        "classify predict --checkpoint_path a folder": Case(
            ["classify", "predict", "--embeddings", d / "empty"]
            + ["--checkpoint_path", d / "empty", "--storage_path", new],
            ("--checkpoint_path", "is a folder"),
            absent=[new],
        ),
        "classify predict into the user's folder": Case(
            ["classify", "predict", "--embeddings", d / "empty"]
            + ["--checkpoint_path", d / "classifier.ckpt", "--storage_path", d / "mine"],
            ("--storage_path", "not empty"),
            untouched=mine,
        ),
        "synth --measurements -5": Case(
            ["synth", "--storage_path", new, "--measurements", "-5"],
            ("--measurements -5", "1 or more"),
            absent=[new],
        ),
        "synth --storage_path a file": Case(
            ["synth", "--storage_path", d / "afile", "--measurements", "10"],
            ("--storage_path", "is a file"),
        ),
        "synth into the user's folder": Case(
            ["synth", "--storage_path", d / "mine", "--measurements", "10"],
            ("--storage_path", "not empty"),
            untouched=mine,
        ),
        "evaluate into the user's folder": Case(
            ["evaluate", "--storage_path", d / "mine", "--measurements", "200", "--folds", "2"],
            ("--storage_path", "not empty"),
            untouched=mine,
        ),
        "report into the user's folder": Case(
            ["report", "--data_dir", ds, "--detections", d / "empty", "--storage_path", d / "mine"],
            ("--storage_path", "not empty"),
            untouched=mine,
        ),
        "export into the user's folder": Case(
            ["export", "--data_dir", ds, "--detections", d / "empty", "--format", "csv"]
            + ["--storage_path", d / "mine"],
            ("--storage_path", "not empty"),
            untouched=mine,
        ),
        "demo --storage_path a file": Case(
            ["demo", "--storage_path", d / "afile"],
            ("--storage_path", "is a file"),
        ),
        "inspect a file": Case(["inspect", d / "note.txt"], ("is a file", "dataset")),
        "plot a file": Case(["plot", d / "note.txt"], ("is a file", "run folder")),
    }
    for i, case in enumerate(named.values()):
        case.argv = [d / f"never{i}" if a == new else a for a in case.argv]
        case.absent = [d / f"never{i}" if a == new else a for a in case.absent]
    return named


CASE_NAMES = list(cases({"d": Path("."), "ds": Path("."), "archive": Path(".")}))


@pytest.fixture(scope="module")
def results(world: dict) -> dict[str, subprocess.CompletedProcess]:
    """Every case run once, two at a time (each is a process start and one import chain)."""
    todo = cases(world)

    def run(name: str) -> subprocess.CompletedProcess:
        return run_cli(*todo[name].argv, module=todo[name].module, timeout=300)

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(todo, pool.map(run, todo), strict=True))


@pytest.mark.parametrize("name", CASE_NAMES)
def test_a_mistake_is_one_line(name: str, world: dict, results: dict) -> None:
    case, result = cases(world)[name], results[name]
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, (result.stdout + result.stderr)[-3000:]
    assert "Traceback" not in result.stderr and len(lines) == 1, result.stderr[-3000:]
    for needle in case.needles:
        assert needle in lines[0], lines[0]
    for path in case.absent:
        assert not path.exists(), f"{path} was created by a refused run"
    for path, text in case.untouched.items():
        assert path.read_text() == text and len(list(path.parent.iterdir())) == 1
