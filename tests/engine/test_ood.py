"""The OOD flag for spectra in hand (`Engine.assess`) with the shipped bundle's reference:
set for far-off spectra, not for the typical training-like star."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

from engine import payload as P
from engine import readers
from engine.query import Engine, parameter_warning
from engine.store import open_store
from training.reference_fit import is_validation

DATA = pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "data"
pytestmark = [pytest.mark.real_data, pytest.mark.slow,
              pytest.mark.skipif(not DATA.exists(), reason="../shared/data is absent")]


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    e = Engine(open_store(path=str(tmp_path_factory.mktemp("ood") / "store")))
    yield e
    e.close()


def test_typical_training_like_stars_are_not_flagged(engine):
    lib = readers.read_xp_library(split="train", limit=4000)
    val = [r for r in lib if is_validation("gaia_xp", str(r.meta["apogee_id"]))]
    flags = [engine.assess(r)[P.OOD] for r in val]
    print(f"OOD among {len(val)} XP validation stars: {np.mean(flags):.1%}")
    assert np.mean(flags) <= 0.03      # the threshold is their 99th percentile
    typical = sorted(val, key=lambda r: r.labels.get("teff", 0))[len(val) // 2]
    flags = engine.assess(typical)
    assert not flags[P.OOD] and parameter_warning(flags) is None


def test_a_galaxy_is_flagged_and_warned_about(engine):
    records, _ = readers.read_many(sorted(str(p) for p in
                                          (DATA / "lamost_dr7" / "spectra").glob("*")))
    galaxy = next(r for r in records if r.obj_class == "GALAXY")
    flags = engine.assess(galaxy)
    assert flags[P.OOD] and "not a star" in parameter_warning(flags)


@pytest.mark.xfail(strict=True, reason="measured: Proxima Cen's XP spectrum scores 8.2 on the "
                   "OOD score against a validation 99th percentile of 8.6 (distance at the "
                   "97th percentile, logg sigma at the 99.1th); issue 11 asks for the flag")
def test_proxima_cen_is_flagged(engine):
    records = readers.read(str(DATA / "gaia_xp_archive" / "XP_CONTINUOUS_RAW.csv"))
    proxima = next(r for r in records if r.object_id == "5853498713190525696")
    assert engine.assess(proxima)[P.OOD]
