import numpy as np
import pytest

from training import bootstrap as BS
from training import metrics as M


def test_a_clear_difference_is_resolved_and_a_tiny_one_is_not():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1.0, 2000), rng.normal(0, 2.0, 2000)
    out = BS.paired_sigma_difference(a, b, n_boot=500)
    assert out["difference"] == pytest.approx(M.robust_sigma(a) - M.robust_sigma(b))
    assert out["ci95"][1] < 0 and out["share_lower"] == 1.0 and out["n"] == 2000
    near = BS.paired_sigma_difference(rng.normal(0, 1.0, 60), rng.normal(0, 1.05, 60),
                                      n_boot=500)
    assert near["ci95"][0] < 0 < near["ci95"][1]             # 60 stars cannot tell 5 %
    assert 0 < near["share_lower"] < 1


def test_the_interval_covers_the_true_difference_about_95_percent_of_the_time():
    """Percentile bootstrap of a difference of MADs: nominal 95 %; accept 88-99 % over 150
    independent samples (a broken interval, e.g. not paired or over the wrong axis, misses)."""
    rng = np.random.default_rng(3)
    z = rng.normal(0, 1.0, (150, 200, 2))
    a, b = z[..., 0], 0.5 * z[..., 0] + 0.75 ** 0.5 * 1.2 * z[..., 1]     # correlated
    true = 1.0 - np.sqrt(0.25 + 0.75 * 1.2 ** 2)                           # sigma_a - sigma_b
    hits = 0
    for i in range(150):
        lo, hi = BS.paired_sigma_difference(a[i], b[i], n_boot=400, seed=i)["ci95"]
        hits += lo <= true <= hi
    assert 0.88 <= hits / 150 <= 0.99


def test_rows_of_neighbours_with_missing_values():
    rng = np.random.default_rng(1)
    a, b = rng.normal(0, 1, (100, 10)), rng.normal(0, 1.5, (100, 10))
    a[0, :3] = np.nan                   # a few missing neighbour labels: the row stays
    b[1, :] = np.nan                    # a query the baseline cannot answer: the row goes
    out = BS.paired_sigma_difference(a, b, n_boot=200)
    keep = np.arange(100) != 1
    assert out["n"] == 99
    assert out["difference"] == pytest.approx(M.robust_sigma(a[keep].ravel())
                                              - M.robust_sigma(b[keep].ravel()))
    with pytest.raises(ValueError, match="one shape"):
        BS.paired_sigma_difference(a, b[:, :5])


def test_wilson_interval():
    lo, hi = BS.wilson_interval(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-4) and hi == pytest.approx(0.5962, abs=1e-4)
    assert BS.wilson_interval(0, 10)[0] == pytest.approx(0.0, abs=1e-12)
    assert BS.wilson_interval(0, 10)[1] == pytest.approx(0.2775, abs=1e-4)
    assert np.isnan(BS.wilson_interval(0, 0)).all()
