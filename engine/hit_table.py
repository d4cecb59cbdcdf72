"""Search hits as a plain-text table for a terminal (`specclip query` / `outliers` without
--json): human column names with units, rounded values, blanks for missing ones."""

from __future__ import annotations

import math
from typing import Any, Sequence

from engine import payload as P
from engine.query import parameter_warning
from engine.similarity import UNLIKE_NOTE, all_unlike

SURVEY_NAMES = {"lamost": "LAMOST", "gaia_xp": "Gaia XP"}
PARAMETERS = (("teff", "Teff (K)", 0), ("logg", "log g", 2), ("feh", "[Fe/H]", 2),
              ("alpha_m", "[a/M]", 2))


def _fmt(value: Any, digits: int) -> str:
    if value is None or value == "":
        return ""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return "" if math.isnan(number) else f"{number:.{digits}f}"


def render(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    """Columns padded to their widest cell; numbers right-aligned."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        out = []
        for cell, w in zip(cells, widths, strict=True):
            numeric = cell.replace(".", "", 1).replace("-", "", 1).isdigit()
            out.append(cell.rjust(w) if numeric else cell.ljust(w))
        return "  ".join(out).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths])]
                     + [line(r) for r in rows])


SPACE_NAMES = {"shared": "shared", "lamost_spectrum": "spectrum", "gaia_xp_spectrum": "spectrum",
               "lamost": "own", "gaia_xp": "own"}


def _flags(p: dict) -> str:
    """What a reader must not miss about a hit: OOD (outside the training data: its predicted
    parameters are unreliable) and low quality (low SNR or mostly masked)."""
    return ",".join(f for f, on in (("OOD", p.get(P.OOD)), ("low-q", p.get(P.LOW_QUALITY)))
                    if on)


def hits_table(hits: Sequence[Any], score_name: str = "similarity", score_digits: int = 4,
               ranks: Sequence[int] | None = None) -> str:
    """One line per hit: rank, instrument, id, score, the similarity percentile and the space
    it was found in (neighbours: raw cosines differ between spaces, the percentile means the
    same in each, engine/similarity.py), position, SNR, predicted parameters, flags (OOD,
    low-q) and "stale" where a sync deferred the hit's neighbour-score refresh
    (engine/stale_scores.py). Columns no hit fills are left out. `hits` are SearchHits
    (anything with survey, object_id, score, payload); `ranks`: their ranks (default 1..n)."""
    header = ["#", "instrument", "id", score_name, "alike (pctl)", "space", "RA (deg)",
              "Dec (deg)", "SNR"] + [f"pred {label}" for _, label, _ in PARAMETERS] + \
        ["flags", "neighbour scores"]
    rows = []
    for i, h in zip(ranks or range(1, len(hits) + 1), hits, strict=True):
        p = h.payload
        pct = getattr(h, "similarity_percentile", None)
        rows.append([str(i), SURVEY_NAMES.get(h.survey, h.survey), str(h.object_id),
                     _fmt(h.score, score_digits),
                     _fmt(None if pct is None else 100 * pct, 0),
                     SPACE_NAMES.get(getattr(h, "space", ""), getattr(h, "space", "")),
                     _fmt(p.get(P.RA), 5), _fmt(p.get(P.DEC), 5), _fmt(p.get(P.SNR), 1)]
                    + [_fmt(p.get(P.pred_key(n)), d) for n, _, d in PARAMETERS]
                    + [_flags(p), "stale" if p.get(P.SCORES_STALE) else ""])
    if not rows:
        return "(no hits)"
    keep = [j for j in range(len(header)) if any(r[j] for r in rows)]   # drop empty columns
    return render([[r[j] for j in keep] for r in rows], [header[j] for j in keep])


def grouped_tables(hits: Sequence[Any], score_name: str = "similarity") -> str:
    """One table per instrument (in order of first appearance), each hit keeping its overall
    rank, so that scores from different spaces never share a column."""
    order = list(dict.fromkeys(h.survey for h in hits))
    if len(order) < 2:
        return hits_table(hits, score_name) + _unlike_line(hits)
    parts = []
    for survey in order:
        mine = [(i, h) for i, h in enumerate(hits, 1) if h.survey == survey]
        parts.append(f"{SURVEY_NAMES.get(survey, survey)} ({len(mine)}):\n"
                     + hits_table([h for _, h in mine], score_name,
                                  ranks=[i for i, _ in mine])
                     + _unlike_line([h for _, h in mine]))
    return "\n\n".join(parts)


def _unlike_line(hits: Sequence[Any]) -> str:
    """A note under a group whose every hit is less alike than typical near neighbours."""
    pcts = [getattr(h, "similarity_percentile", None) for h in hits]
    return f"\n  note: {UNLIKE_NOTE}" if all_unlike(pcts) else ""


def flags_lines(flags: dict) -> list[str]:
    """Warnings under a query's own predicted parameters."""
    warning = parameter_warning(flags)       # the app's words
    out = [f"  ! {warning}"] if warning else []
    if flags.get(P.LOW_QUALITY):
        reason = flags.get(P.QUALITY_REASON)
        out.append("  ! low quality" + (f" ({reason})" if reason else ""))
    return out


def parameters_line(params: dict[str, tuple[float, float]]) -> str:
    """'Teff (K) 5012 ± 85 · log g 4.41 ± 0.09 ...' for a query's own predictions."""
    parts = []
    for name, label, digits in PARAMETERS:
        if name in params:
            value, sigma = params[name]
            parts.append(f"{label} {_fmt(value, digits)} ± {_fmt(sigma, digits)}")
    return " · ".join(parts) if parts else "(no predictions)"
