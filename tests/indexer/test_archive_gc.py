"""Archive files (engine/spectrum_archive.py) that no point names any more are deleted in two
steps, looking only at the files that updated or deleted points named (or at every file after
a full scoring pass); the spectra of every stored point stay readable."""

from __future__ import annotations

import os
import time

from engine import payload as P
from engine.spectrum_archive import SpectrumArchive, SpectrumArchiveWriter
from engine.store import open_store
from indexer.sources import parse_sources
from indexer.sync import Syncer
from tests.indexer.conftest import write_lamost_file
from tests.indexer.doubles import ProjectionEmbedder


def _sync(store, tmp_path, folder):
    return Syncer(store=store, embedder=ProjectionEmbedder(), read_workers=0, batch_size=5,
                  state_path=str(tmp_path / "state.json")).run(parse_sources([str(folder)], []))


def _arrow_files(store_dir) -> set[str]:
    return {f for _, _, files in os.walk(store_dir / "spectra") for f in files
            if f.endswith(".arrow")}


def test_files_of_updated_points_go_after_a_second_look(tmp_path, lamost_folder):
    store = open_store(path=tmp_path / "store")
    _sync(store, tmp_path, lamost_folder)
    first = _arrow_files(tmp_path / "store")
    assert len(first) == 3                                    # 12 spectra in batches of 5
    then = time.time() - 3600
    for i in range(12):                                       # every spectrum changes
        path = str(lamost_folder / f"spec-{1000 + i}.fits")
        write_lamost_file(path, 1000 + i, teff=4600 + 150 * i, seed=50 + i)
        os.utime(path, (then, then))
    report = _sync(store, tmp_path, lamost_folder)
    assert report.updated == 12
    # found unreferenced once: listed, kept for readers of the previous generation
    assert first <= _arrow_files(tmp_path / "store")
    _sync(store, tmp_path, lamost_folder)                     # nothing changed: second look
    left = _arrow_files(tmp_path / "store")
    assert not first & left and len(left) == 3
    archive = SpectrumArchive(tmp_path / "store")
    hits = list(store.scroll("spectra"))
    assert len(hits) == 12
    for h in hits:
        assert archive.load(h.payload).object_id == h.payload[P.OBJECT_ID]
    store.close()


def test_garbage_collection_limited_to_candidates(tmp_path, lamost_folder):
    writer = SpectrumArchiveWriter(tmp_path / "a")
    folder = tmp_path / "a" / "c"
    folder.mkdir(parents=True)
    for name in ("x.arrow", "y.arrow", "z.arrow"):
        (folder / name).write_bytes(b"")
    cand = {str(folder / "x.arrow")}
    # neither y nor z is a candidate: left alone although nothing names them
    assert writer.collect_garbage("c", set(), 0.0, cand) == 0
    assert writer.listed_orphans("c") == cand
    assert writer.collect_garbage("c", set(), 0.0, set()) == 1     # listed: looked at again
    assert sorted(os.listdir(folder)) == ["orphans.json", "y.arrow", "z.arrow"]
    assert writer.collect_garbage("c", {str(folder / "y.arrow")}, 0.0, None) == 0
    assert writer.listed_orphans("c") == {str(folder / "z.arrow")}
