"""app.session_store: marks survive a save and a reload, and export to CSV and VOTable."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from astropy.table import Table

from app.session_store import HuntingSession, SessionStore, default_root, safe_name

PAYLOAD = {"survey": "lamost", "object_id": "938509188", "gaia_source_id": 1234567890123,
           "ra": 150.25, "dec": -2.5, "anomaly": 0.97}


def filled(name="hunt") -> HuntingSession:
    s = HuntingSession(name)
    s.mark("p1", "interesting", "odd Balmer lines", PAYLOAD, score_name="anomaly",
           clock=lambda: 0.0)
    s.mark("p2", "artefact", "", {"survey": "gaia_xp", "object_id": "42"})
    return s


def test_save_and_resume(tmp_path):
    store = SessionStore(tmp_path / "sessions")
    assert store.list() == []
    path = store.save(filled())
    assert path.exists() and store.list() == ["hunt"]
    again = store.load("hunt")
    assert again.labels() == {"p1": "interesting", "p2": "artefact"}
    m = again.marks["p1"]
    assert (m.note, m.gaia_source_id, m.ra, m.score, m.marked_at) == \
        ("odd Balmer lines", 1234567890123, 150.25, 0.97, "1970-01-01T00:00:00Z")
    again.unmark("p2")
    store.save(again)
    assert store.load("hunt").labels() == {"p1": "interesting"}
    assert not list((tmp_path / "sessions").glob(".tmp-*"))     # atomic write left nothing


def test_loading_an_unknown_name_starts_an_empty_session(tmp_path):
    s = SessionStore(tmp_path).load("new one")
    assert s.name == "new-one" and s.marks == {}


def test_bad_label_and_future_format_are_refused(tmp_path):
    with pytest.raises(ValueError):
        HuntingSession("x").mark("p", "great")
    store = SessionStore(tmp_path)
    store.path("x").write_text(json.dumps({"format_version": 99, "name": "x", "marks": {}}))
    with pytest.raises(ValueError, match="newer"):
        store.load("x")


def test_session_root_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SPECCLIP_SESSIONS", str(tmp_path / "here"))
    assert default_root() == tmp_path / "here"
    assert SessionStore().root == tmp_path / "here"
    monkeypatch.delenv("SPECCLIP_SESSIONS")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_root() == tmp_path / "xdg" / "specclip" / "sessions"


def test_names_cannot_escape_the_folder(tmp_path):
    store = SessionStore(tmp_path)
    assert store.path("../../etc/passwd").parent == tmp_path
    assert safe_name("  ") == "default"


def test_csv_export_round_trips():
    t = Table.read(filled().export_csv().decode(), format="ascii.csv")
    assert list(t["id"]) == ["p1", "p2"]
    assert list(t["label"]) == ["interesting", "artefact"]
    # missing values are empty cells, never a sentinel such as -1 or "nan"
    assert t["gaia_source_id"][0] == 1234567890123 and t["gaia_source_id"].mask[1]
    assert np.isclose(t["ra"][0], 150.25) and t["ra"].mask[1]
    text = filled().export_csv().decode()
    assert ",-1," not in text and "nan" not in text.lower()


def test_votable_export_round_trips_with_units():
    t = Table.read(io.BytesIO(filled().export_votable()), format="votable")
    assert list(t["object_id"]) == ["938509188", "42"]
    assert str(t["ra"].unit) == "deg" and str(t["dec"].unit) == "deg"
    assert t["note"][0] == "odd Balmer lines"
    assert t["gaia_source_id"].mask[1]                 # a VOTable null, not -1


def test_empty_session_exports_headers_only():
    t = Table.read(io.BytesIO(HuntingSession("e").export_votable()), format="votable")
    assert len(t) == 0 and "label" in t.colnames
