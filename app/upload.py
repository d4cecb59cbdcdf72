"""Reading a user's uploaded spectrum file: size-limited, from memory, with clear errors.

The bytes are read through `engine.query.read_spectra` on a BytesIO (the reader picks the
format from the content and the file name). Nothing of the upload is written to disk: every
reader reads from a file object as it does from a path (tests/app/test_upload.py checks the
archive formats), so a file that fails from memory is refused with the reader's reason.

Limits hold however the app was started: the upload widget carries MAX_UPLOAD_MB (the
browser enforces it), `read_upload` refuses more than MAX_UPLOAD_BYTES before any reader
runs, and gzip content is inflated under MAX_INFLATED_BYTES. Streamlit's server-side
`server.maxUploadSize` is set by `specclip app` (a flag) and, for `streamlit run
app/main.py` from the repository root, by `.streamlit/config.toml`.

The upload's name is the user's: it is cleaned for messages and never used as a path.
"""

from __future__ import annotations

import io
import logging
import re

from engine.errors import SpecClipError, SpectrumReadError
from engine.query import read_spectra
from engine.readers import guards
from engine.records import SpectrumRecord

log = logging.getLogger(__name__)

MAX_UPLOAD_MB = 20
MAX_UPLOAD_BYTES = MAX_UPLOAD_MB * 1024 * 1024
# A gzipped upload may inflate this far: a LAMOST file is ~0.5 MB, a table of a few
# thousand XP sources tens of MB. A gzip bomb (1000x) is refused before it is inflated.
MAX_INFLATED_BYTES = 4 * MAX_UPLOAD_BYTES
ACCEPTED = ("fits", "fit", "fits.gz", "fit.gz", "gz", "csv", "ecsv", "xml", "vot", "txt",
            "dat", "tsv")
MAX_NAME_CHARS = 100


class UploadError(SpecClipError):
    """An upload the app refuses or cannot read; the message is shown to the user as is."""


def display_name(name: str | None) -> str:
    """The upload's name as shown in messages: no directories, NULs or control characters,
    at most MAX_NAME_CHARS; 'upload' when nothing usable is left ('..', '.', '')."""
    text = re.sub(r"[\x00-\x1f\x7f]", "", str(name or ""))
    text = text.replace("\\", "/").rsplit("/", 1)[-1].strip()
    if text in ("", ".", ".."):
        return "upload"
    if len(text) > MAX_NAME_CHARS:
        suffix = _suffix(text)
        text = text[: MAX_NAME_CHARS - len(suffix) - 3] + "..." + suffix
    return text


def _suffix(name: str) -> str:
    """The accepted suffix the name ends with ('.fits.gz', '.csv', ...) or ''."""
    lower = name.lower()
    for ext in sorted(ACCEPTED, key=len, reverse=True):
        if lower.endswith("." + ext):
            return name[-(len(ext) + 1):]
    return ""


def read_upload(name: str, content: bytes, max_bytes: int = MAX_UPLOAD_BYTES,
                options: dict | None = None) -> list[SpectrumRecord]:
    """The spectra in an uploaded file (LAMOST LRS FITS; Gaia XP CSV/ECSV/FITS/VOTable;
    SDSS spec files; generic CSV/TXT tables and FITS tables/images that state air or
    vacuum, resampled onto the LAMOST grid by the generic readers). `options` (unit, medium,
    uncertainty) go to the generic readers, for files that do not say."""
    base = display_name(name)
    if len(content) > max_bytes:
        raise UploadError(f"{base} is {len(content) / 1e6:.1f} MB; the limit is "
                          f"{max_bytes / 1e6:.0f} MB. Upload a single spectrum or a small "
                          "table of XP sources.")
    if not content:
        raise UploadError(f"{base} is empty.")
    if content[:2] == guards.GZIP_MAGIC:
        try:
            content = guards.gunzip(content, base, MAX_INFLATED_BYTES)
        except SpectrumReadError as exc:
            raise UploadError(f"Could not read {base}: {exc.reason}") from exc
    try:
        records = read_spectra(io.BytesIO(content), path=base, options=options)
    except (SpectrumReadError, OSError, ValueError) as exc:
        # OSError/ValueError: a reader that let a library error through; the upload is
        # untrusted input, so it must end as a message, never as a crashed page
        log.info("upload %s refused: %s", base, exc)
        reason = getattr(exc, "reason", None) or str(exc)
        raise UploadError(f"Could not read {base}: {reason}") from exc
    if not records:
        raise UploadError(f"{base} holds no spectrum that the readers accept.")
    return records
