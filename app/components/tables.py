"""Search hits and parameters as tables a scientist reads: human column names with units,
rounding to what the numbers support, blanks for missing values, and the stellar-parameter
columns first after the identity so they are visible without scrolling."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import streamlit as st

from engine import payload as P
from engine.query import SearchHit

PARAMS = ("teff", "logg", "feh", "alpha_m")
NAMES = {"teff": "Teff", "logg": "log g", "feh": "[Fe/H]", "alpha_m": "[α/M]"}
UNITS = {"teff": "K", "logg": "dex", "feh": "dex", "alpha_m": "dex"}
DIGITS = {"teff": 0, "logg": 2, "feh": 2, "alpha_m": 2}
INSTRUMENTS = {"lamost": "LAMOST LRS", "gaia_xp": "Gaia XP"}


def param_label(name: str, prefix: str = "") -> str:
    """'teff' -> 'Teff (K)'; with a prefix: 'pred Teff (K)'."""
    unit = f" ({UNITS[name]})" if UNITS[name] == "K" else ""
    return f"{prefix}{NAMES[name]}{unit}"


def _num(v) -> float:
    try:
        return float(v) if v is not None else np.nan
    except (TypeError, ValueError):
        return np.nan


def _formats(frame: pd.DataFrame, score_name: str, score_digits: int) -> dict[str, str]:
    fmt = {score_name: f"{{:.{score_digits}f}}", "RA (deg)": "{:.5f}", "Dec (deg)": "{:.5f}",
           "SNR": "{:.1f}", "rank distance": "{:.2f}", "alike (percentile)": "{:.0f}"}
    for name in PARAMS:
        for prefix in ("pred ", "cat "):
            fmt[param_label(name, prefix)] = f"{{:.{DIGITS[name]}f}}"
    return {c: f for c, f in fmt.items() if c in frame.columns}


def styled(frame: pd.DataFrame, formats: dict[str, str]) -> pd.DataFrame:
    """The frame as it should read: numbers rounded by `formats` and missing values blank.
    Those columns become text, because Streamlit's grid prints "None" for a missing number
    whatever a Styler says."""
    out = frame.copy()
    for column, fmt in formats.items():
        if column in out.columns:
            out[column] = [fmt.format(v) if v is not None and np.isfinite(_num(v)) else ""
                           for v in out[column]]
    return out


def flags_of(payload: dict) -> str:
    """What a reader must not miss about a spectrum, next to its id: outside the training
    data (its predicted parameters are unreliable), low quality, stale neighbour scores."""
    return ", ".join(name for name, on in (
        ("outside training data", payload.get(P.OOD)),
        ("low quality", payload.get(P.LOW_QUALITY)),
        # a sync deferred its neighbour-score refresh (engine/stale_scores.py)
        ("neighbour scores stale", payload.get(P.SCORES_STALE))) if on)


def hits_frame(hits: Sequence[SearchHit], score_name: str = "similarity") -> pd.DataFrame:
    """One row per hit: rank, instrument, id, score, predicted and catalogue parameters,
    then SNR, class, Gaia source id, sky position and release. Columns empty for every hit
    are dropped."""
    rows = []
    for i, h in enumerate(hits, 1):
        p = h.payload
        gaia = p.get(P.GAIA_SOURCE_ID)
        pct = _num(h.similarity_percentile)
        row = {"#": i, "instrument": INSTRUMENTS.get(h.survey, h.survey),
               "id": h.object_id, "flags": flags_of(p), score_name: h.score,
               # percentile among typical neighbours in the same space (engine/similarity.py):
               # comparable across spaces, where the raw cosines are not
               "alike (percentile)": 100 * pct,
               # cross-instrument hits: the distance they are ordered by (engine/cross_rank.py)
               "rank distance": _num(h.rank_distance)}
        for name in PARAMS:
            row[param_label(name, "pred ")] = _num(p.get(P.pred_key(name)))
        for name in PARAMS:
            row[param_label(name, "cat ")] = _num(p.get(P.label_key(name)))
        row.update({"SNR": _num(p.get(P.SNR)), "class": p.get(P.OBJ_CLASS) or "",
                    "Gaia source_id": str(gaia) if gaia not in (None, "", -1) else "",
                    "RA (deg)": _num(p.get(P.RA)), "Dec (deg)": _num(p.get(P.DEC)),
                    "release": p.get(P.DATA_RELEASE) or ""})
        rows.append(row)
    frame = pd.DataFrame(rows)
    if not rows:
        return frame
    empty = [c for c in frame.columns if frame[c].isna().all()
             or (frame[c].dtype == object and (frame[c] == "").all())]
    return frame.drop(columns=empty)


def show_hits(hits: Sequence[SearchHit], key: str, score_name: str = "similarity",
              score_digits: int = 3, **kwargs) -> None:
    """`hits_frame` as an st.dataframe with rounding and blanks."""
    frame = hits_frame(hits, score_name)
    config = {c: st.column_config.Column(width="small") for c in frame.columns
              if c.startswith(("pred ", "cat ", "#"))}
    st.dataframe(styled(frame, _formats(frame, score_name, score_digits)), hide_index=True,
                 width="stretch", key=key, column_config=config, **kwargs)


def parameters_frame(predicted: dict[str, tuple[float, float]], payload: dict) -> pd.DataFrame:
    """Predicted value ± sigma beside the catalogue label (with its source) per parameter."""
    rows = []
    for name in PARAMS:
        if name not in predicted and payload.get(P.label_key(name)) is None:
            continue
        value, sigma = predicted.get(name, (np.nan, np.nan))
        d = DIGITS[name]
        rows.append({"parameter": f"{NAMES[name]} ({UNITS[name]})",
                     "predicted": _fmt(value, d), "σ": _fmt(sigma, d),
                     "catalogue": _fmt(_num(payload.get(P.label_key(name))), d),
                     "catalogue source": payload.get(P.LABEL_SOURCE) or ""})
    return pd.DataFrame(rows)


def neighbour_summary(predicted: dict[str, tuple[float, float]],
                      hits: Sequence[SearchHit]) -> pd.DataFrame:
    """The query's predicted parameters (± sigma) beside the median and spread (half the
    16-84th percentile range) of its neighbours' catalogue labels, per parameter."""
    rows = []
    sources = sorted({str(h.payload.get(P.LABEL_SOURCE)) for h in hits
                      if h.payload.get(P.LABEL_SOURCE)})
    for name in PARAMS:
        labels = np.array([_num(h.payload.get(P.label_key(name))) for h in hits])
        labels = labels[np.isfinite(labels)]
        if name not in predicted and not labels.size:
            continue
        value, sigma = predicted.get(name, (np.nan, np.nan))
        lo, med, hi = (np.percentile(labels, [16, 50, 84]) if labels.size
                       else (np.nan, np.nan, np.nan))
        d = DIGITS[name]
        rows.append({"parameter": f"{NAMES[name]} ({UNITS[name]})",
                     "query predicted": _fmt(value, d), "σ": _fmt(sigma, d),
                     "neighbours' median label": _fmt(med, d),
                     "spread (16-84 %)/2": _fmt((hi - lo) / 2, d),
                     "labelled neighbours": f"{labels.size} of {len(hits)}",
                     "label source": ", ".join(sources)})
    return pd.DataFrame(rows)


def _fmt(value: float, digits: int) -> str:
    """Rounded text, blank when missing (these small tables are read, not sorted)."""
    return "" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"
