"""Plotly figures with units: spectra (query vs neighbour, real vs predicted counterpart) and
the 2-D map of the embedding space.

Every spectrum is drawn as the model sees it: on its instrument's model grid (LAMOST
3999-5599 A continuum-normalised, Gaia XP 3360-10200 A normalised at 550 nm), so a query and
its neighbours, or a real spectrum and its predicted counterpart, share one wavelength axis.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go

WAVE_LABEL = "Wavelength (Å)"
FLUX_LABEL = "Normalised flux (model input)"
SURVEY_NAMES = {"lamost": "LAMOST LRS", "gaia_xp": "Gaia XP"}
COLOURS = {"query": "#1f3b73", "other": "#d1495b", "predicted": "#edae49", "real": "#00798c"}


def _layout(fig: go.Figure, title: str, height: int) -> go.Figure:
    fig.update_layout(title={"text": title, "font": {"size": 13}}, height=height,
                      margin={"l": 55, "r": 10, "t": 36, "b": 70},
                      legend={"orientation": "h", "y": -0.3, "yanchor": "top",
                              "font": {"size": 10}},
                      template="plotly_white")
    fig.update_xaxes(title_text=WAVE_LABEL)
    fig.update_yaxes(title_text=FLUX_LABEL)
    return fig


def add_curve(fig: go.Figure, curve: dict, name: str, colour: str, dash: str = "solid",
              width: float = 1.2) -> None:
    """One spectrum (dict with wave, flux) as a line; NaN flux leaves gaps at masked pixels."""
    fig.add_trace(go.Scatter(x=np.asarray(curve["wave"]), y=np.asarray(curve["flux"]),
                             mode="lines", name=name,
                             line={"color": colour, "dash": dash, "width": width}))


def spectrum_figure(curves: Sequence[tuple[dict, str]], title: str = "",
                    height: int = 320) -> go.Figure:
    """Several spectra overlaid: `curves` is [(curve, legend name), ...]."""
    fig = go.Figure()
    palette = [COLOURS["query"], COLOURS["other"], COLOURS["real"], COLOURS["predicted"]]
    for i, (curve, name) in enumerate(curves):
        add_curve(fig, curve, name, palette[i % len(palette)])
    return _layout(fig, title, height)


def neighbour_figure(query: dict | None, neighbour: dict, similarity: float, rank: int,
                     neighbour_name: str) -> go.Figure:
    """The query (dark) overlaid on one neighbour (red), similarity in the title."""
    fig = go.Figure()
    add_curve(fig, neighbour, f"#{rank} {neighbour_name}", COLOURS["other"], width=1.4)
    if query is not None:
        add_curve(fig, query, "query", COLOURS["query"], width=1.0)
    return _layout(fig, f"#{rank} {neighbour_name} · similarity {similarity:.3f}", 300)


def counterpart_figure(predicted: dict, real: dict | None, survey: str) -> go.Figure:
    """The model's predicted counterpart spectrum, over the real one when the star has both."""
    fig = go.Figure()
    name = SURVEY_NAMES.get(survey, survey)
    if real is not None:
        add_curve(fig, real, f"real {name}", COLOURS["real"], width=1.4)
    add_curve(fig, predicted, f"predicted {name}", COLOURS["predicted"], dash="dot", width=1.8)
    title = f"Predicted {name} counterpart" + (" vs the real spectrum" if real is not None
                                               else " (no real one indexed)")
    return _layout(fig, title, 300)


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
                  "colorbar": {"title": {"text": colour_name}}}
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
    fig.update_layout(height=560, template="plotly_white", dragmode="select",
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
