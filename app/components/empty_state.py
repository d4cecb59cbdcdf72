"""What a page shows when the store lacks an instrument, or holds nothing at all."""

from __future__ import annotations

import streamlit as st

from app import data
from app.components.footer import acknowledgement
from engine.query import Engine


def surveys_or_stop(engine: Engine) -> list[str]:
    """The instruments the store holds; with a caption saying how to add a missing one.
    An empty store gets the message and the page footer, and an empty list: the page stops."""
    held = data.surveys_held(engine, data.engine_key(engine))
    message = data.empty_state(held)
    if not held:
        st.info(message)
        acknowledgement()
        return []
    if message:
        st.caption(message)
    return held
