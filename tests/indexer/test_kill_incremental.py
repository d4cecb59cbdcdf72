"""kill -9 during an *incremental* sync (new, changed and deleted files on top of an indexed
store), at a random point, then the same sync again: exactly the files' current spectra are
stored, each with its current content, and a further run finds nothing to do. With only new
files (the incremental scoring path, existing points' refreshes deferred or written in a
batch): after the restart every point's neighbour distance is fresh or flagged."""

from __future__ import annotations

import json
import os
import random
import signal
import time

import numpy as np
import pytest

from engine import payload as P
from engine import readers
from engine.query import Engine
from engine.stale_scores import sidecar_path
from engine.store import open_store
from indexer.ids import content_hash, point_id
from indexer.scoring import knn_distance
from tests.indexer.conftest import age, write_lamost_file, write_lamost_folder
from tests.indexer.test_kill_resume import start

HOUR_AGO = time.time() - 3600


def expected(folder) -> dict[str, str]:
    """point id -> content hash of every spectrum the folder holds now."""
    records, _ = readers.read_many(sorted(str(p) for p in folder.iterdir()))
    return {point_id(r): content_hash(r) for r in records}


def stored(store_path) -> dict[str, str]:
    s = open_store(path=str(store_path), read_only=True)
    try:
        return {h.id: h.payload[P.CONTENT_HASH] for h in s.scroll("spectra")}
    finally:
        s.close()


def finish(store, state, folder, env=None) -> dict:
    proc = start(store, state, folder, delay=0.0, env=env)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.slow
def test_kill_9_at_random_points_of_incremental_syncs(tmp_path):
    rng = random.Random(int.from_bytes(os.urandom(4), "little"))
    folder = write_lamost_folder(tmp_path / "spectra", 24, 6000, 4000.0, 70.0)
    age(folder, 7200)
    store, state = tmp_path / "store", tmp_path / "state.json"
    finish(store, state, folder)
    next_obsid = 7000
    for round_ in range(2):
        files = sorted(folder.iterdir())
        for f in rng.sample(files, 3):                          # deleted
            f.unlink()
        for f in rng.sample(sorted(folder.iterdir()), 4):       # changed in place
            obsid = int(f.stem.split("-")[1])
            write_lamost_file(str(f), obsid, teff=rng.uniform(4000, 7000), seed=rng.randrange(99))
        for _ in range(9):                                      # new
            write_lamost_file(str(folder / f"spec-{next_obsid}.fits"), next_obsid,
                              teff=rng.uniform(4000, 7000), seed=rng.randrange(99))
            next_obsid += 1
        age(folder, 3600 - 60 * round_)      # trusted stats, and not those of the last run
        proc = start(store, state, folder, delay=0.3)
        kill_after = rng.choice(["embedded:1", "embedded:2", "embedded:3",
                                 f"sleep:{rng.uniform(0.5, 6.0):.2f}"])
        what, arg = kill_after.split(":")
        if what == "sleep":
            time.sleep(float(arg))
        else:
            seen, deadline = 0, time.time() + 90
            while seen < int(arg) and time.time() < deadline:
                line = proc.stdout.readline()
                if not line:
                    break
                seen += line.startswith("embedded")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        finish(store, state, folder)
        assert stored(store) == expected(folder), f"round {round_}, killed at {kill_after}"
        again = finish(store, state, folder)
        assert again["added"] == 0, f"round {round_}, killed at {kill_after}"


def assert_knn_fresh_or_flagged(store_path) -> int:
    """Every point's stored `knn_distance` is its exact 10th same-survey neighbour distance
    now, or the point is in the deferred-refresh sidecar with that distance (and readers
    flag it); none is pending. Returns how many are flagged."""
    s = open_store(path=str(store_path))
    try:
        target = s.resolve("spectra")
        hits = list(s.scroll(target, with_vectors=True))
        path = sidecar_path(s, target)
        deferred = json.loads(path.read_text()) if path.exists() else {}
    finally:
        s.close()
    assert not any(h.payload.get(P.SCORES_PENDING) for h in hits)
    assert set(deferred) <= {h.id for h in hits}, "a deferred refresh names no stored point"
    vectors = np.stack([h.vectors[P.VECTOR_SHARED] for h in hits]).astype(np.float32)
    _, kth = knn_distance(vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
    for h, true in zip(hits, kth, strict=True):
        now = {**h.payload, **deferred.get(h.id, {})}.get(P.KNN_DISTANCE)
        assert now == pytest.approx(true, abs=1e-5), \
            f"{h.payload[P.OBJECT_ID]}: neighbour distance {now}, exactly {true}, not flagged"
    eng = Engine.open(store_path=str(store_path))
    try:
        flagged = {h.id for h in eng.store.scroll("spectra") if h.payload.get(P.SCORES_STALE)}
    finally:
        eng.close()
    assert flagged == set(deferred)
    return len(deferred)


@pytest.mark.slow
def test_kill_9_during_incremental_scoring_leaves_scores_fresh_or_flagged(tmp_path):
    rng = random.Random(int.from_bytes(os.urandom(4), "little"))
    folder = write_lamost_folder(tmp_path / "spectra", 16, 6000, 4000.0, 90.0)
    age(folder, 7200)
    store, state = tmp_path / "store", tmp_path / "state.json"
    # a few dozen points: lift the staleness bound so every add scores incrementally
    env = {"SPECCLIP_TEST_STALE_FRACTION": "100"}
    finish(store, state, folder, env)
    next_obsid, flagged, batches = 7000, 0, 0
    for round_ in range(4):
        # kept deferred, or written in one batch by this very sync
        env["SPECCLIP_TEST_DEFER_FRACTION"] = rng.choice(["100", "0"])
        for _ in range(3):
            write_lamost_file(str(folder / f"spec-{next_obsid}.fits"), next_obsid,
                              teff=rng.uniform(4000, 7000), seed=rng.randrange(99))
            next_obsid += 1
        age(folder, 3600 - 60 * round_)
        proc = start(store, state, folder, delay=0.3, env=env)
        kill_after = rng.uniform(0.3, 5.0)
        time.sleep(kill_after)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        finish(store, state, folder, env)
        what = f"round {round_}, killed after {kill_after:.2f} s, env {env}"
        assert stored(store) == expected(folder), what
        assert_knn_fresh_or_flagged(store)
        # and an uninterrupted add on top (the incremental path, the sidecar carried over)
        write_lamost_file(str(folder / f"spec-{next_obsid}.fits"), next_obsid,
                          teff=rng.uniform(4000, 7000), seed=rng.randrange(99))
        next_obsid += 1
        report = finish(store, state, folder, env)
        assert report["added"] == 1 and report["scoring"]["mode"] == "incremental", what
        batches += report["scoring"]["deferred_written"] > 0
        flagged += assert_knn_fresh_or_flagged(store)
        assert stored(store) == expected(folder), what
    assert flagged or batches, "no round deferred or batch-wrote a refresh: nothing tested"
