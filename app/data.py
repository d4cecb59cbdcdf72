"""The app's data-access layer: the only module that opens the engine or caches anything.

Pages call these functions with the engine they were given; heavy results (spectra re-read
from files, model outputs, the 2-D map) are cached per engine so a Streamlit rerun does no
blocking work twice. Streamlit does not hash arguments whose name starts with "_", so each
cached function takes `_engine` plus `key` (the engine's identity, see `engine_key`).
"""

from __future__ import annotations

import glob
import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import streamlit as st

from engine.errors import NotFoundError
from engine.query import Engine, SearchHit
from engine.records import SURVEY_LAMOST, SURVEY_XP, SpectrumRecord

log = logging.getLogger(__name__)

TSNE_MAX_POINTS = 5000        # t-SNE is O(n log n) but slow on 2 cores: subsample above this


@dataclass(frozen=True)
class EngineConfig:
    """Where the app's engine comes from (CLI args or SPECCLIP_* environment variables)."""

    store: str | None = None
    url: str | None = None
    bundle: str | None = None

    @classmethod
    def from_env(cls, environ: dict | None = None) -> "EngineConfig":
        env = os.environ if environ is None else environ
        return cls(env.get("SPECCLIP_STORE") or None, env.get("SPECCLIP_URL") or None,
                   env.get("SPECCLIP_BUNDLE") or None)


@st.cache_resource(show_spinner="Opening the spectrum store (the first page waits for it)...")
def open_engine(store: str | None, url: str | None, bundle: str | None) -> Engine:
    """One engine (one store client) per store folder/URL for the whole server process:
    an embedded store is a folder that only one client may hold. The collection is loaded
    here (one count), under the spinner, rather than by whichever page asks first."""
    log.info("opening engine store=%s url=%s bundle=%s", store, url, bundle)
    started = time.perf_counter()
    # read_only only applies to embedded folders (a server restricts access by API key).
    engine = Engine.open(store_path=store, url=url, bundle_path=bundle, read_only=bool(store))
    held = engine.surveys_held()
    log.info("engine open in %.2f s (instruments held: %s)", time.perf_counter() - started,
             ", ".join(held) or "none")
    return engine


def engine_key(engine: Engine) -> str:
    """What distinguishes one engine's cached results from another's."""
    return f"{engine.store_location}|{engine.collection}|{id(engine)}"


# -- cached reads -----------------------------------------------------------------------------
@st.cache_data(ttl=30, show_spinner=False)
def stats(_engine: Engine, key: str) -> dict[str, Any]:
    return _engine.stats()


@st.cache_data(max_entries=512, show_spinner=False)
def spectrum_curve(_engine: Engine, key: str, point_id: str) -> dict[str, Any]:
    """The spectrum of a stored point as the model sees it (wavelength in Angstrom,
    normalised flux with masked pixels set to NaN)."""
    record = _engine.get_spectrum(point_id)
    return record_curve(_engine, record)


def record_curve(engine: Engine, record: SpectrumRecord) -> dict[str, Any]:
    wave, flux, weight = engine.model_input(record)
    flux = np.where(np.asarray(weight) > 0, flux, np.nan)
    return {"wave": np.asarray(wave, float), "flux": np.asarray(flux, float),
            "survey": record.survey, "object_id": record.object_id}


@st.cache_data(max_entries=256, show_spinner=False)
def full_curve(_engine: Engine, key: str, point_id: str) -> dict[str, Any]:
    """The whole observed spectrum of a stored point (see `record_full_curve`)."""
    return record_full_curve(_engine, _engine.get_spectrum(point_id))


