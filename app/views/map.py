"""Map: the shared embedding space in two dimensions, coloured by a parameter or an anomaly
score. A click on a point opens that star; a box (or lasso) selection lists the stars inside
it to pick from.

PCA projects every point up to "Points (at most)" (default 50,000) and stays responsive at
40k+ points (WebGL scatter, projection cached); t-SNE shows local structure better but is slow
on few cores, so it runs on a subsample.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import numpy as np
import streamlit as st

from app import data
from app.components import plots, star, tables
from app.components.footer import acknowledgement
from engine import payload as P
from engine.query import Engine, SearchHit, is_point_id

log = logging.getLogger(__name__)

METHODS = {"PCA (up to the point limit)": "pca", "t-SNE (random subsample)": "tsne"}
SURVEYS = {"both instruments": None, "LAMOST LRS": "lamost", "Gaia XP": "gaia_xp"}
COLOUR_KEYS = (P.SURVEY, *(P.pred_key(n) for n in ("teff", "logg", "feh", "alpha_m")),
               *(P.label_key(n) for n in ("teff", "logg", "feh")), *P.ANOMALY_SCORES, P.SNR)
SELECTED = "map_selected"
BOXED = "map_boxed"
BOX_LIST_MAX = 500          # rows listed from one box selection


def main(engine: Engine) -> None:
    st.title("Map of the shared embedding space")
    held = data.surveys_held(engine, data.engine_key(engine))
    if not held:
        st.info(data.empty_state(held))
        acknowledgement()
        return
    c1, c2, c3 = st.columns(3)
    method = METHODS[c1.selectbox("Projection", list(METHODS), key="map_method")]
    options = SURVEYS if len(held) > 1 else {k: v for k, v in SURVEYS.items() if v in held}
    survey = options[c2.selectbox("Spectra", list(options), key="map_survey")]
    colour = c3.selectbox("Colour by", COLOUR_KEYS, index=1, key="map_colour",
                          format_func=plots.colour_title)
    c4, c5 = st.columns(2)
    limit = int(c4.number_input("Points (at most)", 100, 500_000, 50_000, step=1000,
                                key="map_limit"))
    tsne_n = int(c5.slider("t-SNE subsample", 200, data.TSNE_MAX_POINTS, 2000, step=100,
                           key="map_tsne_n", disabled=method != "tsne"))
    proj = data.projection(engine, data.engine_key(engine), limit, survey, method,
                           tsne_points=tsne_n)
    ids, xy, payloads = proj["ids"], np.asarray(proj["xy"]), proj["payloads"]
    st.session_state["map_points"] = dict(zip(ids, payloads, strict=True))
    # the chart carries row numbers, not 36-character ids: a third less data at 40k points
    st.session_state["map_ids"] = ids
    if not ids:
        st.info(data.empty_state(held, survey) or "No spectra of this instrument in the store.")
        acknowledgement()
        return
    values = [p.get(colour) for p in payloads]
    hover = [f"{p.get(P.SURVEY)} {p.get(P.OBJECT_ID)}: {_fmt(v)}"
             for p, v in zip(payloads, values, strict=True)]
    axes = _axis_names(method, proj["explained"])
    st.caption(f"{len(ids):,} spectra · {axes[0]} vs {axes[1]} · click a point to open it; "
               "pick the box-select tool (top right of the chart) and drag a box to list "
               "the stars inside")
    rows = np.arange(len(ids), dtype=np.int32)
    st.plotly_chart(plots.map_figure(xy, rows, values, colour, hover, axes), width="stretch",
                    key="map_chart", on_select=_on_select,
                    selection_mode=("points", "box", "lasso"))
    _boxed_list()
    st.text_input("Or open a star by LAMOST obsid, Gaia source id or point id",
                  key="map_open", on_change=_on_open, args=(engine,))
    chosen = st.session_state.get(SELECTED)
    if chosen is not None:
        if chosen.get("error"):
            st.error(chosen["error"])
        else:
            star.star_panel(engine, chosen["id"], chosen["payload"], "map_star",
                            neighbours_k=6)
    acknowledgement()


def selected_point_ids(selection: Any, ids: list[str]) -> list[str]:
    """The point ids of every selected point of a plotly selection event, in event order
    (the chart's customdata holds each point's row in `ids`)."""
    if not selection:
        return []
    points = (selection.get("selection") or {}).get("points") or []
    out: list[str] = []
    for point in points:
        custom = point.get("customdata")
        if isinstance(custom, (list, tuple)):
            custom = custom[0] if custom else None
        if custom is not None and 0 <= int(custom) < len(ids):
            out.append(ids[int(custom)])
    return list(dict.fromkeys(out))


def selected_point_id(selection: Any, ids: list[str]) -> str | None:
    """The first selected point's id, if any."""
    found = selected_point_ids(selection, ids)
    return found[0] if found else None


