"""Seconds of every ``quackae ... --help``, in fresh processes, beside importing Lightning.

Usage: ``python benchmarks/help_speed.py [--rounds R]``. Each command's ``--help`` runs R times
(commands interleaved); the median wall time and the median CPU time (user + system of the
child) are printed, and, as the peer measured in the same run, ``python -c "import
lightning.pytorch"`` (torch included), which is what a ``--help`` importing the trainer pays.
CPU time is the fair figure on a shared machine: wall time also counts waiting for a core.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time

COMMANDS = [
    [],
    ["synth"],
    ["flatten"],
    ["inspect"],
    ["train"],
    ["encode"],
    ["classify", "train"],
    ["classify", "predict"],
    ["detect", "train"],
    ["detect", "predict"],
    ["evaluate"],
    ["plot"],
    ["demo"],
]
PEER = ["-c", "import lightning.pytorch"]


def _run(args: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of one fresh ``python ARGS``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run([sys.executable, *args], capture_output=True, check=True, timeout=300)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5, help="runs per command (default 5)")
    a = p.parse_args()
    runs = {" ".join(c) or "(top)": ["-m", "quackae", *c, "--help"] for c in COMMANDS}
    runs["import lightning.pytorch (peer)"] = PEER
    wall: dict[str, list[float]] = {k: [] for k in runs}
    cpu: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(a.rounds):
        for name, args in runs.items():
            w, c = _run(args)
            wall[name].append(w)
            cpu[name].append(c)
    peer = statistics.median(cpu["import lightning.pytorch (peer)"])
    print(f"median of {a.rounds} fresh processes per command")
    print(f"{'quackae ... --help':<32} {'wall s':>7} {'CPU s':>7} {'CPU vs peer':>12}")
    for name in runs:
        c = statistics.median(cpu[name])
        print(f"{name:<32} {statistics.median(wall[name]):>7.2f} {c:>7.2f} {c / peer:>11.2f}x")


if __name__ == "__main__":
    main()
