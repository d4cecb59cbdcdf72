"""Helpers for driving one page with streamlit.testing.v1.AppTest."""

from __future__ import annotations

import json

from streamlit.testing.v1 import AppTest

TIMEOUT = 120      # first runs load the model and re-read spectra files


def _page_script(module: str, engine) -> None:
    # AppTest runs this function's source as the script: it must import what it uses.
    import importlib

    importlib.import_module(module).main(engine)


def page_app(module: str, engine) -> AppTest:
    """An AppTest of page `module` (e.g. "app.views.search") on `engine`, already run once."""
    at = AppTest.from_function(_page_script, args=(module, engine), default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def rerun(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def figures(at: AppTest) -> list[dict]:
    """The plotly figures on the page, as dicts."""
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


def texts(elements) -> list[str]:
    return [str(e.value) for e in elements]


def frame(at: AppTest, *columns: str):
    """The first table on the page having all these columns (tables carry no key in AppTest)."""
    for df in at.dataframe:
        value = df.value
        if all(c in value.columns for c in columns):
            return value
    raise AssertionError(f"no table with columns {columns}")


def values(v) -> list:
    """A plotly JSON array, whether plain or binary-encoded ({"dtype", "bdata"})."""
    if isinstance(v, dict) and "bdata" in v:
        import base64

        import numpy as np

        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"]).tolist()
    return list(v)
