"""Sky positions: 2MASS-style ids, the user's id tables (one parser for pair and position
tables), and a real cone search on the geo payload index of both backends."""

from __future__ import annotations

import numpy as np
import pytest

from engine import payload as P
from engine.collection import CollectionSpec, ensure_collection, vector_specs
from engine.errors import SpecClipError
from engine.pair_table import parse_id, read_crossmatch, read_pair_table, read_positions
from engine.positions import angular_separation_deg, position_from_2mass_id, sky_point
from engine.query import Engine
from engine.store import CollectionOptions, Point, open_store

CENTRES = [(67.98, 17.79), (0.0002, -5.0), (359.9999, 30.0), (123.4, 89.9995), (200.0, -60.0)]


def test_2mass_ids_give_positions():
    ra, dec = position_from_2mass_id("2M04315585+1747326")
    assert ra == pytest.approx(15 * (4 + 31 / 60 + 55.85 / 3600), abs=1e-12)
    assert dec == pytest.approx(17 + 47 / 60 + 32.6 / 3600, abs=1e-12)
    ra, dec = position_from_2mass_id("2M14300843-6315371")
    assert dec == pytest.approx(-(63 + 15 / 60 + 37.1 / 3600))
    assert position_from_2mass_id("AP18122080-3134591") is not None   # APOGEE's own ids
    assert position_from_2mass_id("VESTA") is None
    assert position_from_2mass_id("2M99999999+9999999") is None


def test_xp_library_records_carry_positions_from_their_ids():
    from engine import readers

    records = readers.read_xp_library(limit=200)
    for r in records:
        expected = position_from_2mass_id(r.meta["apogee_id"])
        assert (r.ra, r.dec) == (expected or (None, None))
    assert sum(r.ra is not None for r in records) >= 190


def test_one_id_parser_for_pair_and_position_tables(tmp_path, caplog):
    assert parse_id("3314245809274264832") == 3314245809274264832
    assert parse_id(" 3314245809274264832.0 ") == 3314245809274264832   # a float-typed export
    for bad in ("abc", "nan", "1.5", ""):
        with pytest.raises(ValueError, match="not an integer"):
            parse_id(bad)
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("obsid,gaia_id,apogee_gaiaedr3_source_id\n10,,1001\n11.0,999.0,\n"
                     "12,,3314245809274264832\n13,abc,\n14,,\nnan,5,\n")
    assert read_pair_table(pairs) == [("10", 1001), ("11", 999), ("12", 3314245809274264832)]
    assert read_crossmatch(pairs) == {"10": 1001, "11": 999, "12": 3314245809274264832}
    assert "line 5" in caplog.text and "'abc'" in caplog.text and "'nan'" in caplog.text
    no_ids = tmp_path / "no_ids.csv"
    no_ids.write_text("obsid,teff\n1,5000\n")
    with pytest.raises(SpecClipError, match="needs an 'obsid' column and a Gaia source id column"):
        read_pair_table(no_ids)
    positions = tmp_path / "pos.csv"
    positions.write_text("source_id,ra,dec\n1.0,-10,5\n2,10,95\n3,x,1\n4,370,-1\n")
    assert read_positions(positions) == {"1": (350.0, 5.0), "4": (10.0, -1.0)}


def test_indexer_and_training_read_the_same_pair_table():
    from indexer.cli import read_crossmatch as indexer_reader
    from training.data import read_pair_table as training_reader

    assert indexer_reader is read_crossmatch and training_reader is read_pair_table


def _offset(ra: float, dec: float, arcsec: float, angle: float) -> tuple[float, float]:
    """A point `arcsec` from (ra, dec) in direction `angle` (exact spherical offset)."""
    d, a = np.radians(arcsec / 3600.0), angle
    ra0, dec0 = np.radians(ra), np.radians(dec)
    dec1 = np.arcsin(np.sin(dec0) * np.cos(d) + np.cos(dec0) * np.sin(d) * np.cos(a))
    ra1 = ra0 + np.arctan2(np.sin(a) * np.sin(d) * np.cos(dec0),
                           np.cos(d) - np.sin(dec0) * np.sin(dec1))
    return float(np.degrees(ra1) % 360.0), float(np.degrees(dec1))


