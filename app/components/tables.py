"""Search hits as tables: identifiers, similarity, position, labels beside predictions."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import streamlit as st

from engine.query import SearchHit

PARAMS = ("teff", "logg", "feh", "alpha_m")
# similarities differ in the 3rd-4th decimal among close neighbours: show 4
COLUMN_FORMATS = {"similarity": st.column_config.NumberColumn(format="%.4f"),
                  "ra (deg)": st.column_config.NumberColumn(format="%.5f"),
                  "dec (deg)": st.column_config.NumberColumn(format="%.5f")}


def _num(v) -> float:
    try:
        return float(v) if v is not None else np.nan
    except (TypeError, ValueError):
        return np.nan


def hits_frame(hits: Sequence[SearchHit], score_name: str = "similarity") -> pd.DataFrame:
    """One row per hit: rank, survey, id, score, sky position, SNR, class, labels, predictions."""
    rows = []
    for i, h in enumerate(hits, 1):
        p = h.payload
        row = {"rank": i, "survey": h.survey, "object_id": h.object_id, score_name: h.score,
               # percentile among typical neighbours in the same space (engine/similarity.py)
               "similarity percentile": _num(h.similarity_percentile),
               "gaia_source_id": str(p.get("gaia_source_id") or ""),
               "ra (deg)": _num(p.get("ra")), "dec (deg)": _num(p.get("dec")),
               "snr": _num(p.get("snr")), "class": p.get("obj_class") or "",
               "release": p.get("data_release") or ""}
        for name in PARAMS:
            row[f"label_{name}"] = _num(p.get(f"label_{name}"))
            row[f"pred_{name}"] = _num(p.get(f"pred_{name}"))
        rows.append(row)
    frame = pd.DataFrame(rows)
    if not rows:
        return frame
    # columns that are empty for every hit only add noise
    empty = [c for c in frame.columns if frame[c].isna().all()
             or (frame[c].dtype == object and (frame[c] == "").all())]
    return frame.drop(columns=empty)


def parameters_frame(predicted: dict[str, tuple[float, float]], payload: dict) -> pd.DataFrame:
    """Predicted value +/- sigma beside the catalogue label (with its source) per parameter."""
    units = {"teff": "K", "logg": "dex", "feh": "dex", "alpha_m": "dex"}
    rows = []
    for name in PARAMS:
        if name not in predicted and payload.get(f"label_{name}") is None:
            continue
        value, sigma = predicted.get(name, (np.nan, np.nan))
        rows.append({"parameter": f"{name} ({units[name]})", "predicted": value,
                     "sigma": sigma, "catalogue": _num(payload.get(f"label_{name}")),
                     "catalogue source": payload.get("label_source") or ""})
    return pd.DataFrame(rows)
