"""A Parquet catalogue of spectra: one row per SpectrumRecord, lossless round trip.

Why Parquet: columnar, typed, readable by pandas/duckdb/pyarrow, and list columns keep the
pixel arrays next to the identifiers. LAMOST rows store `pixel_offset` and no wavelength
column (the native grid rebuilds it exactly); other rows (XP) store their wavelengths.
Record `meta` is kept as a JSON string (header keywords and the like).
"""

from __future__ import annotations

import json
import contextlib
import os
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from engine.jsonfile import json_default
from engine.grids import lamost_native_wavelength
from engine.readers.guards import refuse_row
from engine.readers.lamost_lrs import OFFSET_RANGE_PX
from engine.records import LABEL_NAMES, SURVEYS, SpectrumRecord

SNR_KEYS = ("u", "g", "r", "i", "z", "xp")
CATALOGUE_VERSION = "1"

SCHEMA = pa.schema(
    [
        pa.field("survey", pa.string(), nullable=False),
        pa.field("object_id", pa.string(), nullable=False),
        pa.field("gaia_source_id", pa.int64()),
        pa.field("ra", pa.float64()),
        pa.field("dec", pa.float64()),
        pa.field("data_release", pa.string()),
        pa.field("obj_class", pa.string()),
        pa.field("subclass", pa.string()),
        pa.field("z", pa.float64()),
    ]
    + [pa.field(f"snr_{k}", pa.float64()) for k in SNR_KEYS]
    + [
        pa.field("pixel_offset", pa.int32()),      # LAMOST native index of the first pixel
        pa.field("wavelength", pa.list_(pa.float64())),  # null for LAMOST (grid + offset)
        pa.field("flux", pa.list_(pa.float64()), nullable=False),
        pa.field("ivar", pa.list_(pa.float64()), nullable=False),
        pa.field("mask", pa.list_(pa.bool_()), nullable=False),
        pa.field("norm_flux", pa.list_(pa.float64())),
    ]
    + [pa.field(f"label_{n}", pa.float64()) for n in LABEL_NAMES]
    + [pa.field(f"label_{n}_err", pa.float64()) for n in LABEL_NAMES]
    + [
        pa.field("label_source", pa.string()),
        pa.field("source_path", pa.string()),
        pa.field("source_index", pa.int64()),
        pa.field("meta_json", pa.string()),
    ],
    metadata={"specclip_catalogue_version": CATALOGUE_VERSION},
)


def _row(r: SpectrumRecord) -> dict[str, Any]:
    row: dict[str, Any] = {
        "survey": r.survey, "object_id": r.object_id, "gaia_source_id": r.gaia_source_id,
        "ra": r.ra, "dec": r.dec, "data_release": r.data_release or None,
        "obj_class": r.obj_class, "subclass": r.subclass, "z": r.z,
        "pixel_offset": r.pixel_offset,
        "wavelength": None if r.pixel_offset is not None else np.asarray(r.wavelength, float),
        "flux": np.asarray(r.flux, float), "ivar": np.asarray(r.ivar, float),
        "mask": np.asarray(r.mask, bool),
        "norm_flux": None if r.norm_flux is None else np.asarray(r.norm_flux, float),
        "label_source": r.label_source, "source_path": r.source_path,
        "source_index": r.source_index,
        "meta_json": json.dumps(r.meta, default=json_default, sort_keys=True),
    }
    row.update({f"snr_{k}": r.snr.get(k) for k in SNR_KEYS})
    row.update({f"label_{n}": r.labels.get(n) for n in LABEL_NAMES})
    row.update({f"label_{n}_err": r.label_errors.get(n) for n in LABEL_NAMES})
    return row


def records_to_table(records: Sequence[SpectrumRecord]) -> pa.Table:
    rows = [_row(r) for r in records]
    columns = {f.name: [row[f.name] for row in rows] for f in SCHEMA}
    return pa.Table.from_pydict(columns, schema=SCHEMA)


