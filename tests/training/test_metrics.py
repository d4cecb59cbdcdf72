import numpy as np

from training import metrics as M


def test_robust_sigma_of_a_gaussian_and_with_outliers():
    d = np.random.default_rng(0).normal(0, 2.0, 20000)
    assert abs(M.robust_sigma(d) - 2.0) < 0.05
    d[:500] = 1e6
    assert abs(M.robust_sigma(d) - 2.0) < 0.2
    assert np.isnan(M.robust_sigma(np.array([np.nan])))


def test_param_metrics_and_calibration():
    truth = np.array([[1.0], [2.0], [3.0], [np.nan]])
    pred = {"x": np.array([1.5, 2.5, 3.5, 0.0])}
    out = M.param_metrics(pred, truth, ("x",))["x"]
    assert out == {"robust_sigma": 0.0, "bias": 0.5, "n": 3}
    cal = M.calibration(pred, {"x": np.array([1.0, 0.1, 1.0, 1.0])}, truth, ("x",))
    assert abs(cal["x"] - 2 / 3) < 1e-12


def test_retrieval_helpers():
    pool = np.eye(4)
    q = np.array([[0.9, 0.1, 0, 0]]) / np.linalg.norm([0.9, 0.1])
    assert M.top_k(q, pool, 2).tolist() == [[0, 1]]
    assert M.rank_of(q[0], pool, 0) == 1 and M.rank_of(q[0], pool, 1) == 2


def test_frac_rms():
    true = np.array([[1.0, 1.0, 100.0]])
    pred = np.array([[1.1, 0.9, -5.0]])
    w = np.array([[1.0, 1.0, 0.0]])
    assert np.allclose(M.frac_rms(pred, true, w), [0.1])


def test_coverage_of_gaussian_errors_with_true_sigma():
    rng = np.random.default_rng(1)
    truth = rng.normal(0, 1, (20000, 1))
    sigma = rng.uniform(0.5, 2.0, 20000)
    pred = {"x": truth[:, 0] + rng.normal(0, 1, 20000) * sigma}
    cov = M.coverage(pred, {"x": sigma}, truth, ("x",))["x"]
    assert abs(cov["1sigma"] - 0.683) < 0.01 and abs(cov["2sigma"] - 0.954) < 0.01
    assert abs(cov["3sigma"] - 0.997) < 0.005 and cov["n"] == 20000
    half = M.coverage(pred, {"x": sigma / 2}, truth, ("x",))["x"]
    assert half["1sigma"] < 0.45              # overconfident sigmas cover less


def test_label_neighbours_are_nearest_in_label_space():
    pool = np.array([[5000.0, 4.5, 0.0], [5000.0, 2.0, 0.0], [8000.0, 4.0, -1.0],
                     [5050.0, 4.4, 0.1], [np.nan, 4.0, 0.0]])
    q = np.array([[5010.0, 4.5, 0.0], [np.nan, 1.0, 0.0]])
    nn = M.label_neighbours(q, pool, 2)
    assert set(nn[0]) == {0, 3}               # the NaN pool row is never a neighbour
    assert nn[1].tolist() == [-1, -1]         # a query without labels gets none
