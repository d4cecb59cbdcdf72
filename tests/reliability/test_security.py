"""Security: no unpickling anywhere (bundles are safetensors + JSON), uploads size-limited and
only ever written inside a fresh temporary folder, the Qdrant API key only from the
environment."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CODE_DIRS = ("engine", "indexer", "training", "app", "benchmarks")


def _sources(dirs=CODE_DIRS):
    for d in dirs:
        yield from (ROOT / d).rglob("*.py")


def _code_lines(path: Path):
    """Lines with comments and docstring-ish text dropped: what actually executes."""
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        code = line.split("#", 1)[0]
        if code.strip():
            yield n, code


def test_no_pickle_loading_in_the_project():
    bad = []
    pattern = re.compile(r"\b(pickle|cPickle|dill|joblib|cloudpickle)\.(load|loads)\b|"
                         r"\bpd\.read_pickle\b|allow_pickle\s*=\s*True")
    for path in _sources():
        bad += [f"{path.relative_to(ROOT)}:{n}: {c.strip()}" for n, c in _code_lines(path)
                if pattern.search(c)]
    assert not bad, "unpickling found:\n" + "\n".join(bad)


def test_torch_load_only_with_weights_only():
    bad = []
    for path in _sources(CODE_DIRS + ("tests",)):
        text = path.read_text(encoding="utf-8")
        for m in re.finditer(r"torch\.load\s*\(", text):
            call = text[m.start():text.find(")", m.end()) + 1]
            if "weights_only=True" not in call.replace(" ", ""):
                bad.append(f"{path.relative_to(ROOT)}: {call}")
    assert not bad, "torch.load without weights_only=True:\n" + "\n".join(bad)


def test_bundle_loader_reads_safetensors_and_json_only():
    text = (ROOT / "engine" / "bundle.py").read_text()
    assert "safetensors" in text
    assert "torch.load" not in text and "pickle" not in text.replace("no pickle", "")


def test_api_key_comes_from_the_environment_only():
    literal = re.compile(r"api[_-]?key\s*[=:]\s*['\"][^'\"$]{6,}['\"]", re.I)
    bad = [f"{p.relative_to(ROOT)}:{n}" for p in _sources() for n, c in _code_lines(p)
           if literal.search(c)]
    assert not bad, "hard-coded API key: " + ", ".join(bad)
    server = (ROOT / "engine" / "store" / "server.py").read_text()
    assert 'os.environ.get("QDRANT_API_KEY")' in server


def test_server_store_takes_api_key_from_env(monkeypatch):
    from engine.store.server import ServerStore

    monkeypatch.setenv("QDRANT_API_KEY", "from-the-environment")
    store = ServerStore(url="https://127.0.0.1:9", retries=0)   # no request is made here
    try:
        # qdrant-client keeps the key it was given in its REST headers.
        assert "from-the-environment" in str(store.client._client._rest_headers)
    finally:
        store.client.close()


def test_oversized_upload_is_refused_before_reading(monkeypatch):
    upload = pytest.importorskip("app.upload")
    called = []
    monkeypatch.setattr(upload, "read_spectra", lambda *a, **k: called.append(a) or [])
    with pytest.raises(upload.UploadError, match="limit"):
        upload.read_upload("big.fits", b"x" * (upload.MAX_UPLOAD_BYTES + 1))
    assert not called


def test_upload_is_never_written_to_disk(monkeypatch, tmp_path):
    """A hostile file name cannot steer a write anywhere: the upload is read from memory
    only (no temporary file at all), and the name reaches the reader cleaned."""
    upload = pytest.importorskip("app.upload")
    from engine.errors import SpectrumReadError

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    seen = []

    def fake_read(source, path=None, options=None):
        seen.append((source, path))
        raise SpectrumReadError(path or "?", "not a spectrum")

    monkeypatch.setattr(upload, "read_spectra", fake_read)
    for name in ("../../escape.fits", "/etc/passwd", "..\\..\\x.fits", "ok.fits"):
        with pytest.raises(upload.UploadError):
            upload.read_upload(name, b"SIMPLE  = T")
    assert len(seen) == 4
    for source, path in seen:
        assert not isinstance(source, (str, os.PathLike))      # a BytesIO, never a path
        assert "/" not in path and "\\" not in path and ".." not in path.replace("...", "")
    assert list(tmp_path.iterdir()) == []                # nothing written
