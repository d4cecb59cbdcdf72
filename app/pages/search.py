"""Search: find the spectra most like a query spectrum, on either instrument or both.

The query is a stored spectrum (by LAMOST obsid, Gaia source id, sky position or at random)
or an uploaded file. Same-instrument searches compare the instrument's own embeddings;
cross-instrument and "both" searches compare positions in the shared (CLIP) space.
"""

from __future__ import annotations

import functools
import logging

import streamlit as st

from app import data, upload
from app.components import filters as filter_ui
from app.components import plots, star, tables
from app.components.footer import acknowledgement
from engine.errors import BundleError, SpecClipError
from engine.query import Engine

log = logging.getLogger(__name__)

MODES = ("LAMOST obsid", "Gaia source id", "Sky position", "Upload a file", "Random star")
TARGETS = {"both instruments": "any", "LAMOST LRS": "lamost", "Gaia XP": "gaia_xp"}
GRID_MAX = 12
RESULT = "search_result"


def main(engine: Engine) -> None:
    st.title("Spectrum search")
    st.caption("Find spectra like a query spectrum. LAMOST and Gaia XP spectra share one "
               "embedding space, so a LAMOST spectrum can find Gaia XP spectra and back.")
    mode = st.radio("Query by", MODES, key="search_mode", horizontal=True)
    _query_inputs(mode)
    c1, c2 = st.columns(2)
    target = TARGETS[c1.selectbox("Search among", list(TARGETS), key="search_target")]
    k = c2.slider("Number of neighbours (k)", 1, 50, 9, key="search_k")
    filters = filter_ui.filter_controls("search")
    if st.button("Search", key="search_go", type="primary"):
        st.session_state[RESULT] = _run_search(engine, mode, target, int(k), filters)
    result = st.session_state.get(RESULT)
    if result is not None:
        _show_result(engine, result)
    acknowledgement()


def _query_inputs(mode: str) -> None:
    if mode == "LAMOST obsid":
        st.text_input("LAMOST obsid", key="search_obsid", placeholder="e.g. 938509188")
    elif mode == "Gaia source id":
        st.text_input("Gaia DR3 source_id", key="search_source_id")
    elif mode == "Sky position":
        c1, c2, c3 = st.columns(3)
        c1.number_input("RA (deg, ICRS)", 0.0, 360.0, 0.0, format="%.6f", key="search_ra")
        c2.number_input("Dec (deg, ICRS)", -90.0, 90.0, 0.0, format="%.6f", key="search_dec")
        c3.number_input("Radius (arcsec)", 0.1, 3600.0, 5.0, key="search_radius")
    elif mode == "Upload a file":
        st.file_uploader(f"LAMOST LRS FITS, or Gaia XP CSV/ECSV/FITS (at most "
                         f"{upload.MAX_UPLOAD_MB} MB)", key="search_upload")
        st.number_input("Row of a multi-spectrum file (0 = first)", 0, 100_000, 0,
                        key="search_upload_pick")
    else:
        st.caption("Search from a spectrum drawn at random from the store.")


def _resolve(engine: Engine, mode: str) -> dict:
    """The query as {"point": id, "payload": ..., "note": ...} or {"record": SpectrumRecord}."""
    ss = st.session_state
    if mode == "LAMOST obsid":
        text = str(ss.get("search_obsid", "")).strip()
        if not text:
            raise SpecClipError("Type a LAMOST obsid.")
        hits = engine.lookup(obsid=text)
        if not hits:
            raise SpecClipError(f"No indexed LAMOST spectrum has obsid {text}.")
        return {"point": hits[0].id, "payload": hits[0].payload, "note": ""}
    if mode == "Gaia source id":
        text = str(ss.get("search_source_id", "")).strip()
        if not text.isdigit():
            raise SpecClipError("A Gaia source_id is a positive integer.")
        hits = sorted(engine.lookup(source_id=int(text)), key=lambda h: h.survey != "gaia_xp")
        if not hits:
            raise SpecClipError(f"No indexed spectrum of Gaia source {text}.")
        note = "" if len(hits) == 1 else f"{len(hits)} spectra of this source; using the " \
                                         f"{plots.SURVEY_NAMES[hits[0].survey]} one."
        return {"point": hits[0].id, "payload": hits[0].payload, "note": note}
    if mode == "Sky position":
        ra, dec = float(ss.get("search_ra", 0.0)), float(ss.get("search_dec", 0.0))
        radius = float(ss.get("search_radius", 5.0))
        hits = engine.cone_search(ra, dec, radius, k=50)
        if not hits:
            raise SpecClipError(f"No indexed spectrum within {radius:.1f} arcsec of "
                                f"RA {ra:.5f}, Dec {dec:.5f}.")
        return {"point": hits[0].id, "payload": hits[0].payload, "cone": [h.to_dict()
                                                                          for h in hits],
                "note": f"{len(hits)} spectra in the cone; the nearest "
                        f"({hits[0].separation_arcsec:.2f} arcsec away) is the query."}
    if mode == "Upload a file":
        return _resolve_upload()
    hit = engine.random_point()
    return {"point": hit.id, "payload": hit.payload, "note": "Random star."}


