"""Size and speed of the synthetic world: families, languages, benign kinds, generation rate.

Usage: ``python benchmarks/synth_world.py [--measurements N] [--artefacts N]``. Prints the world's
make-up and, per format and scan, measurements/s of ``synth.write_archive`` (best of two runs) and
how often each kind of try appears, so the numbers in the README can be checked. ``--artefacts N``
prints only the artefact check: per header line, charset spelling and HTML skeleton token, its rate
in N blockpages and N benign pages (generic ones marked G must match; a detector could otherwise
key on the generator's habits instead of a page's content).
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import time
from pathlib import Path

from quackae import synth


def artefacts(n: int, top: int) -> None:
    """Rates of header lines and skeleton tokens, blockpages vs benign pages, largest gap first."""
    pages = synth.sample_pages(n, seed=0)
    scopes = (
        ("all pages", ""),
        ("pages with <head>", r"(?i)<head>"),
        ("HTML pages", r"Content-Type: text/html"),
    )
    for title, within in scopes:
        rates = synth.artefact_rates(pages, within)
        print(
            f"\n{title}: {'blockpage':>9} {'benign':>7} {'diff':>7}  feature (G: generic, must "
            "match)"
        )
        for feat, (a, b) in sorted(rates.items(), key=lambda kv: -abs(kv[1][0] - kv[1][1]))[:top]:
            mark = "G" if feat in synth.GENERIC_FEATURES else " "
            print(f"{'':<{len(title) + 1}} {a:>9.3f} {b:>7.3f} {a - b:>+7.3f}  {mark} {feat!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--measurements", type=int, default=10_000, help="measurements per archive")
    parser.add_argument(
        "--artefacts", type=int, default=0, help="print the artefact check over N pages per group"
    )
    parser.add_argument(
        "--top", type=int, default=40, help="artefact rows printed (largest difference first)"
    )
    args = parser.parse_args()
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    if args.artefacts:
        artefacts(args.artefacts, args.top)
        return
    fams = synth.FAMILIES.values()
    world = synth.build_world()
    print(
        f"blockpage families: {len(synth.FAMILIES)} ({len(synth.DEFAULT_FINGERPRINTED)} "
        "fingerprinted by default); "
        f"languages {len({f.language for f in fams})}, scripts {len({f.script for f in fams})}, "
        f"layouts {len({f.layout for f in fams})}"
    )
    print(
        "mechanisms: "
        + ", ".join(f"{m} {sum(f.mechanism == m for f in fams)}" for m in synth.FAMILY_MECHANISMS)
    )
    print(
        f"benign kinds: {len(synth.BENIGN_KINDS)} (host {len(synth.HOST_KINDS)}, domain "
        f"{len(synth.DOMAIN_KINDS)}, noise)"
    )
    print(
        f"countries {len(synth.COUNTRIES)}, vantage points {len(world.vantages)}, domains "
        f"{len(world.domains)}"
    )
    print(f"{'format':<7}{'scan':<9}{'measurements/s':>15}{'tries':>8}  mechanisms")
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in synth.FORMATS:
            for scan in synth.SCANS:
                best = float("inf")
                for run in range(2):
                    t = time.perf_counter()
                    result = synth.write_archive(
                        Path(tmp) / f"{fmt}{scan}{run}",
                        args.measurements,
                        seed=1,
                        fmt=fmt,
                        scan=scan,
                    )  # type: ignore[arg-type]
                    best = min(best, time.perf_counter() - t)
                counts = collections.Counter(
                    json.loads(line)["mechanism"]
                    for line in result.truth.read_text(encoding="utf-8").splitlines()
                )
                mix = ", ".join(f"{k} {v / result.tries:.2f}" for k, v in counts.most_common())
                print(
                    f"{fmt:<7}{scan:<9}{args.measurements / best:>15,.0f}{result.tries:>8}  {mix}"
                )


if __name__ == "__main__":
    main()
