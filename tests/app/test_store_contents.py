"""Every page on an empty store and on a store holding Gaia XP only (what `make run` builds):
no crash, defaults that follow what the store holds, and an empty state that says what to run.
"""

from __future__ import annotations

import pytest

from tests.app.apptest import frame, page_app, rerun, texts

PAGES = ("app.views.search", "app.views.outliers", "app.views.map", "app.views.status")


@pytest.mark.parametrize("page", PAGES)
def test_an_empty_store_says_what_to_run(empty_engine, page):
    at = page_app(page, empty_engine)
    shown = " ".join(texts(at.info) + texts(at.caption) + texts(at.warning))
    assert "specclip index --store" in shown, shown
    assert not at.error, texts(at.error)


def test_status_of_an_empty_store(empty_engine):
    at = page_app("app.views.status", empty_engine)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Store"] == "healthy" and metrics["Spectra indexed"] == "0"


def test_search_defaults_to_the_instrument_held(xp_only_engine):
    at = page_app("app.views.search", xp_only_engine)
    assert at.selectbox(key="search_target").options == ["Gaia XP"]
    # no other instrument, so no controls for its hits
    keys = {w.key for w in (*at.checkbox, *at.selectbox)}
    assert not keys & {"search_quality_cut", "search_cross_rank", "search_sigma_weight"}
    assert any("no LAMOST LRS spectra" in t and "specclip index" in t
               for t in texts(at.caption))
    at.radio(key="search_mode").set_value("Gaia source id")
    rerun(at)
    at.text_input(key="search_source_id").set_value("4295808720")
    at.button(key="search_go").click()
    rerun(at)
    result = at.session_state["search_result"]
    assert "error" not in result, result
    assert list(result["groups"]) == ["gaia_xp"]
    assert "Gaia XP: 9 nearest neighbours" in texts(at.subheader)
    summary = frame(at, "query predicted", "σ")
    assert (summary["query predicted"] != "").all()


def test_outliers_default_to_the_instrument_held(xp_only_engine, sessions_dir):
    at = page_app("app.views.outliers", xp_only_engine)
    assert at.selectbox(key="outliers_survey").options == ["Gaia XP"]
    t = frame(at, "id", "mark")
    assert len(t) == 12 and set(t["instrument"]) == {"Gaia XP"}
    # no page warning; the opened candidate's own flags (OOD, low quality) may be shown
    others = [w for w in texts(at.warning)
              if "Outside the training data" not in w and not w.startswith("Low quality")]
    assert not others, others


def test_map_of_an_xp_only_store(xp_only_engine):
    at = page_app("app.views.map", xp_only_engine)
    assert at.selectbox(key="map_survey").options == ["Gaia XP"]
    assert len(at.session_state["map_ids"]) == 12
