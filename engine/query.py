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

`Engine` is one class in three files: searches and look-ups here, the model side in
engine/query_spectra.py, browsing statistics in engine/query_browse.py. `SearchHit` and
`build_filter` live in engine/query_types.py and are re-exported here.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from typing import Any, Sequence

import numpy as np

from engine import cross_rank as XR
from engine import payload as P
from engine.collection import DEFAULT_ALIAS
from engine.similarity import UNLIKE_NOTE, all_unlike   # for the app (engine.query only)
from engine.errors import NotFoundError, SpecClipError
from engine.positions import ARCSEC, angular_separation_deg, cone_condition
from engine.query_args import check_cone, check_k, check_sigma_weight
from engine.records import SURVEY_LAMOST, SURVEY_XP, SURVEYS, SpectrumRecord
from engine.query_browse import BrowseMixin
from engine.query_spectra import SpectraMixin
from engine.query_types import Query, ResolvedQuery, SearchHit, _with_identity, build_filter
from engine.spectrum_archive import SpectrumArchive
from engine.stale_scores import flagged
from engine.store.types import Filter, Hit, Match

log = logging.getLogger(__name__)

TARGETS = ("any",) + SURVEYS
SPACES = ("auto", "spectrum", "own", "shared")


class Engine(SpectraMixin, BrowseMixin):
    """One store + one model bundle. Cheap to query; open once per process."""

    def __init__(self, store: Any, bundle_path: str | None = None,
                 collection: str = DEFAULT_ALIAS, store_location: str = ""):
        # an embedded store's hits carry `scores_stale` where a sync deferred their
        # neighbour-score refresh (engine/stale_scores.py)
        self.store = flagged(store)
        self.collection = collection
        self.bundle_path = bundle_path
        self.store_location = store_location
        self._embedder = None
        self._similarity = None
        self._archive: SpectrumArchive | None = None
        self._cross_rank: dict[str, XR.CrossRank] = {}    # target survey -> settings

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
        q = self._resolve(query)
        return q.survey, q.vectors, q.point_id

    def _resolve(self, query: Query) -> ResolvedQuery:
        """The query's survey, vectors, point id and predicted labels (for cross ranking)."""
        if isinstance(query, SpectrumRecord):
            self.check_model_matches_index()
            emb = self.embedder.embed([query])
            if not bool(emb.valid[0]):
                raise SpecClipError(f"{query.source_path}: too few usable pixels to embed")
            vectors = {P.VECTOR_SHARED: emb.shared[0], P.VECTOR_OWN[query.survey]: emb.own[0]}
            if getattr(emb, "spectral", None) is not None:
                vectors[P.VECTOR_SPECTRUM[query.survey]] = emb.spectral[0]
            labels = {n: float(emb.params[n][0]) for n in XR.LABELS if n in emb.params}
            return ResolvedQuery(query.survey, vectors, None, labels)
        hit = self._point_for(query)
        labels = {n: hit.payload.get(P.pred_key(n)) for n in XR.LABELS}
        return ResolvedQuery(hit.payload[P.SURVEY], dict(hit.vectors or {}), hit.id,
                             {n: float(v) for n, v in labels.items() if v is not None})

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
               payload_keys: Sequence[str] | None = None,
               quality_cut: bool | None = None, cross_rank: bool = True,
               sigma_weight: float | None = None) -> list[SearchHit]:
        """Nearest neighbours of a spectrum, a point id, ("obsid", x) or ("source_id", x).

        `payload_keys` limits each hit's payload to those fields (None: all of them; the
        hit's survey and object id are always filled in). `quality_cut` leaves out spectra
        flagged `low_quality` (low SNR or mostly masked: noisy spectra are hubs that sit
        near everything in the shared space); None, the default, applies it to the other
        instrument's hits only. `cross_rank` (default True) orders the other instrument's
        hits by predicted parameters among their shared-space candidates
        (engine/cross_rank.py; each such hit carries `rank_distance`); False keeps the
        shared-space order. `sigma_weight` overrides the ranking's weight of the hits' own
        parameter sigmas (None: the bundle's validated setting for that direction; 0: not
        counted; 1: a hit the model is unsure of counts as farther away, which pushes noisy
        spectra down). Each hit carries the `space` searched and its
        `similarity_percentile` there (engine/similarity.py)."""
        if target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, not {target!r}")
        check_k(k)
        if space not in SPACES:
            raise ValueError(f"space must be one of {SPACES}, not {space!r}")
        check_sigma_weight(sigma_weight, cross_rank)
        q = self._resolve(query)
        if target == "any" and space == "auto":
            groups = self._search_groups(q, k, filters, payload_keys, quality_cut, cross_rank,
                                         sigma_weight)
            return _interleave(groups, q.survey, k)
        name = self._vector_name(q.survey, target, space, q.vectors)
        cut = self._quality_cut(quality_cut, q.survey, target)
        ranked = cross_rank and name == P.VECTOR_SHARED and target not in ("any", q.survey)
        if sigma_weight is not None and not ranked:
            raise ValueError("sigma_weight orders the other instrument's hits (the "
                             "cross-instrument ranking): this search has none; use a target "
                             "of the other instrument, or target 'any' with space 'auto'")
        if ranked:
            hits = self._cross_ranked(q, target, k, filters, payload_keys, cut, sigma_weight)
        else:
            hits = self.search_vector(q.vectors[name], name, k, filters,
                                      None if target == "any" else target, q.point_id,
                                      payload_keys, exclude_low_quality=cut)
        return self._with_percentiles(hits, name, q.survey)

    def search_by_instrument(self, query: Query, k: int = 10, filters: dict | None = None,
                             payload_keys: Sequence[str] | None = None,
                             quality_cut: bool | None = None, cross_rank: bool = True,
                             sigma_weight: float | None = None
                             ) -> dict[str, list[SearchHit]]:
        """{survey: its k nearest spectra} for both instruments, each in its own space
        (spectrum PCA within the query's instrument, shared across and, with `cross_rank`,
        ordered by predicted parameters; `sigma_weight` as in `search`): similarities from
        different spaces are not comparable, so they are returned as separate groups."""
        check_sigma_weight(sigma_weight, cross_rank)
        return self._search_groups(self._resolve(query), k, filters, payload_keys,
                                   quality_cut, cross_rank, sigma_weight)

    @staticmethod
    def _quality_cut(quality_cut: bool | None, survey: str, target: str | None) -> bool:
        if quality_cut is not None:
            return bool(quality_cut)
        return target not in (None, "any", survey)

    def _with_percentiles(self, hits: list[SearchHit], space: str, survey: str
                          ) -> list[SearchHit]:
        from engine.similarity import SimilarityScale

        if self._similarity is None:
            self._similarity = SimilarityScale(self)
        return [dataclasses.replace(h, space=space, similarity_percentile=self._similarity.
                                    percentile(space, survey, h.survey, h.score))
                for h in hits]

    def search_vector(self, vector: np.ndarray, vector_name: str = P.VECTOR_SHARED,
                      k: int = 10, filters: dict | None = None, target: str | None = None,
                      exclude_id: str | None = None,
                      payload_keys: Sequence[str] | None = None,
                      exclude_low_quality: bool = False) -> list[SearchHit]:
        """Nearest neighbours of a vector already in hand (say, from your own `Embedder`
        run) in one named space (engine/payload.py): `shared`, an encoder's own `lamost` /
        `gaia_xp`, or `lamost_spectrum` / `gaia_xp_spectrum`.
        `target` keeps one instrument; `exclude_id` drops that point (the query itself);
        `exclude_low_quality` leaves out points flagged `low_quality`."""
        keys = _with_identity(payload_keys)
        flt = build_filter(filters, target)
        if exclude_low_quality:   # must_not: points indexed before the flag existed stay
            flt = dataclasses.replace(flt or Filter(),
                                      must_not=(flt.must_not if flt else ()) +
                                      (Match(P.LOW_QUALITY, True),))
        raw = self.store.search(self.collection, vector_name, vector,
                                k + (exclude_id is not None), filter=flt, payload_keys=keys)
        return [SearchHit.from_hit(h) for h in raw if h.id != exclude_id][:k]

    def _search_groups(self, q: "ResolvedQuery", k: int, filters: dict | None,
                       payload_keys: Sequence[str] | None, quality_cut: bool | None,
                       cross_rank: bool, sigma_weight: float | None = None
                       ) -> dict[str, list[SearchHit]]:
        """Each instrument's best, searched in its own space. Cosine scores are not
        comparable across spaces (same-instrument neighbours score ~0.9999 in the spectrum
        space, the same star seen by the other instrument ~0.6 in the shared one), so one
        merged sort would bury every cross-instrument match."""
        other = SURVEY_XP if q.survey == SURVEY_LAMOST else SURVEY_LAMOST
        per = {}
        for target in (q.survey, other):
            name = self._vector_name(q.survey, target, "auto", q.vectors)
            cut = self._quality_cut(quality_cut, q.survey, target)
            if cross_rank and target == other:
                hits = self._cross_ranked(q, target, k, filters, payload_keys, cut,
                                          sigma_weight)
            else:
                hits = self.search_vector(q.vectors[name], name, k, filters, target,
                                          q.point_id, payload_keys, cut)
            per[target] = self._with_percentiles(hits, name, q.survey)
        return per

    def cross_rank_settings(self, target: str) -> XR.CrossRank:
        """The bundle's ranking settings for hits of `target` (cross_rank.json; no model
        load)."""
        if target not in self._cross_rank:
            self._cross_rank[target] = XR.load_cross_rank(self.bundle_path, target)
        return self._cross_rank[target]

    def _cross_ranked(self, q: ResolvedQuery, target: str, k: int, filters: dict | None,
                      payload_keys: Sequence[str] | None, cut: bool,
                      sigma_weight: float | None = None) -> list[SearchHit]:
        """The other instrument's hits: shared-space candidates ordered by predicted
        parameters (engine/cross_rank.py; `sigma_weight`, when given, in place of the
        bundle's). A query without predicted parameters keeps the shared-space order."""
        settings = self.cross_rank_settings(target)
        if sigma_weight is not None:
            settings = dataclasses.replace(settings, sigma_weight=float(sigma_weight))
        needed = [P.pred_key(n) for n in XR.LABELS] + [P.sigma_key(n) for n in XR.LABELS]
        # the candidates carry only what ranks them; the k kept get their payloads after
        # (a full payload for each of 2,000 candidates was most of a ranked search's time)
        cands = self.search_vector(q.vectors[P.VECTOR_SHARED], P.VECTOR_SHARED,
                                   max(k, settings.candidates), filters, target, q.point_id,
                                   needed, exclude_low_quality=cut)
        if not cands or not all(n in q.labels for n in XR.LABELS):
            return self._with_payloads(cands[:k], None, payload_keys)

        def column(key: str) -> np.ndarray:
            return np.array([np.nan if h.payload.get(key) is None else float(h.payload[key])
                             for h in cands])

        pred = {n: column(P.pred_key(n)) for n in XR.LABELS}
        sig = {n: column(P.sigma_key(n)) for n in XR.LABELS}
        cand = XR.label_space(pred["teff"], pred["logg"], pred["feh"])
        cand_sigma = XR.sigma_space(pred["teff"], sig["teff"], sig["logg"], sig["feh"])
        query = XR.label_space(q.labels["teff"], q.labels["logg"], q.labels["feh"])
        idx, dist = XR.order(query, cand, cand_sigma, np.array([h.score for h in cands]),
                             settings.cosine_weight, settings.sigma_weight)
        return self._with_payloads([cands[i] for i in idx[:k]], dist[:k], payload_keys)

    def _with_payloads(self, chosen: list[SearchHit], dist: np.ndarray | None,
                       payload_keys: Sequence[str] | None) -> list[SearchHit]:
        """`chosen`, each with its payload (`payload_keys` of it) read from the store and,
        given `dist`, its ranking distance."""
        stored = {h.id: h.payload for h in self.store.retrieve(self.collection,
                                                               [h.id for h in chosen])}
        keep = None if payload_keys is None else set(_with_identity(payload_keys))
        out = []
        for i, h in enumerate(chosen):
            payload = stored.get(h.id, h.payload)
            if keep is not None:
                payload = {key: v for key, v in payload.items() if key in keep}
            d = None if dist is None or not np.isfinite(dist[i]) else float(dist[i])
            out.append(dataclasses.replace(h, payload=payload, rank_distance=d))
        return out

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
        """Points ranked by an anomaly score (highest first). `anomaly` is Fisher's
        combination -sum(log(1 - p)) of the percentiles p within the survey of
        `anomaly_recon`, `anomaly_features` and `anomaly_knn`, plus `anomaly_redshift` for
        LAMOST and `anomaly_peak` for Gaia XP (indexer/scoring.py `ANOMALY_PARTS`; neither an
        average nor a maximum); `anomaly_translation` ranks only stars with both spectra and
        is never part of `anomaly`. Spectra flagged `low_quality` are ranked like the rest
        (their noise does not raise their scores); filters={"low_quality": False} leaves
        them out."""
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

    def cone_search(self, ra: float, dec: float, radius_arcsec: float = 3.0,
                    survey: str | None = None, k: int | None = None,
                    filters: dict | None = None) -> list[SearchHit]:
        """Every spectrum (of either instrument, or of `survey`) within `radius_arcsec` of
        (ra, dec) in degrees, nearest first; each hit carries `separation_arcsec` (also its
        score). A position search, not a similarity search: see `search` for look-alikes.
        Runs on the geo payload index (engine/positions.py); `k` caps the number of hits;
        `filters` as for `search`."""
        check_cone(ra, dec, radius_arcsec, k)
        extra = build_filter(filters, survey)
        must = (cone_condition(ra, dec, radius_arcsec),) + (extra.must if extra else ())
        hits = list(self.store.scroll(self.collection, filter=Filter(must=must)))
        if not hits:
            return []
        sep = angular_separation_deg(ra, dec, np.array([h.payload[P.RA] for h in hits]),
                                     np.array([h.payload[P.DEC] for h in hits])) / ARCSEC
        order = [i for i in np.argsort(sep, kind="stable") if sep[i] <= radius_arcsec]
        return [SearchHit(hits[i].id, hits[i].payload.get(P.SURVEY, ""),
                          str(hits[i].payload.get(P.OBJECT_ID)), float(sep[i]),
                          dict(hits[i].payload), separation_arcsec=float(sep[i]))
                for i in order[:k]]

    def close(self) -> None:
        self.store.close()


