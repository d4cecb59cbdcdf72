"""The query API's model side (mixed into engine.query.Engine): a hit's stored spectrum, the
model's predictions for a spectrum in hand (parameters, counterpart, flags) and what the
model sees of it."""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from engine import payload as P
from engine.errors import NotFoundError, SpecClipError
from engine.query_types import Query, SearchHit
from engine.records import LABEL_NAMES, SURVEY_LAMOST, SURVEY_XP, SpectrumRecord
from engine.spectrum_archive import SpectrumArchive

log = logging.getLogger(__name__)


class SpectraMixin:
    """Needs ``store``, ``store_location``, ``embedder``, ``_archive`` and ``_point_for``
    (engine.query.Engine)."""

    @property
    def archive(self) -> SpectrumArchive:
        """The store's copy of the indexed spectra (engine/spectrum_archive.py): references
        are relative to an embedded store's folder, absolute for a server's archive."""
        if self._archive is None:
            edge = self.store.mode == "edge"
            self._archive = SpectrumArchive(
                (getattr(self.store, "root", None) or self.store_location) if edge else None)
        return self._archive

    def get_spectrum(self, hit_or_id: SearchHit | str) -> SpectrumRecord:
        """The spectrum of a hit or point id, as the store keeps it (never from the source
        file, unless the store was built before it kept spectra)."""
        pid = hit_or_id.id if isinstance(hit_or_id, SearchHit) else hit_or_id
        payload = hit_or_id.payload if isinstance(hit_or_id, SearchHit) else {}
        if P.SPECTRUM_FILE in payload:
            try:
                return self.archive.load(payload)
            except NotFoundError:   # a hit older than its spectrum's replacement: look again
                pass
        found = self.store.retrieve(self.collection, [pid])   # an id, or a lean/stale hit
        if not found:
            raise NotFoundError(f"no point with id {pid}")
        payload = found[0].payload
        if P.SPECTRUM_FILE in payload:
            return self.archive.load(payload)
        from engine.source_reread import load_record

        log.warning("%s was indexed before the store kept spectra: re-reading %s (re-run "
                    "`specclip index` to store them)", payload.get(P.OBJECT_ID),
                    payload.get(P.SOURCE_PATH))
        return load_record(payload)

    def predict_counterpart(self, record: SpectrumRecord) -> tuple[np.ndarray, np.ndarray]:
        """The other instrument's spectrum of this star as the model predicts it:
        (wavelength in Angstrom, flux normalised like that instrument's model input)."""
        other = SURVEY_XP if record.survey == SURVEY_LAMOST else SURVEY_LAMOST
        emb = self._embed_usable(record, "predict its counterpart")
        return self.embedder.model_grid(other), np.asarray(emb.translated[0])

    def assess(self, record: SpectrumRecord) -> dict[str, Any]:
        """The per-spectrum flags an indexed point carries in its payload, for a spectrum in
        hand: `ood` (+ `ood_distance`, `ood_reason`), `low_quality` (+ `quality_reason`),
        `anomaly_recon` and `anomaly_peak`. Without the bundle's reference only the class and
        quality parts."""
        from engine.spectrum_scores import score_spectra

        emb = self.embedder.embed([record])
        if not bool(emb.valid[0]):
            raise SpecClipError(f"{record.source_path}: too few usable pixels to embed")
        sc = score_spectra([record], emb.shared, self.embedder, self.embedder.reference,
                           emb.sigmas, emb.params)
        out: dict[str, Any] = {P.OOD: bool(sc.ood[0]), P.LOW_QUALITY: bool(sc.low_quality[0])}
        for key, value in ((P.OOD_DISTANCE, sc.ood_distance[0]), (P.OOD_SCORE, sc.ood_score[0]),
                           (P.ANOMALY_RECON, sc.recon_chi2[0]),
                           (P.ANOMALY_PEAK, sc.recon_peak[0]),
                           (P.ANOMALY_REDSHIFT, sc.redshift_evidence[0]),
                           (P.ANOMALY_REDSHIFT_Z, sc.redshift_z[0])):
            if np.isfinite(value):
                out[key] = float(value)
        if sc.ood_reason[0]:
            out[P.OOD_REASON] = sc.ood_reason[0]
        if sc.quality_reason[0]:
            out[P.QUALITY_REASON] = sc.quality_reason[0]
        return out

    def flags(self, query: Query) -> dict[str, Any]:
        """`assess` for a spectrum in hand; the stored flags for an indexed star."""
        if isinstance(query, SpectrumRecord):
            return self.assess(query)
        hit = self._point_for(query)
        keys = (P.OOD, P.OOD_DISTANCE, P.OOD_SCORE, P.OOD_REASON, P.LOW_QUALITY,
                P.QUALITY_REASON)
        return {"id": hit.id, **{k: hit.payload[k] for k in keys if k in hit.payload}}

    def predict_parameters(self, record: SpectrumRecord) -> dict[str, tuple[float, float]]:
        emb = self._embed_usable(record, "predict its parameters")
        return {name: (float(emb.params[name][0]), float(emb.sigmas[name][0]))
                for name in emb.params}

    def query_parameters(self, query: Query) -> dict[str, tuple[float, float]]:
        """The query's own predicted parameters {name: (value, sigma)}: from the model for a
        spectrum in hand, from the stored payload (what the indexer predicted) for an
        indexed one."""
        if isinstance(query, SpectrumRecord):
            return self.predict_parameters(query)
        payload = self._point_for(query).payload
        return {name: (float(payload[P.pred_key(name)]),
                       float(payload.get(P.sigma_key(name), math.nan)))
                for name in LABEL_NAMES if payload.get(P.pred_key(name)) is not None}

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
