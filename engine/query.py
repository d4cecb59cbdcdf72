"""The query API: what the app, the CLI and users' notebooks call.

    engine = Engine.open(store_path="var/store")
    hits = engine.search(("obsid", "938509188"), target="gaia_xp", k=10)
    odd = engine.outliers("lamost", k=20)

Which vector a search uses (`space`):
- "spectrum": PCA of the normalised spectrum (repeat observations, spectral twins);
- "own": the instrument encoder's embedding (physics-level similarity within one instrument);
- "shared": the CLIP space both instruments share (cross-instrument and "any" searches).
"auto" (the default) picks "spectrum" for same-instrument searches when the bundle has it,
else "own", and "shared" across instruments.
"""

from __future__ import annotations

import logging
import math
import uuid
from dataclasses import dataclass
from typing import Any, Sequence, Union

import numpy as np

from engine import payload as P
from engine.collection import DEFAULT_ALIAS
from engine.errors import NotFoundError, SpecClipError
from engine.query_args import check_cone, check_k
from engine.records import SURVEY_LAMOST, SURVEY_XP, SURVEYS, SpectrumRecord
from engine.store.types import Filter, Hit, Match, MatchAny, Range

log = logging.getLogger(__name__)

TARGETS = ("any",) + SURVEYS
SPACES = ("auto", "spectrum", "own", "shared")
Query = Union[SpectrumRecord, str, tuple]


@dataclass(frozen=True)
class SearchHit:
    id: str
    survey: str
    object_id: str
    score: float
    payload: dict

    @classmethod
    def from_hit(cls, hit: Hit) -> "SearchHit":
        return cls(hit.id, hit.payload.get(P.SURVEY, ""), str(hit.payload.get(P.OBJECT_ID, "")),
                   float(hit.score), dict(hit.payload))

    def to_dict(self) -> dict:
        return {"id": self.id, "survey": self.survey, "object_id": self.object_id,
                "score": self.score, "payload": self.payload}


def _with_identity(keys: Sequence[str] | None) -> list[str] | None:
    """The asked payload keys plus the two every SearchHit is named by."""
    if keys is None:
        return None
    return list(dict.fromkeys([P.SURVEY, P.OBJECT_ID, *keys]))


def build_filter(filters: dict[str, Any] | None, survey: str | None = None) -> Filter | None:
    """{"label_teff": (4000, 6000), "obj_class": "STAR", "subclass": ["G2", "G5"]} -> Filter.

    A tuple (lo, hi) is a range (either end may be None); a list is "any of"; anything else
    must match exactly.
    """
    must: list = []
    if survey and survey != "any":
        must.append(Match(P.SURVEY, survey))
    for key, value in (filters or {}).items():
        if value is None:
            continue
        if isinstance(value, tuple):
            lo, hi = value
            if lo is not None or hi is not None:
                must.append(Range(key, gte=lo, lte=hi))
        elif isinstance(value, (list, set, frozenset)):
            must.append(MatchAny(key, tuple(value)))
        else:
            must.append(Match(key, value))
    return Filter(must=tuple(must)) if must else None


def angular_separation_deg(ra1, dec1, ra2, dec2) -> np.ndarray:
    """Great-circle distance (degrees), haversine form: stable at small angles."""
    ra1, dec1, ra2, dec2 = map(np.radians, (ra1, dec1, ra2, dec2))
    h = (np.sin((dec2 - dec1) / 2) ** 2
         + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2) ** 2)
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(h, 0, 1))))


