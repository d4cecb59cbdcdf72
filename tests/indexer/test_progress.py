"""Progress tells the truth: each phase's total is what it then counts."""

from __future__ import annotations

import os
import time

from engine.store import open_store
from indexer.sources import parse_sources
from indexer.sync import Syncer
from tests.indexer.doubles import ProjectionEmbedder


class Recorder:
    def __init__(self):
        self.total, self.done, self.finished = {}, {}, []

    def start(self, phase, total):
        self.total[phase] = total
        self.done.setdefault(phase, 0)

    def grow(self, phase, n):
        self.total[phase] = (self.total.get(phase) or 0) + n

    def advance(self, phase, n=1):
        self.done[phase] = self.done.get(phase, 0) + n

    def finish(self, phase):
        self.finished.append(phase)


def run(tmp_path, folder, store):
    rec = Recorder()
    Syncer(store=store, embedder=ProjectionEmbedder(), read_workers=0, batch_size=5,
           state_path=str(tmp_path / "state.json"), progress=rec).run(parse_sources([str(folder)]))
    return rec


def test_phase_totals_match_what_is_done(tmp_path, lamost_folder):
    for f in lamost_folder.iterdir():
        os.utime(f, (time.time() - 3600,) * 2)
    store = open_store(path=tmp_path / "store")
    first = run(tmp_path, lamost_folder, store)
    assert first.finished == ["listing", "reading", "embedding", "scoring"]
    assert first.total == first.done == {"listing": 1, "reading": 12, "embedding": 12,
                                         "scoring": 12}
    second = run(tmp_path, lamost_folder, store)       # unchanged: nothing to read or embed
    assert second.total == second.done == {"listing": 1, "reading": 0, "embedding": 0}
    store.close()


def test_a_catalogue_gives_its_whole_embedding_total_once_read(tmp_path):
    """A catalogue file is read whole, so the embedding total is its record count from its
    first batch on (an ETA that means something), not grown batch by batch."""
    from engine import readers
    from engine.catalogue import write_catalogue

    cat = tmp_path / "xp.parquet"
    write_catalogue(readers.read_xp_library(limit=23), cat)

    class TotalsSeen(Recorder):
        def advance(self, phase, n=1):
            super().advance(phase, n)
            if phase == "embedding":
                self.seen = getattr(self, "seen", []) + [self.total[phase]]

    rec = TotalsSeen()
    with open_store(path=tmp_path / "store") as store:
        Syncer(store=store, embedder=ProjectionEmbedder(), read_workers=0, batch_size=5,
               state_path=str(tmp_path / "state.json"), progress=rec
               ).run(parse_sources([str(cat)]))
    assert rec.seen == [23] * 5                      # 5 batches, the total known from the first
    assert rec.total["embedding"] == rec.done["embedding"] == 23
    assert rec.total["reading"] == rec.done["reading"] == 1
