"""Outliers: hunt for odd spectra, ranked by an anomaly score, and teach the ranking.

A hunting session keeps the user's marks (interesting / artefact / known / boring, with notes)
in a JSON file, so a hunt can be resumed and exported. With "learn from my marks" on, the list
is re-ranked by `app.reranking.rerank`: neighbours (as a search finds them, in both
instruments) of boring or artefact candidates move down, neighbours of interesting ones move up.
"""

from __future__ import annotations

import functools
import logging

import pandas as pd
import streamlit as st

from app import data, reranking
from app.components import filters as filter_ui
from app.components import star, tables
from app.components.empty_state import surveys_or_stop
from app.components.footer import acknowledgement
from app.session_store import HuntingSession, SessionStore
from engine import payload as P
from engine.errors import SpecClipError
from engine.query import Engine, SearchHit

log = logging.getLogger(__name__)

SURVEYS = {"LAMOST LRS": "lamost", "Gaia XP": "gaia_xp", "both instruments": None}
SCORES = {P.ANOMALY: "combined: Fisher's -Σ log(1 - percentile) of the own-survey scores",
          P.ANOMALY_RECON: "reconstruction chi² (own noise + look-alikes' model error)",
          P.ANOMALY_PEAK: "Gaia XP: worst single bin of that chi² (spikes, dead segments)",
          "anomaly_features": "expected spectral features missing (noise units)",
          P.ANOMALY_KNN: "isolation relative to its neighbours",
          P.ANOMALY_REDSHIFT: "LAMOST: a star's lines fit at a galaxy's redshift (noise units)",
          P.ANOMALY_TRANSLATION:
          "cross-instrument disagreement (ranked among stars with both spectra only)"}
NEIGHBOURS_FOR_MARKS = 20


def main(engine: Engine) -> None:
    st.title("Outlier hunting")
    st.caption("The spectra the model finds least typical. Mark what you see; the marks are "
               "saved, exportable, and can re-rank the list.")
    held = surveys_or_stop(engine)
    if not held:
        return
    options = survey_options(held)
    c1, c2, c3 = st.columns(3)
    survey = options[c1.selectbox("Instrument", list(options), key="outliers_survey")]
    # a score the instrument does not have would list nothing: offer only the others
    only = {P.ANOMALY_REDSHIFT: "lamost", P.ANOMALY_PEAK: "gaia_xp"}
    offered = [s for s in SCORES if survey is None or only.get(s, survey) == survey]
    if st.session_state.get("outliers_score") not in offered:
        st.session_state["outliers_score"] = P.ANOMALY
    score = c2.selectbox("Anomaly score", offered, format_func=SCORES.get,
                         key="outliers_score")
    k = int(c3.number_input("Candidates", 5, 1000, 50, step=5, key="outliers_k"))
    filters = filter_ui.filter_controls("outliers", engine)
    session = _session_controls()
    flash = st.session_state.pop("outliers_flash", None)
    if flash:
        st.success(flash)
    c4, c5 = st.columns(2)
    learn = c4.checkbox("Learn from my marks (re-rank)", key="outliers_rerank")
    strength = c5.slider("Re-ranking strength", 0.0, 3.0, 1.0, 0.25, key="outliers_strength",
                         disabled=not learn)
    try:
        hits = engine.outliers(survey, k=k, filters=filters or None, score=score)
    except (SpecClipError, ValueError) as exc:
        st.error(f"Could not rank outliers: {exc}")
        acknowledgement()
        return
    hits += _marked_elsewhere(engine, hits, session, survey)
    if not hits:
        st.warning("No candidates: no spectrum of this instrument passes the filters, or "
                   "the store was indexed without anomaly scores (re-run `specclip index`).")
        acknowledgement()
        return
    order = _ordered(engine, hits, session, learn, strength)
    _table(order, score, session, learn)
    picked = _pick(order)
    if picked is not None:
        star.star_panel(engine, picked.id, picked.payload, "outliers_star", neighbours_k=8)
        _mark_form(picked, session, score)
    _export(session)
    acknowledgement()


def survey_options(held: list[str]) -> dict[str, str | None]:
    """The instrument choices for the instruments the store holds (first = default)."""
    if len(held) > 1:
        return SURVEYS
    return {k: v for k, v in SURVEYS.items() if v in held}


def _marked_elsewhere(engine: Engine, hits: list[SearchHit], session: HuntingSession,
                      survey: str | None) -> list[SearchHit]:
    """Marked candidates that the ranking no longer puts in the top k: they stay in the list
    (last, with their mark) so a hunt never loses what it has judged."""
    shown = {h.id for h in hits}
    missing = [pid for pid in session.marks if pid not in shown]
    if not missing:
        return []
    return [h for h in engine.points(missing) if survey is None or h.survey == survey]


def _session_controls() -> HuntingSession:
    store = SessionStore()
    name = st.text_input("Hunting session", "default", key="outliers_session",
                         help=f"Saved in {store.root}; choose a saved name to resume it. "
                              f"Saved: {', '.join(store.list()) or 'none yet'}")
    loaded = st.session_state.get("outliers_hunt")
    if loaded is None or loaded.name != store.path(name).stem:
        loaded = store.load(name)
        st.session_state["outliers_hunt"] = loaded
    st.caption(f"Session **{loaded.name}**: {len(loaded.marks)} marked "
               + ", ".join(f"{lab}: {n}" for lab, n in _counts(loaded).items() if n))
    return loaded


