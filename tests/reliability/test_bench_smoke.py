"""`make bench` keeps working: a tiny run of benchmarks/run.py writes its JSON and plot with
every backend, and the recall figures mean what they say."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_runs_small(tmp_path):
    pytest.importorskip("faiss")
    out = subprocess.run([sys.executable, "benchmarks/run.py", "--n", "3000", "--queries", "15",
                          "--dim", "16", "--skip-encoder", "--skip-indexing",
                          "--skip-incremental", "--out",
                          str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads((tmp_path / "bench.json").read_text())
    (row,) = res["search"]
    assert row["n"] == 3000 and row["dim"] == 16
    assert row["numpy"]["plain"]["recall_at_10"] == 1.0
    for backend in ("faiss_hnsw", "edge"):
        assert 0.9 <= row[backend]["plain"]["recall_at_10"] <= 1.0
        assert row[backend]["plain"]["p50_ms"] > 0
    assert row["edge"]["filtered"]["recall_at_10"] >= 0.9
    assert row["edge"]["ordered"]["top50_exact"] is True
    assert row["edge"]["disk_per_point_bytes"] > 0
    assert res["hardware"]["logical_cores"] >= 1 and res["hardware"]["cpu_model"]
    assert (tmp_path / "bench.png").stat().st_size > 10_000
    assert "250 million" in (tmp_path / "SIZING.md").read_text()


def test_a_run_without_search_figures_writes_its_json_and_says_what_it_left_out(tmp_path):
    """A run that skips the search (e.g. to redo the sync costs into a scratch folder) has
    nothing to derive the sizing from: it writes bench.json, says so, and does not crash."""
    out = subprocess.run([sys.executable, "benchmarks/run.py", "--skip-search", "--skip-encoder",
                          "--skip-indexing", "--skip-incremental", "--out", str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "sizing" not in json.loads((tmp_path / "bench.json").read_text())
    assert not (tmp_path / "SIZING.md").exists() and "no bench.png or SIZING.md" in out.stderr


def test_the_sizing_note_carries_the_gpu_measurement_only_when_there_is_one():
    from benchmarks.sizing import sizing_markdown

    results = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
    bench = json.loads((results / "bench.json").read_text())
    gpu = json.loads((results / "device_check_h200.json").read_text())
    without = sizing_markdown(bench["sizing"], bench["hardware"])
    with_gpu = sizing_markdown(bench["sizing"], bench["hardware"], gpu)
    assert "H200" not in without
    best = max(gpu["throughput_spectra_per_s"]["gpu"]["gaia_xp"].values())
    assert f"({best:,.0f} spectra/s)" in with_gpu
    assert with_gpu.replace(next(ln for ln in with_gpu.splitlines() if "H200" in ln) + "\n",
                            "") == without
    # the GPU figures name their bundle, and say so when the shipped bundle is another
    assert f"bundle {gpu['bundle']})" in with_gpu
    later = sizing_markdown(bench["sizing"], bench["hardware"], gpu, shipped="0123456789abcdef")
    assert "the shipped bundle 0123456789abcdef was not measured there" in later
    same = sizing_markdown(bench["sizing"], bench["hardware"], gpu, shipped=gpu["bundle"])
    assert same == with_gpu
    # sections an earlier run measured (--keep-skipped) say when, and under what load
    kept = sizing_markdown(bench["sizing"], bench["hardware"], kept={
        "search": {"started_at": "2026-01-02T03:04:05Z", "load_avg_at_start": [9.0, 8.0, 7.0]}})
    assert "the search figures kept from the run of 2026-01-02T03:04:05Z, load [9.0, 8.0, 7.0]" \
        in kept


def test_anomaly_checks_two_sided_variant_counts_the_lower_tail():
    """benchmarks/anomaly_checks.py: the variant is the shipped combination plus the features'
    lower tail, so the spectrum with the lowest features score moves up to the top."""
    import numpy as np

    from benchmarks.anomaly_checks import combine_features_two_sided
    from indexer.scoring import combine

    rng = np.random.default_rng(0)
    scores = {"anomaly_recon": rng.normal(size=200), "anomaly_features": rng.normal(size=200)}
    scores["anomaly_features"][7] = -50.0
    shipped, two = combine(scores, None), combine_features_two_sided(scores)
    # its features term: -log(1 - 1/200) ~ 0 one-sided, -log(2/200) = 4.6 two-sided
    assert two[7] - shipped[7] > 4.5
    assert np.argsort(-two).tolist().index(7) < 5 < np.argsort(-shipped).tolist().index(7)
    without = combine({"anomaly_recon": scores["anomaly_recon"]}, None)
    assert np.allclose(combine_features_two_sided({"anomaly_recon": scores["anomaly_recon"]}),
                       without)


@pytest.mark.slow
@pytest.mark.real_data
@pytest.mark.skipif(not (ROOT.parent / "shared" / "data").exists(),
                    reason="../shared/data is absent")
@pytest.mark.parametrize("survey,labels,n_min", [
    ("lamost", ("teff", "logg", "feh", "rv"), 150),
    ("gaia_xp", ("teff", "logg", "feh", "alpha_m"), 3000)])
def test_compare_validation_of_a_bundle_with_itself_is_a_tie(tmp_path, survey, labels, n_min):
    """benchmarks/compare_validation.py on real validation spectra of each survey: the shipped
    bundle against itself gives equal robust sigmas and intervals of exactly 0."""
    from benchmarks.compare_validation import main

    out = tmp_path / "cmp.json"
    bundle = str(ROOT / "engine" / "bundles" / "small")
    assert main([bundle, bundle, "--survey", survey, "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["old"] == report["new"] and survey.replace("gaia_", "") in report["split"].lower()
    for label in labels:
        row = report[label]
        assert row["n"] > n_min and row["old"] == row["new"] > 0
        assert row["ci95_new_minus_old"] == [0.0, 0.0]
        cov = row["coverage_1sigma"]     # calibrated on this split: near 68 %
        assert cov["old"] == cov["new"] and 0.55 < cov["new"] < 0.8