def write_catalogue(records: Sequence[SpectrumRecord], path: str | os.PathLike) -> None:
    """Write records to a Parquet file (zstd), replacing it atomically."""
    path = os.fspath(path)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        pq.write_table(records_to_table(records), tmp, compression="zstd")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):   # never leave a stray .tmp-PID behind
            os.unlink(tmp)
        raise


def _array(values: Any, dtype: Any) -> np.ndarray | None:
    return None if values is None else np.asarray(values, dtype=dtype)


def _record(row: dict[str, Any]) -> SpectrumRecord:
    flux = np.asarray(row["flux"], dtype=np.float64)
    offset = row["pixel_offset"]
    wavelength = (lamost_native_wavelength(flux.size, offset) if offset is not None
                  else np.asarray(row["wavelength"], dtype=np.float64))
    return SpectrumRecord(
        survey=row["survey"], object_id=row["object_id"], wavelength=wavelength, flux=flux,
        ivar=np.asarray(row["ivar"], dtype=np.float64),
        mask=np.asarray(row["mask"], dtype=bool),
        source_path=row["source_path"] or "", source_index=int(row["source_index"] or 0),
        data_release=row["data_release"] or "", gaia_source_id=row["gaia_source_id"],
        ra=row["ra"], dec=row["dec"], obj_class=row["obj_class"], subclass=row["subclass"],
        z=row["z"],
        snr={k: row[f"snr_{k}"] for k in SNR_KEYS if row[f"snr_{k}"] is not None},
        labels={n: row[f"label_{n}"] for n in LABEL_NAMES if row[f"label_{n}"] is not None},
        label_errors={n: row[f"label_{n}_err"] for n in LABEL_NAMES
                      if row[f"label_{n}_err"] is not None},
        label_source=row["label_source"], pixel_offset=offset,
        norm_flux=_array(row["norm_flux"], np.float64),
        meta=json.loads(row["meta_json"]) if row["meta_json"] else {},
    )


def row_problem(row: dict[str, Any]) -> str | None:
    """Why a catalogue row cannot be a record (None when it can): a catalogue may have been
    written or edited by other tools, so each row is checked before it reaches the model."""
    if row["survey"] not in SURVEYS:
        return f"survey {row['survey']!r} is not one of {', '.join(SURVEYS)}"
    if not str(row["object_id"] or "").strip():
        return "object_id is empty"
    n = len(row["flux"] or ())
    if n == 0:
        return "flux is empty"
    for name in ("ivar", "mask", "norm_flux") + (() if row["pixel_offset"] is not None
                                                   else ("wavelength",)):
        values = row[name]
        if values is None and name == "norm_flux":
            continue
        if values is None or len(values) != n:
            got = "missing" if values is None else f"{len(values)} values"
            return f"{name} is {got}, flux has {n}"
    offset = row["pixel_offset"]
    low, high = OFFSET_RANGE_PX
    if offset is not None and not low <= offset <= high:
        return f"pixel_offset {offset} is outside LAMOST LRS coverage"
    if row["meta_json"]:
        try:
            json.loads(row["meta_json"])
        except ValueError as exc:
            return f"meta_json is not JSON ({exc})"
    return None


def read_catalogue(path: str | os.PathLike) -> list[SpectrumRecord]:
    """Records from a catalogue written by `write_catalogue`.

    A row that cannot be a record (unknown survey, arrays of different lengths, ...) is
    refused on its own with `refuse_row` (so it reaches the indexer's report); the other
    rows are read. A file that is not a catalogue at all raises ValueError.
    """
    table = pq.read_table(os.fspath(path))
    missing = [f.name for f in SCHEMA if f.name not in table.column_names]
    if missing:
        raise ValueError(f"{path}: not a specclip catalogue (missing {missing})")
    records = []
    for i, row in enumerate(table.to_pylist()):
        problem = row_problem(row)
        if problem is None:
            records.append(_record(row))
        else:
            refuse_row(os.fspath(path), i, problem)
    return records
