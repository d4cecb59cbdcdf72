"""Fixtures every test package can use: real data kept beside the project, never in it."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = (Path(__file__).resolve().parents[1] / ".." / "shared" / "data").resolve()


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


@pytest.fixture
def restore_root_logger():
    """cli.main configures logging (basicConfig) for the process: undo it after the test, so
    no handler is left writing to a closed capture stream."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in root.handlers[:]:
        if h not in handlers:
            root.removeHandler(h)
    root.setLevel(level)
