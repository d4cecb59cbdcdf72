"""kill -9 of the indexer at 10 random moments (reading, embedding, upserting, scoring,
optimizing, publishing, switching the alias), each followed by a restart that is itself
killed, then a final run: exactly the expected points, none lost, none duplicated.

The basic kill-and-resume case is tests/indexer/test_kill_resume.py; this is the 10-point
version, bounded (~1 minute)."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest

from engine import payload as P
from engine.spectrum_archive import SpectrumArchive
from engine.store import open_store
from indexer.ids import content_hash
from tests.indexer.conftest import write_lamost_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
N_SPECTRA = 24
KILLS = 10


def _start(store, state, folder, delay):
    return subprocess.Popen([sys.executable, "-m", "tests.indexer.kill_target", str(store),
                             str(state), str(folder), str(delay)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_ten_random_kills_then_rerun_leaves_exactly_the_expected_points(tmp_path):
    folder = tmp_path / "spectra"
    folder.mkdir()
    for i in range(N_SPECTRA):
        write_lamost_file(str(folder / f"spec-{6000 + i}.fits"), 6000 + i, teff=4000 + 80 * i,
                          seed=i)
    store, state = tmp_path / "store", tmp_path / "state.json"
    # One uninterrupted run on a scratch copy measures how long a whole run takes here, so
    # the kill moments spread over all of it (start-up included) on any machine.
    t0 = time.monotonic()
    full = _start(tmp_path / "scratch", tmp_path / "scratch.json", folder, 0.05)
    full.communicate(timeout=180)
    span = time.monotonic() - t0
    rng = random.Random(int(os.environ.get("SPECCLIP_KILL_SEED", "20261124")))
    moments = [rng.uniform(0.05, span) for _ in range(KILLS)]
    killed = 0
    for at in moments:
        proc = _start(store, state, folder, 0.05)
        try:
            proc.wait(timeout=at)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            killed += 1
        proc.communicate(timeout=30)
        _assert_fresh_or_flagged(store)
        if proc.returncode == 0:
            # it finished before its moment: the next run starts from nothing again, so that
            # its moment falls inside a whole run (a resumed run has less work, and kills
            # drawn over a whole run's length would mostly land after it had finished)
            shutil.rmtree(store, ignore_errors=True)
            for p in tmp_path.glob("state.*"):
                p.unlink()
    assert killed >= KILLS // 2, f"only {killed} of {KILLS} runs were still going when killed"

    final = _start(store, state, folder, 0.0)
    out, err = final.communicate(timeout=180)
    assert final.returncode == 0, err
    report = json.loads(out.strip().splitlines()[-1])
    assert report["added"] + report["skipped"] == N_SPECTRA

    s = open_store(path=str(store))
    try:
        hits = list(s.scroll("spectra"))
        obsids = [h.payload[P.OBJECT_ID] for h in hits]
        assert sorted(obsids) == sorted(str(6000 + i) for i in range(N_SPECTRA))   # no dupes
        assert len({h.id for h in hits}) == N_SPECTRA
        assert all(P.ANOMALY in h.payload for h in hits)      # scores fresh after the rerun
        assert not any(h.payload.get(P.SCORES_PENDING) for h in hits)
        assert len(s.list_collections()) == 1                 # no orphaned half-built collection
        archive = SpectrumArchive(store)                      # every spectrum in the store
        assert all(content_hash(archive.load(h.payload)) == h.payload[P.CONTENT_HASH]
                   for h in hits)
    finally:
        s.close()


def _assert_fresh_or_flagged(store) -> None:
    """Between kills: every stored point either has its scores or is flagged pending (the
    next run scores exactly the flagged ones); none is silently unscored."""
    if not store.exists():     # killed before the store was created
        return
    s = open_store(path=str(store))
    try:
        for name in s.list_collections():
            for h in s.scroll(name):
                assert P.ANOMALY in h.payload or h.payload.get(P.SCORES_PENDING) is True, \
                    f"{h.payload.get(P.OBJECT_ID)} neither scored nor flagged"
    finally:
        s.close()
