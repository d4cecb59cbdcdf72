"""Issue 15 item 2, the device half: a character device named like a spectrum (here /dev/zero,
as a device node where this process may make one, else as a link to it) is refused by stat
as a character device, in a folder and named alone; it is never opened (a reader that opened
/dev/zero would read zeros until memory ran out). Before issue 15 such a file was refused by
its stat size as "file is empty (0 bytes)", a wrong reason. The FIFO half is in
test_reader_processes.py.

Each read runs in a child process under a memory cap and a timeout, so a reader that does open
the device fails this test instead of exhausting the machine."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.indexer.conftest import write_lamost_file

ROOT = Path(__file__).resolve().parents[2]
MEMORY_CAP = 2 * 1024 ** 3            # bytes of address space for the child

SCRIPT = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, ({cap}, {cap}))
from engine import readers
recs, refused = readers.read_many([sys.argv[1]])
print(json.dumps([sorted(r.object_id for r in recs), refused]))
"""


def _zero_device(folder: Path, name: str) -> Path:
    """A character device with /dev/zero's numbers when mknod is allowed (root), else a
    symbolic link to /dev/zero (stat follows it: the readers see the same device)."""
    path = folder / name
    zero = os.stat("/dev/zero")
    try:
        os.mknod(path, 0o600 | stat.S_IFCHR, zero.st_rdev)
    except (PermissionError, OSError):
        os.symlink("/dev/zero", path)
    assert stat.S_ISCHR(os.stat(path).st_mode)
    return path


def _read_many_in_child(target: Path) -> tuple[list[str], list[dict]]:
    try:
        out = subprocess.run([sys.executable, "-c", SCRIPT.format(cap=MEMORY_CAP), str(target)],
                             cwd=ROOT, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"read_many({target.name}) kept reading a device for 60 s")
    assert out.returncode == 0, f"read_many died: {out.stderr[-1500:]}"
    ids, refused = json.loads(out.stdout.strip().splitlines()[-1])
    return ids, refused


def test_a_device_named_like_a_spectrum_is_refused_in_a_folder(tmp_path):
    folder = tmp_path / "spectra"
    folder.mkdir()
    for i in range(2):
        write_lamost_file(str(folder / f"spec-{8100 + i}.fits"), 8100 + i, seed=i)
    _zero_device(folder, "spec-zero.fits")
    ids, refused = _read_many_in_child(folder)
    assert ids == ["8100", "8101"]
    assert [os.path.basename(r["path"]) for r in refused] == ["spec-zero.fits"]
    assert "character device" in refused[0]["reason"]


@pytest.mark.parametrize("name", ["spec-zero.fits", "spec-zero.fits.gz", "xp-zero.csv"])
def test_a_device_named_explicitly_is_refused_not_read(tmp_path, name):
    device = _zero_device(tmp_path, name)
    ids, refused = _read_many_in_child(device)
    assert ids == [] and len(refused) == 1
    assert refused[0]["path"] == str(device) and "character device" in refused[0]["reason"]
