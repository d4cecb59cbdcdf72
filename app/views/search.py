"""Search: find the spectra most like a query spectrum, on either instrument or both.

The query is a stored spectrum (by LAMOST obsid, Gaia source id, sky position or at random)
or an uploaded file; `/search?obsid=...` or `/search?source_id=...` runs a search at once.
Results come in one group per instrument, each with its own similarity scale: same-instrument
neighbours are compared in that instrument's spectrum space (PCA of the normalised spectrum),
the other instrument's in the shared (CLIP) space, re-ordered by predicted parameters, and
cosines from different spaces are not comparable.
"""

from __future__ import annotations

import functools
import logging

import streamlit as st

from app import data, upload
from app.components import filters as filter_ui
from app.components import plots, star, tables
from app.components.empty_state import surveys_or_stop
from app.components.footer import acknowledgement
from engine import payload as P
from engine.errors import BundleError, SpecClipError
from engine.query import UNLIKE_NOTE, Engine, all_unlike

log = logging.getLogger(__name__)

MODES = ("LAMOST obsid", "Gaia source id", "Sky position", "Upload a file", "Random star")
GRID_MAX = 12
RESULT = "search_result"
LINK_KEYS = {"obsid": ("LAMOST obsid", "search_obsid"),
             "source_id": ("Gaia source id", "search_source_id")}


def target_options(held: list[str]) -> dict[str, str]:
    """The "Search among" choices for the instruments the store holds."""
    if len(held) > 1:
        return {"each instrument (grouped)": "any", "LAMOST LRS": "lamost",
                "Gaia XP": "gaia_xp"}
    return {plots.SURVEY_NAMES.get(s, s): s for s in held}


# the cross-instrument ranking's weight of the hits' sigmas (None: the bundle's setting)
UNCERTAINTY = {"as validated for this direction": None, "counted (weight 1)": 1.0,
               "not counted (weight 0)": 0.0}


def main(engine: Engine) -> None:
    st.title("Spectrum search")
    st.caption("Find spectra like a query spectrum. LAMOST and Gaia XP spectra share one "
               "embedding space, so a LAMOST spectrum can find Gaia XP spectra and back.")
    held = surveys_or_stop(engine)
    if not held:
        return
    linked = _deep_link()
    mode = st.radio("Query by", MODES, key="search_mode", horizontal=True)
    _query_inputs(mode)
    c1, c2 = st.columns(2)
    options = target_options(held)
    target = options[c1.selectbox("Search among", list(options), key="search_target")]
    k = c2.slider("Neighbours per instrument (k)", 1, 50, 9, key="search_k")
    filters = filter_ui.filter_controls("search", engine)
    cut, cross, weight = True, True, None    # the defaults; only a two-instrument store
    if len(held) > 1:                        # has other-instrument hits to set them for
        cut, cross, weight = _cross_instrument_controls()
    settings = {"target": target, "k": int(k), "filters": filters, "quality_cut": cut,
                "cross_rank": cross, "sigma_weight": weight if cross else None}
    if st.button("Search", key="search_go", type="primary") or linked:
        st.session_state[RESULT] = {**_run_search(engine, mode, target, int(k), filters, held,
                                                  cut, cross, weight if cross else None),
                                    "settings": settings}
    result = st.session_state.get(RESULT)
    if result is not None:
        if result.get("settings") not in (None, settings):
            st.info("The options above changed since these results: press Search to apply "
                    "them.")
        _show_result(engine, result)
    acknowledgement()


def _cross_instrument_controls() -> tuple[bool, bool, float | None]:
    """The quality cut, the ranking and its sigma weight for the other instrument's hits."""
    cut = st.checkbox("Leave out low-quality spectra of the other instrument", True,
                      key="search_quality_cut",
                      help="Spectra flagged low_quality (low SNR or mostly masked) sit near "
                           "everything in the shared space and crowd cross-instrument results.")
    cross = st.checkbox("Order the other instrument's hits by predicted parameters", True,
                        key="search_cross_rank",
                        help="Its nearest spectra in the shared space, re-ordered by how close "
                             "the model's predicted Teff, logg and [Fe/H] are to the query's "
                             "(settings chosen on validation for each direction, README "
                             "\"Cross-instrument ranking\"): this finds stars of the same "
                             "kind more reliably than the shared space alone. Off: "
                             "shared-space order.")
    weight = UNCERTAINTY[st.selectbox(
        "Hits' own parameter uncertainty in that order", list(UNCERTAINTY),
        key="search_sigma_weight", disabled=not cross,
        help="Counted: a hit whose parameters the model is unsure of (often a noisy "
             "spectrum) counts as farther away, which keeps noisy hubs down. The bundle's "
             "setting was chosen on validation per direction (README \"Cross-instrument "
             "ranking\").")]
    return cut, cross, weight


