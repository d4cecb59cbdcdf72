"""One writer process and a reader in another: the reader keeps answering while the writer
adds points, and sees them once published. Local files only, bounded in time."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest

from engine.errors import StoreError
from engine.store import Filter, Match, open_store
from tests.engine.store.conftest import INDEXES, VECTORS, make_points

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
BATCHES, SIZE = 4, 200


@pytest.mark.slow
def test_reader_keeps_answering_while_another_process_writes(tmp_path):
    path = tmp_path / "store"
    with open_store(path=path) as w:                 # first generation: SIZE points
        w.create_collection("c", VECTORS, INDEXES)
        w.upsert("c", make_points(SIZE, seed=99))
        w.set_alias("spectra", "c")
    reader = open_store(path=path, read_only=True)
    assert reader.count("spectra") == SIZE
    proc = subprocess.Popen([sys.executable, "-m", "tests.engine.store.writer_proc", str(path),
                             str(BATCHES), str(SIZE)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writer open"
        with pytest.raises(StoreError, match="another process is writing"):
            open_store(path=path)                    # a second writer is refused, clearly
        rng = np.random.default_rng(0)
        seen, queries, deadline = [], 0, time.time() + 45
        while time.time() < deadline:
            n = reader.count("spectra")
            hits = reader.search("spectra", "shared", rng.normal(size=16), 5,
                                 filter=Filter(must=(Match("survey", "lamost"),)))
            top = reader.order_by("spectra", "anomaly", 3)
            assert len(hits) == 5 and len(top) == 3
            assert all(h.payload["survey"] == "lamost" for h in hits)
            seen.append(n)
            queries += 1
            if proc.poll() is not None and n == SIZE * (BATCHES + 1):
                break
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
    assert seen == sorted(seen), "a reader never goes back to an older generation"
    assert seen[-1] == SIZE * (BATCHES + 1), "the reader sees the writer's last points"
    assert len(set(seen)) >= 3, f"the reader saw generations switch while querying: {set(seen)}"
    assert queries > 20
    pub = path / "published" / "c"
    reader.close()
    with open_store(path=path) as w:                 # old generations are pruned once unheld
        w.upsert("c", make_points(1, seed=1, start=10**6))
    gens = [p for p in pub.iterdir() if p.is_dir()]
    assert len(gens) == 1, gens
