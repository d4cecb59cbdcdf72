"""The query API fails loudly on what the model refuses (issue 14): the outputs of a refused
spectrum are placeholders (an all-zero counterpart), never an answer."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import SpecClipError
from engine.query import Engine
from engine.readers import read
from tests.indexer.conftest import write_lamost_file
from tests.indexer.doubles import ProjectionEmbedder


@pytest.fixture
def engine():
    e = Engine(store=None)
    e._embedder = ProjectionEmbedder()
    return e


def _record(tmp_path, usable: bool):
    rec = read(write_lamost_file(str(tmp_path / "spec-9500.fits"), 9500))[0]
    if not usable:                       # read fine, but no pixel the model can use
        rec.flux[:] = np.nan
    return rec


def test_counterpart_and_parameters_of_a_refused_spectrum_raise(engine, tmp_path):
    rec = _record(tmp_path, usable=False)
    assert not bool(engine.embedder.embed([rec]).valid[0])
    with pytest.raises(SpecClipError, match="too few usable pixels.*counterpart"):
        engine.predict_counterpart(rec)
    with pytest.raises(SpecClipError, match="too few usable pixels.*parameters"):
        engine.predict_parameters(rec)


def test_counterpart_of_a_usable_spectrum_is_returned(engine, tmp_path):
    wave, flux = engine.predict_counterpart(_record(tmp_path, usable=True))
    assert len(wave) == len(flux) > 0
