"""Status page: counts, store mode and health, model, indexer reports."""

from __future__ import annotations

from tests.app.apptest import frame, page_app, rerun


def metric(at, label):
    return next(m.value for m in at.metric if m.label == label)


def test_status_shows_counts_mode_and_reports(app_engine, app_store):
    at = page_app("app.views.status", app_engine)
    stats = app_engine.stats()
    assert metric(at, "Store") == "healthy"
    assert metric(at, "Spectra indexed") == f"{stats['total']:,}"
    assert metric(at, "Mode") == "edge"
    by_survey = frame(at, "instrument", "spectra")
    names = {"lamost": "LAMOST LRS", "gaia_xp": "Gaia XP"}
    assert dict(zip(by_survey["instrument"], by_survey["spectra"], strict=True)) == \
        {names[k]: v for k, v in stats["by_survey"].items()}
    releases = frame(at, "release", "spectra")
    assert int(releases["spectra"].sum()) == stats["total"]
    reports = frame(at, "added", "skipped")
    assert reports["added"].iloc[0] == stats["total"]
    at.button(key="status_refresh").click()
    rerun(at)
    assert metric(at, "Spectra indexed") == f"{stats['total']:,}"


def test_metrics_read_as_numbers_people_use():
    from app.views.status import readable

    assert readable(123.95708759765624) == "124" and readable(0.005658626) == "0.005659"
    assert readable(3963) == "3,963" and readable("held-out") == "held-out"
