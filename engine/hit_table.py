"""Search hits as a plain-text table for a terminal (`specclip query` / `outliers` without
--json): human column names with units, rounded values, blanks for missing ones."""

from __future__ import annotations

import math
from typing import Any, Sequence

from engine import payload as P

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


def hits_table(hits: Sequence[Any], score_name: str = "similarity", score_digits: int = 4
               ) -> str:
    """One line per hit: rank, instrument, id, score, position, SNR and predicted
    parameters, and "stale" where a sync deferred the hit's neighbour-score refresh
    (engine/stale_scores.py; a column shown only when some hit has it). `hits` are
    SearchHits (anything with survey, object_id, score, payload)."""
    header = ["#", "instrument", "id", score_name, "RA (deg)", "Dec (deg)", "SNR"] + \
        [f"pred {label}" for _, label, _ in PARAMETERS] + ["neighbour scores"]
    rows = []
    for i, h in enumerate(hits, 1):
        p = h.payload
        rows.append([str(i), SURVEY_NAMES.get(h.survey, h.survey), str(h.object_id),
                     _fmt(h.score, score_digits), _fmt(p.get(P.RA), 5), _fmt(p.get(P.DEC), 5),
                     _fmt(p.get(P.SNR), 1)]
                    + [_fmt(p.get(P.pred_key(n)), d) for n, _, d in PARAMETERS]
                    + ["stale" if p.get(P.SCORES_STALE) else ""])
    if not rows:
        return "(no hits)"
    keep = [j for j in range(len(header)) if any(r[j] for r in rows)]   # drop empty columns
    return render([[r[j] for j in keep] for r in rows], [header[j] for j in keep])


def parameters_line(params: dict[str, tuple[float, float]]) -> str:
    """'Teff (K) 5012 ± 85 · log g 4.41 ± 0.09 ...' for a query's own predictions."""
    parts = []
    for name, label, digits in PARAMETERS:
        if name in params:
            value, sigma = params[name]
            parts.append(f"{label} {_fmt(value, digits)} ± {_fmt(sigma, digits)}")
    return " · ".join(parts) if parts else "(no predictions)"