def record_full_curve(engine: Engine, record: SpectrumRecord) -> dict[str, Any]:
    """The observed spectrum over its whole range, with its normalisation named in "ylabel".

    LAMOST: the pipeline's continuum-normalised flux where the file has it, else the flux
    divided by its median over the model window (the model reads only 3999-5599 A of it).
    Gaia XP: the model input already covers all of 336-1020 nm."""
    if record.survey != SURVEY_LAMOST:
        curve = record_curve(engine, record)
        return {**curve, "ylabel": None}
    wave = np.asarray(record.wavelength, float)
    bad = np.asarray(record.mask, bool)
    if record.norm_flux is not None and len(record.norm_flux) == len(wave):
        flux, label = np.asarray(record.norm_flux, float), "Continuum-normalised flux (pipeline)"
    else:
        raw = np.asarray(record.flux, float)
        window = (wave >= 3999.0) & (wave <= 5599.0) & ~bad & np.isfinite(raw)
        scale = float(np.median(raw[window])) if window.any() else float("nan")
        flux, label = raw / scale, "Flux / median flux in 3999-5599 Å"
    return {"wave": wave, "flux": np.where(bad, np.nan, flux), "survey": record.survey,
            "object_id": record.object_id, "ylabel": label}


@st.cache_data(ttl=30, show_spinner=False)
def surveys_held(_engine: Engine, key: str) -> list[str]:
    """The instruments with at least one indexed spectrum (count calls, cheap)."""
    return _engine.surveys_held()


@st.cache_data(ttl=60, show_spinner=False)
def value_range(_engine: Engine, key: str, field: str) -> tuple[float, float] | None:
    """(min, max) of a numeric payload field over the store, for filter sliders."""
    return _engine.value_range(field)


@st.cache_data(max_entries=256, show_spinner=False)
def query_parameters(_engine: Engine, key: str, point_id: str) -> dict[str, tuple[float, float]]:
    """A stored point's predicted parameters (value, sigma), as the indexer stored them."""
    return _engine.query_parameters(point_id)


@st.cache_data(max_entries=256, show_spinner=False)
def point_model_outputs(_engine: Engine, key: str, point_id: str) -> dict[str, Any]:
    """Predicted parameters (value, sigma) and predicted counterpart spectrum of a point."""
    return record_model_outputs(_engine, _engine.get_spectrum(point_id))


def record_model_outputs(engine: Engine, record: SpectrumRecord) -> dict[str, Any]:
    wave, flux = engine.predict_counterpart(record)
    return {"params": engine.predict_parameters(record),
            "counterpart": {"wave": np.asarray(wave, float), "flux": np.asarray(flux, float),
                            "survey": other_survey(record.survey)}}


@st.cache_data(ttl=300, max_entries=256, show_spinner=False)
def counterpart_point(_engine: Engine, key: str, survey: str, object_id: str,
                      gaia_source_id: int | None) -> dict | None:
    """The stored spectrum of the same star by the other instrument, if any (as a hit dict)."""
    source = object_id if survey == SURVEY_XP else gaia_source_id
    if source in (None, ""):
        return None
    other = other_survey(survey)
    for hit in _engine.lookup(source_id=int(source)):
        if hit.survey == other:
            return hit.to_dict()
    return None


@st.cache_data(ttl=300, max_entries=256, show_spinner=False)
def neighbours(_engine: Engine, key: str, point_id: str, k: int,
               target: str = "any") -> list[dict]:
    """Nearest neighbours of a stored point as `Engine.search` finds them (each instrument in
    its own space: spectrum PCA within the point's instrument, shared across)."""
    return [h.to_dict() for h in _engine.search(point_id, target=target, k=k)]


def neighbour_lists(engine: Engine, point_ids: list[str], k: int
                    ) -> dict[str, list[tuple[str, float]]]:
    """Neighbours (id, cosine similarity in the space each was found in) of each point, for
    re-ranking."""
    key = engine_key(engine)
    out: dict[str, list[tuple[str, float]]] = {}
    for pid in point_ids:
        try:
            out[pid] = [(h["id"], float(h["score"])) for h in neighbours(engine, key, pid, k)]
        except NotFoundError:  # marked in an older index: that mark pulls on nothing now
            log.info("marked point %s is no longer indexed", pid)
    return out


