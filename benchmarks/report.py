"""`quackae report` at scale: build seconds and page sizes on 1 million rows, and load times.

The 1M-row dataset is written directly in the dataset format (``store.write_shard`` and
``store.commit``), without running the autoencoder: a small generated world is flattened and
scored by ``detect train``/``predict`` once, then its rows are tiled to ``--rows`` with fresh
row ids, 5,000 vantage points, 2,000 domains and 30 days (one archive a day), keeping each seed
row's tokens, label, template and detector output; ``predictions.parquet`` is tiled the same way,
so the shares of candidates, labels and proposal rows are the seed run's. Then it prints:

- the seconds of ``build_report`` (DuckDB queries + page writing), best of ``--repeats``;
- the number of pages, their total size and the largest pages;
- the seconds of ``quackae export`` to Parquet on the same rows;
- with a Chromium here, the time each of the largest pages takes to load (navigation start to
  the load event, which follows the report's script that sets up its tables).

Every number is seeded; the data is kept under ``benchmarks/out/report`` for a rerun.

    .venv/bin/python benchmarks/report.py [--rows 1000000] [--repeats 1]
    .venv/bin/python benchmarks/report.py --shoot DEMO_OUT/report --to docs   # the screenshots
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from quackae import synth
from quackae.dataset import store
from quackae.detect import pipeline
from quackae.ingest.flatten import Options, flatten
from quackae.report import browser, site
from quackae.report.export import export

OUT = Path(__file__).resolve().parent / "out" / "report"
SHARD_ROWS = 50_000
DAYS = 30
VANTAGE_POINTS = 5_000
DOMAINS = 2_000
START = 1_633_910_400  # 2021-10-11 00:00 UTC


def seed_world(root: Path) -> Path:
    """A small generated world, flattened and scored: the rows the big dataset is tiled from."""
    raw = root / "raw"
    archives = [
        synth.write_archive(raw, 1500, seed=1, fmt="v2", scan="http"),
        synth.write_archive(raw, 500, seed=2, fmt="v1", scan="https"),
        synth.write_archive(raw, 400, seed=3, fmt="v2", scan="echo"),
    ]
    dataset = root / "dataset"
    flatten(
        [a.archive for a in archives],
        dataset,
        Options(max_tokens=256, signatures=synth.write_signatures(raw / "signatures")),
        progress=False,
        vocab_size=2048,
    )
    pipeline.train(dataset, root / "detector")
    pipeline.predict(dataset, root / "detector", root / "detections")
    return root


def tile(n: int, seed_rows: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Which seed row each big row copies, and its new vantage point, domain, day and source."""
    pick = rng.integers(0, seed_rows, n)
    day = np.sort(rng.integers(0, DAYS, n))  # one archive per day, rows in time order
    return {
        "pick": pick,
        "vp": rng.integers(0, VANTAGE_POINTS, n),
        "domain": rng.integers(0, DOMAINS, n),
        "day": day,
        "second": rng.integers(0, 86_400, n),
    }


def big_columns(seed: pa.Table, plan: dict[str, np.ndarray], lo: int, hi: int) -> dict[str, list]:
    """Dataset columns of big rows ``lo:hi``: seed rows with new identity, place and time."""
    take = pa.array(plan["pick"][lo:hi])
    rows = seed.take(take)
    day, vp, dom = plan["day"][lo:hi], plan["vp"][lo:hi], plan["domain"][lo:hi]
    timestamp = START + day * 86_400 + plan["second"][lo:hi]
    sources = [f"CP_Quack-http-2021-10-{11 + d:02d}-01-01-01.tar.gz" for d in range(DAYS)]
    source = [sources[d] for d in day.tolist()]
    lines = np.arange(lo, hi, dtype=np.int64) + 1
    ids = [store.row_id(s, int(line), 1) for s, line in zip(source, lines.tolist(), strict=True)]
    country = rows.column("country_code").to_numpy(zero_copy_only=False)
    ip = [f"10.{v // 256}.{v % 256}.{(v * 7) % 250 + 1}" for v in vp.tolist()]
    domains = [
        f"site{d}.{c.lower() or 'xx'}.example"
        for d, c in zip(dom.tolist(), country.tolist(), strict=True)
    ]
    columns = {name: rows.column(name) for name in store.SCHEMA.names}
    columns.update(
        row_id=pa.array(ids, pa.int64()),
        source=pa.array(source),
        line=pa.array(lines),
        try_index=pa.array(np.ones(hi - lo, np.int16)),
        ip=pa.array(ip),
        domain=pa.array(domains),
        timestamp=pa.array(timestamp.astype(np.int64)),
        end_time=pa.array((timestamp + 1).astype(np.int64)),
    )
    columns["censored"] = rows.column("censored").to_pylist()
    columns["length"] = rows.column("length").to_pylist()
    return columns


