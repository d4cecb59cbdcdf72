"""What a sync costs against what is already stored: adding 1 real LAMOST file and 1,000
real LAMOST spectra to stores of N points, beside the store's full build at that N, in one
run; and an unchanged re-sync of the shared LAMOST folders beside re-reading them.

The N points already stored are synthetic (clustered unit vectors and payloads shaped like
the indexer's, in a collection made by engine.collection.collection_spec for the shipped
bundle: 5 named vectors, every payload index); what is added is real spectra, read and
embedded by the shipped model through indexer.sync.Syncer, exactly as `specclip index` does.
The add is compared two ways: with the store-side build (upsert of N points + optimize +
publish), and with a full build of N real spectra computed as that store-side build plus N
times the per-spectrum read + embed cost measured in the same run (labelled so; not a
measured build). Publishing after an update of existing points (what writing a
neighbourhood's score refresh at once costs) is measured apart: it seals the segment those
points lived in again. So is an add of points that enter existing neighbourhoods (the
synthetic bulk carries a typical 10th-neighbour distance): their refreshes are deferred
(engine/stale_scores.py), so that add seals only the segment the new points went to.

    python -m benchmarks.incremental prebuild N FOLDER   # a store of N points, kept
    python -m benchmarks.run ... --incremental-n N --incremental-prebuilt N=FOLDER
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any


from benchmarks.common import (archive_keys, clustered_vectors, payload_columns, payload_row,
                               side_vectors)

log = logging.getLogger(__name__)


RACY_WAIT_S = 2.1
# rows measured under another scoring scheme are not merged with these (benchmarks/run.py)
SCORING = "incremental (indexer/incremental.py: existing points' refreshes deferred), included"


class PhaseTimer:
    """A Progress (indexer.progress) that records each phase's wall time."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._t0: dict[str, float] = {}

    def start(self, phase: str, total: int | None) -> None:
        self._t0.setdefault(phase, time.perf_counter())

    def grow(self, phase: str, n: int) -> None:
        pass

    def advance(self, phase: str, n: int = 1) -> None:
        pass

    def finish(self, phase: str) -> None:
        if phase in self._t0:
            self.seconds[phase] = round(time.perf_counter() - self._t0.pop(phase), 3)


class TimedStore:
    """The store, with the wall time of its write-side calls added up per method."""

    TIMED = ("upsert", "delete", "scroll", "optimize", "flush", "retrieve")

    def __init__(self, store: Any) -> None:
        self._store = store
        self.seconds: dict[str, float] = {}

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if name not in self.TIMED:
            return attr

        def timed(*a: Any, **k: Any) -> Any:
            t = time.perf_counter()
            try:
                out = attr(*a, **k)
                if name == "scroll":
                    out = list(out)
                return out
            finally:
                self.seconds[name] = round(self.seconds.get(name, 0.0)
                                           + time.perf_counter() - t, 3)
        return timed


def _build(root: Path, n: int, embedder: Any) -> tuple[Any, str, dict]:
    """A store of n synthetic points in the indexer's collection, behind its alias."""
    from engine import payload as P
    from engine.collection import DEFAULT_ALIAS, collection_spec, ensure_collection, \
        versioned_name
    from engine.store import Point, open_store

    store = open_store(path=root / "store")
    target = versioned_name(DEFAULT_ALIAS, embedder.version)
    ensure_collection(store, target, collection_spec(embedder))
    spec_dims = {v.name: v.dim for v in collection_spec(embedder).vectors}
    base = clustered_vectors(n, spec_dims[P.VECTOR_SHARED], seed=0)
    side = side_vectors(n)
    cols = payload_columns(n, seed=1)
    knn = {s: _typical_knn_distance(base[cols["survey"] == s]) for s in ("lamost", "gaia_xp")}
    t = time.perf_counter()
    for lo in range(0, n, 2000):
        pts = []
        for i in range(lo, min(lo + 2000, n)):
            survey = str(cols["survey"][i])
            vec = {P.VECTOR_SHARED: base[i],
                   P.VECTOR_OWN[survey]: side["own"][i][:spec_dims[P.VECTOR_OWN[survey]]]}
            sname = P.VECTOR_SPECTRUM[survey]
            if sname in spec_dims:
                vec[sname] = side["spectrum"][i][:spec_dims[sname]]
            payload = {**payload_row(cols, i), **archive_keys(i, cols)}
            payload[P.SOURCE_ROOT] = "/bench/synthetic"
            payload[P.KNN_DISTANCE] = knn[survey]
            pts.append(Point(_pid(i), vec, payload))
        store.upsert(target, pts)
    upsert_s = time.perf_counter() - t
    t = time.perf_counter()
    store.optimize(target)
    optimize_s = time.perf_counter() - t
    store.set_alias(DEFAULT_ALIAS, target)
    t = time.perf_counter()
    store.flush()
    publish_s = time.perf_counter() - t
    return store, target, {"upsert_s": round(upsert_s, 2), "optimize_s": round(optimize_s, 2),
                           "publish_s": round(publish_s, 2),
                           "total_s": round(upsert_s + optimize_s + publish_s, 2)}


