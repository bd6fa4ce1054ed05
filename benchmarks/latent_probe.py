"""Diagnostic: can a linear probe on the demo's latents separate unfingerprinted blockpages?

Fits a logistic regression on the standardised ``--filtered`` latents of a demo folder, scores
the ``--evaluate`` latents, and picks its threshold on the ground truth at 2% false-positive rate
(an oracle no real run has), then prints recall per unfingerprinted vendor. Low recall even with
the oracle means the limit is the latent representation, not the classifier head: with the
seed's final-state latent (``quackae demo --latent final``) it is 3-11%; with the mean over text
states (the demo's default, ``--latent mean``) it is above 90%.

    .venv/bin/python benchmarks/latent_probe.py [demo_out]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from quackae.synth import (
    VENDORS,  # benchmark beside the pipeline: it may read the generator
)
from quackae.synth.truth import join_truth, load_truth


def latents(directory: Path):
    """Table and float32 matrix of an embeddings directory."""
    table = pq.read_table(sorted((directory / "shards").glob("*.parquet")))
    return table, np.stack(table["embedding"].to_numpy(zero_copy_only=False)).astype(np.float32)


def main() -> None:
    run = Path(sys.argv[1] if len(sys.argv) > 1 else "demo_out")
    train, x_train = latents(run / "encoded_filtered")
    scored, x_scored = latents(run / "encoded_evaluate")
    y = (train["censored"].to_numpy() == 1).astype(int)
    meta = json.loads((run / "encoded_filtered" / "embeddings.json").read_text())
    print(f"latent: {meta.get('latent', 'final')}")
    scaler = StandardScaler().fit(x_train)
    truth = join_truth(
        scored.select(["source", "line", "try_index", "row_id"]),
        load_truth(sorted((run / "raw").glob("*.truth.jsonl"))),
    ).to_pandas()
    negative = ~truth["censored"].to_numpy().astype(bool)
    for c in (0.01, 0.1, 1.0):
        probe = LogisticRegression(C=c, max_iter=2000).fit(scaler.transform(x_train), y)
        by_row = dict(
            zip(
                scored["row_id"].to_pylist(),
                probe.predict_proba(scaler.transform(x_scored))[:, 1],
                strict=True,
            )
        )
        prob = truth["row_id"].map(by_row).to_numpy()
        threshold = np.quantile(prob[negative], 0.98)  # oracle: 2% FPR on the truth
        recalls = []
        for vendor in (v for v, fingerprinted in VENDORS.items() if not fingerprinted):
            mask = (truth["vendor"] == vendor).to_numpy() & (
                truth["mechanism"] == "blockpage"
            ).to_numpy()
            recalls.append(f"{vendor} {(prob[mask] > threshold).mean():.3f}")
        print(f"C={c}: recall at oracle 2% FPR: {', '.join(recalls)}")


if __name__ == "__main__":
    main()
