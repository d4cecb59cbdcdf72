"""`specclip query` and `specclip outliers` as scripts call them: JSON hits with survey,
object_id, score and payload, on a store built by `specclip index` with the shipped model."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.indexer.conftest import write_lamost_folder

ROOT = Path(__file__).resolve().parents[2]


def specclip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("query_cli")
    folder = write_lamost_folder(tmp / "spectra", 12, 300, 4200, 150, last_is_galaxy=True)
    out = specclip("index", "--store", str(tmp / "store"), str(folder), "--no-progress")
    assert out.returncode == 0, out.stderr[-2000:]
    return tmp / "store", folder


def hits_of(out: subprocess.CompletedProcess) -> list[dict]:
    assert out.returncode == 0, out.stderr[-2000:]
    hits = json.loads(out.stdout)
    for h in hits:
        assert {"survey", "object_id", "score", "payload"} <= set(h)
    return hits


def test_query_by_obsid_file_and_position(store):
    path, folder = store
    by_obsid = hits_of(specclip("query", "--store", str(path), "--obsid", "305", "--target",
                                "lamost", "-k", "3", "--json"))
    assert len(by_obsid) == 3 and "305" not in [h["object_id"] for h in by_obsid]
    assert all(h["survey"] == "lamost" for h in by_obsid)
    scores = [h["score"] for h in by_obsid]
    assert scores == sorted(scores, reverse=True)
    assert by_obsid[0]["payload"]["source_path"].endswith(".fits")

    by_file = hits_of(specclip("query", "--store", str(path), "--file",
                               str(folder / "spec-305.fits"), "--target", "lamost", "-k", "4",
                               "--json"))
    assert by_file[0]["object_id"] == "305"          # itself, found by its pixels
    assert by_file[0]["score"] == pytest.approx(1.0, abs=1e-4)

    ra, dec = 10.0 + 305 % 7, 20.0 + 305 % 5          # the fixture's position of obsid 305
    # a cone search: every spectrum at the position (only 305 sits there), not look-alikes
    by_position = hits_of(specclip("query", "--store", str(path), "--ra", str(ra + 1 / 3600),
                                   "--dec", str(dec), "--target", "lamost", "--json"))
    assert [h["object_id"] for h in by_position] == ["305"]
    assert by_position[0]["separation_arcsec"] == pytest.approx(
        3600 * np.cos(np.radians(dec)) / 3600, abs=1e-3)
    too_far = specclip("query", "--store", str(path), "--ra", str(ra + 1 / 3600), "--dec",
                       str(dec), "--radius", "0.5", "--json")
    assert too_far.returncode == 0 and json.loads(too_far.stdout) == []
    wide = hits_of(specclip("query", "--store", str(path), "--ra", str(ra), "--dec", str(dec),
                            "--radius", str(3600 * 2.5), "--target", "gaia_xp", "--json"))
    assert wide == []                                  # --target reaches the position search
    refused = specclip("query", "--store", str(path), "--ra", str(ra), "--dec", str(dec),
                       "--space", "own", "--json")
    assert refused.returncode == 1 and "--space" in refused.stderr


def test_fields_limit_the_payload(store):
    path, _ = store
    hits = hits_of(specclip("query", "--store", str(path), "--obsid", "305", "--target",
                            "lamost", "-k", "2", "--fields", "pred_teff,snr", "--json"))
    assert all(set(h["payload"]) == {"survey", "object_id", "pred_teff", "snr"} for h in hits)


def test_outliers_and_a_clear_error_for_an_unknown_star(store):
    path, _ = store
    odd = hits_of(specclip("outliers", "--store", str(path), "--survey", "lamost", "-k", "5",
                           "--json"))
    scores = [h["payload"]["anomaly"] for h in odd]
    assert len(odd) == 5 and scores == sorted(scores, reverse=True)
    missing = specclip("query", "--store", str(path), "--obsid", "999999", "--json")
    assert missing.returncode == 1
    assert "999999" in json.loads(missing.stderr.strip().splitlines()[-1])["error"]


def test_query_groups_flags_and_quality_cut_options(store):
    path, folder = store
    out = specclip("query", "--store", str(path), "--obsid", "305", "--target", "any",
                   "--grouped", "--with-query", "--quality-cut", "off", "-k", "3", "--json")
    assert out.returncode == 0, out.stderr[-2000:]
    data = json.loads(out.stdout)
    assert set(data) == {"query", "hits"} and set(data["hits"]) == {"lamost", "gaia_xp"}
    assert len(data["hits"]["lamost"]) == 3
    assert all(0 <= h["similarity_percentile"] <= 1 for h in data["hits"]["lamost"])
    # the flags are there; the synthetic test spectra are no real stars, and the reference's
    # OOD score (engine/reference.py) says so (reconstruction beyond every validation star)
    assert isinstance(data["query"]["ood"], bool) and data["query"]["low_quality"] is False
    # the file of a galaxy: its flags computed on the spot, with the reason
    galaxy = sorted(folder.glob("*.fits"))[-1]
    out = specclip("query", "--store", str(path), "--file", str(galaxy), "--with-query",
                   "--target", "lamost", "-k", "2", "--json")
    assert out.returncode == 0, out.stderr[-2000:]
    flags = json.loads(out.stdout)["query"]
    assert flags["ood"] is True and "GALAXY" in flags["ood_reason"]
    wrong = specclip("query", "--store", str(path), "--obsid", "305", "--target", "lamost",
                     "--grouped", "--json")
    assert wrong.returncode == 1 and "--grouped needs --target any" in wrong.stderr


def test_query_file_with_format_and_reader_options(store, tmp_path):
    """A LAMOST spectrum written as a headerless 2-column text table, read with --format
    text-table --medium vacuum, finds its own stored spectrum first."""
    from engine import readers

    path, folder = store
    (record,) = readers.read(str(folder / "spec-305.fits"))
    table = tmp_path / "star.txt"
    rows = zip(record.wavelength, record.flux, record.mask, strict=True)
    table.write_text("\n".join(f"{float(w)!r} {float(f)!r}" for w, f, m in rows if not m))
    hits = hits_of(specclip("query", "--store", str(path), "--file", str(table), "--format",
                            "text-table", "--medium", "vacuum", "--target", "lamost", "-k",
                            "2", "--json"))
    assert hits[0]["object_id"] == "305"
    # without the medium the table cannot be placed on a wavelength axis: refused, with why
    out = specclip("query", "--store", str(path), "--file", str(table), "--json")
    assert out.returncode == 1 and "air or vacuum" in json.loads(out.stderr)["error"]
    out = specclip("query", "--store", str(path), "--obsid", "305", "--medium", "air")
    assert out.returncode == 1 and "--medium applies only to --file" in out.stderr
    out = specclip("query", "--store", str(path), "--file", str(table), "--format", "nope")
    assert out.returncode == 1 and "unknown format 'nope'" in out.stderr
def test_piped_output_is_json_even_without_the_flag(store):
    path, _ = store
    hits = hits_of(specclip("query", "--store", str(path), "--obsid", "305", "--target",
                            "lamost", "-k", "2"))
    assert len(hits) == 2


def test_with_query_adds_the_query_and_its_predictions(store):
    path, folder = store
    out = specclip("query", "--store", str(path), "--file", str(folder / "spec-305.fits"),
                   "--target", "lamost", "-k", "2", "--json", "--with-query")
    assert out.returncode == 0, out.stderr[-2000:]
    doc = json.loads(out.stdout)
    assert doc["query"]["object_id"] == "305" and doc["query"]["survey"] == "lamost"
    teff, sigma = doc["query"]["predicted"]["teff"]
    assert 2000 < teff < 50000 and sigma > 0
    assert len(doc["hits"]) == 2 and {"survey", "object_id", "score", "payload"} <= \
        set(doc["hits"][0])


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_table_with_the_query_predictions(store, monkeypatch):
    from engine import cli

    path, _ = store
    screen = _Terminal()
    monkeypatch.setattr(sys, "stdout", screen)
    assert cli.main(["query", "--store", str(path), "--obsid", "305", "--target", "lamost",
                     "-k", "3"]) == 0
    text = screen.getvalue()
    lines = text.splitlines()
    first = lines[0]
    assert first.startswith("query: LAMOST 305  predicted Teff (K) ")
    assert "±" in first
    # the query's flags under its predictions, in the app's words (the synthetic spectra
    # are no real stars: the JSON test above shows their OOD flag)
    flagged = specclip("query", "--store", str(path), "--obsid", "305", "--target", "lamost",
                       "-k", "1", "--with-query", "--json")
    ood = json.loads(flagged.stdout)["query"]["ood"]
    warnings = [ln for ln in lines[1:] if ln.startswith("  ! ")]
    assert bool(warnings) == ood
    assert not ood or "outside the training data: treat the parameters as unreliable" in text
    header = lines[1 + len(warnings)]
    assert header.split()[:4] == ["#", "instrument", "id", "similarity"]
    assert "alike (pctl)" in header and "space" in header      # comparable across spaces
    notes = [ln for ln in lines if ln.startswith("  note: ")]
    assert "Teff (K)" in header and len(lines) == 1 + len(warnings) + 2 + 3 + len(notes)
    assert "None" not in text and "nan" not in text
    # both instruments: one table each, every hit keeping its overall rank
    screen = _Terminal()
    monkeypatch.setattr(sys, "stdout", screen)
    assert cli.main(["query", "--store", str(path), "--obsid", "305", "--target", "any",
                     "-k", "4", "--quality-cut", "off"]) == 0
    text = screen.getvalue()
    groups = [ln for ln in text.splitlines() if ln.endswith(":") and "(" in ln]
    ranks = sorted(int(ln.split()[0]) for ln in text.splitlines() if ln[:1].isdigit())
    assert ranks == [1, 2, 3, 4]
    if len(groups) == 2:
        assert groups[0].startswith(("LAMOST (", "Gaia XP (")) and text.count("#  instrument") == 2
    screen = _Terminal()
    monkeypatch.setattr(sys, "stdout", screen)
    assert cli.main(["outliers", "--store", str(path), "-k", "2"]) == 0
    assert screen.getvalue().splitlines()[0].split()[3] == "anomaly"


def test_filters_take_the_fields_types_and_refuse_what_cannot_match(store):
    path, _ = store
    every = hits_of(specclip("outliers", "--store", str(path), "-k", "50", "--json"))
    good = hits_of(specclip("outliers", "--store", str(path), "-k", "50", "--filter",
                            "low_quality=false", "--json"))
    assert good and len(good) == sum(not h["payload"]["low_quality"] for h in every)
    ood = hits_of(specclip("outliers", "--store", str(path), "-k", "50", "--filter", "ood=1",
                           "--json"))
    assert len(ood) == sum(bool(h["payload"].get("ood")) for h in every)
    # fields without a payload index (sigmas, distances) still filter, by a scan
    sure = hits_of(specclip("outliers", "--store", str(path), "-k", "50", "--filter",
                            "pred_teff_sigma=0:", "--json"))
    assert len(sure) == sum(h["payload"].get("pred_teff_sigma") is not None for h in every)
    # text keeps its ':' (a source_root such as xp-library:train)
    none = hits_of(specclip("outliers", "--store", str(path), "--filter",
                            "source_root=xp-library:train", "--json"))
    assert none == []
    for bad, why in (("bogus=1", "not a filterable field"),
                     ("label_teff=9000:4000", "low end is above the high end"),
                     ("snr=30", "takes a range"), ("ood=maybe", "true or false")):
        out = specclip("outliers", "--store", str(path), "--filter", bad, "--json")
        assert out.returncode == 1 and why in out.stderr, (bad, out.stderr[-500:])