def make_big(seed_root: Path, root: Path, n: int) -> None:
    """Write the big dataset and its predictions.parquet (tiles of the seed's rows)."""
    seed_ds = store.Dataset(seed_root / "dataset")
    seed = seed_ds.read_columns(list(store.SCHEMA.names))
    pred = pq.read_table(seed_root / "detections" / pipeline.PREDICTIONS_FILE)
    order = {int(i): k for k, i in enumerate(pred.column("row_id").to_pylist())}
    pred = pred.take(pa.array([order[int(i)] for i in seed.column("row_id").to_pylist()]))
    plan = tile(n, seed.num_rows, np.random.default_rng(0))
    dataset = root / "dataset"
    shutil.rmtree(root, ignore_errors=True)
    dataset.mkdir(parents=True)
    shutil.copy(seed_ds.root / store.TOKENIZER, dataset / store.TOKENIZER)
    m = seed_ds.manifest
    store.write_manifest(
        dataset, store.new_manifest(m["layout"], m["tokenizer_sha256"], m["max_tokens"])
    )
    entries, tables = [], []
    for k, lo in enumerate(range(0, n, SHARD_ROWS)):
        hi = min(lo + SHARD_ROWS, n)
        columns = big_columns(seed, plan, lo, hi)
        entries.append(store.write_shard(dataset, f"part-{k:016x}-{0:05d}", columns, []))
        scored = pred.take(pa.array(plan["pick"][lo:hi]))
        for name in ("row_id", "source", "line", "try_index", "ip", "domain", "timestamp"):
            scored = scored.set_column(scored.schema.get_field_index(name), name, columns[name])
        tables.append(scored)
    with store.dataset_lock(dataset):
        store.commit(dataset, entries)
    detections = root / "detections"
    detections.mkdir()
    pq.write_table(pa.concat_tables(tables), detections / pipeline.PREDICTIONS_FILE)
    for name in (pipeline.SUMMARY_FILE, "proposed_signatures.json"):
        shutil.copy(seed_root / "detections" / name, detections / name)


def load_times(pages: list[Path]) -> list[tuple[str, float]]:
    """Seconds from navigation start to the load event of each page, in headless Chromium."""
    out = []
    with browser.chromium() as d:
        browser.settle(d)
        for page in pages:
            d.get(browser.file_url(page))
            ms = d.execute_script(
                "var e=performance.getEntriesByType('navigation')[0];return e.loadEventEnd;"
            )
            out.append((str(page), float(ms) / 1000))
    return out


def shoot(report: Path, to: Path) -> None:
    """The documentation's screenshots: the overview, the top country and its top page cluster."""
    from selenium.webdriver.common.by import By

    to.mkdir(parents=True, exist_ok=True)
    with browser.chromium(1200, 860) as d:
        browser.settle(d)
        d.get(browser.file_url(report / "index.html"))
        d.save_screenshot(str(to / "report_overview.png"))
        country = d.find_element(By.CSS_SELECTOR, "#countries-table tbody a").get_attribute("href")
        d.get(country)
        d.save_screenshot(str(to / "report_country.png"))
        cluster = d.find_element(By.CSS_SELECTOR, "#country-clusters tbody a").get_attribute("href")
        d.get(cluster)
        d.execute_script("document.getElementById('page').scrollIntoView()")
        d.save_screenshot(str(to / "report_cluster.png"))
    for name in ("report_overview", "report_country", "report_cluster"):
        path = to / f"{name}.png"
        print(f"screenshot: {path} ({path.stat().st_size / 1e3:.0f} kB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows (default %(default)s)")
    parser.add_argument("--repeats", type=int, default=1, help="report builds (default 1)")
    parser.add_argument("--out", type=Path, default=OUT, help="work folder (default %(default)s)")
    parser.add_argument("--shoot", type=Path, help="only take the docs' screenshots of a report")
    parser.add_argument("--to", type=Path, default=Path("docs"), help="where screenshots go")
    args = parser.parse_args()
    if args.shoot:
        shoot(args.shoot, args.to)
        return
    big = args.out / f"rows_{args.rows}"
    if not (big / "detections" / pipeline.PREDICTIONS_FILE).is_file():
        t = time.perf_counter()
        seed_root = (
            seed_world(args.out / "seed")
            if not (args.out / "seed" / "detections" / pipeline.SUMMARY_FILE).is_file()
            else args.out / "seed"
        )
        make_big(seed_root, big, args.rows)
        print(f"data: {args.rows:,} rows written in {time.perf_counter() - t:.1f}s -> {big}")
    seconds = []
    for _ in range(args.repeats):
        built = site.build_report(big / "dataset", big / "detections", big / "report")
        seconds.append(built.seconds)
    summary = json.loads((big / "report" / site.SUMMARY).read_text())
    ov = summary["overview"]
    print(
        f"report: {ov['rows']:,} rows ({ov['candidates']:,} candidates, {ov['new_candidates']:,} "
        f"new, {summary['proposals']} proposals) built in {min(seconds):.1f}s "
        f"(best of {len(seconds)}: {', '.join(f'{s:.1f}' for s in seconds)})"
    )
    sizes = sorted(summary["pages"].items(), key=lambda kv: -kv[1])
    total = sum(s for _, s in sizes)
    print(f"pages: {len(sizes)}, {total / 1e6:.1f} MB in all, largest:")
    largest = [("index.html", summary["pages"]["index.html"])]
    for kind in site.SUBDIRS:
        largest += [kv for kv in sizes if kv[0].startswith(kind + "/")][:1]
    for name, size in largest:
        print(f"  {name}: {size / 1e3:.0f} kB")
    t = time.perf_counter()
    _, rows = export(big / "dataset", big / "detections", "parquet", big / "export")
    print(f"export: {rows:,} rows to Parquet in {time.perf_counter() - t:.1f}s")
    why = browser.chromium_missing()
    if why:
        print(f"load: skipped ({why})")
        return
    for page, s in load_times([big / "report" / name for name, _ in largest]):
        print(f"load: {Path(page).relative_to(big / 'report')} in {s:.2f}s (to the load event)")


if __name__ == "__main__":
    main()
