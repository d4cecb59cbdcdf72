"""The acknowledgement every page shows: results derived from these data must credit them."""

from __future__ import annotations

import streamlit as st

ACKNOWLEDGEMENT = (
    "Guoshoujing Telescope (the Large Sky Area Multi-Object Fiber Spectroscopic Telescope, "
    "LAMOST) is a National Major Scientific Project built by the Chinese Academy of Sciences; "
    "funding for the project has been provided by the National Development and Reform "
    "Commission; LAMOST is operated and managed by the National Astronomical Observatories, "
    "Chinese Academy of Sciences. "
    "This work has made use of data from the European Space Agency (ESA) mission Gaia "
    "(https://www.cosmos.esa.int/gaia), processed by the Gaia Data Processing and Analysis "
    "Consortium (DPAC, https://www.cosmos.esa.int/web/gaia/dpac/consortium). "
    "Stellar labels from APOGEE DR17 (SDSS-IV): funding for the Sloan Digital Sky Survey IV has "
    "been provided by the Alfred P. Sloan Foundation, the U.S. Department of Energy Office of "
    "Science, and the Participating Institutions (https://www.sdss4.org)."
)


def acknowledgement() -> None:
    """Render the data acknowledgement at the foot of a page."""
    st.divider()
    st.caption("Data: LAMOST · Gaia (ESA) · APOGEE/SDSS. " + ACKNOWLEDGEMENT)