def _deep_link() -> bool:
    """Fill the query from ?obsid= / ?source_id= once per distinct link; True to search."""
    params = {k: st.query_params.get(k) for k in LINK_KEYS if st.query_params.get(k)}
    if not params:
        return False
    link = tuple(sorted(params.items()))
    if st.session_state.get("search_link") == link:
        return False
    st.session_state["search_link"] = link
    name, value = next(iter(params.items()))
    mode, widget = LINK_KEYS[name]
    st.session_state["search_mode"] = mode
    st.session_state[widget] = str(value).strip()
    return True


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
        st.file_uploader(f"LAMOST LRS FITS, Gaia XP CSV/ECSV/FITS, SDSS spec, or a "
                         f"wavelength/flux table (at most {upload.MAX_UPLOAD_MB} MB)",
                         key="search_upload",
                         max_upload_size=upload.MAX_UPLOAD_MB)   # however the app started
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


def _run_search(engine: Engine, mode: str, target: str, k: int, filters: dict,
                held: list[str], quality_cut: bool = True, cross_rank: bool = True,
                sigma_weight: float | None = None) -> dict:
    try:
        query = _resolve(engine, mode)
        with st.spinner("Searching..."):
            q = query.get("record") or query["point"]
            survey = query["record"].survey if "record" in query \
                else query["payload"].get(P.SURVEY)
            targets = held if target == "any" else [target]
            # None: the engine's default (the cut among the other instrument's hits only)
            cut = None if quality_cut else False
            groups = {t: [h.to_dict() for h in engine.search(
                q, target=t, k=k, filters=filters or None, quality_cut=cut,
                cross_rank=cross_rank,
                # the weight orders the other instrument's hits only
                sigma_weight=None if t == survey else sigma_weight)]
                      for t in targets}
            query.update(_query_model(engine, query))
    except SpecClipError as exc:
        return {"error": str(exc)}
    if "point" in query:   # the address bar now links to this search
        p = query["payload"]
        if p.get(P.SURVEY) == "lamost":
            st.query_params.from_dict({"obsid": str(p.get(P.OBJECT_ID))})
        else:
            st.query_params.from_dict({"source_id": str(p.get(P.OBJECT_ID))})
        st.session_state["search_link"] = tuple(sorted(st.query_params.to_dict().items()))
    hits = [h for t in groups for h in groups[t]]
    return {**query, "groups": groups, "hits": hits, "target": target, "filters": filters,
            "sigma_weight": sigma_weight}


def _query_model(engine: Engine, query: dict) -> dict:
    """The query's curves and its own predicted parameters (what the model says of it)."""
    key = data.engine_key(engine)
    out: dict = {"params": {}, "counterpart": None}
    if "record" in query:
        try:   # an indexed star's flags are in its payload; an upload's are computed here
            out["flags"] = engine.assess(query["record"])
        except SpecClipError as exc:
            log.info("no flags for the uploaded spectrum: %s", exc)
        try:
            out["curve"] = data.record_curve(engine, query["record"])
            out["full"] = data.record_full_curve(engine, query["record"])
            model = data.record_model_outputs(engine, query["record"])
            out.update(params=model["params"], counterpart=model["counterpart"])
        except SpecClipError as exc:
            out["model_error"] = str(exc)
        return out
    out["params"] = data.query_parameters(engine, key, query["point"])
    try:
        out["curve"] = data.spectrum_curve(engine, key, query["point"])
        out["full"] = data.full_curve(engine, key, query["point"])
        out["counterpart"] = data.point_model_outputs(engine, key,
                                                      query["point"])["counterpart"]
    except SpecClipError as exc:  # the tables still help when the spectrum cannot be drawn
        out["model_error"] = str(exc)
    return out


def _query_name(result: dict) -> str:
    if "record" in result:
        rec = result["record"]
        return f"{plots.SURVEY_NAMES.get(rec.survey, rec.survey)} {rec.object_id} (uploaded)"
    p = result["payload"]
    return star.title_of(p.get(P.SURVEY, ""), str(p.get(P.OBJECT_ID, "")), p)


def _show_result(engine: Engine, result: dict) -> None:
    if "error" in result:
        st.error(result["error"])
        return
    if result.get("note"):
        st.info(result["note"])
    if result.get("model_error"):
        st.warning(f"The query spectrum cannot be drawn: {result['model_error']}")
    if result.get("cone"):
        with st.expander("Spectra in the cone (score = separation, arcsec)"):
            tables.show_hits(data.hits_from_dicts(result["cone"]), "search_cone_table",
                             "separation (arcsec)", 2)
    qname = _query_name(result)
    st.subheader(f"Query: {qname}")
    left, right = st.columns([3, 2])
    if result.get("full") is not None:
        left.plotly_chart(plots.observed_figure(result["full"], "Query spectrum (observed)"),
                          width="stretch", key="search_query_spectrum")
    with right:
        st.markdown("**The query's predicted parameters (± σ) and catalogue labels**")
        labels = _record_labels(result["record"]) if "record" in result else result["payload"]
        st.dataframe(tables.parameters_frame(result.get("params") or {}, labels),
                     hide_index=True, width="stretch", key="search_query_params")
        star.show_flags(result.get("flags") or result.get("payload") or {})
    survey = result["curve"]["survey"] if result.get("curve") else \
        result.get("payload", {}).get(P.SURVEY)
    all_hits = []
    for target, items in result["groups"].items():
        hits = data.hits_from_dicts(items)
        _group(engine, result, survey, target, hits, len(all_hits))
        all_hits += hits
    _detail(engine, result, all_hits)


