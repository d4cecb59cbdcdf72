"""`make bench`: every benchmark in one run, JSON + PNG under benchmarks/results/.

    python benchmarks/run.py                       # N = 10k, 100k, 1M; the store up to 100k
    python benchmarks/run.py --edge-max-n 1000000  # the store at 1M too (its HNSW build alone
                                                   # takes 10+ minutes on 2 cores)
    python benchmarks/run.py --n 10000,100000 --queries 200 --skip-indexing

What it measures: query latency p50/p95 and recall@10 vs N for the engine's embedded store
(Qdrant Edge after optimize), numpy exact search and FAISS HNSW on the same vectors; filtered
and ordered (outlier ranking) latency; memory and disk per point; encoder throughput per model
size; indexing throughput beside the astropy read floor. Then it writes benchmarks/SIZING.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:          # run as a script: make the project importable
    sys.path.insert(0, str(ROOT))

from benchmarks.archive_size import archive_size  # noqa: E402
from benchmarks.common import hardware  # noqa: E402
from benchmarks.incremental import incremental, plot_incremental  # noqa: E402
from benchmarks.search import bench_n  # noqa: E402
from benchmarks.sizing import sizing, sizing_markdown  # noqa: E402
from benchmarks.throughput import encoder_throughput, indexing_throughput  # noqa: E402

log = logging.getLogger("benchmarks")
RESULTS = ROOT / "benchmarks" / "results"
SHARED = ROOT.parent / "shared" / "data"
DEFAULT_LAMOST = SHARED / "lamost_dr10" / "spectra"
LAMOST_FOLDERS = ("lamost_dr10", "lamost_dr8_repeats", "lamost_dr7", "lamost_dr1", "lamost_misc")


def model_dim() -> tuple[int, str]:
    """The shipped bundle's shared dimension, else 128."""
    cfg = ROOT / "engine" / "bundles" / "small" / "config.json"
    if cfg.exists():
        return int(json.loads(cfg.read_text())["align"]["shared_dim"]), str(cfg)
    return 128, "default (no shipped bundle)"


