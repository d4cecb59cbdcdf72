"""The Streamlit entry point: open the engine once, then navigate between four pages.

The pages live in app/views/, not app/pages/: Streamlit treats a pages/ folder beside
the main script as file-based pages and would list and serve those files raw (a blank page
at /map, a lowercase menu) before st.navigation takes over.

    streamlit run app/main.py -- --store var/store [--bundle DIR]
    specclip app --store var/store            # the same, via the CLI

Arguments after `--` win over the SPECCLIP_STORE / SPECCLIP_URL / SPECCLIP_BUNDLE variables.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any, Callable

import streamlit as st

from app import data
from app.views import map as map_page
from app.views import outliers, search, status
from engine.errors import SpecClipError


def parse_config(argv: list[str], environ: dict | None = None) -> data.EngineConfig:
    """EngineConfig from script arguments, falling back to the environment."""
    env = data.EngineConfig.from_env(environ)
    parser = argparse.ArgumentParser(prog="app/main.py", add_help=False)
    parser.add_argument("--store")
    parser.add_argument("--url")
    parser.add_argument("--bundle")
    args, _ = parser.parse_known_args(argv)
    if args.store or args.url:
        return data.EngineConfig(args.store, args.url, args.bundle or env.bundle)
    return data.EngineConfig(env.store, env.url, args.bundle or env.bundle)


def build_pages(get_engine: Callable[[], Any]) -> list:
    """The four pages, each opening the one engine (cached) when it runs.

    The navigation is built before the engine opens, so the sidebar shows the page names at
    once and each page shows a spinner while the store opens. The Search page is the root
    page and is also served, hidden from the menu, at /search: a default page answers only
    at "/", and `/search?obsid=...` links must work."""
    def search_page():
        search.main(get_engine())

    return [
        st.Page(search_page, title="Search", icon=":material/search:",
                url_path="start", default=True),
        st.Page(lambda: outliers.main(get_engine()), title="Outliers",
                icon=":material/flare:", url_path="outliers"),
        st.Page(lambda: map_page.main(get_engine()), title="Map",
                icon=":material/scatter_plot:", url_path="map"),
        st.Page(lambda: status.main(get_engine()), title="Status",
                icon=":material/monitoring:", url_path="status"),
        st.Page(lambda: search.main(get_engine()), title="Search", icon=":material/search:",
                url_path="search", visibility="hidden"),
    ]


def engine_opener(cfg: data.EngineConfig) -> Callable[[], Any]:
    """A function that returns the engine, opening it (once per process) behind a visible
    status line, and stops the page with a clear message when it cannot."""
    def get_engine():
        if not (cfg.store or cfg.url):
            st.error("No store given: start the app with `specclip app --store DIR` (or "
                     "--url), or set SPECCLIP_STORE / SPECCLIP_URL.")
            st.stop()
        if cfg.store and cfg.url:
            st.error("Give either a store folder or a server URL, not both.")
            st.stop()
        try:
            return data.open_engine(cfg.store, cfg.url, cfg.bundle)
        except SpecClipError as exc:
            st.error(f"Could not open the store: {exc}")
            st.stop()
    return get_engine


def run(argv: list[str] | None = None) -> None:
    st.set_page_config(page_title="SpecCLIP spectrum search", page_icon=":material/flare:",
                       layout="wide")
    cfg = parse_config(sys.argv[1:] if argv is None else argv)
    st.sidebar.caption(f"Store: `{cfg.store or cfg.url or 'none given'}`")
    st.navigation(build_pages(engine_opener(cfg))).run()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    run()
