"""Column roles, inverse variance and bad pixels (engine/readers/columns.py)."""

from __future__ import annotations

import numpy as np

from engine.readers.columns import (
    bad_pixels, find_columns, has_axis_and_flux, ivar_and_mask, parse_column,
)


def test_names_carry_role_unit_and_medium():
    col = parse_column("wavelength_air [nm]")
    assert (col.role, col.unit, col.medium) == ("wave", "nm", "air")
    assert parse_column("lambda(A, vacuum)").medium == "vacuum"
    assert parse_column("FLUX_ERR").role == "error" and parse_column("teff").role is None
    assert has_axis_and_flux(["loglam", "flux"]) and not has_axis_and_flux(["obsid", "flux"])


def test_ivar_and_mask_prefer_ivar_then_error():
    data = {"ivar": np.array([4.0, 0.0]), "error": np.array([0.5, -1.0]),
            "mask": np.array([0, 3])}
    ivar, mask = ivar_and_mask(find_columns(["wave", "flux", "ivar", "err", "mask"]),
                               lambda role: data[role])
    np.testing.assert_array_equal(ivar, [4.0, 0.0])
    np.testing.assert_array_equal(mask, [False, True])
    ivar, mask = ivar_and_mask(find_columns(["wave", "flux", "sigma"]), lambda role: data[role])
    np.testing.assert_array_equal(ivar, [4.0, 0.0])      # 1 / 0.5^2; a negative error: 0
    assert mask is None
    assert ivar_and_mask(find_columns(["wave", "flux"]), lambda role: data[role]) == (None, None)


def test_bad_pixels():
    flux = np.array([1.0, np.nan, 1.0, 1.0, 1.0])
    ivar = np.array([1.0, 1.0, 0.0, np.inf, 1.0])
    bits = np.array([0, 0, 0, 0, 4])
    np.testing.assert_array_equal(bad_pixels(flux, ivar), [False, True, True, True, False])
    np.testing.assert_array_equal(bad_pixels(flux, ivar, None, bits),
                                  [False, True, True, True, True])
    # a bitmask of another length (a damaged file) is ignored, as the LAMOST reader did
    np.testing.assert_array_equal(bad_pixels(flux, ivar, bits[:3]),
                                  [False, True, True, True, False])
