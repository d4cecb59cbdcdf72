"""`specclip index` as scripts call it: the JSON report's contract keys, and a second run over
unchanged sources that skips everything."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def specclip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_index_report_keys_and_an_unchanged_rerun(tmp_path, lamost_folder):
    store, report = tmp_path / "store", tmp_path / "r.json"
    (lamost_folder / "broken.fits").write_bytes(b"not a FITS file at all")
    first = specclip("index", "--store", str(store), str(lamost_folder), "--report",
                     str(report), "--no-progress", "--read-workers", "0")
    assert first.returncode == 0, first.stderr[-2000:]
    data = json.loads(report.read_text())
    assert {"added", "updated", "skipped", "deleted", "refused"} <= set(data)
    assert (data["added"], data["updated"], data["skipped"], data["deleted"]) == (12, 0, 0, 0)
    assert [Path(r["path"]).name for r in data["refused"]] == ["broken.fits"]
    assert data["refused"][0]["reason"]
    summary = json.loads(first.stdout.strip().splitlines()[-1])
    assert summary["added"] == 12 and summary["refused"] == 1

    again = specclip("index", "--store", str(store), str(lamost_folder), "--report",
                     str(report), "--no-progress")
    assert again.returncode == 0, again.stderr[-2000:]
    data = json.loads(report.read_text())
    assert (data["added"], data["updated"], data["skipped"], data["deleted"]) == (0, 0, 12, 0)


def test_crossmatch_with_float_written_ids_and_a_position_table(tmp_path, lamost_folder):
    """--crossmatch reads "1003.0"-style ids (it used to crash on them) and skips a bad row;
    --positions gives XP spectra without positions theirs; --spectra is refused for an
    embedded store, which keeps its spectra in its own folder."""
    import dataclasses

    from engine import readers
    from engine.catalogue import write_catalogue
    from engine.query import Engine

    xp = [dataclasses.replace(r, ra=None, dec=None) for r in readers.read_xp_library(limit=3)]
    write_catalogue(xp, tmp_path / "xp.parquet")
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(f"obsid,source_id\n1003.0,{xp[0].object_id}.0\n1004,abc\n")
    positions = tmp_path / "positions.csv"
    positions.write_text(f"source_id,ra\n{xp[1].object_id},12.5\n")
    bad = specclip("index", "--store", str(tmp_path / "store"), str(tmp_path / "xp.parquet"),
                   "--positions", str(positions), "--no-progress")
    assert bad.returncode != 0 and "source_id, ra, dec" in bad.stderr
    positions.write_text(f"source_id,ra,dec\n{xp[1].object_id},12.5,-33.25\n")
    refused = specclip("index", "--store", str(tmp_path / "store"), str(lamost_folder),
                       "--spectra", str(tmp_path / "elsewhere"), "--no-progress")
    assert refused.returncode != 0 and "--spectra" in refused.stderr
    out = specclip("index", "--store", str(tmp_path / "store"), str(lamost_folder),
                   str(tmp_path / "xp.parquet"), "--crossmatch", str(pairs), "--positions",
                   str(positions), "--no-progress")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "line 3" in out.stderr and "'abc'" in out.stderr
    engine = Engine.open(store_path=str(tmp_path / "store"))
    try:
        (lamost,) = engine.lookup(obsid="1003")
        assert lamost.payload["gaia_source_id"] == int(xp[0].object_id)
        (star,) = engine.lookup(source_id=xp[1].object_id)[:1]
        assert (star.payload["ra"], star.payload["dec"]) == (12.5, -33.25)
        assert [h.object_id for h in engine.cone_search(12.5, -33.25)] == [xp[1].object_id]
    finally:
        engine.close()


def test_a_resync_joins_the_remembered_tables_and_a_typo_is_refused(tmp_path, lamost_folder):
    """The --crossmatch table of earlier syncs is joined again by a re-sync that does not
    name it (it used to drop the links and rewrite every crossmatched point); a SOURCE that
    does not exist and was never indexed is refused before anything is written."""
    from engine.query import Engine

    store = str(tmp_path / "store")
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("obsid,source_id\n1003,4242\n")
    first = specclip("index", "--store", store, str(lamost_folder), "--crossmatch", str(pairs),
                     "--no-progress")
    assert first.returncode == 0, first.stderr[-2000:]
    again = specclip("index", "--store", store, "--no-progress")
    assert again.returncode == 0, again.stderr[-2000:]
    summary = json.loads(again.stdout.strip().splitlines()[-1])
    assert (summary["added"], summary["updated"], summary["skipped"]) == (0, 0, 12)
    engine = Engine.open(store_path=store)
    try:
        (lamost,) = engine.lookup(obsid="1003")
        assert lamost.payload["gaia_source_id"] == 4242
    finally:
        engine.close()
    typo = specclip("index", "--store", store, str(tmp_path / "lamost_fodler"), "--no-progress")
    assert typo.returncode != 0 and "nothing in the store came from it" in typo.stderr
    assert "lamost_fodler" in typo.stderr
    fresh = specclip("index", "--store", str(tmp_path / "new_store"), str(tmp_path / "nope"))
    assert fresh.returncode != 0 and "no such file or folder" in fresh.stderr
    assert not (tmp_path / "new_store").exists()          # a typo creates no store
    pairs.unlink()
    gone = specclip("index", "--store", store, "--no-progress")
    assert gone.returncode != 0 and "pairs.csv" in gone.stderr and "is gone" in gone.stderr
    pairs.write_text("obsid,source_id\n")        # a header only: drops the links
    dropped = specclip("index", "--store", store, "--crossmatch", str(pairs), "--no-progress")
    assert dropped.returncode == 0, dropped.stderr[-2000:]
    engine = Engine.open(store_path=store)
    try:
        (lamost,) = engine.lookup(obsid="1003")
        assert lamost.payload.get("gaia_source_id") is None
    finally:
        engine.close()
    pairs.unlink()            # a dropped table is forgotten: later syncs do not look for it
    assert specclip("index", "--store", store, "--no-progress").returncode == 0
    nowhere = specclip("rescore", "--store", str(tmp_path / "no_store"))
    assert nowhere.returncode != 0 and "no embedded store here" in nowhere.stderr
    assert not (tmp_path / "no_store").exists()


def test_a_removed_source_is_deleted_even_after_the_state_forgot_it(tmp_path, lamost_folder):
    """The state's list of sources forgets a removed source at the end of any sync (and can
    be deleted); naming the removed source later still deletes its points, because the
    store, not that list, says what was indexed from it."""
    import shutil

    from tests.indexer.conftest import write_lamost_folder

    store = str(tmp_path / "store")
    other = write_lamost_folder(tmp_path / "other", 4, 5000, 5200.0, 100.0)
    out = specclip("index", "--store", store, str(lamost_folder), "--no-progress")
    assert out.returncode == 0, out.stderr[-2000:]
    out = specclip("index", "--store", store, str(other), "--no-progress")
    assert out.returncode == 0, out.stderr[-2000:]
    shutil.rmtree(other)
    forget = specclip("index", "--store", store, str(lamost_folder), "--no-progress")
    assert forget.returncode == 0, forget.stderr[-2000:]
    (tmp_path / "store" / "indexer_state.json").unlink()   # as the corrupt-state message says
    gone = specclip("index", "--store", store, str(other), "--no-progress")
    assert gone.returncode == 0, gone.stderr[-2000:]
    assert json.loads(gone.stdout.strip().splitlines()[-1])["deleted"] == 4
