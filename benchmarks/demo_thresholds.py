"""Diagnostic: what each threshold rule gives on a demo folder, scored against the ground truth.

For the latent classifier and the baseline, reads the thresholds ``classify train`` derived
(``threshold_rule`` in ``classifier/metrics.json``: the 0.5 floor, the validation rule, the
novel-kind rule) and prints recall per unfingerprinted vendor, overall recall and the
false-positive rate of each on the undetermined tries, so the effect of the calibration can be
rerun rather than taken on trust.

    .venv/bin/python benchmarks/demo_thresholds.py [demo_out]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from quackae.synth.truth import score_against_truth


def rule_thresholds(rule: dict) -> dict[str, float]:
    """Threshold of each stage of a ``threshold_rule``: floor, validation, novel-kind (final)."""
    out = {"floor 0.5": rule["floor"]}
    if "validation" in rule:
        out["validation"] = max(rule["floor"], rule["validation"])
    if "novel_kind" in rule:
        out["novel-kind"] = rule["threshold"]
    return out


def main() -> None:
    run = Path(sys.argv[1] if len(sys.argv) > 1 else "demo_out")
    metrics = json.loads((run / "classifier" / "metrics.json").read_text())
    truth = sorted((run / "raw").glob("*.truth.jsonl"))
    rules = {
        "classifier": metrics["threshold_rule"],
        "baseline": metrics["baseline"]["threshold_rule"],
    }
    print(
        f"{'model':<11} {'rule':<11} {'threshold':>9}  {'vendors (recall)':<44} {'recall':>6} "
        f"{'FPR':>6}"
    )
    for model, rule in rules.items():
        for name, threshold in rule_thresholds(rule).items():
            kw = (
                {"threshold": threshold}
                if model == "classifier"
                else {"baseline_threshold": threshold}
            )
            score = score_against_truth(run / "candidates", truth, **kw)[model]["at_threshold"]
            vendors = " ".join(
                f"{v} {r:.3f}" for v, r in score["recall_by_unfingerprinted_family"].items()
            )
            print(
                f"{model:<11} {name:<11} {threshold:>9.4f}  {vendors:<44} "
                f"{score['recall']:>6.3f} {score['fpr']:>6.3f}"
            )


if __name__ == "__main__":
    main()
