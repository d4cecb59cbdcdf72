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
