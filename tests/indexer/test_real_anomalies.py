"""Real spectra, the shipped model, the real indexer and store: the LAMOST DR7 plate's 9
galaxies and 4 unknowns should rank at the top of the outliers, a cross-matched star should
not (its cross-instrument score is not part of `anomaly`), non-stellar spectra carry the OOD
flag, and DR8 repeat observations of one star should find each other as nearest neighbours."""

from __future__ import annotations

import csv
import pathlib

import numpy as np
import pytest

from engine import payload as P
from engine.bundle import load_bundle
from engine.inference import Embedder
from engine.query import Engine
from engine.store import open_store
from indexer.cli import read_crossmatch
from indexer.scoring import ANOMALY_PARTS
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
    pairs = DATA / "pairs_lamost_xp"
    report = Syncer(store=store, embedder=embedder, state_path=str(root / "state.json"),
                    crossmatch=read_crossmatch(str(pairs / "pairs.csv"))).run(
        parse_sources([str(DATA / "lamost_dr7"), str(DATA / "lamost_dr8_repeats"),
                       str(pairs)]))
    engine = Engine(store)
    engine._embedder = embedder
    yield engine, report
    engine.close()


def test_everything_readable_was_indexed(real_engine):
    engine, report = real_engine
    assert report.added == engine.store.count("spectra") == 109 + 220 + 10 - len(report.refused)
    assert len(report.refused) <= 2, report.refused


def _dr7_top20(real_engine) -> tuple[int, int, int, int]:
    """(galaxies in the LAMOST top 20, indexed galaxies, galaxies + unknowns in the top 20,
    indexed galaxies + unknowns) of the DR7 plate, indexed with the DR8 repeats and pairs."""
    engine, report = real_engine
    dr7 = str(DATA / "lamost_dr7")
    # a galaxy whose 3999-5599 A window is mostly masked cannot be embedded: it is reported
    unusable = [r for r in report.refused if r["path"].startswith(dr7)]
    cls = {h.payload[P.OBJECT_ID]: h.payload.get(P.OBJ_CLASS)
           for h in engine.store.scroll("spectra") if h.payload["source_path"].startswith(dr7)}
    odd = {k for k, c in cls.items() if c in ("GALAXY", "Unknown")}
    galaxies = {k for k, c in cls.items() if c == "GALAXY"}
    assert len(odd) + len(unusable) == 13
    top20 = set(h.object_id for h in engine.outliers("lamost", k=20))
    out = len(top20 & galaxies), len(galaxies), len(top20 & odd), len(odd)
    print(f"DR7 plate in the LAMOST top 20: {out[0]}/{out[1]} galaxies, {out[2]}/{out[3]} "
          f"galaxies+unknowns")
    return out


def test_galaxies_rank_at_the_top_of_lamost_outliers(real_engine):
    """Issue 11: at least 7 of the 8 indexable galaxies in the top 20. The redshift evidence
    (engine/redshift.py) finds them; before it, 2-5 of 8 (their SNR is 0.3-11)."""
    galaxies_top, galaxies, _, _ = _dr7_top20(real_engine)
    assert galaxies == 8 and galaxies_top >= 7


@pytest.mark.xfail(strict=True, reason=(
    "measured with bundle ecbb89c7471bf007, and again with d1301e49b9860db6 (same encoders; "
    "only the stack's sigmas differ) and 391ef6f29c1d4b55 (d1301e49 plus 2 runs' LAMOST "
    "parameters; 7/8 and 9/12 again) and 305b998f93395ddb (its XP head averaged, so a new "
    "shared space: 7/8 and 9/12 again, the same 3 missed at ranks 90-126, 20th anomaly 7.08): "
    "9 of the 12 galaxies+unknowns in the top 20 (7 of "
    "the 8 galaxies, 2 of the 4 unknowns; 20th anomaly 6.91). The 3 missed are the plate's "
    "3 lowest-SNR odd spectra (Unknown 740103045 SNR 0.3, Unknown 740103195 SNR 1.5, galaxy "
    "740103008 SNR 2.0; anomaly 4.3-4.8, ranks 87-123) and their scores are those of the "
    "plate's 3 STAR spectra of SNR 1.0-1.3 (anomaly 4.1-5.0): recon chi^2 0.6-1.2 (noise), "
    "features_z -9 to -22 (stars -17 to -18), knn 0.9-1.1, redshift evidence -0.3 and 0.3 for "
    "the unknowns (stars -1.7 to 0.3). No score that does not rank noise can lift them. Only "
    "740103008 has a sign (redshift evidence 1.3, above all 321 plate/DR8/pair stars, max "
    "0.3); even its p-value against those stars (1/322) instead of its survey percentile "
    "(0.021) gives anomaly 6.75 < 6.91"))
def test_galaxies_and_unknowns_rank_at_the_top_of_lamost_outliers(real_engine):
    _, _, odd_top, odd = _dr7_top20(real_engine)
    assert odd == 12 and odd_top >= 10


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


def test_a_cross_matched_star_ranks_by_its_own_survey_scores_only(real_engine):
    engine, _ = real_engine
    paired = [h for h in engine.store.scroll("spectra")
              if h.payload.get(P.ANOMALY_TRANSLATION) is not None]
    assert len(paired) >= 8          # the 5 real pairs, both halves (less unreadable ones)
    lamost = [h for h in engine.store.scroll("spectra") if h.payload[P.SURVEY] == "lamost"]
    own = {k: np.array([h.payload.get(k, np.nan) for h in lamost], float)
           for k in ANOMALY_PARTS["lamost"]}
    top20 = engine.outliers("lamost", k=20)
    print(f"cross-matched LAMOST stars in the LAMOST top 20: "
          f"{sum(h.payload.get(P.ANOMALY_TRANSLATION) is not None for h in top20)}")
    for h in top20:
        if h.payload.get(P.ANOMALY_TRANSLATION) is None:
            continue
        # in the top 20 only if one of its own-survey scores is in the survey's top 10 %
        best = max(np.mean(own[k] < h.payload.get(k, -np.inf)) for k in own)
        assert best >= 0.9, f"{h.object_id} is in the top 20 with own-survey scores at {best}"
    ranked = engine.outliers("lamost", k=400, score=P.ANOMALY_TRANSLATION)
    assert {h.id for h in ranked} <= {h.id for h in paired}   # ranked only among them


def test_non_stellar_spectra_are_flagged_out_of_distribution(real_engine):
    engine, _ = real_engine
    points = list(engine.store.scroll("spectra"))
    odd = [h for h in points if h.payload.get(P.OBJ_CLASS) in ("GALAXY", "QSO", "Unknown")]
    assert odd and all(h.payload[P.OOD] for h in odd)
    assert all(P.OOD_REASON in h.payload for h in odd)
    stars = [h for h in points if h.payload.get(P.OBJ_CLASS) == "STAR"]
    share = sum(h.payload[P.OOD] for h in stars) / len(stars)
    print(f"OOD among {len(stars)} DR7/DR8 stars: {share:.1%}")
    assert share < 0.2
