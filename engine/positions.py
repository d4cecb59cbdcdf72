"""Sky positions: where they come from when a file lacks them, and the cone search geometry.

Cone searches run on a geo payload index: each point's (ra, dec) is stored as a Qdrant geo
point (`payload.SKY`: lon = RA wrapped to [-180, 180), lat = Dec), and a GeoRadius condition
selects the points within an angle. Qdrant measures geo distances on a sphere of the Earth's
radius, so an angle becomes that many metres of great circle; the radius asked for is padded
by 1 % and every candidate's exact separation (haversine) decides, so the result does not
depend on which Earth radius the backend uses.
"""

from __future__ import annotations

import math
import re

import numpy as np

from engine import payload as P
from engine.store.types import GeoRadius

ARCSEC = 1.0 / 3600.0
# The smallest Earth radius any Qdrant build uses (6371.0 km; qdrant-client's local mode uses
# the mean radius 6371.0088 km): the padding below covers the difference.
EARTH_RADIUS_M = 6_371_000.0
_PAD = 1.01

# A 2MASS designation 2MhhmmsscC+ddmmssC (RA to 0.01 s, Dec to 0.1 arcsec; truncated), or
# APOGEE's own "AP" designation of stars outside 2MASS, written the same way
_TWO_MASS = re.compile(r"^(?:2M|AP)(\d{2})(\d{2})(\d{2})(\d{2})([+-])(\d{2})(\d{2})(\d{2})(\d)$")


def position_from_2mass_id(name: str) -> tuple[float, float] | None:
    """(ra, dec) in degrees from a 2MASS-style id (APOGEE ids: 2M... or AP...), e.g.
    2M04315585+1747326 -> RA 04:31:55.85, Dec +17:47:32.6. None for other ids."""
    m = _TWO_MASS.match(str(name).strip())
    if m is None:
        return None
    hh, mm, ss, cs, sign, dd, dm, ds, dt = m.groups()
    ra = 15.0 * (int(hh) + int(mm) / 60.0 + (int(ss) + int(cs) / 100.0) / 3600.0)
    dec = int(dd) + int(dm) / 60.0 + (int(ds) + int(dt) / 10.0) / 3600.0
    if ra >= 360.0 or dec > 90.0:
        return None
    return ra, -dec if sign == "-" else dec


def sky_point(ra: float, dec: float) -> dict[str, float]:
    """The geo payload value of a sky position."""
    return {"lon": (float(ra) + 180.0) % 360.0 - 180.0, "lat": float(dec)}


def cone_condition(ra: float, dec: float, radius_arcsec: float) -> GeoRadius:
    """A store condition holding every point within `radius_arcsec` (and a few more)."""
    if not radius_arcsec > 0:
        raise ValueError(f"the cone radius must be positive, not {radius_arcsec}")
    metres = math.radians(min(radius_arcsec * ARCSEC, 180.0)) * EARTH_RADIUS_M * _PAD
    centre = sky_point(ra, dec)
    return GeoRadius(P.SKY, centre["lon"], centre["lat"], metres)


def angular_separation_deg(ra1, dec1, ra2, dec2) -> np.ndarray:
    """Great-circle distance (degrees), haversine form: stable at small angles."""
    ra1, dec1, ra2, dec2 = map(np.radians, (ra1, dec1, ra2, dec2))
    h = (np.sin((dec2 - dec1) / 2) ** 2
         + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2) ** 2)
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(h, 0, 1))))


__all__ = ["ARCSEC", "angular_separation_deg", "cone_condition", "position_from_2mass_id",
           "sky_point"]