class Engine:
    """One store + one model bundle. Cheap to query; open once per process."""

    def __init__(self, store: Any, bundle_path: str | None = None,
                 collection: str = DEFAULT_ALIAS, store_location: str = ""):
        self.store = store
        self.collection = collection
        self.bundle_path = bundle_path
        self.store_location = store_location
        self._embedder = None

    @classmethod
    def open(cls, store_path: str | None = None, url: str | None = None,
             bundle_path: str | None = None, collection: str = DEFAULT_ALIAS,
             read_only: bool = True) -> "Engine":
        from engine.store import open_store

        # read_only matters for the embedded store (readers see published generations);
        # a server handles concurrent readers itself.
        store = open_store(path=store_path, url=url, read_only=read_only and bool(store_path))
        return cls(store, bundle_path, collection, store_location=store_path or url or "")

    @property
    def embedder(self):
        """The model, loaded on first use (lookups by id never need it)."""
        if self._embedder is None:
            from engine.bundle import load_bundle
            from engine.inference import Embedder

            self._embedder = Embedder(load_bundle(self.bundle_path))
        return self._embedder

    # -- resolving a query into vectors ---------------------------------------------------
    def _point_for(self, query: Query) -> Hit:
        if isinstance(query, tuple):
            kind, value = query
            hits = self.lookup(**{"obsid" if kind == "obsid" else "source_id": value})
            if kind == "source_id":  # prefer the XP spectrum of that source
                hits = sorted(hits, key=lambda h: h.survey != SURVEY_XP)
            if not hits:
                raise NotFoundError(f"no indexed spectrum with {kind} {value}")
            query = hits[0].id
        found = self.store.retrieve(self.collection, [str(query)], with_vectors=True)
        if not found:
            raise NotFoundError(f"no point with id {query}")
        return found[0]

    def vectors_for(self, query: Query) -> tuple[str, dict[str, np.ndarray], str | None]:
        """(survey, {vector name: vector}, point id or None) for any kind of query."""
        if isinstance(query, SpectrumRecord):
            self.check_model_matches_index()
            emb = self.embedder.embed([query])
            if not bool(emb.valid[0]):
                raise SpecClipError(f"{query.source_path}: too few usable pixels to embed")
            vectors = {P.VECTOR_SHARED: emb.shared[0], P.VECTOR_OWN[query.survey]: emb.own[0]}
            if getattr(emb, "spectral", None) is not None:
                vectors[P.VECTOR_SPECTRUM[query.survey]] = emb.spectral[0]
            return query.survey, vectors, None
        hit = self._point_for(query)
        return hit.payload[P.SURVEY], dict(hit.vectors or {}), hit.id

    def index_model_version(self) -> str | None:
        """The model version the collection behind the alias was built with."""
        resolved = self.store.resolve(self.collection) or ""
        return resolved.split("__", 1)[1] if "__" in resolved else None

    def check_model_matches_index(self) -> None:
        """Vectors from two different models are not comparable: refuse, don't mislead."""
        built = self.index_model_version()
        if built and built != self.embedder.version:
            raise SpecClipError(
                f"the index {self.store_location or ''} was built with model {built} but the "
                f"loaded bundle is {self.embedder.version}: re-run `specclip index` with this "
                f"bundle, or pass the bundle the index was built with (--bundle)")

    # -- searches -------------------------------------------------------------------------
    def search(self, query: Query, target: str = "any", k: int = 10,
               filters: dict | None = None, space: str = "auto",
               payload_keys: Sequence[str] | None = None) -> list[SearchHit]:
        """Nearest neighbours of a spectrum, a point id, ("obsid", x) or ("source_id", x).

        `payload_keys` limits each hit's payload to those fields (None: all of them; the
        hit's survey and object id are always filled in)."""
        if target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, not {target!r}")
        check_k(k)
        if space not in SPACES:
            raise ValueError(f"space must be one of {SPACES}, not {space!r}")
        survey, vectors, self_id = self.vectors_for(query)
        if target == "any" and space == "auto":
            return self._search_both(survey, vectors, self_id, k, filters, payload_keys)
        name = self._vector_name(survey, target, space, vectors)
        return self.search_vector(vectors[name], name, k, filters,
                                  None if target == "any" else target, self_id, payload_keys)

    def search_vector(self, vector: np.ndarray, vector_name: str = P.VECTOR_SHARED,
                      k: int = 10, filters: dict | None = None, target: str | None = None,
                      exclude_id: str | None = None,
                      payload_keys: Sequence[str] | None = None) -> list[SearchHit]:
        """Nearest neighbours of a vector already in hand (say, from your own `Embedder`
        run) in one named space: `shared`, `<survey>_own` or `<survey>_spectrum`.
        `target` keeps one instrument; `exclude_id` drops that point (the query itself)."""
        keys = _with_identity(payload_keys)
        flt = build_filter(filters, target)
        raw = self.store.search(self.collection, vector_name, vector,
                                k + (exclude_id is not None), filter=flt, payload_keys=keys)
        return [SearchHit.from_hit(h) for h in raw if h.id != exclude_id][:k]

    def _search_both(self, survey: str, vectors: dict, self_id: str | None, k: int,
                     filters: dict | None, payload_keys: Sequence[str] | None = None
                     ) -> list[SearchHit]:
        """target "any": the best of each instrument, interleaved by rank. Cosine scores are
        not comparable across instruments (the CLIP "modality gap": same-instrument
        neighbours score ~0.9, the same star seen by the other instrument ~0.6), so one
        merged sort would bury every cross-instrument match."""
        other = SURVEY_XP if survey == SURVEY_LAMOST else SURVEY_LAMOST
        per = {}
        for target in (survey, other):
            name = self._vector_name(survey, target, "auto", vectors)
            per[target] = self.search_vector(vectors[name], name, k, filters, target, self_id,
                                             payload_keys)
        merged = []
        for pair in zip(per[other], per[survey], strict=False):
            merged.extend(pair)
        merged += per[other][len(per[survey]):] + per[survey][len(per[other]):]
        return merged[:k]

    @staticmethod
    def _vector_name(survey: str, target: str, space: str, vectors: dict) -> str:
        same = target == survey
        if space in ("spectrum", "own") and not same:
            raise ValueError(f"space {space!r} compares spectra of one instrument: "
                             f"use target={survey!r} or space='shared'")
        if space == "shared" or not same:
            return P.VECTOR_SHARED
        spectrum = P.VECTOR_SPECTRUM[survey]
        if space == "spectrum" or (space == "auto" and spectrum in vectors):
            if spectrum not in vectors:
                raise ValueError("this index has no spectrum vectors (bundle without bases)")
            return spectrum
        return P.VECTOR_OWN[survey]

    def outliers(self, survey: str | None = SURVEY_LAMOST, k: int = 50,
                 filters: dict | None = None, score: str = P.ANOMALY) -> list[SearchHit]:
        """Points ranked by an anomaly score (highest first)."""
        if score not in P.ANOMALY_SCORES:
            raise ValueError(f"score must be one of {P.ANOMALY_SCORES}")
        check_k(k)
        flt = build_filter(filters, survey)
        return [SearchHit.from_hit(h)
                for h in self.store.order_by(self.collection, score, k, True, flt)]

    def lookup(self, obsid: str | int | None = None,
               source_id: int | str | None = None) -> list[SearchHit]:
        """Points of a LAMOST obsid, or of a Gaia source id (its XP spectrum and any LAMOST
        spectrum cross-matched to it)."""
        if obsid is not None:
            flt = Filter(must=(Match(P.SURVEY, SURVEY_LAMOST), Match(P.OBJECT_ID, str(obsid))))
        elif source_id is not None:
            flt = Filter(should=(Match(P.GAIA_SOURCE_ID, int(source_id)),
                                 Match(P.OBJECT_ID, str(source_id))))
        else:
            raise ValueError("give obsid or source_id")
        return [SearchHit.from_hit(h) for h in self.store.scroll(self.collection, filter=flt)]

    def cone(self, ra: float, dec: float, radius_deg: float, k: int = 100,
             survey: str | None = None) -> list[SearchHit]:
        """Spectra within `radius_deg` of (ra, dec), nearest first; score = separation (deg)."""
        check_cone(ra, dec, radius_deg, k)
        dec_lo, dec_hi = max(-90.0, dec - radius_deg), min(90.0, dec + radius_deg)
        must = [Range(P.DEC, gte=dec_lo, lte=dec_hi)]
        if survey and survey != "any":
            must.append(Match(P.SURVEY, survey))
        cosd = math.cos(math.radians(max(abs(dec_lo), abs(dec_hi))))
        half = 180.0 if cosd < 1e-6 else min(180.0, radius_deg / cosd)
        should: tuple = ()
        if half < 180.0:
            lo, hi = (ra - half) % 360.0, (ra + half) % 360.0
            should = ((Range(P.RA, gte=lo, lte=hi),) if lo <= hi else
                      (Range(P.RA, gte=lo, lte=360.0), Range(P.RA, gte=0.0, lte=hi)))
        flt = Filter(must=tuple(must), should=should)
        hits = list(self.store.scroll(self.collection, filter=flt))
        if not hits:
            return []
        sep = angular_separation_deg(ra, dec, np.array([h.payload[P.RA] for h in hits]),
                                     np.array([h.payload[P.DEC] for h in hits]))
        order = [i for i in np.argsort(sep) if sep[i] <= radius_deg][:k]
        return [SearchHit(hits[i].id, hits[i].payload.get(P.SURVEY, ""),
                          str(hits[i].payload.get(P.OBJECT_ID)), float(sep[i]),
                          dict(hits[i].payload)) for i in order]

    # -- spectra, counterparts, parameters -------------------------------------------------
    def get_spectrum(self, hit_or_id: SearchHit | str) -> SpectrumRecord:
        from engine.spectra import load_record

        if isinstance(hit_or_id, SearchHit):
            return load_record(hit_or_id.payload)
        found = self.store.retrieve(self.collection, [hit_or_id])
        if not found:
            raise NotFoundError(f"no point with id {hit_or_id}")
        return load_record(found[0].payload)

    def predict_counterpart(self, record: SpectrumRecord) -> tuple[np.ndarray, np.ndarray]:
        """The other instrument's spectrum of this star as the model predicts it:
        (wavelength in Angstrom, flux normalised like that instrument's model input)."""
        other = SURVEY_XP if record.survey == SURVEY_LAMOST else SURVEY_LAMOST
        emb = self._embed_usable(record, "predict its counterpart")
        return self.embedder.model_grid(other), np.asarray(emb.translated[0])

    def predict_parameters(self, record: SpectrumRecord) -> dict[str, tuple[float, float]]:
        emb = self._embed_usable(record, "predict its parameters")
        return {name: (float(emb.params[name][0]), float(emb.sigmas[name][0]))
                for name in emb.params}

    def _embed_usable(self, record: SpectrumRecord, what: str) -> Any:
        """The model's output for one record, or a SpecClipError when the model refuses it
        (its outputs for a refused spectrum are placeholders: an all-zero spectrum)."""
        emb = self.embedder.embed([record])
        if not bool(emb.valid[0]):
            raise SpecClipError(f"{record.source_path}: too few usable pixels in the model's "
                                f"window to {what}")
        return emb

    def model_input(self, record: SpectrumRecord) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(wavelength, normalised flux, weight) on the model grid: what plots overlay."""
        flux, weight = self.embedder.model_input([record])
        return self.embedder.model_grid(record.survey), flux[0], weight[0]

    # -- browsing ---------------------------------------------------------------------------
    def random_point(self, survey: str | None = None, seed: int | None = None) -> SearchHit:
        """Some indexed spectrum: the neighbour of a random direction in the shared space."""
        rng = np.random.default_rng(seed)
        dim = self.shared_dim()
        vec = rng.normal(size=dim).astype(np.float32)
        flt = build_filter(None, survey)
        hits = self.store.search(self.collection, P.VECTOR_SHARED, vec / np.linalg.norm(vec), 1,
                                 filter=flt)
        if not hits:
            raise NotFoundError("the store is empty")
        return SearchHit.from_hit(hits[0])

    def shared_dim(self) -> int:
        any_hit = next(iter(self.store.scroll(self.collection, with_vectors=True, batch_size=1)),
                       None)
        if any_hit is None:
            raise NotFoundError("the store is empty")
        return int(len(any_hit.vectors[P.VECTOR_SHARED]))

    def map_points(self, limit: int = 50_000, survey: str | None = None
                   ) -> tuple[list[str], np.ndarray, list[dict]]:
        """Ids, shared vectors and payloads of up to `limit` points (for the 2-D map)."""
        ids, vecs, payloads = [], [], []
        for h in self.store.scroll(self.collection, filter=build_filter(None, survey),
                                   with_vectors=True):
            ids.append(h.id)
            vecs.append(h.vectors[P.VECTOR_SHARED])
            payloads.append(h.payload)
            if len(ids) >= limit:
                break
        return ids, np.asarray(vecs, dtype=np.float32).reshape(len(ids), -1), payloads

    def stats(self) -> dict[str, Any]:
        """What is indexed, by what model, in what kind of store, and whether it answers."""
        out: dict[str, Any] = {"store_mode": getattr(self.store, "mode", "?"),
                               "store": self.store_location, "collection": self.collection}
        try:
            out["resolved_collection"] = self.store.resolve(self.collection)
            by_survey: dict[str, int] = {}
            by_release: dict[str, int] = {}
            versions: set[str] = set()
            for h in self.store.scroll(self.collection):
                s, r = h.payload.get(P.SURVEY, "?"), h.payload.get(P.DATA_RELEASE) or "?"
                by_survey[s] = by_survey.get(s, 0) + 1
                by_release[f"{s}/{r}"] = by_release.get(f"{s}/{r}", 0) + 1
                versions.add(h.payload.get(P.MODEL_VERSION, "?"))
            out.update(total=sum(by_survey.values()), by_survey=by_survey, by_release=by_release,
                       model_versions=sorted(versions), healthy=True)
        except Exception as exc:  # Status must render even when the store is down
            out.update(healthy=False, error=f"{type(exc).__name__}: {exc}")
        return out

    def model_card(self) -> dict[str, Any]:
        """The bundle's card, metrics and version (for the Status page)."""
        bundle = self.embedder.bundle
        return {"version": self.embedder.version, "card": dict(getattr(bundle, "card", {}) or {}),
                "metrics": dict(getattr(bundle, "metrics", {}) or {})}

    def close(self) -> None:
        self.store.close()


def is_point_id(text: str) -> bool:
    try:
        uuid.UUID(str(text))
        return True
    except ValueError:
        return False


__all__ = ["Engine", "SearchHit", "build_filter", "angular_separation_deg", "is_point_id",
           "TARGETS"]
