"""Plotly figures with units: spectra (query vs neighbour, real vs predicted counterpart) and
the 2-D map of the embedding space.

Only like is overlaid with like: a LAMOST spectrum with LAMOST spectra, a Gaia XP spectrum
with XP spectra, each on its instrument's model grid and normalisation (LAMOST 3999-5599 A
continuum-normalised, Gaia XP 3360-10200 A divided by the flux at 550 nm), which the y axis
names. A neighbour from the other instrument is drawn against the query's *predicted*
counterpart in that instrument, never against the query itself.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go

WAVE_LABEL = "Wavelength (Å)"
FLUX_LABELS = {"lamost": "Continuum-normalised flux",
               "gaia_xp": "Flux / flux at 550 nm"}
FLUX_LABEL = "Normalised flux"
LAMOST_WINDOW = (3999.0, 5599.0)      # the model's LAMOST window (Angstrom)
SURVEY_NAMES = {"lamost": "LAMOST LRS", "gaia_xp": "Gaia XP"}
COLOURS = {"query": "#1f3b73", "other": "#d1495b", "predicted": "#e08e0b", "real": "#00798c"}
# units of the payload fields a map can be coloured by
UNITS = {"teff": "K", "logg": "dex", "feh": "dex", "alpha_m": "dex"}


def flux_label(survey: str | None) -> str:
    return FLUX_LABELS.get(survey or "", FLUX_LABEL)


def _layout(fig: go.Figure, title: str, height: int, survey: str | None = None,
            y_label: str | None = None) -> go.Figure:
    fig.update_layout(title={"text": title, "font": {"size": 13}}, height=height,
                      margin={"l": 55, "r": 10, "t": 36, "b": 70},
                      legend={"orientation": "h", "y": -0.3, "yanchor": "top",
                              "font": {"size": 10}},
                      template="plotly_white")
    fig.update_xaxes(title_text=WAVE_LABEL)
    fig.update_yaxes(title_text=y_label or flux_label(survey))
    return fig


def add_curve(fig: go.Figure, curve: dict, name: str, colour: str, dash: str = "solid",
              width: float = 1.2) -> None:
    """One spectrum (dict with wave, flux) as a line; NaN flux leaves gaps at masked pixels."""
    fig.add_trace(go.Scatter(x=np.asarray(curve["wave"]), y=np.asarray(curve["flux"]),
                             mode="lines", name=name,
                             line={"color": colour, "dash": dash, "width": width}))


def spectrum_figure(curves: Sequence[tuple[dict, str]], title: str = "",
                    height: int = 320) -> go.Figure:
    """Several spectra of one instrument overlaid: `curves` is [(curve, legend name), ...].
    Refuses to mix instruments: their normalisations are not comparable."""
    surveys = {c.get("survey") for c, _ in curves}
    if len(surveys) > 1:
        raise ValueError(f"spectra of different instruments on one axis: {sorted(surveys)}")
    fig = go.Figure()
    palette = [COLOURS["query"], COLOURS["other"], COLOURS["real"], COLOURS["predicted"]]
    for i, (curve, name) in enumerate(curves):
        add_curve(fig, curve, name, palette[i % len(palette)])
    return _layout(fig, title, height, surveys.pop() if surveys else None)


def observed_figure(full: dict, title: str = "Observed spectrum") -> go.Figure:
    """The whole observed spectrum; for LAMOST the model's window is shaded, so what the
    model reads is visible inside what the telescope recorded."""
    fig = go.Figure()
    add_curve(fig, full, "observed", COLOURS["query"], width=1.0)
    if full.get("survey") == "lamost":
        fig.add_vrect(x0=LAMOST_WINDOW[0], x1=LAMOST_WINDOW[1], fillcolor="#edae49",
                      opacity=0.15, line_width=0, annotation_text="model window",
                      annotation_position="top left")
    return _layout(fig, title, 320, full.get("survey"), full.get("ylabel"))


def neighbour_figure(query: dict | None, neighbour: dict, similarity: float, rank: int,
                     neighbour_name: str, query_name: str = "query",
                     score_label: str = "cosine") -> go.Figure:
    """One neighbour (red) with the query's curve of the same instrument (dark): the query
    itself, or its predicted counterpart when the neighbour is from the other instrument."""
    if query is not None and query.get("survey") != neighbour.get("survey"):
        raise ValueError("query and neighbour curves come from different instruments")
    fig = go.Figure()
    add_curve(fig, neighbour, f"#{rank} {neighbour_name}", COLOURS["other"], width=1.4)
    if query is not None:
        add_curve(fig, query, query_name, COLOURS["query"], width=1.0)
    return _layout(fig, f"#{rank} {neighbour_name} · {score_label} {similarity:.3f}", 300,
                   neighbour.get("survey"))


def counterpart_figure(predicted: dict, real: dict | None, survey: str) -> go.Figure:
    """The model's predicted counterpart spectrum (solid) over the real one when the star
    has both: two solid lines in contrasting colours, so the lines of each stay visible."""
    fig = go.Figure()
    name = SURVEY_NAMES.get(survey, survey)
    if real is not None:
        add_curve(fig, real, f"real {name}", COLOURS["real"], width=1.3)
    add_curve(fig, predicted, f"predicted {name}", COLOURS["predicted"], width=1.3)
    title = f"Predicted {name} counterpart" + (" vs the real spectrum" if real is not None
                                               else " (no real one indexed)")
    return _layout(fig, title, 300, survey)


def colour_title(key: str) -> str:
    """'pred_teff' -> 'predicted Teff (K)': the colour bar says what and in which unit."""
    kind, _, name = key.partition("_")
    if kind in ("pred", "label") and name in UNITS:
        pretty = {"teff": "Teff", "logg": "log g", "feh": "[Fe/H]", "alpha_m": "[α/M]"}[name]
        return f"{'predicted' if kind == 'pred' else 'catalogue'} {pretty} ({UNITS[name]})"
    if key.startswith("anomaly"):
        return f"{key.replace('_', ' ')} (higher = odder)"
    if key == "snr":
        return "SNR (per pixel)"
    return key


def map_figure(xy: np.ndarray, ids: Sequence, values: Sequence, colour_name: str,
               hover: Sequence[str], axis_names: tuple[str, str] = ("component 1",
                                                                    "component 2")
               ) -> go.Figure:
    """WebGL scatter (stays responsive at 40k+ points); customdata carries `ids` (point ids
    or row numbers) so a selection event can open the star. Categorical values get one
    trace each."""
    fig = go.Figure()
    values = np.asarray(values, dtype=object)
    numeric = _as_float(values)
    common = {"mode": "markers", "hovertemplate": "%{text}<extra></extra>"}
    if numeric is not None:
        marker = {"size": 4, "color": numeric, "colorscale": "Viridis", "opacity": 0.8,
                  "colorbar": {"title": {"text": colour_title(colour_name), "side": "right"}}}
        finite = numeric[np.isfinite(numeric)]
        if finite.size:
            # 1st-99th percentile colour range: a few extreme values must not flatten the rest
            marker["cmin"], marker["cmax"] = (float(v) for v in np.percentile(finite, [1, 99]))
        fig.add_trace(go.Scattergl(
            x=xy[:, 0], y=xy[:, 1], customdata=np.asarray(ids), text=list(hover),
            marker=marker,
            name=colour_name, **common))
    else:
        for cat in sorted({str(v) for v in values}):
            sel = np.array([str(v) == cat for v in values])
            fig.add_trace(go.Scattergl(
                x=xy[sel, 0], y=xy[sel, 1], customdata=np.asarray(ids)[sel],
                text=[h for h, s in zip(hover, sel, strict=True) if s],
                marker={"size": 4, "opacity": 0.8},
                name=SURVEY_NAMES.get(cat, cat), **common))
    # dragmode "zoom", not "select": Streamlit makes a click select a scatter point only
    # while the drag mode is neither select nor lasso (it then sets clickmode
    # "event+select"); the box-select tool in the modebar still lists a box of stars
    fig.update_layout(height=560, template="plotly_white", dragmode="zoom",
                      margin={"l": 40, "r": 10, "t": 20, "b": 40})
    fig.update_xaxes(title_text=axis_names[0])
    fig.update_yaxes(title_text=axis_names[1])
    return fig


def _as_float(values: np.ndarray) -> np.ndarray | None:
    """Float array with NaN for missing values, or None when the values are categories."""
    out = np.full(len(values), np.nan)
    for i, v in enumerate(values):
        if v is None:
            continue
        if isinstance(v, (bool, str)):
            return None
        try:
            out[i] = float(v)
        except (TypeError, ValueError):
            return None
    return out
