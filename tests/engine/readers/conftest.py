"""Fixtures for the reader tests: tiny files generated from tests/fixtures/make_fixtures.py
(kept in the repo; its output is not), real files beside the project."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.make_fixtures import main as make_fixtures

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = make_fixtures(ROOT / "tests" / "fixtures" / "spectra")
SHARED = (ROOT / ".." / "shared" / "data").resolve()


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES


@pytest.fixture
def shared_data() -> Path:
    """../shared/data beside the project; tests that need it skip cleanly without it."""
    if not SHARED.is_dir():
        pytest.skip("../shared/data is not available")
    return SHARED