def plot(results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["search"]

    def series(key, kind, field):
        pts = [(r["n"], r[key][kind][field]) for r in rows if kind in r.get(key, {})]
        return [p[0] for p in pts], [p[1] for p in pts]

    fig, ax = plt.subplots(1, 3, figsize=(15, 4.2))
    for name, key, style in (("Qdrant Edge (engine)", "edge", "o-"),
                             ("FAISS HNSW", "faiss_hnsw", "s--"), ("numpy exact", "numpy", "^:")):
        ax[0].plot(*series(key, "plain", "p50_ms"), style, label=f"{name} p50")
        ax[0].plot(*series(key, "plain", "p95_ms"), style, alpha=0.4, label=f"{name} p95")
        ax[1].plot(*series(key, "plain", "recall_at_10"), style, label=name)
    ax[0].plot(*series("edge", "engine_search_vector", "p50_ms"), "x-",
               label="Engine.search_vector, full payload p50")
    for name, key, style in (("Edge filtered", ("edge", "filtered"), "o-"),
                             ("Edge ordered (anomaly)", ("edge", "ordered"), "d-"),
                             ("numpy filtered", ("numpy", "filtered"), "^:"),
                             ("numpy ordered", ("numpy", "ordered"), "v:")):
        ax[2].plot(*series(key[0], key[1], "p50_ms"), style, label=name)
    titles = ("k=10 query latency", "recall@10 vs exact", "filtered / ordered p50")
    for a, title, ylabel in zip(ax, titles, ("ms", "recall@10", "ms"), strict=True):
        a.set_xscale("log")
        a.set_xlabel("points N")
        a.set_ylabel(ylabel)
        a.set_title(title)
        a.grid(alpha=0.3)
        a.legend(fontsize=7)
    ax[1].set_ylim(0.9, 1.005)                 # recall near 1: no offset notation
    ax[1].ticklabel_format(axis="y", useOffset=False)
    ax[0].set_yscale("log")
    ax[2].set_yscale("log")
    hw = results["hardware"]
    fig.suptitle(f"SpecCLIP store benchmark, dim {rows[0]['dim']} - {hw['cpu_model']}, "
                 f"{hw['usable_cores']} cores", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def end_to_end(results: dict) -> dict | None:
    """Query by spectrum at the largest N where the store was built: one measured call of
    Engine.search(a LAMOST spectrum) (preprocess + encode + search + payloads)."""
    rows = [r for r in results.get("search", []) if "edge" in r]
    if not rows:
        return None
    row = max(rows, key=lambda r: r["n"])
    e2e = row["edge"].get("end_to_end_search_spectrum")
    if not e2e or "p50_ms" not in e2e:
        return {"skipped": (e2e or {}).get("skipped", "not measured"), "n": row["n"]}
    return {"n": row["n"], "p50_ms": e2e["p50_ms"], "p95_ms": e2e["p95_ms"],
            "measured": "Engine.search(record, target='gaia_xp', k=10), one call",
            "encode_one_p50_ms": results.get("indexing", {}).get("encode_one", {}).get(
                "p50_ms")}


def spectrum_files(folder: str, dim: int, n: int = 40) -> list[str] | None:
    """LAMOST files for the end-to-end query, when the store's vectors have the shipped
    model's dimension (a query vector of another size could not search them)."""
    if not Path(folder).is_dir() or dim != model_dim()[0]:
        return None
    return sorted(str(p) for p in Path(folder).iterdir() if ".fits" in p.name)[:n]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", default="10000,100000,1000000", help="comma-separated N list")
    p.add_argument("--queries", type=int, default=200, help="queries per N (fewer at 1M)")
    p.add_argument("--edge-max-n", type=int, default=100_000,
                   help="largest N at which the engine's store is built (numpy/FAISS run at all N)")
    p.add_argument("--dim", type=int, help="vector dimension (default: the bundle's shared dim)")
    p.add_argument("--lamost", default=str(DEFAULT_LAMOST), help="LAMOST FITS folder to index")
    p.add_argument("--index-files", type=int, default=None,
                   help="index only the first N files of --lamost (default: all)")
    p.add_argument("--index-repeats", type=int, default=5,
                   help="alternating floor/indexer runs (the ratio is their median)")
    p.add_argument("--incremental-n", default="10000,100000",
                   help="store sizes (synthetic points) to add real spectra to")
    p.add_argument("--incremental-prebuilt", action="append", default=[], metavar="N=DIR",
                   help="use the store of N points that `python -m benchmarks.incremental "
                        "prebuild N DIR` built (its build timings come with it)")
    p.add_argument("--skip-incremental", action="store_true")
    p.add_argument("--skip-resync", action="store_true",
                   help="leave out the unchanged re-sync of the shared LAMOST folders")
    p.add_argument("--skip-search", action="store_true")
    p.add_argument("--skip-indexing", action="store_true")
    p.add_argument("--skip-encoder", action="store_true")
    p.add_argument("--keep-skipped", action="store_true",
                   help="keep the previous bench.json's skipped sections and search rows "
                        "of other N (to add or redo one N)")
    p.add_argument("--out", default=str(RESULTS))
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dim, dim_source = (args.dim, "--dim") if args.dim else model_dim()
    results: dict = {"started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                     "hardware": hardware(), "dim": dim, "dim_source": dim_source, "search": []}
    previous = json.loads((out / "bench.json").read_text()) \
        if args.keep_skipped and (out / "bench.json").exists() else {}
    for section, skipped in (("search", args.skip_search), ("encoder", args.skip_encoder),
                             ("incremental", args.skip_incremental),
                             ("indexing", args.skip_indexing)):
        if (skipped or section == "search") and section in previous:
            results[section] = previous[section]     # search rows of other N are kept too
            if skipped:   # when and under what load a kept section was measured
                results.setdefault("kept", {})[section] = (previous.get("kept") or {}).get(
                    section, {"started_at": previous.get("started_at"),
                              "load_avg_at_start": (previous.get("hardware") or {}).get(
                                  "load_avg_at_start")})
    ns = [] if args.skip_search else [int(x) for x in args.n.split(",") if x.strip()]
    for n in ns:
        n_q = args.queries if n < 1_000_000 else max(50, args.queries // 2)
        log.info("search benchmark N=%d dim=%d queries=%d", n, dim, n_q)
        row = bench_n(n, dim, n_q, with_edge=n <= args.edge_max_n,
                      spectrum_files=spectrum_files(args.lamost, dim))
        results["search"] = sorted([r for r in results["search"] if r["n"] != n] + [row],
                                   key=lambda r: r["n"])
        (out / "bench.json").write_text(json.dumps(results, indent=1))   # partial results too
    if not args.skip_encoder:
        results["encoder"] = encoder_throughput()
    if not args.skip_indexing:
        if Path(args.lamost).is_dir():
            results["indexing"] = indexing_throughput(args.lamost, args.index_files,
                                                      args.index_repeats)
        else:
            results["indexing"] = {"skipped": f"{args.lamost} not found"}
    if not args.skip_incremental:
        inc = incremental([int(x) for x in args.incremental_n.split(",") if x.strip()],
                          args.lamost, [str(SHARED / d) for d in LAMOST_FOLDERS],
                          resync=not args.skip_resync,
                          prebuilt={int(k): Path(v) for k, v in
                                    (x.split("=", 1) for x in args.incremental_prebuilt)})
        old = previous.get("incremental") or {}
        if old.get("rows") and inc.get("rows"):       # --keep-skipped: rows of other N stay
            # (rows measured with another scoring scheme are dropped: not comparable)
            mine = {r["n"] for r in inc["rows"]}
            inc["rows"] = sorted([r for r in old["rows"] if r["n"] not in mine
                                  and r["scoring"] == inc["rows"][0]["scoring"]]
                                 + inc["rows"], key=lambda r: r["n"])
        if args.skip_resync and "unchanged_resync" in old:
            inc["unchanged_resync"] = old["unchanged_resync"]
        results["incremental"] = inc
        (out / "bench.json").write_text(json.dumps(results, indent=1))
        plot_incremental(results["incremental"], out / "bench_incremental.png")
    elif "incremental" in previous:
        results["incremental"] = previous["incremental"]
    results["end_to_end"] = end_to_end(results)
    results["archive"] = archive_size(args.lamost)
    searched = any("edge" in r for r in results.get("search", []))
    if searched:  # the sizing is derived from the store's measured per-point search figures
        results["sizing"] = sizing(results)
    results["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    (out / "bench.json").write_text(json.dumps(results, indent=1))
    if not searched:
        log.warning("no store search figures in this run or kept in %s (--skip-search): "
                    "wrote %s only, no bench.png or SIZING.md", out, out / "bench.json")
        return 0
    plot(results, out / "bench.png")
    # The committed sizing note follows the committed results; other --out folders get their own.
    sizing_path = ROOT / "benchmarks" / "SIZING.md" if out.resolve() == RESULTS.resolve() \
        else out / "SIZING.md"
    gpu_path = RESULTS / "device_check_h200.json"   # measured on a lent GPU machine, if ever
    gpu = json.loads(gpu_path.read_text()) if gpu_path.exists() else None
    version = ROOT / "engine" / "bundles" / "small" / "VERSION"
    shipped = version.read_text().strip() if version.exists() else None
    sizing_path.write_text(sizing_markdown(results["sizing"], results["hardware"], gpu, shipped,
                                           results.get("kept")))
    log.info("wrote %s, %s and %s", out / "bench.json", out / "bench.png", sizing_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
