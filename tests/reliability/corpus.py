"""A bad-input corpus, generated at test time (nothing stored in the repository), plus the
real oddities of ../shared/data: a medium-resolution LAMOST file, galaxies, an XP source with
a missing BP band. Each entry says what a correct outcome is."""

from __future__ import annotations

import gzip
import io
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits

from tests.indexer.conftest import write_lamost_file
from tests.reliability import hostile

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
GALAXY = DATA / "lamost_dr7" / "spectra" / "spec-58575-HD103621N361936B01_sp03-008.fits"
MRS = next(iter(sorted((DATA / "lamost_misc").glob("med-*.fits"))), None) if DATA.is_dir() else None
XP_MISSING_BP = DATA / "gaia_xp_archive" / "XP_CONTINUOUS_RAW_with_missing_BP.csv"
XP_CSV = DATA / "gaia_xp_archive" / "XP_CONTINUOUS_RAW.csv"


@dataclass(frozen=True)
class Case:
    kind: str
    path: Path
    expect: str          # "refused" | "unusable" (read, but no usable pixels) | "read"
    #                      | "rows_refused" (some rows read, the others refused one by one)


def _lamost_bytes(tmp: Path, obsid: int, **kw) -> bytes:
    p = write_lamost_file(str(tmp / f"_src_{obsid}.fits"), obsid, **kw)
    data = Path(p).read_bytes()
    Path(p).unlink()
    return data


def _edit_lamost(src: bytes, dst: Path, edit) -> Path:
    with fits.open(io.BytesIO(src)) as hdul:
        data = hdul[0].data.copy()
        header = hdul[0].header.copy()
    edit(data, header)
    fits.PrimaryHDU(data, header).writeto(dst, overwrite=True)
    return dst


def _shift_grid(data, header):
    # A grid starting at 1.2 micron: nothing inside LAMOST's 3700-9100 A range.
    header["COEFF0"] = 4.08
    data[2] = 10 ** (4.08 + 1e-4 * np.arange(data.shape[1]))


def build(tmp: Path) -> list[Case]:
    """Write the generated corpus into `tmp`; real-data cases are added when present."""
    tmp.mkdir(parents=True, exist_ok=True)
    good = _lamost_bytes(tmp, 9001)
    cases: list[Case] = []

    def put(kind, name, content, expect):
        path = tmp / name
        path.write_bytes(content)
        cases.append(Case(kind, path, expect))

    gz = gzip.compress(good)
    put("truncated gzip", "spec-trunc.fits.gz", gz[: len(gz) // 2], "refused")
    put("truncated FITS", "spec-trunc.fits", good[: len(good) // 3], "refused")
    put("not FITS named .fits", "spec-text.fits", b"obsid,flux\n1,2\nthis is a CSV\n", "refused")
    put("empty file", "spec-empty.fits", b"", "refused")
    put("gzip of garbage", "spec-garbage.fits.gz", gzip.compress(np.random.default_rng(0)
                                                                  .bytes(5000)), "refused")
    put("FITS header only", "spec-noheader.fits",
        fits.PrimaryHDU().header.tostring().encode().ljust(2880, b" "), "refused")
    cases.append(Case("all-NaN flux", _edit_lamost(
        good, tmp / "spec-nan.fits", lambda d, h: d.__setitem__(0, np.nan)), "unusable"))
    cases.append(Case("zero ivar", _edit_lamost(
        good, tmp / "spec-zero-ivar.fits", lambda d, h: d.__setitem__(1, 0.0)), "unusable"))
    cases.append(Case("wavelength outside the instrument", _edit_lamost(
        good, tmp / "spec-ir.fits", _shift_grid), "unusable"))
    put("CSV with missing columns", "xp-missing-cols.csv",
        b"source_id,solution_id\n123,456\n789,1011\n", "refused")
    cases += hostile_cases(tmp, good)
    if DATA.is_dir():
        if MRS is not None:
            dst = tmp / MRS.name
            shutil.copy(MRS, dst)
            cases.append(Case("medium-resolution LAMOST", dst, "refused"))
        if XP_MISSING_BP.exists():
            dst = tmp / XP_MISSING_BP.name
            shutil.copy(XP_MISSING_BP, dst)
            cases.append(Case("XP row with a missing band", dst, "read_or_refused"))
        if GALAXY.exists():
            dst = tmp / GALAXY.name
            shutil.copy(GALAXY, dst)
            cases.append(Case("galaxy spectrum", dst, "read"))
    return cases


def hostile_cases(tmp: Path, good: bytes) -> list[Case]:
    """The inputs of issue 15's adversarial pass (see `hostile`)."""
    big = 2_000_000     # declared values per row: far above XP's 1485, cheap if allocated
    bomb = tmp / "spec-bomb.fits.gz"
    bomb.write_bytes(hostile.gzip_bomb(good))
    return [
        Case("COEFF0 that overflows a float (1E999)",
             hostile.pilot_with_coeff0(tmp, "1E999", "spec-coeff-inf.fits"), "refused"),
        Case("COEFF0 far off the grid (1.0E12)",
             hostile.pilot_with_coeff0(tmp, "1.0E12", "spec-coeff-1e12.fits"), "refused"),
        Case("XP source_id beyond int64", hostile.xp_csv(
            tmp / "xp-huge-id.csv", ["99999999999999999999999", str(hostile.XP_GOOD_ID)]),
            "rows_refused"),
        Case("XP row with an empty source_id", hostile.xp_csv(
            tmp / "xp-empty-id.csv", ["", str(hostile.XP_GOOD_ID + 1)]), "rows_refused"),
        Case("ECSV declaring a huge array per row",
             hostile.ecsv_declaring(tmp / "xp-huge-shape.ecsv", big), "refused"),
        Case("VOTable declaring a huge arraysize",
             hostile.votable_declaring(tmp / "xp-huge-arraysize.xml", big), "refused"),
        Case("gzip bomb behind a valid LAMOST header", bomb, "refused"),
        Case("COADD table with 3 rows", hostile.coadd_rows(tmp, 3, "spec-3rows.fits"),
             "refused"),
        Case("XP CSV with a UTF-8 byte-order mark", hostile.xp_csv(
            tmp / "xp-bom.csv", [str(hostile.XP_GOOD_ID + 2)], bom=True), "read"),
        Case("FIFO named like a spectrum", hostile.fifo(tmp), "refused"),
    ]


def good_file(tmp: Path) -> Path:
    return Path(write_lamost_file(str(tmp / "spec-good.fits"), 9100))