def _typical_knn_distance(vectors: Any, k: int = 10, sample: int = 200) -> float:
    """The median distance of a sample of points to their k-th nearest (cosine, exact):
    what a scored store holds as `knn_distance`, so that a point added next to one of them
    enters about as many neighbourhoods as in a real store."""
    import numpy as np

    from engine.reference import cosine_knn

    if len(vectors) <= k:
        return 2.0
    pick = np.random.default_rng(2).choice(len(vectors), min(sample, len(vectors)), False)
    _, dist = cosine_knn(vectors[pick], vectors, k + 1, chunk=50)    # the first is itself
    return float(np.median(dist[:, k]))


def _pid(i: int) -> str:
    import uuid
    return str(uuid.UUID(int=(1 << 120) + i))


def _link_folder(folder: Path, files: list[str]) -> str:
    """A folder of symlinks to real files (nothing copied)."""
    folder.mkdir(parents=True)
    for f in files:
        os.symlink(os.path.abspath(f), folder / os.path.basename(f))
    return str(folder)


def _sync(store: Any, embedder: Any, state: Path, folder: str) -> dict:
    from engine.store import checks
    from indexer.sources import Source
    from indexer.sync import Syncer

    timed, phases = TimedStore(store), PhaseTimer()
    asked: dict[str, int] = {}
    real = checks.check_free_space

    def spy(where: Path, need: int, what: str) -> None:
        # the free space each kind of write asks for (plus checks.MARGIN_BYTES)
        kind = what.split()[0]
        asked[kind] = max(asked.get(kind, 0), need)
        real(where, need, what)

    checks.check_free_space = spy
    try:
        t = time.perf_counter()
        report = Syncer(store=timed, embedder=embedder, state_path=str(state),
                        progress=phases).run([Source(folder)])
        total = time.perf_counter() - t
    finally:
        checks.check_free_space = real
    return {"seconds": round(total, 3), "added": report.added, "refused": len(report.refused),
            "phases_s": phases.seconds, "store_calls_s": timed.seconds,
            "free_space_asked_mib": {k: round(v / 2**20, 1) for k, v in asked.items()}}


