"""Fixtures for the reader tests: tiny files generated from tests/fixtures/make_fixtures.py
(kept in the repo; its output is not), real files beside the project."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.make_fixtures import main as make_fixtures
from tests.fixtures.make_generic_fixtures import main as make_generic_fixtures

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = make_fixtures(ROOT / "tests" / "fixtures" / "spectra")
GENERIC = make_generic_fixtures(ROOT / "tests" / "fixtures" / "generic")
SDSS_REAL = ROOT / "tests" / "fixtures" / "sdss"
SHARED = (ROOT / ".." / "shared" / "data").resolve()


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES


@pytest.fixture
def generic() -> Path:
    """Generated generic-layout spectra and a synthetic SDSS spec file."""
    return GENERIC


@pytest.fixture
def sdss_real() -> Path:
    """Cuts of two real SDSS spec files. Real survey data is never committed: they are made by
    tests/fixtures/sdss/derive.py (see its README) and looked for under ../shared/data/sdss_boss;
    the tests skip cleanly without them."""
    folder = SHARED / "sdss_boss"
    if not any(folder.glob("spec-*-cut.fits.gz")):
        pytest.skip("real SDSS cuts not found in ../shared/data/sdss_boss "
                    "(tests/fixtures/sdss/README.md says how to make them)")
    return folder


@pytest.fixture
def shared_data() -> Path:
    """../shared/data beside the project; tests that need it skip cleanly without it."""
    if not SHARED.is_dir():
        pytest.skip("../shared/data is not available")
    return SHARED