def _sky_store(kind: str, tmp_path):
    store = open_store(path=str(tmp_path / "s")) if kind == "edge" else open_store(memory=True)
    ensure_collection(store, "c", CollectionSpec(
        tuple(vector_specs(4, {"lamost": 4, "gaia_xp": 4})), tuple(P.PAYLOAD_INDEXES.items()),
        CollectionOptions()))
    store.set_alias("spectra", "c")
    rng = np.random.default_rng(0)
    points, truth = [], {}
    n = 0
    for c, (ra, dec) in enumerate(CENTRES):
        for arcsec, angle in [(0.0, 0.0), (1.0, 0.3), (2.9, 2.0), (3.1, 4.0), (10.0, 1.0),
                              (2.5, 5.5)]:
            pra, pdec = _offset(ra, dec, arcsec, angle)
            pid = f"00000000-0000-0000-0000-{n:012d}"
            survey = "gaia_xp" if n % 2 else "lamost"
            points.append(Point(pid, {"shared": rng.normal(size=4).astype(np.float32)},
                                {P.SURVEY: survey, P.OBJECT_ID: str(n), P.RA: pra, P.DEC: pdec,
                                 P.SKY: sky_point(pra, pdec)}))
            truth[pid] = (c, float(angular_separation_deg(ra, dec, pra, pdec)) * 3600)
            n += 1
    store.upsert("c", points)
    store.optimize("c")
    return store, truth


@pytest.mark.parametrize("kind", ["edge", "memory"])
def test_cone_search_finds_every_spectrum_in_the_radius_sorted(kind, tmp_path):
    store, truth = _sky_store(kind, tmp_path)
    engine = Engine(store)
    try:
        for c, (ra, dec) in enumerate(CENTRES):
            hits = engine.cone_search(ra, dec)          # default radius: 3 arcsec
            expected = sorted((sep, pid) for pid, (cc, sep) in truth.items()
                              if cc == c and sep <= 3.0)
            assert [h.id for h in hits] == [pid for _, pid in expected], (ra, dec)
            assert [h.separation_arcsec for h in hits] == pytest.approx(
                [sep for sep, _ in expected], abs=1e-6)
            assert all(h.to_dict()["separation_arcsec"] == h.score for h in hits)
            wide = engine.cone_search(ra, dec, radius_arcsec=11.0)
            assert len(wide) == 6
            xp = engine.cone_search(ra, dec, radius_arcsec=11.0, survey="gaia_xp")
            assert xp and {h.survey for h in xp} == {"gaia_xp"} and len(xp) < 6
            assert [h.id for h in engine.cone_search(ra, dec, 11.0, k=2)] == \
                [h.id for h in wide[:2]]
        with pytest.raises(ValueError):
            engine.cone_search(10.0, 20.0, radius_arcsec=0)
    finally:
        engine.close()


DATA = __import__("pathlib").Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.mark.real_data
@pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data is absent")
def test_the_readme_position_query_finds_the_stars_own_spectra(tmp_path):
    """`specclip query --ra 67.98 --dec 17.79 --radius 15`: the README's star (LAMOST obsid
    976308215, Gaia 3314245809274264832, ~12 arcsec from those rounded coordinates) with both
    of its spectra, nearest first, and nothing else."""
    import json
    import subprocess
    import sys

    from indexer.sources import parse_sources
    from indexer.sync import Syncer
    from tests.indexer.doubles import ProjectionEmbedder

    store = open_store(path=str(tmp_path / "store"))
    Syncer(store=store, embedder=ProjectionEmbedder(), state_path=str(tmp_path / "s.json")).run(
        parse_sources([str(DATA / "pairs_lamost_xp")]))
    store.close()
    root = __import__("pathlib").Path(__file__).resolve().parents[2]

    def query(*args):
        out = subprocess.run([sys.executable, "-m", "engine.cli", "query", "--store",
                              str(tmp_path / "store"), "--ra", "67.98", "--dec", "17.79",
                              *args, "--json"], cwd=root, capture_output=True, text=True,
                             timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        return json.loads(out.stdout)

    hits = query("--radius", "15")
    assert {(h["survey"], h["object_id"]) for h in hits} == {
        ("lamost", "976308215"), ("gaia_xp", "3314245809274264832")}
    assert all(10 < h["separation_arcsec"] < 15 for h in hits)
    assert [h["separation_arcsec"] for h in hits] == sorted(h["separation_arcsec"] for h in hits)
    assert query() == []                   # 3 arcsec (the default) is too small for these
    assert [h["survey"] for h in query("--radius", "15", "--target", "gaia_xp")] == ["gaia_xp"]