def _record_labels(record) -> dict:
    payload = {P.label_key(k): v for k, v in record.labels.items()}
    payload[P.LABEL_SOURCE] = record.label_source
    return payload


def _group(engine: Engine, result: dict, survey: str | None, target: str, hits: list,
           offset: int) -> None:
    """One instrument's neighbours: its scale, the parameter summary, the table, the grid."""
    name = plots.SURVEY_NAMES.get(target, target)
    same = target == survey
    scale = f"cosine in {_space_name(hits[0].space if hits else '', same)}"
    st.subheader(f"{name}: {len(hits)} nearest neighbours")
    ranked = any(h.rank_distance is not None for h in hits)
    st.caption(f"Similarity: {scale} (1 = identical). "
               + ("Same-instrument neighbours score higher than cross-instrument ones: "
                  "compare scores within a group only. " if len(result["groups"]) > 1 else "")
               + ("Ordered by rank distance: the nearest in the shared space, re-ordered by "
                  "how close the model's predicted Teff, logg and [Fe/H] are to the query's, "
                  + ("counting" if _sigma_weight(engine, result, target) > 0 else
                     "not counting")
                  + " the hits' uncertainty (untick the option above for shared-space "
                  "order)." if ranked else ""))
    if not hits:
        st.warning("Nothing matched: loosen the filters or search the other instrument.")
        return
    if all_unlike([h.similarity_percentile for h in hits]):
        st.info(UNLIKE_NOTE[0].upper() + UNLIKE_NOTE[1:] + ".")
    st.dataframe(tables.neighbour_summary(result.get("params") or {}, hits),
                 hide_index=True, width="stretch", key=f"search_summary_{target}")
    table_key = f"search_table_{target}"
    tables.show_hits(hits, table_key, "similarity", 3, selection_mode="single-row",
                     on_select=functools.partial(_on_row, table_key, offset,
                                                 _detail_options_len(result)))
    _grid(engine, result, target, same, hits)


def _space_name(space: str, same: bool) -> str:
    """What a hit's `space` (the named vector searched) means, for a caption."""
    if space == P.VECTOR_SHARED:
        return "the shared (CLIP) space"
    if space in P.VECTOR_SPECTRUM.values():
        return "the instrument's spectrum space (PCA of the normalised spectrum)"
    if space in P.VECTOR_OWN.values():
        return "the instrument's encoder space"
    return "the instrument's own space" if same else "the shared (CLIP) space"


def _sigma_weight(engine: Engine, result: dict, target: str) -> float:
    """The ranking's weight of the hits' sigmas in this search: the one asked for, else the
    bundle's for that direction."""
    asked = result.get("sigma_weight")
    return float(asked) if asked is not None else engine.cross_rank_settings(target).sigma_weight


def _grid(engine: Engine, result: dict, target: str, same: bool, hits: list) -> None:
    """Each neighbour against the query's curve in the same instrument: the query itself
    for same-instrument neighbours, its predicted counterpart for the other instrument."""
    key = data.engine_key(engine)
    reference = result.get("curve") if same else result.get("counterpart")
    ref_name = "query" if same else "query's predicted counterpart"
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
            st.plotly_chart(plots.neighbour_figure(reference, curve, h.score, i + 1, name,
                                                   ref_name),
                            width="stretch", key=f"search_grid_{target}_{i}",
                            config={"displayModeBar": False})
    if len(hits) > GRID_MAX:
        st.caption(f"Spectra of the first {GRID_MAX} neighbours shown; all are in the table.")


def _detail_options(hits: list) -> list[str]:
    return ["the query"] + [f"#{i + 1} {h.survey} {h.object_id}" for i, h in enumerate(hits)]


def _detail_options_len(result: dict) -> int:
    return 1 + sum(len(v) for v in result["groups"].values())


def _on_row(table_key: str, offset: int, n_options: int) -> None:
    """Clicking a result row opens that star below (the selectbox follows)."""
    rows = st.session_state[table_key].selection.rows
    result = st.session_state.get(RESULT) or {}
    hits = data.hits_from_dicts(result.get("hits", []))
    options = _detail_options(hits)
    if rows and offset + rows[0] + 1 < min(len(options), n_options):
        st.session_state["search_detail"] = options[offset + rows[0] + 1]


def _detail(engine: Engine, result: dict, hits: list) -> None:
    options = _detail_options(hits)
    choice = st.selectbox("Open a star (parameters, predicted counterpart, neighbours)",
                          options, key="search_detail")
    index = options.index(choice) if choice in options else 0
    if index == 0 and "record" in result:
        star.record_panel(engine, result["record"], "search_star")
    elif index == 0:
        star.star_panel(engine, result["point"], result["payload"], "search_star")
    else:
        h = hits[index - 1]
        star.star_panel(engine, h.id, h.payload, "search_star", neighbours_k=6)
