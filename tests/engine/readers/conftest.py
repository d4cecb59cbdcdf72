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
    """Tiny cuts of two real SDSS spec files (committed; see tests/fixtures/sdss/README.md)."""
    return SDSS_REAL


@pytest.fixture
def shared_data() -> Path:
    """../shared/data beside the project; tests that need it skip cleanly without it."""
    if not SHARED.is_dir():
        pytest.skip("../shared/data is not available")
    return SHARED
