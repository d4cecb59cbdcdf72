"""A small real engine for the app's tests: a real embedded (Qdrant Edge) store filled by the
real indexer, session-scoped because building it is the slow part.

Spectra: tiny synthetic LAMOST files in the real DR2-DR7 layout (always), plus the five
LAMOST x Gaia XP pairs from ../shared/data when present (so cross-instrument counterparts are
exercised). Model: the shipped bundle when it loads; otherwise the indexer's deterministic
projection embedder (tests/indexer/doubles.py), so the app tests still run before a bundle
exists. Every test reports which one it used (see `app_store.model`).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.errors import SpecClipError

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"
PAIRS = SHARED / "pairs_lamost_xp"
SYNTHETIC_OBSIDS = tuple(range(2000, 2016))
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


@dataclass(frozen=True)
class AppStore:
    path: str                       # the store folder
    model: str                      # "bundle <version>" or "projection double"
    obsids: tuple[str, ...]         # LAMOST obsids that are indexed
    pair_source_ids: tuple[int, ...]   # Gaia source ids with both spectra (empty without data)
    spectra_dir: str                # the synthetic LAMOST files


def make_embedder():
    """The shipped model if it loads, else the indexer tests' projection double."""
    try:
        from engine.bundle import load_bundle
        from engine.inference import Embedder

        emb = Embedder(load_bundle())
        return emb, f"bundle {emb.version}"
    except (SpecClipError, OSError, ImportError):
        from tests.indexer.doubles import ProjectionEmbedder

        return ProjectionEmbedder(), "projection double"


def _pairs() -> tuple[list, dict[str, int]]:
    """The pairs folder as a source (its LAMOST labels joined) and its obsid -> source_id."""
    if not (PAIRS / "pairs.csv").exists():
        return [], {}
    from indexer.cli import read_crossmatch
    from indexer.sources import Source

    table = str(PAIRS / "pairs.csv")
    return [Source(str(PAIRS), (table,))], read_crossmatch(table)


@pytest.fixture(scope="session")
def app_store(tmp_path_factory) -> AppStore:
    from engine.store import open_store
    from indexer.sources import parse_sources
    from indexer.sync import Syncer, write_report
    from tests.indexer.conftest import write_lamost_file

    root = tmp_path_factory.mktemp("app_engine")
    spectra = root / "spectra"
    spectra.mkdir()
    for i, obsid in enumerate(SYNTHETIC_OBSIDS):
        write_lamost_file(str(spectra / f"spec-{obsid}.fits"), obsid, teff=4200 + 180 * i,
                          seed=i, klass="GALAXY" if i == len(SYNTHETIC_OBSIDS) - 1 else "STAR")
    pair_sources, crossmatch = _pairs()
    embedder, model = make_embedder()
    store_dir = root / "store"
    store = open_store(path=str(store_dir))
    try:
        report = Syncer(store=store, embedder=embedder,
                        state_path=str(store_dir / "indexer_state.json"),
                        crossmatch=crossmatch).run(parse_sources([str(spectra)]) + pair_sources)
    finally:
        store.close()
    # what `specclip index --store` writes, so the Status page has a run to list
    write_report(report, str(store_dir / "reports" / "index-20261124T000000Z.json"))
    assert report.added >= len(SYNTHETIC_OBSIDS), report.to_dict()
    obsids = tuple(str(o) for o in SYNTHETIC_OBSIDS) + tuple(crossmatch)
    return AppStore(str(store_dir), model, obsids, tuple(sorted(set(crossmatch.values()))),
                    str(spectra))


@pytest.fixture(scope="session")
def app_engine(app_store):
    """The Engine the app would open on that store (read-only, as the app opens it)."""
    from engine.query import Engine

    engine = Engine.open(store_path=app_store.path, read_only=True)
    if app_store.model == "projection double":
        engine._embedder = make_embedder()[0]      # no bundle to load: use the same double
    yield engine
    engine.close()


@pytest.fixture
def sessions_dir(tmp_path, monkeypatch):
    folder = tmp_path / "sessions"
    monkeypatch.setenv("SPECCLIP_SESSIONS", str(folder))
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_xp_sampled_csv(path: Path, n: int = 12) -> list[int]:
    """A Gaia archive XP_SAMPLED CSV (arrays as "(v1, v2, ...)") of `n` synthetic sources with
    smooth spectra of different slopes (cooler to hotter); returns their source ids."""
    import numpy as np

    wl = np.arange(336, 1021, 2, dtype=float)
    ids, rows = [], ["source_id,solution_id,ra,dec,flux,flux_error"]
    for i in range(n):
        slope = -1.5 + 3.0 * i / max(1, n - 1)
        flux = 1e-17 * (wl / 550.0) ** slope * (1 + 0.05 * np.sin(wl / (30.0 + i)))
        sid = 4295806720 + 1000 * i
        ids.append(sid)
        arr = lambda a: '"(' + ", ".join(f"{v:.6e}" for v in a) + ')"'  # noqa: E731
        rows.append(f"{sid},4545469030156206080,{40 + i},{1 + i / 10},{arr(flux)},"
                    f"{arr(flux * 0.02)}")
    path.write_text("\n".join(rows) + "\n")
    return ids


def _open_engine(path: str, model: str):
    from engine.query import Engine

    engine = Engine.open(store_path=path, read_only=True)
    if model == "projection double":
        engine._embedder = make_embedder()[0]
    return engine


@pytest.fixture(scope="session")
def xp_only_engine(tmp_path_factory):
    """An engine on a store that holds Gaia XP spectra only (the `make run` default)."""
    from engine.store import open_store
    from indexer.sources import parse_sources
    from indexer.sync import Syncer

    root = tmp_path_factory.mktemp("xp_only")
    (root / "xp").mkdir()
    write_xp_sampled_csv(root / "xp" / "XP_SAMPLED_synthetic.csv")
    embedder, model = make_embedder()
    store = open_store(path=str(root / "store"))
    try:
        report = Syncer(store=store, embedder=embedder,
                        state_path=str(root / "store" / "indexer_state.json")
                        ).run(parse_sources([str(root / "xp")]))
    finally:
        store.close()
    assert report.added == 12, report.to_dict()
    engine = _open_engine(str(root / "store"), model)
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def empty_engine(tmp_path_factory):
    """An engine on a store folder that exists but holds nothing yet."""
    from engine.store import open_store

    path = tmp_path_factory.mktemp("empty") / "store"
    open_store(path=str(path)).close()
    engine = _open_engine(str(path), "bundle")
    yield engine
    engine.close()
