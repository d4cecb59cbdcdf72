"""Map page: PCA of every point, t-SNE on a subsample, opening a star."""

from __future__ import annotations

from app.views.map import BOXED, SELECTED, selected_point_id, selected_point_ids
from tests.app.apptest import figures, page_app, rerun, texts, values

PAGE = "app.views.map"


def scatter(at) -> dict:
    return next(f for f in figures(at) if f["data"] and f["data"][0]["type"] == "scattergl")


def test_pca_map_has_every_point_coloured_by_the_chosen_key(app_engine):
    at = page_app(PAGE, app_engine)
    total = app_engine.stats()["total"]
    fig = scatter(at)
    assert sum(len(values(t["x"])) for t in fig["data"]) == total
    assert fig["layout"]["xaxis"]["title"]["text"].startswith("PC 1 (")
    at.selectbox(key="map_colour").set_value("anomaly")
    rerun(at)
    fig = scatter(at)
    assert fig["data"][0]["marker"]["colorbar"]["title"]["text"] == "anomaly (higher = odder)"
    at.selectbox(key="map_colour").set_value("pred_teff")
    rerun(at)
    assert scatter(at)["data"][0]["marker"]["colorbar"]["title"]["text"] == \
        "predicted Teff (K)"
    # Streamlit lets a click select a point only outside the select/lasso drag modes
    assert scatter(at)["layout"]["dragmode"] == "zoom"
    at.selectbox(key="map_colour").set_value("survey")
    rerun(at)
    names = {t["name"] for t in scatter(at)["data"]}
    assert names <= {"LAMOST LRS", "Gaia XP"} and "LAMOST LRS" in names
    # customdata carries each point's row in the page's id list: what a click opens
    rows = sorted(int(c) for t in scatter(at)["data"] for c in values(t["customdata"]))
    assert rows == list(range(total))
    assert len(set(at.session_state["map_ids"])) == total


def test_tsne_runs_on_a_subsample(app_engine):
    at = page_app(PAGE, app_engine)
    at.selectbox(key="map_method").set_value("t-SNE (random subsample)")
    at.selectbox(key="map_survey").set_value("LAMOST LRS")
    rerun(at)
    fig = scatter(at)
    assert fig["layout"]["xaxis"]["title"]["text"] == "t-SNE 1"
    assert len(values(fig["data"][0]["x"])) == app_engine.stats()["by_survey"]["lamost"]


def test_open_a_star_by_obsid(app_engine):
    at = page_app(PAGE, app_engine)
    at.text_input(key="map_open").input("2007")
    rerun(at)
    assert any("obsid 2007" in t for t in texts(at.subheader))
    at.text_input(key="map_open").input("999999999")
    rerun(at)
    assert any("No indexed spectrum" in t for t in texts(at.error))


def test_selected_point_id_reads_plotly_selection_events():
    ids = ["id-a", "id-b", "id-c"]
    event = {"selection": {"points": [{"point_index": 0, "customdata": 2}],
                           "box": [], "lasso": []}}
    assert selected_point_id(event, ids) == "id-c"
    assert selected_point_id({"selection": {"points": [{"customdata": [0]}]}}, ids) == "id-a"
    assert selected_point_id({"selection": {"points": [{"customdata": 7}]}}, ids) is None
    assert selected_point_id({"selection": {"points": []}}, ids) is None
    assert selected_point_id(None, ids) is None


def test_box_selection_lists_the_stars_to_pick_from(app_engine):
    at = page_app(PAGE, app_engine)
    ids = at.session_state["map_ids"]
    at.session_state[BOXED] = ids[:4]
    rerun(at)
    listed = next(df.value for df in at.dataframe if "instrument" in df.value.columns)
    payloads = at.session_state["map_points"]
    assert list(listed["id"]) == [str(payloads[i]["object_id"]) for i in ids[:4]]
    assert any("4 stars in the selection" in t for t in texts(at.markdown))
    assert at.session_state[SELECTED] is None if SELECTED in at.session_state else True


def test_selected_point_ids_keeps_every_point_once():
    ids = ["a", "b", "c"]
    event = {"selection": {"points": [{"customdata": 2}, {"customdata": 0}, {"customdata": 2}]}}
    assert selected_point_ids(event, ids) == ["c", "a"]
