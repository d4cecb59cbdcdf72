"""Search page against the small real engine, driven by widget keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.app.apptest import figures, frame, page_app, rerun, texts, values
from tests.indexer.conftest import write_lamost_file

PAGE = "app.views.search"


def search(at, mode: str, target: str | None = None, k: int = 5, **inputs):
    at.radio(key="search_mode").set_value(mode)
    rerun(at)
    for key, value in inputs.items():
        widget = at.get("text_input") + at.get("number_input")
        next(w for w in widget if w.key == key).set_value(value)
    if target is not None:      # None: the page's default (every instrument the store holds)
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
    assert list(result["groups"]) == ["lamost"]
    assert "2005" not in [h["object_id"] for h in hits]
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    heads = texts(at.subheader)
    assert "Query: LAMOST LRS obsid 2005" in heads
    assert "LAMOST LRS: 5 nearest neighbours" in heads
    table = frame(at, "id", "similarity")
    assert list(table["id"]) == [h["object_id"] for h in hits]
    # human names with units, the parameter columns right after the identity
    # (and the flags, when a hit has one, right after the id)
    shown = [c for c in table.columns if c != "flags"]
    assert shown[:6] == ["#", "instrument", "id", "similarity", "alike (percentile)",
                         "pred Teff (K)"]
    assert "flags" not in table.columns or list(table.columns).index("flags") == 3
    assert not any(c.startswith(("label_", "pred_")) for c in table.columns)
    # the query's own predictions beside its neighbours' labels
    summary = frame(at, "query predicted", "σ", "neighbours' median label")
    teff = summary[summary["parameter"] == "Teff (K)"].iloc[0]
    stored = app_engine.lookup(obsid="2005")[0].payload
    assert teff["query predicted"] == f"{stored['pred_teff']:.0f}"
    figs = figures(at)
    grid = [f for f in figs if "cosine" in f["layout"]["title"]["text"]]
    assert len(grid) == 5
    assert grid[0]["layout"]["xaxis"]["title"]["text"] == "Wavelength (Å)"
    assert grid[0]["layout"]["yaxis"]["title"]["text"] == "Continuum-normalised flux"
    assert {t["name"] for t in grid[0]["data"]} >= {"query"}
    # the whole observed LAMOST spectrum, the model window shaded
    observed = next(f for f in figs if f["layout"]["title"]["text"].startswith("Query spectrum"))
    wave = values(observed["data"][0]["x"])
    assert min(wave) < 3900 and max(wave) > 8000
    window = observed["layout"]["shapes"][0]
    assert (window["x0"], window["x1"]) == (3999.0, 5599.0)
    # open the first neighbour: its parameters table, counterpart and neighbours appear
    at.selectbox(key="search_detail").set_value(at.selectbox(key="search_detail").options[1])
    rerun(at)
    assert any(f"obsid {hits[0]['object_id']}" in t for t in texts(at.subheader))
    titles = [f["layout"]["title"]["text"] for f in figures(at)]
    assert any(t.startswith("Predicted Gaia XP counterpart") for t in titles)
    assert any("nearest LAMOST LRS neighbours" in t for t in titles)
    counterpart = next(f for f in figures(at)
                       if f["layout"]["title"]["text"].startswith("Predicted Gaia XP"))
    assert all(t["line"]["dash"] == "solid" for t in counterpart["data"])


def test_deep_link_runs_the_search(app_engine):
    from streamlit.testing.v1 import AppTest

    from tests.app.apptest import TIMEOUT, _page_script

    at = AppTest.from_function(_page_script, args=(PAGE, app_engine), default_timeout=TIMEOUT)
    at.query_params["obsid"] = "2003"
    rerun(at)
    result = at.session_state["search_result"]
    assert "error" not in result, result
    assert result["payload"]["object_id"] == "2003"
    assert "Query: LAMOST LRS obsid 2003" in texts(at.subheader)
    # the same link does not search again on every rerun (the user may change the query)
    at.session_state["search_result"] = None
    rerun(at)
    assert at.session_state["search_result"] is None


def test_both_instruments_come_in_groups_with_like_overlaid_on_like(app_engine, app_store):
    if not app_store.pair_source_ids:
        pytest.skip("one instrument only without ../shared/data/pairs_lamost_xp")
    at = page_app(PAGE, app_engine)
    obsid = next(o for o in app_store.obsids if int(o) > 100_000)
    search(at, "LAMOST obsid", "each instrument (grouped)", 3, search_obsid=obsid)
    result = at.session_state["search_result"]
    assert list(result["groups"]) == ["lamost", "gaia_xp"]
    assert {h["survey"] for h in result["groups"]["gaia_xp"]} == {"gaia_xp"}
    heads = texts(at.subheader)
    assert "LAMOST LRS: 3 nearest neighbours" in heads and "Gaia XP: 3 nearest neighbours" in heads
    xp_grid = [f for f in figures(at) if f["layout"]["title"]["text"].startswith("#")
               and "Gaia XP" in f["layout"]["title"]["text"]]
    assert len(xp_grid) == 3
    for fig in xp_grid:      # an XP neighbour against the query's predicted XP spectrum
        assert fig["layout"]["yaxis"]["title"]["text"] == "Flux / flux at 550 nm"
        assert "query's predicted counterpart" in {t["name"] for t in fig["data"]}


def _searched_lamost_to_xp(app_engine, app_store, monkeypatch):
    """A LAMOST star searched among Gaia XP, every Engine.search call's keywords recorded."""
    if not app_store.pair_source_ids:
        pytest.skip("one instrument only without ../shared/data/pairs_lamost_xp")
    from engine.query import Engine

    calls = []
    real = Engine.search
    monkeypatch.setattr(Engine, "search",
                        lambda self, *a, **k: calls.append(k) or real(self, *a, **k))
    at = page_app(PAGE, app_engine)
    obsid = next(o for o in app_store.obsids if int(o) > 100_000)
    search(at, "LAMOST obsid", "Gaia XP", 3, search_obsid=obsid)
    return calls, at


