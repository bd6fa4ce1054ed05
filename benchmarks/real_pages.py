"""Print what the real-page corpus holds and what signature sets make of it (bounded, seconds).

    .venv/bin/python benchmarks/real_pages.py [--signatures DIR ...]

For each signature directory (default: Censored Planet's set in ../shared/reference/signatures
when present, and quackae's own default set) it prints how many censor and benign pages get
label 1 (blockpage), -1 (false positive) or 0 (no hit), and which censor pages a blockpage
signature matches but the false-positive-first rule clears.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from quackae.ingest.signatures import Matcher, load_signatures
from quackae.synth import real_pages as rp

REFERENCE_SIGNATURES = (
    Path(__file__).resolve().parents[1] / ".." / "shared" / "reference" / "signatures"
)


def parse_args() -> argparse.Namespace:
    """The signature directories to judge the corpus with."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--signatures",
        action="append",
        type=Path,
        default=None,
        help="a directory with blockpage_signatures.json and false_positive_signatures.json; "
        "repeatable (default: ../shared/reference/signatures if present, and the default set)",
    )
    return parser.parse_args()


def report(name: str, matcher: Matcher, pages: list[rp.RealPage]) -> None:
    """One signature set's labels on the corpus, and the censor pages its FP rule masks."""
    labels = rp.signature_labels(pages, matcher)
    counts = rp.coverage(labels)
    sizes = f"{len(matcher.blockpages)} blockpage, {len(matcher.false_positives)} FP signatures"
    print(f"\n{name}: {sizes}")
    for kind in rp.KINDS:
        total = sum(n for (k, _), n in counts.items() if k == kind)
        cells = ", ".join(f"label {v:+d}: {counts[(kind, v)]}" for v in (1, -1, 0))
        print(f"  {kind:6} pages {total:3d}  {cells}")
    blockpages_only = Matcher([], matcher.blockpages)
    masked = []
    for page, value, fingerprint in labels:
        hit, sig = blockpages_only.match(rp.received_text(page))
        if page.censored and value == -1 and hit == 1:
            masked.append(page.id)
            print(f"  masked: {page.id} matches {sig} but false positive {fingerprint} wins")
    satellite = Counter(fp.endswith("_satellite") for p, v, fp in labels if p.censored and v == 1)
    caught = sum(
        1 for p, _, _ in labels if p.censored and blockpages_only.match(rp.received_text(p))[0]
    )
    print(
        f"  censor pages a blockpage signature matches: {caught}; after FP-first: "
        f"{counts[('censor', 1)]} ({len(masked)} masked); {satellite[True]} of those hits come "
        "from signatures named *_satellite, made from Satellite pages like these"
    )


def main() -> None:
    """Counts, then one report per signature set."""
    args = parse_args()
    pages = rp.load_real_pages()
    for key, value in rp.corpus_counts(pages).items():
        print(f"{key:24} {value}")
    dirs = args.signatures
    if dirs is None:
        dirs = [REFERENCE_SIGNATURES] if REFERENCE_SIGNATURES.is_dir() else []
        report("quackae default set", load_signatures(), pages)
    for directory in dirs:
        report(str(directory.resolve()), load_signatures(directory), pages)


if __name__ == "__main__":
    main()
