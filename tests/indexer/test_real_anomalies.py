"""Real spectra, the shipped model, the real indexer and store: the LAMOST DR7 plate's 9
galaxies and 4 unknowns should rank at the top of the outliers, and DR8 repeat observations of
one star should find each other as nearest neighbours."""

from __future__ import annotations

import csv
import pathlib

import pytest

from engine import payload as P
from engine.bundle import load_bundle
from engine.inference import Embedder
from engine.query import Engine
from engine.store import open_store
from indexer.sources import parse_sources
from indexer.sync import Syncer

DATA = pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "data"
pytestmark = [pytest.mark.real_data, pytest.mark.slow,
              pytest.mark.skipif(not DATA.exists(), reason="../shared/data is absent")]


@pytest.fixture(scope="module")
def real_engine(tmp_path_factory):
    root = tmp_path_factory.mktemp("real")
    store = open_store(path=str(root / "store"))
    embedder = Embedder(load_bundle())
    report = Syncer(store=store, embedder=embedder, state_path=str(root / "state.json")).run(
        parse_sources([str(DATA / "lamost_dr7"), str(DATA / "lamost_dr8_repeats")]))
    engine = Engine(store)
    engine._embedder = embedder
    yield engine, report
    engine.close()


def test_everything_readable_was_indexed(real_engine):
    engine, report = real_engine
    assert report.added == engine.store.count("spectra") == 109 + 220 - len(report.refused)
    assert len(report.refused) <= 2, report.refused


def test_galaxies_and_unknowns_rank_at_the_top_of_lamost_outliers(real_engine):
    engine, report = real_engine
    dr7 = str(DATA / "lamost_dr7")
    # a galaxy whose 3999-5599 A window is mostly masked cannot be embedded: it is reported
    unusable = [r for r in report.refused if r["path"].startswith(dr7)]
    odd = {h.payload[P.OBJECT_ID] for h in engine.store.scroll("spectra")
           if h.payload.get(P.OBJ_CLASS) in ("GALAXY", "Unknown")
           and h.payload["source_path"].startswith(dr7)}
    assert len(odd) + len(unusable) == 13
    ranked = [h.object_id for h in engine.outliers("lamost", k=400)
              if h.payload["source_path"].startswith(dr7)]
    in_top13, in_top20 = len(set(ranked[:13]) & odd), len(set(ranked[:20]) & odd)
    print(f"DR7 outliers: {in_top13}/{len(odd)} indexed galaxies+unknowns in the top 13, "
          f"{in_top20}/{len(odd)} in the top 20")
    assert in_top20 >= 2 * len(odd) / 3


def test_repeat_observations_find_each_other(real_engine):
    """Same-instrument search uses the bundle's spectrum-space vectors. Ceiling check: plain
    PCA-16 of the same inputs, fitted on this very set, finds 53% at rank 1 (measured), so
    this asks for most repeats at rank 1 and nearly all within the top 10."""
    engine, _ = real_engine
    groups: dict[str, list[str]] = {}
    with open(DATA / "lamost_dr8_repeats" / "groups.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            groups.setdefault(row["GroupID"], []).append(str(int(float(row["combined_obsid"]))))
    indexed = {h.payload[P.OBJECT_ID] for h in engine.store.scroll("spectra")}
    first = top10 = total = 0
    for members in groups.values():
        members = [m for m in members if m in indexed]
        for m in members:
            if len(members) < 2:
                continue
            hits = engine.search(("obsid", m), target="lamost", k=10,
                                 filters={"source_root": str(DATA / "lamost_dr8_repeats")})
            total += 1
            first += hits[0].object_id in members
            top10 += any(h.object_id in members for h in hits)
    print(f"DR8 repeats: {first}/{total} have a repeat of the same star as nearest neighbour, "
          f"{top10}/{total} within the top 10")
    assert total > 200
    assert first / total >= 0.5 and top10 / total >= 0.85