def test_cross_rank_checkbox_reaches_the_engine(app_engine, app_store, monkeypatch):
    """On by default (other-instrument hits ordered by predicted parameters, with their
    rank distance shown); unticked, the engine is asked for the shared-space order."""
    calls, at = _searched_lamost_to_xp(app_engine, app_store, monkeypatch)
    assert calls[-1]["cross_rank"] is True
    assert "rank distance" in frame(at, "id").columns
    assert any("Ordered by rank distance" in c for c in texts(at.caption))
    at.checkbox(key="search_cross_rank").uncheck()
    at.button(key="search_go").click()
    rerun(at)
    assert calls[-1]["cross_rank"] is False
    assert "rank distance" not in frame(at, "id").columns
    assert not any("Ordered by rank distance" in c for c in texts(at.caption))
    assert at.selectbox(key="search_sigma_weight").disabled


def test_sigma_weight_choice_reaches_the_engine(app_engine, app_store, monkeypatch):
    """The bundle's setting (None) by default; "not counted" asks for weight 0, for the
    other instrument's hits only (a same-instrument search has no ranking to weigh)."""
    calls, at = _searched_lamost_to_xp(app_engine, app_store, monkeypatch)
    assert calls[-1]["sigma_weight"] is None
    assert any("re-ordered" in c and ", counting the hits' uncertainty" in c
               for c in texts(at.caption))          # this direction's setting counts them
    default = [h["object_id"] for h in at.session_state["search_result"]["hits"]]
    at.selectbox(key="search_sigma_weight").set_value("not counted (weight 0)")
    at.button(key="search_go").click()
    rerun(at)
    assert calls[-1]["sigma_weight"] == 0.0 and calls[-1]["target"] == "gaia_xp"
    assert any("not counting the hits' uncertainty" in c for c in texts(at.caption))
    assert not at.exception and at.session_state["search_result"].get("error") is None
    assert len(at.session_state["search_result"]["hits"]) == len(default)
    at.selectbox(key="search_target").set_value("each instrument (grouped)")
    at.button(key="search_go").click()
    rerun(at)
    by_target = {k["target"]: k["sigma_weight"] for k in calls[-2:]}
    assert by_target == {"lamost": None, "gaia_xp": 0.0}


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
    slider = at.slider(key="search_teff_pred")
    # the slider spans the store's own predicted Teff, whatever it is
    lo, hi = app_engine.value_range("pred_teff")
    assert slider.min <= lo and slider.max >= hi and slider.max - hi < 50
    slider.set_value((slider.min, 5000.0))
    search(at, "LAMOST obsid", "LAMOST LRS", 20, search_obsid="2003")
    hits = at.session_state["search_result"]["hits"]
    assert all(h["payload"]["pred_teff"] <= 5000.0 for h in hits)
    everything = app_engine.search(("obsid", "2003"), target="lamost", k=100)
    inside = [h for h in everything if -1.0 < h.payload.get("pred_teff", -1.0) <= 5000.0]
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
    assert result["payload"]["object_id"] == "2003"
    assert all(len(hits) == 5 for hits in result["groups"].values())
    assert "spectra in the cone" in result["note"]


