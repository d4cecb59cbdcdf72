"""`specclip index` as scripts call it: the JSON report's contract keys, and a second run over
unchanged sources that skips everything."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def specclip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_index_report_keys_and_an_unchanged_rerun(tmp_path, lamost_folder):
    store, report = tmp_path / "store", tmp_path / "r.json"
    (lamost_folder / "broken.fits").write_bytes(b"not a FITS file at all")
    first = specclip("index", "--store", str(store), str(lamost_folder), "--report",
                     str(report), "--no-progress", "--read-workers", "0")
    assert first.returncode == 0, first.stderr[-2000:]
    data = json.loads(report.read_text())
    assert {"added", "updated", "skipped", "deleted", "refused"} <= set(data)
    assert (data["added"], data["updated"], data["skipped"], data["deleted"]) == (12, 0, 0, 0)
    assert [Path(r["path"]).name for r in data["refused"]] == ["broken.fits"]
    assert data["refused"][0]["reason"]
    summary = json.loads(first.stdout.strip().splitlines()[-1])
    assert summary["added"] == 12 and summary["refused"] == 1

    again = specclip("index", "--store", str(store), str(lamost_folder), "--report",
                     str(report), "--no-progress")
    assert again.returncode == 0, again.stderr[-2000:]
    data = json.loads(report.read_text())
    assert (data["added"], data["updated"], data["skipped"], data["deleted"]) == (0, 0, 12, 0)
