"""The store's own copy of every indexed spectrum, so that a hit can be shown, plotted and
translated without the source files (a store folder copied elsewhere answers everything).

Why a sidecar and not the payload: a LAMOST spectrum takes ~36 KB even compressed (an XP
spectrum ~4.7 KB; `benchmarks/archive_size.py`), and payloads are held in RAM and sent with
every hit; a sidecar is read only for the hits a user looks at, so query latency does not
change (`benchmarks/archive_latency.py`). Layout::

    <folder>/<collection>/<time>-<random>.arrow     one file per upserted batch, immutable

Each file is an Arrow IPC file of one record batch: point id, content hash, the record's
scalar fields as JSON, and one binary column per array (wavelength, flux, ivar, mask,
norm_flux), each compressed on its own (byte-shuffled, zstd), so reading one spectrum touches
only its own bytes of a memory-mapped file. A point's payload names its file and row
(`spectrum_file`, `spectrum_row`); the file is written (tmp + fsync + rename) before the
point is upserted, so a point never names a file that is not complete on disk. An
interrupted run leaves at most a file no point names; the re-run writes a new one, and a
later sync deletes files no point names (`SpectrumArchiveWriter.collect_garbage`).

Arrays keep their dtype exactly: float64 values that are float32 numbers (every LAMOST
file) are stored as float32, and the wavelength is not stored when it is the instrument's
grid (LAMOST native pixels from `pixel_offset`, the XP sampling), so a decoded record has the
same content hash as the one that was indexed.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections import OrderedDict
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from engine import payload as P
from engine.errors import NotFoundError
from engine.jsonfile import json_default
from engine.grids import lamost_native_wavelength, xp_wavelength_angstrom
from engine.records import SURVEY_XP, SpectrumRecord

log = logging.getLogger(__name__)

ARCHIVE_DIR = "spectra"          # inside an embedded store folder
ARRAYS = ("wavelength", "flux", "ivar", "mask", "norm_flux")
SCHEMA = pa.schema([pa.field("id", pa.string(), nullable=False),
                    pa.field("content_hash", pa.string(), nullable=False),
                    pa.field("record", pa.string(), nullable=False)]
                   + [pa.field(name, pa.binary()) for name in ARRAYS],
                   metadata={"specclip_spectrum_archive": "1"})
_CODEC = pa.Codec("zstd", compression_level=3)


# ---- one array <-> bytes ------------------------------------------------------------------

def _shuffle(raw: bytes, itemsize: int) -> bytes:
    """Byte-shuffle (all first bytes, then all second bytes, ...): floats compress far
    better once their exponent bytes sit together."""
    return np.frombuffer(raw, np.uint8).reshape(-1, itemsize).T.tobytes()


def _unshuffle(raw: bytes, itemsize: int) -> bytes:
    return np.frombuffer(raw, np.uint8).reshape(itemsize, -1).T.tobytes()


def _encode_array(a: np.ndarray) -> tuple[bytes, dict]:
    a = np.ascontiguousarray(a)
    info = {"dtype": a.dtype.str, "n": int(a.size)}
    if a.dtype == bool:
        return _CODEC.compress(np.packbits(a).tobytes(), asbytes=True), info
    stored = a
    if a.dtype == np.float64:
        as32 = a.astype(np.float32)
        if as32.astype(np.float64).tobytes() == a.tobytes():     # bit-exact round trip
            stored = as32
    info["stored"] = stored.dtype.str
    return _CODEC.compress(_shuffle(stored.tobytes(), stored.itemsize), asbytes=True), info


def _decode_array(blob: bytes, info: dict) -> np.ndarray:
    n = int(info["n"])
    if np.dtype(info["dtype"]) == bool:
        packed = _CODEC.decompress(blob, decompressed_size=(n + 7) // 8, asbytes=True)
        return np.unpackbits(np.frombuffer(packed, np.uint8), count=n).astype(bool)
    stored = np.dtype(info["stored"])
    raw = _CODEC.decompress(blob, decompressed_size=n * stored.itemsize, asbytes=True)
    values = np.frombuffer(_unshuffle(raw, stored.itemsize), stored)
    return values.astype(np.dtype(info["dtype"]))


def _instrument_grid(record: SpectrumRecord) -> np.ndarray | None:
    if record.pixel_offset is not None:
        return lamost_native_wavelength(record.n_pixels, record.pixel_offset)
    if record.survey == SURVEY_XP:
        return xp_wavelength_angstrom()
    return None


# ---- one record <-> one row -----------------------------------------------------------------

_SCALARS = ("survey", "object_id", "source_path", "source_index", "data_release",
            "gaia_source_id", "ra", "dec", "obj_class", "subclass", "z", "snr", "labels",
            "label_errors", "label_source", "pixel_offset", "meta")


def encode_record(record: SpectrumRecord) -> dict[str, Any]:
    """The archive row of a record (without id and hash)."""
    row: dict[str, Any] = {}
    layout: dict[str, Any] = {}
    grid = _instrument_grid(record)
    for name in ARRAYS:
        a = getattr(record, name)
        if a is None or (name == "wavelength" and grid is not None and grid.dtype == a.dtype
                         and grid.tobytes() == np.ascontiguousarray(a).tobytes()):
            row[name] = None
            continue
        row[name], layout[name] = _encode_array(np.asarray(a))
    scalars = {k: getattr(record, k) for k in _SCALARS}
    row["record"] = json.dumps({"fields": scalars, "arrays": layout}, default=json_default)
    return row


def decode_record(row: dict[str, Any]) -> SpectrumRecord:
    doc = json.loads(row["record"])
    fields, layout = doc["fields"], doc["arrays"]
    arrays = {name: _decode_array(row[name], layout[name]) for name in ARRAYS
              if row.get(name) is not None}
    flux = arrays["flux"]
    if "wavelength" not in arrays:
        grid = (lamost_native_wavelength(flux.size, fields["pixel_offset"])
                if fields.get("pixel_offset") is not None else xp_wavelength_angstrom())
        arrays["wavelength"] = grid
    return SpectrumRecord(**fields, **{k: arrays.get(k) for k in ARRAYS})


# ---- files ----------------------------------------------------------------------------------

def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SpectrumArchiveWriter:
    """Writes the archive files of one store (the indexer is the only writer).

    Parameters
    ----------
    folder : where collection sub-folders of archive files go.
    relative_to : payload references are relative to this folder (an embedded store's
        root, so the store can be moved); None: absolute paths (a server's archive, which
        every client must see at the same path).
    """

    def __init__(self, folder: str | os.PathLike, relative_to: str | os.PathLike | None = None):
        self.folder = os.path.abspath(folder)
        self.relative_to = None if relative_to is None else os.path.abspath(relative_to)

    def collection_folder(self, collection: str) -> str:
        return os.path.join(self.folder, collection)

    def write(self, collection: str, ids: Sequence[str], hashes: Sequence[str],
              records: Sequence[SpectrumRecord]) -> str:
        """Write one archive file of these spectra; returns its payload reference."""
        return self.write_rows(collection, encode_rows(ids, hashes, records))

    def write_rows(self, collection: str, batch: pa.RecordBatch) -> str:
        """Write rows made by `encode_rows` (a Dask worker may have made them)."""
        folder = self.collection_folder(collection)
        os.makedirs(folder, exist_ok=True)
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:12]}.arrow"
        path = os.path.join(folder, name)
        tmp = os.path.join(folder, f".{name}.tmp")
        with pa.OSFile(tmp, "wb") as sink, pa.ipc.new_file(sink, SCHEMA) as out:
            out.write_batch(batch)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        _fsync_dir(folder)      # the name is durable before any point refers to it
        return self.ref_of(path)

    def ref_of(self, path: str) -> str:
        """The payload reference naming the archive file at ``path`` (inverse of resolve)."""
        return path if self.relative_to is None else os.path.relpath(path, self.relative_to)

    def resolve(self, ref: str) -> str:
        """The absolute path of a payload reference this writer made."""
        if os.path.isabs(ref) or self.relative_to is None:
            return ref
        return os.path.join(self.relative_to, ref)

    def listed_orphans(self, collection: str) -> set[str]:
        """Absolute paths of the files an earlier `collect_garbage` found unreferenced."""
        folder = self.collection_folder(collection)
        try:
            with open(os.path.join(folder, "orphans.json")) as fh:
                return {os.path.join(folder, name) for name in json.load(fh)}
        except (FileNotFoundError, ValueError):
            return set()

    def collect_garbage(self, collection: str, referenced: set[str], before: float,
                        candidates: set[str] | None = None) -> int:
        """Delete files no point names any more (spectra of updated or deleted points, files
        of an interrupted run), in two steps: a file found unreferenced is listed in
        `orphans.json` and deleted only when a later call finds it unreferenced again, so a
        reader still answering from the previous published generation keeps its spectra.
        `referenced`: absolute paths the collection's points name; temporary files older
        than `before` (a timestamp) are debris of a killed write. `candidates` (absolute
        paths): look only at these and the files listed before (`referenced` then need
        only cover them); None: at every file. Returns files deleted."""
        folder = self.collection_folder(collection)
        if not os.path.isdir(folder):
            return 0
        listed = os.path.join(folder, "orphans.json")
        earlier = {os.path.basename(p) for p in self.listed_orphans(collection)}
        looked = None if candidates is None else \
            {os.path.basename(p) for p in candidates} | earlier
        orphans, deleted = set(), 0
        for entry in os.scandir(folder):
            if entry.name.startswith(".") and entry.name.endswith(".tmp"):
                if entry.stat().st_mtime < before:
                    os.unlink(entry.path)
                continue
            if not entry.name.endswith(".arrow") or entry.path in referenced:
                continue
            if looked is not None and entry.name not in looked:
                continue
            if entry.name in earlier:
                os.unlink(entry.path)
                deleted += 1
            else:
                orphans.add(entry.name)
        tmp = f"{listed}.tmp"
        with open(tmp, "w") as fh:
            json.dump(sorted(orphans), fh)
        os.replace(tmp, listed)
        return deleted

    def drop_collection(self, collection: str) -> None:
        """Delete the archive of a collection the store no longer has."""
        shutil.rmtree(self.collection_folder(collection), ignore_errors=True)


def _bytes_column(values: Sequence[str | bytes | None], type: pa.DataType) -> pa.Array:
    """A string or binary Arrow column built from its buffers. Why not pa.array(list):
    converting Python objects makes pyarrow import pandas (0.2-0.35 s, once per process: the
    whole import cost of a one-file `specclip index`)."""
    valid = np.fromiter((v is not None for v in values), bool, len(values))
    parts = [b"" if v is None else v.encode() if isinstance(v, str) else bytes(v)
             for v in values]
    offsets = np.zeros(len(parts) + 1, np.int64)
    np.cumsum([len(b) for b in parts], out=offsets[1:])
    if offsets[-1] >= 2 ** 31:
        raise ValueError(f"a batch of {len(parts)} stored spectra holds {offsets[-1]} bytes in "
                         "one column: more than an Arrow string/binary column can (2 GiB)")
    validity = None if valid.all() else pa.py_buffer(np.packbits(valid, bitorder="little"))
    return pa.Array.from_buffers(type, len(parts), [validity,
                                 pa.py_buffer(offsets.astype(np.int32)),
                                 pa.py_buffer(b"".join(parts))],
                                 null_count=int(len(parts) - valid.sum()))


def encode_rows(ids: Sequence[str], hashes: Sequence[str],
                records: Sequence[SpectrumRecord]) -> pa.RecordBatch:
    rows = [encode_record(r) for r in records]
    columns = {"id": list(ids), "content_hash": list(hashes),
               **{k: [row[k] for row in rows] for k in ("record", *ARRAYS)}}
    return pa.RecordBatch.from_arrays(
        [_bytes_column(columns[f.name], f.type) for f in SCHEMA], schema=SCHEMA)


class SpectrumArchive:
    """Reads spectra back for the engine: `load(payload)` -> SpectrumRecord.

    `base` is the folder relative references are resolved against (an embedded store's
    root); absolute references (a server's archive) are used as they are. Open files are
    memory-mapped and kept (the most recent `max_open`)."""

    def __init__(self, base: str | os.PathLike | None, max_open: int = 64):
        self.base = None if base is None else os.path.abspath(base)
        self.max_open = max_open
        self._open: OrderedDict[str, pa.RecordBatch] = OrderedDict()
        self._lock = threading.Lock()

    def path_of(self, ref: str) -> str:
        if os.path.isabs(ref) or self.base is None:
            return ref
        return os.path.join(self.base, ref)

    def _batch(self, path: str) -> pa.RecordBatch:
        with self._lock:
            batch = self._open.get(path)
            if batch is not None:
                self._open.move_to_end(path)
                return batch
        try:
            batch = pa.ipc.open_file(pa.memory_map(path, "r")).get_batch(0)
        except (OSError, pa.ArrowInvalid) as exc:
            raise NotFoundError(f"stored spectrum file {path} is unreadable: {exc}") from exc
        with self._lock:
            self._open[path] = batch
            while len(self._open) > self.max_open:
                self._open.popitem(last=False)
        return batch

    def load(self, payload: dict[str, Any]) -> SpectrumRecord:
        """The spectrum a point was built from, as the indexer stored it."""
        ref, row = payload.get(P.SPECTRUM_FILE), payload.get(P.SPECTRUM_ROW)
        if ref is None or row is None:
            raise NotFoundError(f"{payload.get(P.OBJECT_ID)}: this point has no stored "
                                "spectrum (indexed before spectra were stored; re-run "
                                "`specclip index` on the store to add them)")
        batch = self._batch(self.path_of(str(ref)))
        row = int(row)
        if not 0 <= row < batch.num_rows:
            raise NotFoundError(f"{ref}: no row {row}")
        values = {name: batch.column(name)[row].as_py() for name in batch.schema.names}
        if payload.get(P.CONTENT_HASH) not in (None, values["content_hash"]):
            raise NotFoundError(f"{ref} row {row} holds another version of "
                                f"{payload.get(P.OBJECT_ID)} (content hash differs)")
        return decode_record(values)


__all__ = ["ARCHIVE_DIR", "SpectrumArchive", "SpectrumArchiveWriter", "decode_record",
           "encode_record", "encode_rows"]
