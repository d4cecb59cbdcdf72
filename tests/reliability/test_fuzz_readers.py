"""Fuzz the readers: random byte mutations of tiny valid files (a LAMOST FITS, a Gaia XP
sampled CSV) must only ever give records or SpectrumReadError, never another exception.
Bounded: a fixed number of examples per format, no example database, fixed seed in CI."""

from __future__ import annotations

import functools
import gzip
import io
import os
import tempfile
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from engine.errors import SpectrumReadError
from engine.records import SpectrumRecord
from tests.indexer.conftest import write_lamost_file

readers = pytest.importorskip("engine.readers")
EXAMPLES = 200
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@functools.lru_cache(maxsize=1)
def _tiny_lamost() -> bytes:
    """A valid LAMOST DR2-DR7 layout file (module-level, not a fixture: hypothesis would put
    a fixture's 90 kB in every failure report)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "spec-1.fits")
        write_lamost_file(path, 4242, n=3908)
        with open(path, "rb") as fh:
            return fh.read()


def _tiny_xp_csv() -> bytes:
    wl = np.arange(336, 1021, 2)
    flux = 1e-17 * (1 + 0.1 * np.sin(wl / 50.0))
    fmt = lambda a: '"(' + ", ".join(f"{v:.6e}" for v in a) + ')"'  # noqa: E731
    # The Gaia archive's XP_SAMPLED CSV layout (arrays as "(v1, v2, ...)").
    rows = ["source_id,solution_id,ra,dec,flux,flux_error",
            f"4295806720,4545469030156206080,45.1,0.5,{fmt(flux)},{fmt(flux * 0.02)}",
            f"5851893451412334336,4545469030156206080,217.4,-62.7,{fmt(flux * 2)},"
            f"{fmt(flux * 0.04)}"]
    return ("\n".join(rows) + "\n").encode()


mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**9), st.integers(0, 255)),
    st.tuples(st.just("cut"), st.integers(0, 10**9), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, 10**9), st.integers(0, 255)),
    st.tuples(st.just("zero"), st.integers(0, 10**9), st.integers(1, 4000)),
)


def mutate(data: bytes, ops) -> bytes:
    buf = bytearray(data)
    for op, pos, val in ops:
        if not buf:
            break
        i = pos % len(buf)
        if op == "flip":
            buf[i] = val
        elif op == "cut":
            del buf[i:]
        elif op == "insert":
            buf[i:i] = bytes([val])
        else:
            buf[i:i + val] = bytes(min(val, len(buf) - i))
    return bytes(buf)


def _read_only_our_errors(content: bytes, name: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")        # production: astropy's warnings are not errors
        try:
            records = readers.read(io.BytesIO(content), path=name)
        except SpectrumReadError as e:
            assert e.reason, "a refusal must say why"
            return
    assert isinstance(records, list)
    for r in records:
        assert isinstance(r, SpectrumRecord)
        assert r.flux.shape == r.wavelength.shape == r.ivar.shape == r.mask.shape


def test_seeds_are_valid():
    assert readers.read(io.BytesIO(_tiny_lamost()), path="spec-1.fits")
    assert len(readers.read(io.BytesIO(_tiny_xp_csv()), path="xp.csv")) == 2


@seed(20261124)
@FUZZ
@given(ops=st.lists(mutation, min_size=1, max_size=6))
def test_fuzz_lamost_fits(ops):
    _read_only_our_errors(mutate(_tiny_lamost(), ops), "spec-1.fits")


@seed(20261124)
@FUZZ
@given(ops=st.lists(mutation, min_size=1, max_size=6))
def test_fuzz_xp_csv(ops):
    _read_only_our_errors(mutate(_tiny_xp_csv(), ops), "xp.csv")


@seed(20261124)
@FUZZ
@given(ops=st.lists(mutation, min_size=1, max_size=4))
def test_fuzz_gzipped_fits(ops):
    _read_only_our_errors(mutate(_gzipped(), ops), "spec-1.fits.gz")


@functools.lru_cache(maxsize=1)
def _gzipped() -> bytes:
    return gzip.compress(_tiny_lamost(), 1)