def _resolve_upload() -> dict:
    uploaded = st.session_state.get("search_upload")
    if uploaded is None:
        raise SpecClipError("Choose a file to upload.")
    records = upload.read_upload(uploaded.name, uploaded.getvalue())
    row = int(st.session_state.get("search_upload_pick", 0))
    if row >= len(records):
        raise SpecClipError(f"{uploaded.name} holds {len(records)} spectra; pick a row "
                            f"below {len(records)}.")
    note = f"{uploaded.name}: spectrum {row + 1} of {len(records)}."
    return {"record": records[row], "note": note}


def _run_search(engine: Engine, mode: str, target: str, k: int, filters: dict) -> dict:
    try:
        query = _resolve(engine, mode)
        with st.spinner("Searching..."):
            q = query.get("record") or query["point"]
            hits = engine.search(q, target=target, k=k, filters=filters or None)
            if "record" in query:
                query["curve"] = data.record_curve(engine, query["record"])
    except SpecClipError as exc:
        return {"error": str(exc)}
    return {**query, "hits": [h.to_dict() for h in hits], "target": target,
            "filters": filters}


def _show_result(engine: Engine, result: dict) -> None:
    if "error" in result:
        st.error(result["error"])
        return
    key = data.engine_key(engine)
    if "record" in result:
        rec = result["record"]
        qname = f"{plots.SURVEY_NAMES.get(rec.survey, rec.survey)} {rec.object_id} (uploaded)"
        qcurve = result["curve"]
    else:
        p = result["payload"]
        qname = star.title_of(p.get("survey", ""), str(p.get("object_id", "")), p)
        try:
            qcurve = data.spectrum_curve(engine, key, result["point"])
        except SpecClipError as exc:  # the table still helps when the spectrum cannot be drawn
            st.warning(f"The query spectrum cannot be drawn: {exc}")
            qcurve = None
    if result.get("note"):
        st.info(result["note"])
    if result.get("cone"):
        with st.expander("Spectra in the cone (score = separation, arcsec)"):
            st.dataframe(tables.hits_frame(data.hits_from_dicts(result["cone"]), "sep (arcsec)"),
                         hide_index=True, width="stretch", key="search_cone_table")
    hits = data.hits_from_dicts(result["hits"])
    st.subheader(f"{len(hits)} neighbours of {qname}")
    if not hits:
        st.warning("Nothing matched: loosen the filters or search both instruments.")
    else:
        st.dataframe(tables.hits_frame(hits), hide_index=True, width="stretch",
                     column_config=tables.COLUMN_FORMATS,
                     key="search_table", selection_mode="single-row",
                     on_select=functools.partial(_on_row, _detail_options(hits)))
        _grid(engine, qcurve, hits)
    _detail(engine, result, hits)


def _grid(engine: Engine, qcurve: dict | None, hits: list) -> None:
    key = data.engine_key(engine)
    cols = st.columns(3)
    for i, h in enumerate(hits[:GRID_MAX]):
        with cols[i % 3]:
            try:
                curve = data.spectrum_curve(engine, key, h.id)
            except BundleError as exc:  # no model, no plots: say so once, not per cell
                st.warning(f"Spectra cannot be drawn without the model: {exc}")
                return
            except SpecClipError as exc:
                st.caption(f"#{i + 1} {h.object_id}: {exc}")
                continue
            name = f"{plots.SURVEY_NAMES.get(h.survey, h.survey)} {h.object_id}"
            # no modebar on the small grid plots: it would sit on top of the title
            st.plotly_chart(plots.neighbour_figure(qcurve, curve, h.score, i + 1, name),
                            width="stretch", key=f"search_grid_{i}",
                            config={"displayModeBar": False})
    if len(hits) > GRID_MAX:
        st.caption(f"Spectra of the first {GRID_MAX} neighbours shown; all are in the table.")


def _detail_options(hits: list) -> list[str]:
    return ["the query"] + [f"#{i + 1} {h.survey} {h.object_id}" for i, h in enumerate(hits)]


def _on_row(options: list[str]) -> None:
    """Clicking a result row opens that star below (the selectbox follows)."""
    rows = st.session_state["search_table"].selection.rows
    if rows and rows[0] + 1 < len(options):
        st.session_state["search_detail"] = options[rows[0] + 1]


def _detail(engine: Engine, result: dict, hits: list) -> None:
    options = _detail_options(hits)
    choice = st.selectbox("Open a star (parameters, predicted counterpart, neighbours)",
                          options, key="search_detail")
    index = options.index(choice)
    if index == 0 and "record" in result:
        star.record_panel(engine, result["record"], "search_star")
    elif index == 0:
        star.star_panel(engine, result["point"], result["payload"], "search_star")
    else:
        h = hits[index - 1]
        star.star_panel(engine, h.id, h.payload, "search_star", neighbours_k=6)
