"""Fixtures for the reader tests: tiny generated files in the repo, real files beside it."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "tests" / "fixtures" / "spectra"
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
