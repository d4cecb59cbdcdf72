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


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES


@pytest.fixture
def generic() -> Path:
    """Generated generic-layout spectra and a synthetic SDSS spec file."""
    return GENERIC
