"""Reading a user's uploaded spectrum file: size-limited, from memory, with clear errors.

The bytes are read through `engine.query.read_spectra` on a BytesIO (the reader picks the
format from the content and the file name). Nothing of the upload is written to disk: every
reader reads from a file object as it does from a path (tests/app/test_upload.py checks the
archive formats), so a file that fails from memory is refused with the reader's reason.
"""

from __future__ import annotations

import io
import logging
import os

from engine.errors import SpecClipError, SpectrumReadError
from engine.query import read_spectra
from engine.records import SpectrumRecord

log = logging.getLogger(__name__)

MAX_UPLOAD_MB = 20
MAX_UPLOAD_BYTES = MAX_UPLOAD_MB * 1024 * 1024
ACCEPTED = ("fits", "fit", "fits.gz", "fit.gz", "gz", "csv", "ecsv", "xml", "vot")


class UploadError(SpecClipError):
    """An upload the app refuses or cannot read; the message is shown to the user as is."""


def read_upload(name: str, content: bytes, max_bytes: int = MAX_UPLOAD_BYTES
                ) -> list[SpectrumRecord]:
    """The spectra in an uploaded file (LAMOST LRS FITS; Gaia XP CSV/ECSV/FITS/VOTable)."""
    base = os.path.basename(name or "upload")
    if len(content) > max_bytes:
        raise UploadError(f"{base} is {len(content) / 1e6:.1f} MB; the limit is "
                          f"{max_bytes / 1e6:.0f} MB. Upload a single spectrum or a small "
                          "table of XP sources.")
    if not content:
        raise UploadError(f"{base} is empty.")
    try:
        records = read_spectra(io.BytesIO(content), path=base)
    except (SpectrumReadError, OSError, ValueError) as exc:
        # OSError/ValueError: a reader that let a library error through; the upload is
        # untrusted input, so it must end as a message, never as a crashed page
        log.info("upload %s refused: %s", base, exc)
        reason = getattr(exc, "reason", None) or str(exc)
        raise UploadError(f"Could not read {base}: {reason}") from exc
    if not records:
        raise UploadError(f"{base} holds no spectrum that the readers accept.")
    return records