def _on_select() -> None:
    """One point (a click): open it. Several (a box): list them to pick from."""
    pids = selected_point_ids(st.session_state.get("map_chart"),
                              st.session_state.get("map_ids", []))
    known = st.session_state.get("map_points", {})
    if len(pids) == 1 and pids[0] in known:
        st.session_state[SELECTED] = {"id": pids[0], "payload": known[pids[0]]}
        st.session_state[BOXED] = []
    elif len(pids) > 1:
        st.session_state[BOXED] = pids


def _boxed_list() -> None:
    """The stars of the last box selection, as a table whose row click opens one."""
    boxed = st.session_state.get(BOXED) or []
    known = st.session_state.get("map_points", {})
    boxed = [pid for pid in boxed if pid in known]
    if not boxed:
        return
    shown = boxed[:BOX_LIST_MAX]
    st.markdown(f"**{len(boxed)} stars in the selection**"
                + (f" (the first {BOX_LIST_MAX} listed)" if len(boxed) > BOX_LIST_MAX else "")
                + ": click a row to open that star")
    hits = [SearchHit(pid, known[pid].get(P.SURVEY, ""), str(known[pid].get(P.OBJECT_ID, "")),
                      0.0, known[pid]) for pid in shown]
    frame = tables.hits_frame(hits, "score").drop(columns=["score"], errors="ignore")
    st.dataframe(tables.styled(frame, {c: f for c, f in _FORMATS.items()
                                       if c in frame.columns}),
                 hide_index=True, width="stretch", height=260, key="map_box_table",
                 selection_mode="single-row",
                 on_select=functools.partial(_on_box_row, shown))


_FORMATS = {"pred Teff (K)": "{:.0f}", "cat Teff (K)": "{:.0f}", "pred log g": "{:.2f}",
            "cat log g": "{:.2f}", "pred [Fe/H]": "{:.2f}", "cat [Fe/H]": "{:.2f}",
            "pred [α/M]": "{:.2f}", "cat [α/M]": "{:.2f}", "SNR": "{:.1f}",
            "RA (deg)": "{:.5f}", "Dec (deg)": "{:.5f}"}


def _on_box_row(shown: list[str]) -> None:
    rows = st.session_state["map_box_table"].selection.rows
    known = st.session_state.get("map_points", {})
    if rows and rows[0] < len(shown) and shown[rows[0]] in known:
        pid = shown[rows[0]]
        st.session_state[SELECTED] = {"id": pid, "payload": known[pid]}


def _on_open(engine: Engine) -> None:
    text = str(st.session_state.get("map_open", "")).strip()
    if not text:
        return
    known = st.session_state.get("map_points", {})
    if is_point_id(text) and text in known:
        st.session_state[SELECTED] = {"id": text, "payload": known[text]}
        return
    hits = engine.lookup(obsid=text) if text.isdigit() else []
    if not hits and text.isdigit():
        hits = engine.lookup(source_id=int(text))
    if hits:
        st.session_state[SELECTED] = {"id": hits[0].id, "payload": hits[0].payload}
    else:
        st.session_state[SELECTED] = {"error": f"No indexed spectrum with id {text}."}


def _axis_names(method: str, explained: list[float]) -> tuple[str, str]:
    if method == "pca" and len(explained) == 2:
        return (f"PC 1 ({explained[0]:.0%} of variance)", f"PC 2 ({explained[1]:.0%})")
    return ("t-SNE 1", "t-SNE 2") if method == "tsne" else ("PC 1", "PC 2")


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "n/a" if v is None else str(v)
