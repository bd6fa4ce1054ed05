"""Why do proposed signatures miss held-out pages? Per family, on each seed's DEVELOPMENT fold only.

    python benchmarks/coverage_diagnosis.py [--seeds 0] [--measurements 6000]

For every seed it builds the evaluation's world (``quackae.synth.evaluate.make_world``), holds
out the development fold (group 0 of ``fold_plan``; never a reported fold), fits the detector
with the setting the evaluation would choose there, proposes signatures from the candidates and
prints, per held-out blockpage family: its pages, how many a proposal covers, and why the others
are not covered (the detector did not flag it, no page, cluster too small, no common line,
every common line avoided, pattern failed verification, in a proposal's cluster but not matched).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from quackae.detect import proposals
from quackae.detect.detector import Detector
from quackae.ingest.signatures import Matcher, Signature
from quackae.synth import evaluate


def dev_setting(world: evaluate.World, folds: int) -> float:
    """The combiner's C the evaluation chooses on the development fold."""
    fams, kinds = evaluate.fold_plan(folds, world.seed)[0]
    dev = {
        c: evaluate.score_fold(world, fams, kinds, c, evaluate.TARGET_FPRS)
        for c in evaluate.COMBINER_CS
    }
    options = [(c, t, r) for c, by_t in dev.items() for t, r in by_t.items()]
    ok = [o for o in options if (o[2]["fpr"] or 0) <= evaluate.DEV_MAX_FPR] or options
    return max(ok, key=lambda o: ((o[2]["recall"] or 0), -(o[2]["fpr"] or 0), -o[1], o[0]))[0]


def diagnose(world: evaluate.World, folds: int, verbose: int) -> Counter:
    """Print the development fold's coverage per family and the reason for every uncovered page."""
    fams, kinds = evaluate.fold_plan(folds, world.seed)[0]
    c = dev_setting(world, folds)
    labels = evaluate.fold_labels(world, fams, kinds)
    page, _ = evaluate.held_out_masks(world, fams, kinds)
    rf = world.rf
    det = Detector(seed=world.seed, c_combiner=c).fit(rf, labels, world.latents)
    _, candidate, _ = det.predict(rf, world.latents)
    cand = candidate & (labels == 0)
    rejected: list[tuple[str, np.ndarray, str]] = []
    found = proposals.propose(rf, cand, labels == -1, world.seed, rejected)
    matcher = Matcher([], [Signature(p.fingerprint, p.pattern) for p in found])
    rows = np.flatnonzero(page)
    texts = rf.tokens.texts(rf.row_ids[rows])
    covered = np.array([matcher.match(t)[0] == 1 for t in texts], bool)
    reason = np.full(len(rf.template), "", dtype=object)
    for p in found:
        reason[p.rows] = f"in a proposal's cluster, pattern misses it ({p.fingerprint})"
    for template, rs, why in rejected:
        reason[rs] = f"{why} [{template[:60]}]"
    reason[~rf.has_page] = "no page (no status line)"
    reason[~cand] = "the detector did not flag it"
    print(
        f"seed {world.seed} development fold (C={c}): families {sorted(fams)}; {len(found)} "
        "proposals; "
        f"covered {covered.sum()} of {len(rows)} held-out pages ({covered.mean():.3f})"
    )
    totals: Counter = Counter()
    fam = world.family[rows]
    for f in sorted(set(fam.tolist())):
        m = fam == f
        why = Counter(reason[rows[m & ~covered]].tolist())
        for k, v in why.items():
            totals[k.split(" [")[0].split(" (")[0]] += v
        print(
            f"  {f:<28} pages {m.sum():>4}  covered {covered[m].sum():>4}  "
            + "; ".join(f"{n} {k}" for k, n in why.most_common())
        )
        if verbose:
            for i in np.flatnonzero(m & ~covered)[:verbose]:
                print("      uncovered:", texts[i][-300:].encode("unicode_escape").decode("ascii"))
    print("  uncovered pages by reason:", dict(totals.most_common()))
    return totals


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--measurements", type=int, default=6000)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument(
        "--verbose",
        type=int,
        default=0,
        help="print the tail of this many uncovered pages per family",
    )
    args = p.parse_args()
    print("command: python " + " ".join(sys.argv))
    totals: Counter = Counter()
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            started = time.perf_counter()
            world = evaluate.make_world(Path(tmp) / f"seed{seed}", seed, args.measurements)
            print(f"seed {seed}: world built in {time.perf_counter() - started:.0f}s", flush=True)
            totals += diagnose(world, args.folds, args.verbose)
    print(
        "all seeds, development folds only, uncovered pages by reason:", dict(totals.most_common())
    )


if __name__ == "__main__":
    main()