# cache_resource, not cache_data: 40k+ payloads would be copied (unpickled) on every rerun.
@st.cache_resource(ttl=600, max_entries=8, show_spinner="Projecting the embedding space...")
def projection(_engine: Engine, key: str, limit: int, survey: str | None, method: str,
               tsne_points: int = 2000, seed: int = 0) -> dict[str, Any]:
    """2-D coordinates of up to `limit` points of the shared space, plus their payloads.

    "pca" projects every point (fast on 40k+); "tsne" runs on a random subsample of at most
    `tsne_points` (capped at TSNE_MAX_POINTS), initialised from PCA so the layout is stable.
    """
    from sklearn.decomposition import PCA

    ids, vecs, payloads = _engine.map_points(limit=limit, survey=survey)
    if len(ids) < 3:
        return {"ids": list(ids), "xy": np.zeros((len(ids), 2)), "payloads": payloads,
                "explained": []}
    if method == "tsne":
        from sklearn.manifold import TSNE

        n = min(len(ids), tsne_points, TSNE_MAX_POINTS)
        pick = np.sort(np.random.default_rng(seed).choice(len(ids), n, replace=False))
        ids, vecs = [ids[i] for i in pick], vecs[pick]
        payloads = [payloads[i] for i in pick]
        perplexity = float(min(30.0, max(2.0, (n - 1) / 3)))
        xy = TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(vecs)
        return {"ids": ids, "xy": xy, "payloads": payloads, "explained": []}
    pca = PCA(2, random_state=seed).fit(vecs)
    return {"ids": list(ids), "xy": pca.transform(vecs), "payloads": payloads,
            "explained": [float(v) for v in pca.explained_variance_ratio_]}


def model_card(engine: Engine) -> tuple[dict, dict]:
    """(card, metrics) of the engine's model bundle (loads the model on first use)."""
    bundle = engine.embedder.bundle
    return dict(bundle.card), dict(bundle.metrics)


def indexer_reports(engine: Engine, limit: int = 20) -> list[dict]:
    """The indexer's JSON reports in STORE/reports/ (newest first), embedded stores only."""
    folder = os.path.join(engine.store_location or "", "reports")
    if not engine.store_location or not os.path.isdir(folder):
        return []
    out = []
    for path in sorted(glob.glob(os.path.join(folder, "*.json")), reverse=True)[:limit]:
        try:
            with open(path) as fh:
                out.append({"file": os.path.basename(path), **json.load(fh)})
        except (OSError, ValueError) as exc:
            out.append({"file": os.path.basename(path), "error": str(exc)})
    return out


def empty_state(held: list[str], wanted: str | None = None) -> str | None:
    """What to tell a user whose store lacks an instrument (None when nothing is missing)."""
    if not held:
        return ("The store holds no spectra yet. Index some with `specclip index --store "
                "DIR xp-library` (the Gaia XP library) or `specclip index --store DIR "
                "path/to/lamost/fits` (LAMOST LRS files).")
    missing = [s for s in (wanted,) if s and s not in held] or \
        [s for s in (SURVEY_LAMOST, SURVEY_XP) if s not in held and wanted is None]
    if not missing:
        return None
    how = {SURVEY_LAMOST: "`specclip index --store DIR path/to/lamost/fits` (add "
                          "`--crossmatch pairs.csv` to link stars that Gaia also observed)",
           SURVEY_XP: "`specclip index --store DIR xp-library` (or a folder of Gaia XP "
                      "files)"}
    names = {SURVEY_LAMOST: "LAMOST LRS", SURVEY_XP: "Gaia XP"}
    return " ".join(f"This store holds no {names[m]} spectra; to add them run {how[m]}."
                    for m in missing)


def hits_from_dicts(items: list[dict]) -> list[SearchHit]:
    return [SearchHit(d["id"], d["survey"], d["object_id"], d["score"], d["payload"],
                      d.get("space", ""), d.get("similarity_percentile"),
                      rank_distance=d.get("rank_distance"))
            for d in items]


def other_survey(survey: str) -> str:
    return SURVEY_XP if survey == SURVEY_LAMOST else SURVEY_LAMOST
