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
