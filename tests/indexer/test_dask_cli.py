"""`specclip index --dask 2` with the shipped model bundle, run as a user runs it: a local
Dask cluster of two worker processes embeds, the driver writes an embedded store whose
points carry every vector of the collection spec (spectrum-space vectors included)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine import payload as P
from engine.bundle import load_bundle
from engine.collection import collection_spec
from engine.inference import Embedder
from engine.store import open_store
from tests.indexer.conftest import write_lamost_folder

pytest.importorskip("dask.distributed")
ROOT = Path(__file__).resolve().parents[2]


def index(*args: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "engine.cli", "index", "--no-progress", *args],
                         cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_dask_cli_with_the_shipped_bundle(tmp_path):
    folder = write_lamost_folder(tmp_path / "spectra", 6, 7000, 4500.0, 300.0)
    # not backdated: a run starting within 2 s of these writes finds them racily clean; its
    # workers read them and the closing run must not read or count them again (CI once
    # saw files_read 12); test_distributed forces that case
    store = tmp_path / "store"
    first = index("--dask", "2", "--store", str(store), str(folder))
    assert (first["added"], first["updated"], first["skipped"]) == (6, 0, 0)
    assert first["files_read"] == 6
    spec = collection_spec(Embedder(load_bundle(None)))
    wanted = {v.name for v in spec.vectors if v.name != P.VECTOR_OWN["gaia_xp"]
              and v.name != P.VECTOR_SPECTRUM["gaia_xp"]}
    assert P.VECTOR_SPECTRUM["lamost"] in wanted      # the vectors the old path left out
    with open_store(path=store, read_only=True) as s:
        hits = list(s.scroll("spectra", with_vectors=True))
        assert len(hits) == 6
        assert all(set(h.vectors) == wanted for h in hits)
        assert all(P.ANOMALY in h.payload for h in hits)
    again = index("--dask", "2", "--store", str(store), str(folder))
    assert (again["added"], again["updated"], again["skipped"]) == (0, 0, 6)
