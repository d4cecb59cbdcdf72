"""Every real format reads the same from bytes in memory as from a file (issue 14: the
upload path retries a failed in-memory read through a temporary file; these files give that
retry no reason to exist)."""

from __future__ import annotations

import io

import numpy as np
import pytest

from engine import readers

FILES = ["gaia_xp_archive/XP_CONTINUOUS_RAW.csv", "gaia_xp_archive/XP_CONTINUOUS_RAW.ecsv",
         "gaia_xp_archive/XP_CONTINUOUS_RAW.fits", "gaia_xp_archive/XP_CONTINUOUS_RAW.xml",
         "gaia_xp_archive/XP_SAMPLED_RAW_dr3int6.csv",
         "gaia_xp_archive/XP_SAMPLED_RAW_dr3int6.ecsv",
         "gaia_xp_archive/XP_SAMPLED_RAW_dr3int6.fits",
         "gaia_xp_archive/18Sco-XP-spectra.csv"]
FOLDERS = ["lamost_dr1", "lamost_dr7", "lamost_dr10", "lamost_dr8_repeats"]


def _cases(shared):
    paths = [shared / f for f in FILES]
    for folder in FOLDERS:
        paths += sorted(p for p in (shared / folder).rglob("*.fits*"))[:2]
    return [p for p in paths if p.is_file()]


@pytest.mark.real_data
def test_real_files_read_the_same_from_memory_and_from_disk(shared_data):
    cases = _cases(shared_data)
    assert len(cases) >= 12
    for path in cases:
        from_disk = readers.read(str(path))
        from_memory = readers.read(io.BytesIO(path.read_bytes()), path=path.name)
        assert [r.object_id for r in from_memory] == [r.object_id for r in from_disk], path
        for a, b in zip(from_memory, from_disk, strict=True):
            np.testing.assert_array_equal(a.flux, b.flux)
