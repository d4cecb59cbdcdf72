"""Search page against the small real engine, driven by widget keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.app.apptest import figures, frame, page_app, rerun, texts
from tests.indexer.conftest import write_lamost_file

PAGE = "app.pages.search"


def search(at, mode: str, target: str = "both instruments", k: int = 5, **inputs):
    at.radio(key="search_mode").set_value(mode)
    rerun(at)
    for key, value in inputs.items():
        widget = at.get("text_input") + at.get("number_input")
        next(w for w in widget if w.key == key).set_value(value)
    at.selectbox(key="search_target").set_value(target)
    at.slider(key="search_k").set_value(k)
    at.button(key="search_go").click()
    return rerun(at)


def test_search_by_obsid_shows_table_grid_and_detail(app_engine, app_store):
    at = page_app(PAGE, app_engine)
    search(at, "LAMOST obsid", "LAMOST LRS", 5, search_obsid="2005")
    result = at.session_state["search_result"]
    assert "error" not in result, result
    hits = result["hits"]
    assert len(hits) == 5 and all(h["survey"] == "lamost" for h in hits)
    assert "2005" not in [h["object_id"] for h in hits]
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    assert any("5 neighbours of LAMOST LRS obsid 2005" in t for t in texts(at.subheader))
    table = at.dataframe[0].value
    assert list(table["object_id"]) == [h["object_id"] for h in hits]
    figs = figures(at)
    grid = [f for f in figs if "similarity" in f["layout"]["title"]["text"]]
    assert len(grid) == 5
    assert grid[0]["layout"]["xaxis"]["title"]["text"] == "Wavelength (Å)"
    assert "Normalised flux" in grid[0]["layout"]["yaxis"]["title"]["text"]
    assert {t["name"] for t in grid[0]["data"]} >= {"query"}
    # open the first neighbour: its parameters table, counterpart and neighbours appear
    at.selectbox(key="search_detail").set_value(at.selectbox(key="search_detail").options[1])
    rerun(at)
    assert any(f"obsid {hits[0]['object_id']}" in t for t in texts(at.subheader))
    titles = [f["layout"]["title"]["text"] for f in figures(at)]
    assert any(t.startswith("Predicted Gaia XP counterpart") for t in titles)
    assert any("nearest neighbours" in t for t in titles)


def test_class_filter_restricts_the_hits(app_engine):
    at = page_app(PAGE, app_engine)
    at.multiselect(key="search_class").set_value(["GALAXY"])
    search(at, "LAMOST obsid", "LAMOST LRS", 5, search_obsid="2001")
    hits = at.session_state["search_result"]["hits"]
    assert [h["object_id"] for h in hits] == ["2015"]        # the one synthetic galaxy


def test_parameter_filter_uses_predicted_teff(app_engine):
    at = page_app(PAGE, app_engine)
    at.checkbox(key="search_use_params").check()
    rerun(at)
    at.slider(key="search_teff").set_value((3000.0, 5000.0))
    search(at, "LAMOST obsid", "both instruments", 20, search_obsid="2003")
    hits = at.session_state["search_result"]["hits"]
    assert all(3000.0 <= h["payload"]["pred_teff"] <= 5000.0 for h in hits)
    everything = app_engine.search(("obsid", "2003"), k=100)
    inside = [h for h in everything if 3000.0 <= h.payload.get("pred_teff", -1.0) <= 5000.0]
    assert len(hits) == min(20, len(inside))


def test_unknown_obsid_and_missing_upload_give_clear_errors(app_engine):
    at = page_app(PAGE, app_engine)
    search(at, "LAMOST obsid", search_obsid="123456789")
    assert any("No indexed LAMOST spectrum has obsid 123456789" in t for t in texts(at.error))
    search(at, "Upload a file")
    assert any("Choose a file" in t for t in texts(at.error))


def test_cone_search_uses_the_nearest_spectrum(app_engine):
    at = page_app(PAGE, app_engine)
    # tests/indexer/conftest.write_lamost_file puts obsid at RA 10 + obsid % 7, Dec 20 + obsid % 5
    search(at, "Sky position", search_ra=10.0 + 2003 % 7, search_dec=20.0 + 2003 % 5,
           search_radius=2.0)
    result = at.session_state["search_result"]
    assert result["payload"]["object_id"] == "2003" and len(result["hits"]) == 5
    assert "spectra in the cone" in result["note"]


def test_random_star(app_engine):
    at = page_app(PAGE, app_engine)
    search(at, "Random star", k=3)
    result = at.session_state["search_result"]
    assert "error" not in result and len(result["hits"]) == 3
    assert result["point"] not in [h["id"] for h in result["hits"]]


def test_upload_a_lamost_file(app_engine, tmp_path):
    path = Path(write_lamost_file(str(tmp_path / "spec-upload.fits"), 777, teff=5000, seed=3))
    at = page_app(PAGE, app_engine)
    at.radio(key="search_mode").set_value("Upload a file")
    rerun(at)
    at.get("file_uploader")[0].upload(path.name, path.read_bytes())
    at.selectbox(key="search_target").set_value("LAMOST LRS")
    at.button(key="search_go").click()
    rerun(at)
    result = at.session_state["search_result"]
    assert "error" not in result, result
    assert result["record"].object_id == "777" and len(result["hits"]) == 9
    assert any("(uploaded)" in t for t in texts(at.subheader))


def test_upload_of_garbage_is_refused_clearly(app_engine):
    at = page_app(PAGE, app_engine)
    at.radio(key="search_mode").set_value("Upload a file")
    rerun(at)
    at.get("file_uploader")[0].upload("notes.csv", b"hello,world\n1,2\n")
    at.button(key="search_go").click()
    rerun(at)
    assert any("notes.csv" in t for t in texts(at.error))


@pytest.mark.real_data
def test_gaia_source_finds_its_lamost_counterpart(app_engine, app_store):
    if not app_store.pair_source_ids:
        pytest.skip("../shared/data/pairs_lamost_xp is absent")
    at = page_app(PAGE, app_engine)
    source = app_store.pair_source_ids[0]
    search(at, "Gaia source id", "LAMOST LRS", 5, search_source_id=str(source))
    result = at.session_state["search_result"]
    assert "error" not in result, result
    assert result["payload"]["survey"] == "gaia_xp"
    assert all(h["survey"] == "lamost" for h in result["hits"])
    titles = [f["layout"]["title"]["text"] for f in figures(at)]
    # the star has both spectra: the predicted LAMOST spectrum is drawn over the real one
    assert "Predicted LAMOST LRS counterpart vs the real spectrum" in titles
    params = frame(at, "predicted", "sigma", "catalogue")
    teff = params[params["parameter"] == "teff (K)"].iloc[0]
    assert teff["sigma"] > 0 and 3000 < teff["catalogue"] < 8000     # APOGEE label beside it
    assert teff["catalogue source"]
