"""app.upload: size limit, format errors, and real files read from memory."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.upload import UploadError, read_upload
from tests.app.conftest import SHARED
from tests.indexer.conftest import write_lamost_file


def test_reads_a_lamost_file_from_bytes(tmp_path):
    path = Path(write_lamost_file(str(tmp_path / "spec-1.fits"), 4242))
    records = read_upload("spec-1.fits", path.read_bytes())
    assert [r.object_id for r in records] == ["4242"] and records[0].survey == "lamost"


def test_size_limit_empty_and_garbage_are_refused():
    with pytest.raises(UploadError, match="limit is"):
        read_upload("big.fits", b"x" * 2048, max_bytes=1024)
    with pytest.raises(UploadError, match="empty"):
        read_upload("e.fits", b"")
    with pytest.raises(UploadError, match="Could not read junk.fits"):
        read_upload("junk.fits", b"SIMPLE  =  nonsense" * 10)


@pytest.mark.real_data
@pytest.mark.parametrize("name", ["XP_SAMPLED_RAW_dr3int6.csv", "XP_SAMPLED_RAW_dr3int6.ecsv",
                                  "XP_SAMPLED_RAW_dr3int6.fits", "XP_CONTINUOUS_RAW.csv"])
def test_reads_gaia_xp_archive_files(name):
    path = SHARED / "gaia_xp_archive" / name
    if not path.exists():
        pytest.skip(f"{path} is absent")
    records = read_upload(name, path.read_bytes())
    assert records and all(r.survey == "gaia_xp" for r in records)


@pytest.mark.real_data
def test_medium_resolution_file_is_refused():
    files = sorted((SHARED / "lamost_misc").glob("med-*.fits*"))
    if not files:
        pytest.skip("no LAMOST MRS file in ../shared/data/lamost_misc")
    with pytest.raises(UploadError, match=files[0].name):
        read_upload(files[0].name, files[0].read_bytes())


GENERIC = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.mark.parametrize("name", ["table-vacuum.csv", "table-air-nm.txt", "table-bare.dat",
                                  "spectrum-table.fits", "spectrum-wcs-log.fits",
                                  "spectrum-rows3.fits", "spec-1234-56789-0042.fits"])
def test_reads_generic_and_sdss_uploads(name):
    from tests.fixtures.make_generic_fixtures import main as make_generic_fixtures

    path = make_generic_fixtures(GENERIC / "generic") / name
    (record,) = read_upload(name, path.read_bytes())
    assert record.survey == "lamost" and record.meta["resampled"]


def test_real_sdss_upload_and_a_generic_refusal(sdss_real):
    sdss = sdss_real / "spec-4961-55719-0378-cut.fits.gz"
    (record,) = read_upload(sdss.name, sdss.read_bytes())
    assert record.obj_class == "STAR" and record.meta["instrument"] == "SDSS/BOSS"
    table = b"wavelength,flux\n5000,1\n5001,1\n5002,1\n"
    with pytest.raises(UploadError, match="air or vacuum"):
        read_upload("star.csv", table)
    (stated,) = read_upload("star.csv", table, options={"medium": "air"})
    assert stated.meta["wavelength_medium"] == "air"


def test_the_upload_widget_has_the_limit_however_the_app_is_started(app_engine):
    """Before: `streamlit run app/main.py` let a 60 MB upload through (only `specclip app`
    set the server's limit); now the widget itself carries it, whatever the server's."""
    upload = pytest.importorskip("app.upload")
    from streamlit import config

    from tests.app.apptest import page_app, rerun

    before = config.get_option("server.maxUploadSize")
    config.set_option("server.maxUploadSize", 200)   # Streamlit's default: no flag, no file
    try:
        at = page_app("app.views.search", app_engine)
        at.radio(key="search_mode").set_value("Upload a file")
        rerun(at)
        (widget,) = at.get("file_uploader")
    finally:
        config.set_option("server.maxUploadSize", before)
    assert widget.proto.max_upload_size_mb == upload.MAX_UPLOAD_MB
