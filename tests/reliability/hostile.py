"""Hostile inputs from the adversarial pass of issue 15, written at test time (nothing stored
in the repository): numbers that overflow, ids that are empty or too large, tiny files that
declare huge arrays, a gzip bomb behind a valid LAMOST header, a COADD table with three
rows, a CSV with a byte-order mark, a FIFO named like a spectrum. `cases(tmp)` returns them
as corpus `Case`s with the outcome each must have."""

from __future__ import annotations

import io
import os
import zlib
from pathlib import Path

import numpy as np
from astropy.io import fits

from tests.indexer.conftest import write_lamost_file

XP_GOOD_ID = 4295806720


def lamost_bytes(tmp: Path, obsid: int) -> bytes:
    path = Path(write_lamost_file(str(tmp / f"_h_{obsid}.fits"), obsid))
    data = path.read_bytes()
    path.unlink()
    return data


def pilot_with_coeff0(tmp: Path, raw_value: str, name: str) -> Path:
    """A pilot/DR1-layout file (row 3 = normalised flux) whose COEFF0 card holds `raw_value`
    exactly as written (astropy would not write '1E999' itself)."""
    with fits.open(io.BytesIO(lamost_bytes(tmp, 9300))) as hdul:
        data, header = hdul[0].data.copy(), hdul[0].header.copy()
    header["EXTEN0"] = "Flux, Inverse, Subcontinuum, Andmask, Ormask"
    buf = io.BytesIO()
    fits.PrimaryHDU(data, header).writeto(buf)
    raw = bytearray(buf.getvalue())
    at = raw.find(b"COEFF0  =")
    raw[at:at + 80] = ("COEFF0  = " + raw_value.rjust(20)).ljust(80).encode()
    path = tmp / name
    path.write_bytes(bytes(raw))
    return path


def _fmt(values) -> str:
    return '"(' + ", ".join(f"{v:.6e}" for v in values) + ')"'


def xp_csv(path: Path, source_ids: list[str], bom: bool = False) -> Path:
    """An XP_SAMPLED CSV (archive layout) with one row per given source_id text."""
    wl = np.arange(336, 1021, 2)
    flux = 1e-17 * (1 + 0.1 * np.sin(wl / 50.0))
    rows = ["source_id,ra,dec,flux,flux_error"]
    rows += [f"{sid},45.0,0.5,{_fmt(flux * (1 + i))},{_fmt(flux * 0.02)}"
             for i, sid in enumerate(source_ids)]
    text = "\n".join(rows) + "\n"
    path.write_bytes(("\ufeff" + text).encode("utf-8") if bom else text.encode())
    return path


def ecsv_declaring(path: Path, n: int) -> Path:
    """A few hundred bytes of ECSV whose header declares `float64[n]` per row."""
    path.write_text(
        "# %ECSV 1.0\n# ---\n# datatype:\n# - {name: source_id, datatype: int64}\n"
        f"# - {{name: flux, datatype: string, subtype: 'float64[{n}]'}}\n"
        f"# - {{name: flux_error, datatype: string, subtype: 'float64[{n}]'}}\n"
        "# schema: astropy-2.0\nsource_id flux flux_error\n"
        f"{XP_GOOD_ID} [1.0] [1.0]\n")
    return path


def votable_declaring(path: Path, n: int) -> Path:
    """A tiny VOTable whose FIELDs declare arraysize=n."""
    path.write_text(
        '<?xml version="1.0"?>\n<VOTABLE version="1.4" '
        'xmlns="http://www.ivoa.net/xml/VOTable/v1.3"><RESOURCE><TABLE>\n'
        '<FIELD name="source_id" datatype="long"/>\n'
        f'<FIELD name="flux" datatype="double" arraysize="{n}"/>\n'
        f'<FIELD name="flux_error" datatype="double" arraysize="{n}"/>\n'
        f"<DATA><TABLEDATA><TR><TD>{XP_GOOD_ID}</TD><TD>1 2</TD><TD>1 2</TD></TR>"
        "</TABLEDATA></DATA></TABLE></RESOURCE></VOTABLE>\n")
    return path


def gzip_bomb(lamost: bytes, inflated_mb: int = 256) -> bytes:
    """A valid gzipped LAMOST file followed by gzip members of zeros: ~1/1000 of its inflated
    size on disk (gzip allows several members; every reader inflates them all)."""
    zeros = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    member = zeros.compress(bytes(8 << 20)) + zeros.flush()
    head = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    first = head.compress(lamost) + head.flush()
    return first + member * (inflated_mb // 8)


def coadd_rows(tmp: Path, n_rows: int, name: str) -> Path:
    """A DR8+ layout file (empty primary + COADD table) with `n_rows` rows."""
    n = 3909
    wave = (10 ** (3.5682 + 1e-4 * np.arange(n))).astype(np.float32)
    rng = np.random.default_rng(1)
    cols = [fits.Column(name=c, format=f"{n}E", array=np.stack([a] * n_rows))
            for c, a in (("FLUX", 100 + rng.normal(size=n).astype(np.float32)),
                         ("IVAR", np.full(n, 0.01, np.float32)), ("WAVELENGTH", wave),
                         ("ANDMASK", np.zeros(n, np.float32)),
                         ("ORMASK", np.zeros(n, np.float32)))]
    header = fits.Header({"TELESCOP": "LAMOST", "OBSID": 9400, "DATA_V": "LAMOST DR10",
                          "FILENAME": name})
    hdul = fits.HDUList([fits.PrimaryHDU(header=header),
                         fits.BinTableHDU.from_columns(cols, name="COADD")])
    path = tmp / name
    hdul.writeto(path)
    return path


def fifo(tmp: Path, name: str = "spec-fifo.fits") -> Path:
    path = tmp / name
    os.mkfifo(path)
    return path


READER_HOOK = '''
import os, time
if os.environ.get("SPECCLIP_TEST_READER_HOOK"):
    import engine.readers.registry as _registry
    _identify = _registry.identify_format

    def _hooked(source, path=None):
        name = os.path.basename(str(path or source))
        if "kills-reader" in name:
            os._exit(70)            # as a segfault or the OOM killer would end it
        if "hangs-reader" in name:
            time.sleep(3600)        # as a read that never returns would
        return _identify(source, path)

    _registry.identify_format = _hooked
'''


def reader_hook(folder: Path) -> Path:
    """A `sitecustomize` for reader processes (put `folder` on PYTHONPATH and set
    SPECCLIP_TEST_READER_HOOK=1): a file named `*kills-reader*` kills the reader process,
    one named `*hangs-reader*` blocks it. The test process itself is not affected."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(READER_HOOK)
    return folder
