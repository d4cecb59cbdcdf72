"""Outlier-hunting sessions: marks with notes, saved as JSON so a hunt can be resumed, and
exported as CSV or VOTable for papers and TOPCAT.

One JSON file per session in a folder: `$SPECCLIP_SESSIONS`, else
`$XDG_DATA_HOME/specclip/sessions`, else `~/.local/share/specclip/sessions`.
Files are written atomically (temporary file + rename), so a crash never leaves half a session.
"""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from astropy.table import MaskedColumn, Table

from app.reranking import LABELS
from engine import payload as P

FORMAT_VERSION = 1
EXPORT_COLUMNS = ("id", "survey", "object_id", "gaia_source_id", "ra", "dec", "label", "note",
                  "score_name", "score", "marked_at")


def default_root() -> Path:
    """Where sessions live unless told otherwise."""
    if os.environ.get("SPECCLIP_SESSIONS"):
        return Path(os.environ["SPECCLIP_SESSIONS"])
    data_home = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"),
                                                                ".local", "share")
    return Path(data_home) / "specclip" / "sessions"


@dataclass
class Mark:
    label: str
    note: str = ""
    survey: str = ""
    object_id: str = ""
    gaia_source_id: int | None = None
    ra: float | None = None
    dec: float | None = None
    score_name: str = ""
    score: float | None = None
    marked_at: str = ""


@dataclass
class HuntingSession:
    """The marks of one hunt, keyed by point id."""

    name: str
    marks: dict[str, Mark] = field(default_factory=dict)
    created_at: str = ""
    updated_at: str = ""

    def mark(self, point_id: str, label: str, note: str = "", payload: dict | None = None,
             score_name: str = "", clock=time.time) -> Mark:
        """Mark (or re-mark) a candidate; `payload` supplies its identifiers and position."""
        if label not in LABELS:
            raise ValueError(f"label must be one of {LABELS}, not {label!r}")
        p = payload or {}
        gaia = p.get(P.GAIA_SOURCE_ID)
        m = Mark(label=label, note=note, survey=str(p.get(P.SURVEY, "")),
                 object_id=str(p.get(P.OBJECT_ID, "")),
                 gaia_source_id=int(gaia) if gaia is not None else None,
                 ra=_float_or_none(p.get(P.RA)), dec=_float_or_none(p.get(P.DEC)),
                 score_name=score_name,
                 score=_float_or_none(p.get(score_name)) if score_name else None,
                 marked_at=_iso(clock()))
        self.marks[str(point_id)] = m
        self.updated_at = m.marked_at
        return m

    def unmark(self, point_id: str) -> None:
        self.marks.pop(str(point_id), None)

    def labels(self) -> dict[str, str]:
        """id -> label, what `app.reranking.rerank` takes."""
        return {pid: m.label for pid, m in self.marks.items()}

    # -- serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"format_version": FORMAT_VERSION, "name": self.name,
                "created_at": self.created_at, "updated_at": self.updated_at,
                "marks": {pid: asdict(m) for pid, m in self.marks.items()}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "HuntingSession":
        if data.get("format_version", 1) > FORMAT_VERSION:
            raise ValueError(f"session format {data['format_version']} is newer than this app")
        known = set(Mark.__dataclass_fields__)
        marks = {pid: Mark(**{k: v for k, v in m.items() if k in known})
                 for pid, m in data.get("marks", {}).items()}
        return cls(str(data["name"]), marks, data.get("created_at", ""),
                   data.get("updated_at", ""))

    def to_table(self) -> Table:
        """One row per mark, with units on the coordinates; missing values are masked
        (a blank CSV cell, a VOTable null), never a sentinel."""
        items = list(self.marks.items())
        nan = float("nan")
        t = Table()
        t["id"] = [pid for pid, _ in items] or _empty(str)
        for name in ("survey", "object_id", "label", "note", "score_name", "marked_at"):
            t[name] = [str(getattr(m, name) or "") for _, m in items] or _empty(str)
        # a masked column: CSV writes an empty cell and VOTable a null, never a sentinel
        gaia = [m.gaia_source_id for _, m in items]
        t["gaia_source_id"] = MaskedColumn([g if g is not None else 0 for g in gaia] or
                                           _empty("i8"), dtype="i8",
                                           mask=[g is None for g in gaia] or _empty(bool))
        for name in ("ra", "dec", "score"):
            vals = [getattr(m, name) for _, m in items]
            t[name] = MaskedColumn([nan if v is None else float(v) for v in vals] or
                                   _empty("f8"), dtype="f8",
                                   mask=[v is None for v in vals] or _empty(bool))
        t = t[list(EXPORT_COLUMNS)]
        t["ra"].unit = t["dec"].unit = "deg"
        t["gaia_source_id"].description = "Gaia source_id (empty when none)"
        t.meta["session"] = self.name
        return t

    def export_csv(self) -> bytes:
        buf = io.StringIO()
        self.to_table().write(buf, format="ascii.csv")
        return buf.getvalue().encode()

    def export_votable(self) -> bytes:
        buf = io.BytesIO()
        self.to_table().write(buf, format="votable")
        return buf.getvalue()


class SessionStore:
    """A folder of session files."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else default_root()

    def path(self, name: str) -> Path:
        return self.root / f"{safe_name(name)}.json"

    def list(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.stem for p in self.root.glob("*.json"))

    def load(self, name: str) -> HuntingSession:
        """The saved session `name`, or a new empty one when none is saved yet."""
        path = self.path(name)
        if not path.exists():
            now = _iso(time.time())
            return HuntingSession(safe_name(name), created_at=now, updated_at=now)
        with open(path) as fh:
            return HuntingSession.from_dict(json.load(fh))

    def save(self, session: HuntingSession) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.path(session.name)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(session.to_dict(), fh, indent=1)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return path


def safe_name(name: str) -> str:
    """A session name usable as a file name (no path tricks)."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", name.strip()).strip(".-")
    return cleaned or "default"


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _float_or_none(v: Any) -> float | None:
    try:
        return None if v is None else float(v)
    except (TypeError, ValueError):
        return None


def _empty(dtype: Any) -> Any:
    import numpy as np

    return np.array([], dtype=dtype)
