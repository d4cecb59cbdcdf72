"""kill -9 the indexer mid-run, start it again: exactly the expected points, none lost, none
duplicated, and the resumed run only embeds what the killed one had not stored."""

from __future__ import annotations

import json
import os
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


def start(store, state, folder, delay, read_workers=0, env=None):
    return subprocess.Popen([sys.executable, "-m", "tests.indexer.kill_target", str(store),
                             str(state), str(folder), str(delay), str(read_workers)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=None if env is None else {**os.environ, **env})


@pytest.mark.slow
@pytest.mark.parametrize("read_workers", [0, 2], ids=["thread-reader", "reader-processes"])
def test_kill_9_then_resume_gives_exactly_the_expected_points(tmp_path, read_workers):
    folder = tmp_path / "spectra"
    folder.mkdir()
    n = 40
    for i in range(n):
        write_lamost_file(str(folder / f"spec-{5000 + i}.fits"), 5000 + i, teff=4000 + 60 * i,
                          seed=i)
    store, state = tmp_path / "store", tmp_path / "state.json"
    proc = start(store, state, folder, delay=0.2, read_workers=read_workers)
    seen = 0
    deadline = time.time() + 60
    while seen < 4 and time.time() < deadline:   # kill mid-run: after the 4th of 10 batches
        line = proc.stdout.readline()
        seen += line.startswith("embedded")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    proc = start(store, state, folder, delay=0.0, read_workers=read_workers)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    resumed = json.loads(out.strip().splitlines()[-1])
    assert resumed["added"] + resumed["skipped"] == n
    assert resumed["added"] < n          # the killed run had stored some: they were skipped

    s = open_store(path=str(store))
    obsids = [h.payload[P.OBJECT_ID] for h in s.scroll("spectra")]
    assert sorted(obsids) == sorted(str(5000 + i) for i in range(n))
    assert all(P.ANOMALY in h.payload for h in s.scroll("spectra"))
    archive = SpectrumArchive(store)           # every point's spectrum is in the store
    for h in s.scroll("spectra"):
        assert content_hash(archive.load(h.payload)) == h.payload[P.CONTENT_HASH]
    s.close()


@pytest.mark.slow
def test_kill_9_in_the_middle_of_a_catalogue_then_resume(tmp_path):
    """A Parquet catalogue is recorded in the file index only once all of its batches are
    written: a run killed inside it leaves it unrecorded, and the next run reads it again,
    skips what the killed one stored, and ends with exactly its rows; a third run, the
    catalogue unchanged, does not read it."""
    from engine import readers
    from engine.catalogue import write_catalogue

    rows = readers.read_xp_library(limit=40)
    n = len({r.object_id for r in rows})
    cat = tmp_path / "xp.parquet"
    write_catalogue(rows, cat)
    os.utime(cat, (time.time() - 3600, time.time() - 3600))   # out of the racy window
    store, state = tmp_path / "store", tmp_path / "state.json"
    proc = start(store, state, cat, delay=0.2)
    seen = 0
    deadline = time.time() + 60
    while seen < 4 and time.time() < deadline:   # kill after the 4th of 10 batches
        seen += proc.stdout.readline().startswith("embedded")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    for run in ("resumed", "unchanged"):
        proc = start(store, state, cat, delay=0.0)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        report = json.loads(out.strip().splitlines()[-1])
        assert report["added"] + report["skipped"] == n
        if run == "resumed":
            assert 0 < report["added"] < n       # the killed run had stored some
            assert report["files_read"] == 1
        else:
            assert report["added"] == 0 and report["files_read"] == 0    # not read at all
    with open_store(path=str(store)) as s:
        ids = [h.payload[P.OBJECT_ID] for h in s.scroll("spectra")]
    assert sorted(ids) == sorted({r.object_id for r in rows})
