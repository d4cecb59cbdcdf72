"""Filter controls shared by the Search and Outliers pages, turned into the Engine's filters
dict ({"label_teff": (lo, hi), "snr": (20, None), "obj_class": ["STAR"]}).

Slider limits come from the data in the store (the smallest and largest value of the field,
two ordered look-ups), so no real star falls outside a slider. Ranges are opt-in: a range
filter drops every point that lacks the key (e.g. XP stars have no LAMOST class and many
LAMOST stars have no catalogue labels), so nothing filters by default.
"""

from __future__ import annotations

import math

import streamlit as st

from app import data
from engine import payload as P
from engine.query import Engine

# name -> (unit, fallback lower, fallback upper, step): the fallback serves an empty store
PARAMETERS = {"teff": ("K", 3000.0, 10000.0, 50.0), "logg": ("dex", -0.5, 5.5, 0.1),
              "feh": ("dex", -2.5, 1.0, 0.05)}
BASES = {"predicted (model)": "pred", "catalogue label": "label"}
CLASSES = ("STAR", "GALAXY", "QSO", "Unknown")


def slider_limits(engine: Engine | None, field: str, fallback: tuple[float, float],
                  step: float) -> tuple[float, float]:
    """The store's (min, max) of `field`, widened outward to whole steps."""
    found = data.value_range(engine, data.engine_key(engine), field) if engine else None
    if not found:
        return fallback
    lo, hi = found
    lo, hi = math.floor(lo / step) * step, math.ceil(hi / step) * step
    return (float(round(lo, 6)), float(round(hi if hi > lo else lo + step, 6)))


def filter_controls(prefix: str, engine: Engine | None = None) -> dict:
    """Render the filter widgets (keys `<prefix>_...`) and return the filters dict."""
    filters: dict = {}
    with st.expander("Filters", expanded=False):
        use = st.checkbox("Filter on stellar parameters", key=f"{prefix}_use_params")
        basis = BASES[st.radio("Parameters from", list(BASES), key=f"{prefix}_basis",
                               horizontal=True, disabled=not use)]
        cols = st.columns(len(PARAMETERS))
        for col, (name, (unit, flo, fhi, step)) in zip(cols, PARAMETERS.items(), strict=False):
            field = P.pred_key(name) if basis == "pred" else P.label_key(name)
            lo, hi = slider_limits(engine, field, (flo, fhi), step)
            with col:
                # the key carries the basis: its limits differ, and a kept value outside
                # new limits would be an error
                rng = st.slider(f"{name} ({unit})", lo, hi, (lo, hi), step=step,
                                key=f"{prefix}_{name}_{basis}", disabled=not use)
            if use and (rng[0] > lo or rng[1] < hi):
                filters[field] = (float(rng[0]), float(rng[1]))
        snr = st.number_input("Minimum SNR (LAMOST g band or XP median; 0 = any)",
                              min_value=0.0, value=0.0, step=5.0, key=f"{prefix}_snr")
        if snr > 0:
            filters[P.SNR] = (float(snr), None)
        classes = st.multiselect("LAMOST class (empty = any; a class drops XP spectra)",
                                 CLASSES, key=f"{prefix}_class")
        if classes:
            filters[P.OBJ_CLASS] = list(classes)
    return filters
