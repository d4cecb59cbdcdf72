"""The store's own copy of each spectrum (engine/spectrum_archive.py): a decoded record is
the record that was indexed (same content hash, same arrays, same dtypes), files are found
through the payload, and a reference to another version of a spectrum is refused."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from engine import payload as P
from engine import readers
from engine.errors import NotFoundError
from engine.records import SURVEY_LAMOST, SpectrumRecord
from engine.spectrum_archive import (SpectrumArchive, SpectrumArchiveWriter, decode_record,
                                     encode_record)
from indexer.ids import content_hash
from tests.indexer.conftest import write_lamost_file

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def same_record(a: SpectrumRecord, b: SpectrumRecord) -> None:
    assert content_hash(a) == content_hash(b)
    for name in ("wavelength", "flux", "ivar", "mask", "norm_flux"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert x.dtype == y.dtype and np.array_equal(x, y, equal_nan=True), name
    assert (a.survey, a.object_id, a.ra, a.dec, a.snr, a.labels, a.meta) == \
        (b.survey, b.object_id, b.ra, b.dec, b.snr, b.labels, b.meta)


def test_lamost_and_xp_records_round_trip(tmp_path):
    (lamost,) = readers.read(write_lamost_file(str(tmp_path / "s.fits"), 42))
    xp = readers.read_xp_library(limit=20)
    for record in [lamost, *xp]:
        row = encode_record(record)
        same_record(record, decode_record(row))
    assert encode_record(lamost)["wavelength"] is None      # rebuilt from pixel_offset
    assert encode_record(xp[0])["wavelength"] is None       # the XP sampling


def test_arrays_that_are_not_float32_numbers_or_grids_are_kept_exactly():
    rng = np.random.default_rng(1)
    n = 500
    record = SpectrumRecord(
        survey=SURVEY_LAMOST, object_id="7", wavelength=np.sort(rng.uniform(4000, 9000, n)),
        flux=rng.normal(size=n), ivar=np.abs(rng.normal(size=n)), mask=rng.random(n) < 0.1,
        norm_flux=rng.normal(size=n).astype(np.float32), ra=1.5, dec=-2.25,
        snr={"g": 3.0}, labels={"teff": 5000.0}, meta={"k": [1, 2]})
    same_record(record, decode_record(encode_record(record)))


@pytest.mark.real_data
@pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data is absent")
def test_real_lamost_layouts_round_trip():
    names = ["lamost_dr10/spectra/spec-59522-EG224840N075042B03_sp03-013.fits.gz",
             "lamost_dr7/spectra/101008.fits", "lamost_dr1/spectra/spec-55862-B6212_sp06-003.fits"]
    for name in names:
        for record in readers.read(str(DATA / name)):
            same_record(record, decode_record(encode_record(record)))


def test_written_files_are_found_from_the_payload_and_versions_are_checked(tmp_path):
    records = [readers.read(write_lamost_file(str(tmp_path / f"s{i}.fits"), i))[0]
               for i in range(3)]
    ids = [f"00000000-0000-0000-0000-00000000000{i}" for i in range(3)]
    hashes = [content_hash(r) for r in records]
    root = tmp_path / "store"
    writer = SpectrumArchiveWriter(root / "spectra", relative_to=root)
    ref = writer.write("c", ids, hashes, records)
    assert not os.path.isabs(ref) and (root / ref).is_file()
    assert not [p for p in (root / "spectra" / "c").iterdir() if p.name.startswith(".")]
    archive = SpectrumArchive(root)
    for i in range(3):
        payload = {P.SPECTRUM_FILE: ref, P.SPECTRUM_ROW: i, P.CONTENT_HASH: hashes[i]}
        same_record(records[i], archive.load(payload))
    with pytest.raises(NotFoundError, match="content hash"):
        archive.load({P.SPECTRUM_FILE: ref, P.SPECTRUM_ROW: 0, P.CONTENT_HASH: hashes[1]})
    with pytest.raises(NotFoundError, match="no stored spectrum"):
        archive.load({P.OBJECT_ID: "1"})
    absolute = SpectrumArchiveWriter(tmp_path / "elsewhere").write("c", ids, hashes, records)
    assert os.path.isabs(absolute)
    same_record(records[2], SpectrumArchive(None).load(
        {P.SPECTRUM_FILE: absolute, P.SPECTRUM_ROW: 2, P.CONTENT_HASH: hashes[2]}))


def test_rows_are_built_from_buffers_as_arrow_would_build_them_from_lists(tmp_path):
    """encode_rows builds its columns from buffers (so that pyarrow never imports pandas,
    0.2-0.35 s of every `specclip index`): the same batch as pyarrow's own conversion,
    absent arrays (null) and non-ASCII text included."""
    import subprocess
    import sys

    import pyarrow as pa

    from engine.spectrum_archive import ARRAYS, SCHEMA, encode_rows

    (lamost,) = readers.read(write_lamost_file(str(tmp_path / "s.fits"), 42))
    xp = readers.read_xp_library(limit=3)
    records = [lamost, *xp]
    ids, hashes = ["é-1", "b", "c", "d"], [content_hash(r) for r in records]
    batch = encode_rows(ids, hashes, records)
    rows = [encode_record(r) for r in records]
    expected = pa.RecordBatch.from_pydict(
        {"id": ids, "content_hash": hashes,
         **{k: [row[k] for row in rows] for k in ("record", *ARRAYS)}}, schema=SCHEMA)
    assert batch.column("wavelength").null_count > 0      # the XP rows keep no grid
    assert batch.equals(expected)
    script = ("import sys; from engine.spectrum_archive import encode_rows; "
              "from tests.engine.test_spectrum_archive import _one_record; "
              "encode_rows(['a'], ['h'], [_one_record()]); print('pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[2], check=True)
    assert out.stdout.strip() == "False", out.stderr


def _one_record() -> SpectrumRecord:
    wave = np.linspace(3700.0, 9100.0, 50)
    return SpectrumRecord(survey=SURVEY_LAMOST, object_id="1", wavelength=wave,
                          flux=np.ones(50), ivar=np.ones(50), mask=np.zeros(50, bool))
