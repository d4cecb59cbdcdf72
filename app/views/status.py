"""Status: what is indexed (per survey and data release), by which model, in what kind of
store, whether the store answers, and what the indexer's recent runs did."""

from __future__ import annotations

import logging

import pandas as pd
import streamlit as st

from app import data
from app.components.footer import acknowledgement
from app.components.tables import INSTRUMENTS
from engine.errors import SpecClipError
from engine.query import Engine

log = logging.getLogger(__name__)

MODES = {"edge": "embedded (Qdrant Edge folder)", "server": "Qdrant server / cluster",
         "memory": "in-process memory"}
REPORT_COLUMNS = ("file", "started_at", "added", "updated", "skipped", "deleted", "duplicates",
                  "refused", "scored", "seconds", "model_version", "collection")


def main(engine: Engine) -> None:
    st.title("Status")
    if st.button("Refresh", key="status_refresh"):
        data.stats.clear()
    stats = data.stats(engine, data.engine_key(engine))
    _store(stats)
    _counts(stats)
    _model(engine, stats)
    _reports(engine)
    acknowledgement()


def _store(stats: dict) -> None:
    healthy = bool(stats.get("healthy"))
    c1, c2, c3 = st.columns(3)
    c1.metric("Store", "healthy" if healthy else "NOT answering")
    c2.metric("Spectra indexed", f"{stats.get('total', 0):,}")
    c3.metric("Mode", str(stats.get("store_mode", "?")))
    st.caption(f"{MODES.get(stats.get('store_mode'), stats.get('store_mode'))} · location "
               f"`{stats.get('store') or '?'}` · collection alias `{stats.get('collection')}` "
               f"→ `{stats.get('resolved_collection')}`")
    if not healthy:
        st.error(f"The store did not answer: {stats.get('error', 'unknown error')}")


def _counts(stats: dict) -> None:
    by_survey = stats.get("by_survey") or {}
    by_release = stats.get("by_release") or {}
    if not by_survey:
        st.info("Nothing indexed yet: run `specclip index --store DIR SOURCES`.")
        return
    left, right = st.columns(2)
    with left:
        st.markdown("**Spectra per survey**")
        st.dataframe(pd.DataFrame({"instrument": [INSTRUMENTS.get(k, k) for k in by_survey],
                                   "spectra": list(by_survey.values())}),
                     hide_index=True, width="stretch", key="status_by_survey")
    with right:
        st.markdown("**Spectra per data release**")
        rows = [{"instrument": INSTRUMENTS.get(k.split("/", 1)[0], k.split("/", 1)[0]),
                 "release": k.split("/", 1)[-1], "spectra": v}
                for k, v in sorted(by_release.items())]
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch",
                     key="status_by_release")


def _model(engine: Engine, stats: dict) -> None:
    st.subheader("Model")
    versions = stats.get("model_versions") or []
    st.caption("Model version(s) in the store: " + (", ".join(f"`{v}`" for v in versions)
                                                   or "none"))
    try:
        card, metrics = data.model_card(engine)
    except (SpecClipError, AttributeError) as exc:  # AttributeError: an engine without bundle
        st.warning(f"The model bundle could not be loaded: {exc}")
        return
    if card.get("version") and versions and card["version"] not in versions:
        st.warning(f"The loaded model ({card['version']}) is not the one that built the "
                   "index: re-run `specclip index` so queries and stored vectors agree.")
    with st.expander("Model card", expanded=False):
        st.markdown(card.get("markdown") or "_no card_")
    if metrics:
        with st.expander("Evaluation metrics", expanded=True):
            flat = _flatten(metrics)
            st.dataframe(pd.DataFrame({"metric": list(flat),
                                       "value": [readable(v) for v in flat.values()]}),
                         hide_index=True, width="stretch", key="status_metrics")


def _reports(engine: Engine) -> None:
    st.subheader("Indexer runs")
    reports = data.indexer_reports(engine)
    if not reports:
        st.caption("No indexer reports in the store folder (STORE/reports/*.json).")
        return
    rows = []
    for r in reports:
        row = {c: r.get(c) for c in REPORT_COLUMNS}
        row["refused"] = len(r.get("refused") or [])
        rows.append(row)
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", key="status_reports")
    refused = [x for r in reports[:1] for x in (r.get("refused") or [])]
    if refused:
        with st.expander(f"Refused in the latest run ({len(refused)})"):
            st.dataframe(pd.DataFrame(refused), hide_index=True, width="stretch",
                         key="status_refused")


def readable(value) -> str:
    """A metric as a person reads it: 4 significant digits, not 16."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.4g}"


def _flatten(d: dict, prefix: str = "") -> dict:
    out: dict = {}
    for k, v in d.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, f"{name}."))
        else:
            out[name] = v
    return out
