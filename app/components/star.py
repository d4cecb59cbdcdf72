"""The star panel: one spectrum, its predicted parameters beside the catalogue labels, its
predicted counterpart (over the real one when the other instrument observed it too) and,
optionally, its nearest neighbours. Used by Search, Outliers and Map."""

from __future__ import annotations

import logging

import streamlit as st

from app import data
from app.components import plots, tables
from engine import payload as P
from engine.errors import SpecClipError
from engine.query import Engine, parameter_warning
from engine.records import SpectrumRecord

log = logging.getLogger(__name__)


def show_flags(flags: dict) -> None:
    """Beside predicted parameters: the OOD caveat (engine.query.parameter_warning, also true
    of the predicted counterpart) and the low-quality flag with its reason."""
    warning = parameter_warning(flags)
    if warning:
        st.warning(f":warning: {warning[0].upper()}{warning[1:]}. This is also true of "
                   "the predicted counterpart.")
    if flags.get(P.LOW_QUALITY):
        reason = flags.get(P.QUALITY_REASON)
        st.warning("Low quality" + (f": {reason}" if reason else "") + ". Its neighbours and "
                   "parameters are less certain than the σ say.")


def title_of(survey: str, object_id: str, payload: dict) -> str:
    name = plots.SURVEY_NAMES.get(survey, survey)
    ident = f"obsid {object_id}" if survey == "lamost" else f"DR3 {object_id}"
    gaia = payload.get(P.GAIA_SOURCE_ID)
    extra = f" · Gaia {gaia}" if gaia and survey == "lamost" else ""
    return f"{name} {ident}{extra}"


def star_panel(engine: Engine, point_id: str, payload: dict, prefix: str,
               neighbours_k: int = 0) -> None:
    """Everything about one stored point. Errors (e.g. its source file moved) are shown, not
    raised, so one bad point never breaks a page."""
    key = data.engine_key(engine)
    survey, object_id = payload.get(P.SURVEY, ""), str(payload.get(P.OBJECT_ID, ""))
    st.subheader(title_of(survey, object_id, payload))
    try:
        curve = data.spectrum_curve(engine, key, point_id)
        full = data.full_curve(engine, key, point_id)
        outputs = data.point_model_outputs(engine, key, point_id)
    except SpecClipError as exc:
        st.warning(f"Cannot show this spectrum: {exc}")
        return
    real = None
    other = data.counterpart_point(engine, key, survey, object_id,
                                   payload.get(P.GAIA_SOURCE_ID))
    if other is not None:
        try:
            real = data.spectrum_curve(engine, key, other["id"])
        except SpecClipError as exc:
            st.caption(f"Counterpart {other['object_id']} is indexed but unreadable: {exc}")
    _render(full, outputs, payload, real, prefix)
    if neighbours_k:
        _neighbours(engine, point_id, curve, neighbours_k, prefix)


def record_panel(engine: Engine, record: SpectrumRecord, prefix: str) -> None:
    """The star panel for a spectrum that is not in the store (an uploaded file)."""
    st.subheader(f"{plots.SURVEY_NAMES.get(record.survey, record.survey)} "
                 f"{record.object_id} (uploaded)")
    try:
        full = data.record_full_curve(engine, record)
        outputs = data.record_model_outputs(engine, record)
    except SpecClipError as exc:
        st.warning(f"Cannot run the model on this spectrum: {exc}")
        return
    payload = {P.label_key(k): v for k, v in record.labels.items()}
    payload[P.LABEL_SOURCE] = record.label_source
    try:
        payload.update(engine.assess(record))   # ood / low_quality flags for the caption
    except SpecClipError as exc:
        log.info("no flags for the uploaded spectrum: %s", exc)
    _render(full, outputs, payload, None, prefix)


def _render(full: dict, outputs: dict, payload: dict, real: dict | None, prefix: str) -> None:
    left, right = st.columns([3, 2])
    with left:
        fig = plots.observed_figure(full)
        st.plotly_chart(fig, width="stretch", key=f"{prefix}_spectrum")
    with right:
        st.markdown("**Parameters: model prediction ± σ vs catalogue**")
        st.dataframe(tables.parameters_frame(outputs["params"], payload), hide_index=True,
                     width="stretch", key=f"{prefix}_params")
        show_flags(payload)
    cp = outputs["counterpart"]
    st.plotly_chart(plots.counterpart_figure(cp, real, cp["survey"]),
                    width="stretch", key=f"{prefix}_counterpart")


def _neighbours(engine: Engine, point_id: str, curve: dict, k: int, prefix: str) -> None:
    key = data.engine_key(engine)
    hits = data.hits_from_dicts(data.neighbours(engine, key, point_id, k))
    st.markdown(f"**{len(hits)} nearest neighbours, both instruments**",
                help="As a search finds them: within this star's instrument by the spectrum "
                     "space (PCA of the normalised spectrum), in the other instrument by the "
                     "shared space re-ordered by predicted parameters. Cosines from the two "
                     "spaces are not comparable: compare within an instrument.")
    tables.show_hits(hits, f"{prefix}_nbr_table", "cosine (its space)")
    # only neighbours seen by the same instrument share this star's axis and normalisation
    same = [h for h in hits if h.survey == curve.get("survey")]
    curves = [(curve, "this star")]
    for h in same[:3]:
        try:
            curves.append((data.spectrum_curve(engine, key, h.id),
                           f"{plots.SURVEY_NAMES.get(h.survey, h.survey)} {h.object_id} "
                           f"({h.score:.3f})"))
        except SpecClipError as exc:
            log.info("neighbour %s unreadable: %s", h.id, exc)
    name = plots.SURVEY_NAMES.get(curve.get("survey"), "")
    st.plotly_chart(plots.spectrum_figure(
        curves, f"This star and its {len(curves) - 1} nearest {name} neighbours (model input)"),
        width="stretch", key=f"{prefix}_nbr_plot")
