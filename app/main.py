"""The Streamlit entry point: open the engine once, then navigate between four pages.

    streamlit run app/main.py -- --store var/store [--bundle DIR]
    specclip app --store var/store            # the same, via the CLI

Arguments after `--` win over the SPECCLIP_STORE / SPECCLIP_URL / SPECCLIP_BUNDLE variables.
"""

from __future__ import annotations

import argparse
import logging
import sys

import streamlit as st

from app import data
from app.pages import map as map_page
from app.pages import outliers, search, status
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


def build_pages(engine) -> list:
    """The four pages, each a closure over the one engine."""
    return [
        st.Page(lambda: search.main(engine), title="Search", icon=":material/search:",
                url_path="search", default=True),
        st.Page(lambda: outliers.main(engine), title="Outliers", icon=":material/flare:",
                url_path="outliers"),
        st.Page(lambda: map_page.main(engine), title="Map", icon=":material/scatter_plot:",
                url_path="map"),
        st.Page(lambda: status.main(engine), title="Status", icon=":material/monitoring:",
                url_path="status"),
    ]


def run(argv: list[str] | None = None) -> None:
    st.set_page_config(page_title="SpecCLIP spectrum search", page_icon=":material/flare:",
                       layout="wide")
    cfg = parse_config(sys.argv[1:] if argv is None else argv)
    if not (cfg.store or cfg.url):
        st.error("No store given: start the app with `specclip app --store DIR` (or --url), "
                 "or set SPECCLIP_STORE / SPECCLIP_URL.")
        st.stop()
    if cfg.store and cfg.url:
        st.error("Give either a store folder or a server URL, not both.")
        st.stop()
    try:
        engine = data.open_engine(cfg.store, cfg.url, cfg.bundle)
    except SpecClipError as exc:
        st.error(f"Could not open the store: {exc}")
        st.stop()
    st.sidebar.caption(f"Store: `{cfg.store or cfg.url}`")
    st.navigation(build_pages(engine)).run()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    run()