def _touch_existing(store: Any, target: str, n: int, k: int = 10) -> dict:
    """Replace the payload of k existing points spread over the synthetic bulk (what score
    refreshes of entered neighbourhoods do) and publish: the optimised segment they lived in
    is changed, so publishing seals it again (a load of that segment, in proportion to its
    size: engine/store/edge_publish.py; below the indexing threshold that segment is the
    unindexed one holding every point)."""
    from dataclasses import replace

    timed = TimedStore(store)
    t = time.perf_counter()
    hits = timed.retrieve(target, [_pid(i) for i in range(0, n, max(1, n // k))][:k],
                          with_vectors=True)
    timed.upsert(target, [_point(h, replace) for h in hits])
    timed.flush()
    return {"points": len(hits), "seconds": round(time.perf_counter() - t, 3),
            "store_calls_s": timed.seconds}


def _add_entering(store: Any, target: str, n: int, state: Path, embedder: Any,
                  k: int = 10) -> dict:
    """Add k points next to k existing ones spread over the bulk (near-copies, so each enters
    the neighbourhoods around its original) and run what a sync runs after its upserts:
    incremental scoring (the entered points' refreshes deferred), optimize, publish."""
    import numpy as np

    from engine import payload as P
    from engine.stale_scores import DeferredScores, sidecar_path
    from engine.store import Point
    from indexer.incremental import refresh_scores, settle_deferred
    from indexer.state import SyncState

    rng = np.random.default_rng(3)
    pts = []
    for j, h in enumerate(store.retrieve(target, [_pid(i) for i in range(
            7, n, max(1, n // k))][:k], with_vectors=True)):
        v = h.vectors[P.VECTOR_SHARED] + rng.normal(0, 1e-3, h.vectors[P.VECTOR_SHARED].shape)
        payload = {**h.payload, P.SCORES_PENDING: True}
        payload.pop(P.GAIA_SOURCE_ID, None)
        pts.append(Point(_pid(2 * n + j), {**h.vectors, P.VECTOR_SHARED: (
            v / np.linalg.norm(v)).astype(np.float32)}, payload))
    st = SyncState.load(str(state))
    timed, deferred = TimedStore(store), DeferredScores(sidecar_path(store, target))
    t = time.perf_counter()
    timed.upsert(target, pts)
    rep = refresh_scores(timed, target, embedder, st.scores_stale.get(target, 0), True, 0,
                         st.score_quantiles[target], deferred=deferred)
    timed.optimize(target)
    timed.flush()
    settle_deferred(deferred, rep.mode == "full")
    return {"points": len(pts), "seconds": round(time.perf_counter() - t, 3),
            "scoring": rep.mode, "neighbours_updated": rep.neighbours_updated,
            "deferred": rep.deferred, "deferred_written": rep.deferred_written,
            "store_calls_s": timed.seconds}


def _point(h: Any, replace: Any) -> Any:
    from engine.store import Point

    return Point(h.id, h.vectors or {}, {**h.payload, "bench_touched": True})


def _mark_scored(state: Path, target: str, n: int) -> None:
    """The synthetic bulk counts as scored: its per-survey score distribution (from the
    synthetic payloads, as a full pass would store it) is recorded, so the first add takes
    the incremental scoring path and costs what any later one does. (Every synthetic point
    carries its survey's typical knn_distance, `_typical_knn_distance`: a real spectrum
    far from the synthetic bulk enters few of their neighbourhoods; `_add_entering` adds
    points that do.)"""
    import numpy as np

    from engine import payload as P
    from indexer.scoring import score_quantiles
    from indexer.state import SyncState

    cols = payload_columns(n, seed=1)
    s = SyncState.load(str(state))
    for survey in ("lamost", "gaia_xp"):
        a = cols["anomaly"][cols["survey"] == survey]
        s.score_quantiles.setdefault(target, {})[survey] = score_quantiles(
            {P.ANOMALY_RECON: a * 0.3, P.ANOMALY_KNN: a * 0.5,
             P.ANOMALY_FEATURES: np.full(len(a), np.nan)})
    s.scores_fresh[target] = True
    s.save(str(state))


def prebuild(n: int, folder: Path, embedder: Any) -> dict:
    """Build the store of n synthetic points in ``folder`` (kept, for a later bench_add with
    ``prebuilt``: a run at 1M points can then be split in two processes); the build's
    timings go to folder/build.json."""
    import json

    folder.mkdir(parents=True, exist_ok=True)
    store, target, build = _build(folder, n, embedder)
    _mark_scored(folder / "state.json", target, n)
    store.close()
    rec = {"n": n, "target": target, "build": build}
    (folder / "build.json").write_text(json.dumps(rec))
    return rec


def bench_add(n: int, lamost_files: list[str], embedder: Any,
              prebuilt: Path | None = None) -> dict:
    """Add 1 file, then 1,000 more spectra, to a store of n points; the build beside them.
    Every add runs the whole sync as `specclip index` does, scoring included (incremental:
    only the new points and the neighbourhoods they enter, indexer/scoring.py).
    ``prebuilt``: a folder made by prebuild(n, ...) (its store is used up)."""
    import json

    load_avg = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="specclip-incr-") as tmp:
        root = Path(tmp) if prebuilt is None else prebuilt
        if prebuilt is None:
            log.info("incremental N=%d: full build (store side)", n)
            store, target, build = _build(root, n, embedder)
            _mark_scored(root / "state.json", target, n)
            opened_s = 0.0
        else:
            from engine.store import open_store

            rec = json.loads((prebuilt / "build.json").read_text())
            if rec["n"] != n:
                raise ValueError(f"{prebuilt} holds a store of {rec['n']} points, not {n}")
            target, build = rec["target"], rec["build"]
            t = time.perf_counter()
            store = open_store(path=root / "store")
            store.count(target)                   # loads the shard (once per process)
            opened_s = round(time.perf_counter() - t, 2)
        state = root / "state.json"
        # a new file arrives later than the build: files written within the racy window
        # before a publication are copied, not linked, at the next one (generations.RACY_NS)
        time.sleep(RACY_WAIT_S)
        one = _sync(store, embedder, state, _link_folder(root / "one", lamost_files[:1]))
        log.info("incremental N=%d: +1 file %.2f s", n, one["seconds"])
        # the first publication after a build seals every segment its optimize wrote
        # (racily new then); a second file shows the steady state
        time.sleep(RACY_WAIT_S)
        one_more = _sync(store, embedder, state, _link_folder(root / "one_more",
                                                              lamost_files[1001:1002]))
        log.info("incremental N=%d: +1 more file %.2f s", n, one_more["seconds"])
        time.sleep(RACY_WAIT_S)
        entering = _add_entering(store, target, n, state, embedder)
        log.info("incremental N=%d: %d points entering %d neighbourhoods added %.2f s", n,
                 entering["points"], entering["neighbours_updated"], entering["seconds"])
        time.sleep(RACY_WAIT_S)
        touched = _touch_existing(store, target, n)
        log.info("incremental N=%d: %d existing points updated and published %.2f s", n,
                 touched["points"], touched["seconds"])
        thousand = _sync(store, embedder, state,
                         _link_folder(root / "thousand", lamost_files[1:1001]))
        log.info("incremental N=%d: +%d spectra %.2f s", n, thousand["added"],
                 thousand["seconds"])
        points = store.count(target)
        from engine.store import checks
        shard_mib = round(checks.allocated_bytes(next((root / "store" / "collections")
                                                      .iterdir()) / "shard") / 2**20, 1)
        store.close()
    added = max(1, thousand["added"])
    # read + embed (+ the stored spectrum's write): the reading phase less the upserts,
    # which the store-side build already counts
    per_spectrum = (thousand["phases_s"].get("reading", 0.0)
                    - thousand["store_calls_s"].get("upsert", 0.0)) / added
    full_real = build["total_s"] + n * per_spectrum
    return {"n": n, "scoring": SCORING, "points_after": points, "load_avg_at_start": load_avg,
            "full_build_store_side": build,
            "prebuilt": None if prebuilt is None else
            "store built by benchmarks.incremental.prebuild in an earlier process (same "
            f"code); opening it here (its shard loaded once) took {opened_s} s, not counted",
            "add_1_file": one, "add_1000_spectra": thousand, "add_1_more_file": one_more,
            "shard_allocated_mib": shard_mib,
            "free_space_asked": "the most each kind of store write asked to find free (plus "
                                "a 16 MiB margin) during that add; publishing asked for "
                                "2 x the shard's allocated size before 733d43b",
            "update_10_existing": touched, "add_10_entering": entering,
            "waited_after_build_s": RACY_WAIT_S,
            "read_embed_per_spectrum_s": round(per_spectrum, 5),
            "ratios": {
                "add_1_file_over_store_build": round(one["seconds"] / build["total_s"], 4),
                "add_1_more_file_over_store_build": round(one_more["seconds"]
                                                          / build["total_s"], 4),
                "add_1000_over_store_build": round(thousand["seconds"] / build["total_s"], 4),
                "add_1000_over_full_build_real": round(thousand["seconds"] / full_real, 4)},
            "full_build_real_spectra_s": round(full_real, 1),
            "full_build_real_spectra": "store-side build measured + n x the per-spectrum "
                                       "read + embed seconds of the 1,000-spectrum add in "
                                       "this run (its reading phase less its upserts); "
                                       "computed, not a measured build, and without the "
                                       "full scoring pass such a build also runs"}


def bench_unchanged_resync(folders: list[str], embedder: Any) -> dict:
    """Index the shared LAMOST folders once, then re-sync them unchanged two ways in this
    run: by stat (the default) and re-reading + re-hashing every file (--verify, what every
    re-sync did before)."""
    from engine.store import open_store
    from indexer.sources import Source
    from indexer.sync import Syncer

    sources = [Source(f) for f in folders if os.path.isdir(f)]
    if not sources:
        return {"skipped": "no shared LAMOST folders"}
    with tempfile.TemporaryDirectory(prefix="specclip-resync-") as tmp:
        state = str(Path(tmp) / "state.json")
        with open_store(path=Path(tmp) / "store") as store:
            def run(verify: bool) -> tuple[float, Any]:
                t = time.perf_counter()
                r = Syncer(store=store, embedder=embedder, state_path=state,
                           verify=verify).run(sources)
                return time.perf_counter() - t, r

            first_s, first = run(False)
            log.info("resync: first index %.1f s (%d spectra)", first_s, first.added)
            stat_s, by_stat = run(False)
            verify_s, by_reading = run(True)
            stat2_s, _ = run(False)
    return {"folders": [s.spec for s in sources], "files": by_reading.files_read,
            "spectra": by_stat.skipped, "first_index_s": round(first_s, 2),
            "unchanged_by_stat_s": round(min(stat_s, stat2_s), 3),
            "unchanged_by_rereading_s": round(verify_s, 3),
            "files_opened_by_stat": by_stat.files_read,
            "speedup": round(verify_s / min(stat_s, stat2_s), 1),
            "timing": "by stat: the faster of two runs (before and after the re-reading one)"}


def incremental(ns: list[int], lamost_folder: str, shared_lamost: list[str],
                resync: bool = True, prebuilt: dict[int, Path] | None = None) -> dict:
    from engine import readers
    from engine.bundle import load_bundle
    from engine.inference import Embedder

    embedder = Embedder(load_bundle(None))
    files = sorted(readers.iter_spectrum_files([lamost_folder])) \
        if os.path.isdir(lamost_folder) else []
    if len(files) < 1002:
        return {"skipped": f"{lamost_folder}: needs 1,002 LAMOST files, found {len(files)}"}
    rows = [bench_add(n, files, embedder, (prebuilt or {}).get(n)) for n in ns]
    out: dict[str, Any] = {"rows": rows,
                           "unchanged_resync": bench_unchanged_resync(shared_lamost, embedder)
                           if resync else {"skipped": "--skip-resync"},
                           "model": embedder.version}
    return out


def plot_incremental(res: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in res.get("rows") or [] if r["scoring"] == SCORING]
    if not rows:
        return
    n = [r["n"] for r in rows]
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    ax.plot(n, [r["full_build_store_side"]["total_s"] for r in rows], "s--",
            label="full build, store side (upsert+optimize+publish)")
    ax.plot(n, [r["add_1000_spectra"]["seconds"] for r in rows], "o-",
            label="add 1,000 real spectra")
    ax.plot(n, [r["add_1_file"]["seconds"] for r in rows], "^-", label="add 1 real file")
    more = [r for r in rows if r.get("add_1_more_file")]
    ax.plot([r["n"] for r in more], [r["add_1_more_file"]["seconds"] for r in more], "v:",
            label="add 1 more real file")
    ax.axhline(2.0, color="grey", lw=0.8, ls="--", label="goal for 1 file: 2 s")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("points already in the store (synthetic)")
    ax.set_ylabel("seconds")
    ax.set_title("Sync cost vs store size (incremental scoring included)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)




def main(argv: list[str] | None = None) -> int:
    import argparse

    from engine.bundle import load_bundle
    from engine.inference import Embedder

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    pb = sub.add_parser("prebuild", help="build a store of N synthetic points, kept")
    pb.add_argument("n", type=int)
    pb.add_argument("folder")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    rec = prebuild(args.n, Path(args.folder), Embedder(load_bundle(None)))
    log.info("built %s", rec)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