def inflate_gzip(content: bytes, name: str, max_bytes: int) -> bytes:
    """Gzip bytes inflated under a bound (a bomb is refused with SpectrumReadError before it
    is inflated past `max_bytes`); for callers that hold an upload in memory (the app)."""
    from engine.readers import guards

    return guards.gunzip(content, name, max_bytes)


OOD_WARNING = "outside the training data: treat the parameters as unreliable"


def parameter_warning(flags: dict) -> str | None:
    """The caveat to show beside predicted parameters and counterparts, from a payload or
    `Engine.assess` output; None when the spectrum is like the training data."""
    if not flags.get(P.OOD):
        return None
    reason = flags.get(P.OOD_REASON)
    return f"{OOD_WARNING} ({reason})" if reason else OOD_WARNING


def _interleave(groups: dict[str, list[SearchHit]], survey: str, k: int) -> list[SearchHit]:
    """target "any" as one list: the other instrument's and the query's own, alternating by
    rank (each hit says its `space`; `search_by_instrument` keeps the groups apart)."""
    other = SURVEY_XP if survey == SURVEY_LAMOST else SURVEY_LAMOST
    a, b = groups.get(other, []), groups.get(survey, [])
    merged = [h for pair in zip(a, b, strict=False) for h in pair]
    return (merged + a[len(b):] + b[len(a):])[:k]


def read_spectra(source: Any, path: str | None = None, format: str | None = None,
                 options: dict[str, Any] | None = None) -> list[SpectrumRecord]:
    """Every spectrum in one file (a path or a binary file object; `path` names an
    in-memory file so its format can be told from the name too): what a query by file
    reads, so callers need not reach into `engine.readers`. `format` names a reader and
    `options` (unit, medium, uncertainty) go to the generic readers (see engine.readers)."""
    from engine import readers

    return readers.read(source, format=format, path=path, options=options)


def is_point_id(text: str) -> bool:
    try:
        uuid.UUID(str(text))
        return True
    except ValueError:
        return False


__all__ = ["Engine", "SearchHit", "build_filter", "angular_separation_deg", "is_point_id",
           "read_spectra", "inflate_gzip", "TARGETS", "parameter_warning", "OOD_WARNING",
           "UNLIKE_NOTE", "all_unlike"]