def _counts(session: HuntingSession) -> dict[str, int]:
    labels = list(session.labels().values())
    return {lab: labels.count(lab) for lab in reranking.LABELS}


def _ordered(engine: Engine, hits: list[SearchHit], session: HuntingSession, learn: bool,
             strength: float) -> list[tuple[SearchHit, reranking.Ranked]]:
    marks = session.labels()
    neighbours = data.neighbour_lists(engine, list(marks), NEIGHBOURS_FOR_MARKS) \
        if learn and marks else {}
    ranked = reranking.rerank([h.id for h in hits], marks, neighbours,
                              strength=strength if learn else 0.0)
    by_id = {h.id: h for h in hits}
    return [(by_id[r.id], r) for r in ranked]


def _table(order: list[tuple[SearchHit, reranking.Ranked]], score: str,
           session: HuntingSession, learn: bool) -> None:
    """The candidates; the re-ranking's columns only while it is on."""
    rows = []
    for i, (h, r) in enumerate(order, 1):
        mark = session.marks.get(h.id)
        rows.append({"#": i, "instrument": tables.INSTRUMENTS.get(h.survey, h.survey),
                     "id": h.object_id, "flags": tables.flags_of(h.payload),
                     "mark": mark.label if mark else "",
                     "note": mark.note if mark else "", score: h.payload.get(score),
                     "pred Teff (K)": h.payload.get(P.pred_key("teff")),
                     "pred log g": h.payload.get(P.pred_key("logg")),
                     "pred [Fe/H]": h.payload.get(P.pred_key("feh")),
                     "SNR": h.payload.get(P.SNR), "class": h.payload.get(P.OBJ_CLASS) or "",
                     **({"rank score": r.base, "pull": r.pull, "new score": r.score}
                        if learn else {})})
    frame = pd.DataFrame(rows)
    formats = {score: "{:.3f}", "pred Teff (K)": "{:.0f}", "pred log g": "{:.2f}",
               "pred [Fe/H]": "{:.2f}", "SNR": "{:.1f}", "rank score": "{:.3f}",
               "pull": "{:+.2f}", "new score": "{:.3f}"}
    st.dataframe(tables.styled(frame, formats), hide_index=True, width="stretch", height=320,
                 key="outliers_table", selection_mode="single-row",
                 on_select=functools.partial(_on_row, _labels(order)))


def _labels(order: list[tuple[SearchHit, reranking.Ranked]]) -> list[str]:
    return [f"#{i} {h.survey} {h.object_id}" for i, (h, _) in enumerate(order, 1)]


def _on_row(labels: list[str]) -> None:
    """Clicking a table row opens that candidate (the selectbox follows)."""
    rows = st.session_state["outliers_table"].selection.rows
    if rows and rows[0] < len(labels):
        st.session_state["outliers_pick"] = labels[rows[0]]


def _pick(order: list[tuple[SearchHit, reranking.Ranked]]) -> SearchHit | None:
    labels = _labels(order)
    choice = st.selectbox("Open a candidate", labels, key="outliers_pick")
    if choice is None:
        return None
    return order[labels.index(choice)][0]


def _mark_form(hit: SearchHit, session: HuntingSession, score: str) -> None:
    st.markdown("**Mark this candidate**")
    existing = session.marks.get(hit.id)
    if st.session_state.get("outliers_last_pick") != hit.id:
        # a newly opened candidate shows its own saved mark and note, not the previous one's
        st.session_state["outliers_last_pick"] = hit.id
        st.session_state["outliers_label"] = existing.label if existing else "interesting"
        st.session_state["outliers_note"] = existing.note if existing else ""
    c1, c2 = st.columns([1, 2])
    label = c1.radio("Label", reranking.LABELS, key="outliers_label")
    note = c2.text_area("Note", key="outliers_note", height=80)
    b1, b2 = st.columns(2)
    store = SessionStore()
    if b1.button("Save mark", key="outliers_save_mark", type="primary"):
        session.mark(hit.id, label, note, hit.payload, score_name=score)
        path = store.save(session)
        # rerun so the table and the re-ranking show the new mark at once
        st.session_state["outliers_flash"] = f"Marked {hit.object_id} as {label}; saved to {path}."
        st.rerun()
    if b2.button("Remove mark", key="outliers_clear_mark", disabled=existing is None):
        session.unmark(hit.id)
        store.save(session)
        st.session_state["outliers_flash"] = f"Removed the mark on {hit.object_id}."
        st.rerun()


def _export(session: HuntingSession) -> None:
    if not session.marks:
        return
    st.markdown("**Export this session**")
    c1, c2 = st.columns(2)
    c1.download_button("CSV", session.export_csv(), f"{session.name}.csv", "text/csv",
                       key="outliers_export_csv")
    c2.download_button("VOTable", session.export_votable(), f"{session.name}.vot",
                       "application/x-votable+xml", key="outliers_export_vot")
