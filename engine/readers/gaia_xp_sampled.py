"""Gaia DR3 XP_SAMPLED spectra as the archive / DataLink serves them.

Data model: Gaia DR3 documentation, "XP_SAMPLED" datalink product (Sect. 20.x of the DR3
documentation): source_id, flux[343] and flux_error[343] in W m^-2 nm^-1 on 336-1020 nm in
2 nm steps. Formats: CSV, ECSV, FITS (binary table), VOTable; see `xp_table`.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from engine.errors import SpectrumReadError
from engine.grids import XP_N_SAMPLES, xp_wavelength_angstrom
from engine.readers.guards import refuse_row
from engine.readers.xp_table import (
    array_column,
    head_text,
    load_table,
    require_columns,
    scalar_column,
    source_ids,
)
from engine.records import SURVEY_XP, SpectrumRecord

log = logging.getLogger(__name__)

NAME = "gaia-xp-sampled"
REQUIRED = ("source_id", "flux", "flux_error")


def identify(source: Any, *, path: str = "") -> bool:
    """An XP table with flux and flux_error but no coefficients and not the library layout."""
    try:
        head = head_text(source).lower()
        return (b"source_id" in head and b"flux_error" in head
                and b"coefficients" not in head and b"apogee_id" not in head
                and b"medflux" not in head and b"lamost" not in head)
    except Exception:  # identify never raises
        return False


def read(source: Any, *, path: str = "") -> list[SpectrumRecord]:
    """Every row of an XP_SAMPLED table as a record (flux in W m^-2 nm^-1)."""
    table = load_table(source, path)
    require_columns(table, REQUIRED, path, "Gaia XP_SAMPLED")
    try:
        flux = array_column(table, "flux", XP_N_SAMPLES)
        err = array_column(table, "flux_error", XP_N_SAMPLES)
    except ValueError as exc:
        raise SpectrumReadError(path, f"XP_SAMPLED arrays are not {XP_N_SAMPLES} samples "
                                      f"({exc})") from exc
    ids, ok = source_ids(table, path)
    return build_records(ids, flux, err, path, table, ok=ok)


def build_records(ids: np.ndarray, flux: np.ndarray, err: np.ndarray, path: str,
                  table: Any = None, meta: list[dict] | None = None,
                  ok: np.ndarray | None = None) -> list[SpectrumRecord]:
    """Records from [N, 343] flux/error arrays; rows with no usable sample, and rows not in
    `ok` (already refused, e.g. for their source_id), are left out.

    Used by the continuous reader too, after it converts coefficients to samples.
    """
    ok = np.ones(len(ids), dtype=bool) if ok is None else np.asarray(ok, dtype=bool)
    good_err = np.isfinite(err) & (err > 0)
    ivar = np.where(good_err, 1.0 / np.where(good_err, err, 1.0) ** 2, 0.0)
    mask = ~np.isfinite(flux) | ~good_err
    bad_rows = np.flatnonzero(mask.all(axis=1) & ok)
    if bad_rows.size and bad_rows.size == int(ok.sum()):
        raise SpectrumReadError(path, "no usable sample: flux is NaN or flux_error <= 0 "
                                      "everywhere in every row")
    for i in bad_rows:
        refuse_row(path, int(i), f"source {ids[i]} has no usable sample (flux NaN or "
                                 "flux_error <= 0 everywhere)")
    ra = scalar_column(table, "ra") if table is not None and "ra" in table.colnames else None
    dec = scalar_column(table, "dec") if table is not None and "dec" in table.colnames else None
    snr = np.full(len(ids), np.nan)
    usable = ~mask.all(axis=1) & ok
    if usable.any():
        snr[usable] = np.nanmedian(np.where(mask, np.nan, np.abs(flux) * np.sqrt(ivar))[usable],
                                   axis=1)
    wavelength = xp_wavelength_angstrom()
    wavelength.setflags(write=False)
    flux = np.where(np.isfinite(flux), flux, 0.0)
    records = []
    for i, sid in enumerate(ids):
        if not usable[i]:
            continue
        records.append(SpectrumRecord(
            survey=SURVEY_XP, object_id=str(int(sid)), wavelength=wavelength,
            flux=flux[i], ivar=ivar[i], mask=mask[i], source_path=path, source_index=i,
            data_release="DR3", gaia_source_id=int(sid),
            ra=_maybe(ra, i), dec=_maybe(dec, i),
            snr={"xp": float(snr[i])} if np.isfinite(snr[i]) else {},
            meta=dict(meta[i]) if meta else {}))
    return records


def _maybe(values: np.ndarray | None, i: int) -> float | None:
    if values is None or not np.isfinite(values[i]):
        return None
    return float(values[i])