def test_random_star(app_engine):
    at = page_app(PAGE, app_engine)
    search(at, "Random star", k=3)
    result = at.session_state["search_result"]
    assert "error" not in result
    assert all(len(hits) == 3 for hits in result["groups"].values())
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
    # the model's predictions for a spectrum that is not in the store
    summary = frame(at, "query predicted", "σ")
    assert summary["query predicted"].iloc[0] != ""


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
    params = frame(at, "predicted", "σ", "catalogue")
    teff = params[params["parameter"] == "Teff (K)"].iloc[0]
    assert float(teff["σ"]) > 0 and 3000 < float(teff["catalogue"]) < 8000   # APOGEE label
    assert teff["catalogue source"]


def test_the_query_flags_stand_beside_its_parameters(app_engine):
    """The OOD caveat and the low-quality flag show right under the query's parameters (the
    first warnings on the page), not only in the detail panel at its bottom."""
    from engine import payload as P

    points = app_engine.outliers("lamost", k=200)
    picked = [next((p for p in points if bool(p.payload.get(P.OOD)) == ood), None)
              for ood in (True, False)]
    picked = [p for p in picked if p is not None]
    # the test store's synthetic spectra include OOD ones (no real stars; its galaxy)
    assert any(p.payload.get(P.OOD) for p in picked)
    for p in picked:
        at = page_app(PAGE, app_engine)
        search(at, "LAMOST obsid", "LAMOST LRS", 3, search_obsid=str(p.object_id))
        shown = texts(at.warning)
        ood = [t for t in shown if "Outside the training data: treat the parameters as "
               "unreliable" in t]
        low = [t for t in shown if t.startswith("Low quality")]
        assert bool(ood) == bool(p.payload.get(P.OOD)), (p.object_id, shown)
        assert bool(low) == bool(p.payload.get(P.LOW_QUALITY)), (p.object_id, shown)
        if ood:
            assert shown[0] == ood[0]


def test_changed_options_say_the_results_are_from_before(app_engine):
    at = page_app(PAGE, app_engine)
    search(at, "LAMOST obsid", "LAMOST LRS", 3, search_obsid="2005")
    assert not any("options above changed" in t for t in texts(at.info))
    at.slider(key="search_k").set_value(4)
    rerun(at)
    assert any("options above changed" in t for t in texts(at.info))
    at.button(key="search_go").click()
    rerun(at)
    assert not any("options above changed" in t for t in texts(at.info))
    assert len(at.session_state["search_result"]["hits"]) == 4
