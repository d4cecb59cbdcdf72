"""Issue 15, the store's items: hostile or damaged store files, read-only media, a full disk,
NaN queries, a spectrum the model starts refusing. Every fixture is generated here.
Just over 400 lines: one section per issue item, in the issue's order."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import numpy as np
import pytest

from engine import payload as P
from engine.errors import StoreError
from engine.store import Filter, Point, Range, VectorSpec, open_store
from engine.store import checks
from indexer.sources import parse_sources
from indexer.state import SyncState
from indexer.sync import Syncer
from tests.indexer.conftest import write_lamost_file
from tests.indexer.doubles import ProjectionEmbedder


def _ids(n: int) -> list[str]:
    return [str(uuid.UUID(int=i + 1)) for i in range(n)]


def _small_store(root: Path, n: int = 5, name: str = "c") -> None:
    """A published store: collection `name` with n points and alias `spectra` on it."""
    with open_store(path=root) as s:
        s.create_collection(name, [VectorSpec("v", 4)], {"ra": "float"})
        s.upsert(name, [Point(i, {"v": np.arange(4, dtype=np.float32) + k}, {"ra": float(k)})
                        for k, i in enumerate(_ids(n))])
        s.set_alias("spectra", name)


def _folder_with(tmp: Path, n: int) -> Path:
    folder = tmp / "spectra"
    folder.mkdir()
    for i in range(n):
        write_lamost_file(str(folder / f"spec-{7000 + i}.fits"), 7000 + i, seed=i)
    return folder


def _sync(store, tmp: Path, folder: Path):
    return Syncer(store=store, embedder=ProjectionEmbedder(), state_path=str(tmp / "st.json"),
                  read_workers=0).run(parse_sources([str(folder)]))


# ---- item 7: a file the model starts refusing loses its old point ----------------------------

class RefusingEmbedder(ProjectionEmbedder):
    """The test double, refusing the objects named in ``refuse`` (as the real model refuses a
    spectrum with too few usable pixels in its window, which the readers still accept)."""

    refuse: frozenset = frozenset()

    def embed(self, records):
        batch = super().embed(records)
        batch.valid = batch.valid & np.array([r.object_id not in self.refuse for r in records])
        return batch


def test_a_spectrum_the_model_starts_refusing_loses_its_point(tmp_path):
    folder = _folder_with(tmp_path, 3)
    store = open_store(path=tmp_path / "store")
    embedder = RefusingEmbedder()

    def sync():
        return Syncer(store=store, embedder=embedder, state_path=str(tmp_path / "st.json"),
                      read_workers=0).run(parse_sources([str(folder)]))
    try:
        assert sync().added == 3
        victim = folder / "spec-7001.fits"          # same file and obsid, new content
        write_lamost_file(str(victim), 7001, seed=99)
        embedder.refuse = frozenset({"7001"})
        report = sync()
        assert [r["path"] for r in report.refused] == [str(victim)]
        assert report.deleted == 1
        left = sorted(h.payload[P.OBJECT_ID] for h in store.scroll("spectra"))
        assert left == ["7000", "7002"]
        again = sync()                               # still refused, nothing left to delete
        assert again.deleted == 0 and len(again.refused) == 1
    finally:
        store.close()


# ---- item 8: a published generation that lost segments/ is detected and republished ----------

def test_a_generation_without_segments_is_refused_then_republished(tmp_path):
    root = tmp_path / "store"
    _small_store(root)
    gen_dir = next((root / "published" / "c").glob("0*"))
    shutil.rmtree(gen_dir / "shard" / "segments")
    with open_store(path=root, read_only=True) as reader:
        with pytest.raises(StoreError, match="damaged.*segments"):
            reader.count("spectra")
    open_store(path=root).close()                 # the writer notices and republishes
    with open_store(path=root, read_only=True) as reader:
        assert reader.count("spectra") == 5
        assert reader.info("spectra")["generation"] > int(gen_dir.name)


def test_a_long_running_writer_republishes_a_damaged_generation_on_flush(tmp_path):
    root = tmp_path / "store"
    _small_store(root)
    with open_store(path=root) as writer:          # e.g. `index --watch`, open for hours
        gen_dir = next((root / "published" / "c").glob("0*"))
        shutil.rmtree(gen_dir / "shard" / "segments")
        writer.flush()
        with open_store(path=root, read_only=True) as reader:
            assert reader.count("spectra") == 5


# ---- item 9: a store on a read-only filesystem can be read ------------------------------------

def _ro_bind(src: Path, dst: Path) -> bool:
    dst.mkdir()
    try:
        subprocess.run(["mount", "--bind", str(src), str(dst)], check=True,
                       capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    ok = subprocess.run(["mount", "-o", "remount,ro,bind", str(dst)], capture_output=True,
                        timeout=10).returncode == 0
    if not ok:
        subprocess.run(["umount", str(dst)], capture_output=True, timeout=10)
    return ok


def test_a_store_on_a_read_only_mount_is_readable(tmp_path):
    """A real read-only bind mount (needs mount rights, e.g. root in a container; skipped
    otherwise): nothing is written there, and queries answer from a private copy."""
    _small_store(tmp_path / "store")
    mnt = tmp_path / "ro"
    if not _ro_bind(tmp_path / "store", mnt):
        pytest.skip("cannot make a read-only bind mount here")
    try:
        before = sorted(str(p) for p in mnt.rglob("*"))
        with open_store(path=mnt, read_only=True) as reader:
            assert reader.count("spectra") == 5
            hits = reader.search("spectra", "v", np.arange(4, dtype=np.float32), 2)
            assert len(hits) == 2
        assert sorted(str(p) for p in mnt.rglob("*")) == before
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True, timeout=10)


def test_read_only_media_are_detected_and_copied_privately(tmp_path, monkeypatch):
    """Without mount rights: statvfs says read-only and creating a lock file fails with
    EROFS (simulated); the reader neither writes a lock nor opens the shard in place."""
    import errno

    import engine.store.edge as edge
    import engine.store.generations as gens

    _small_store(tmp_path / "store")
    monkeypatch.setattr(edge, "on_read_only_media", lambda path: True)
    real_open = os.open

    def no_create(path, flags, *a):
        if flags & os.O_CREAT and str(tmp_path / "store") in str(path):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *a)

    monkeypatch.setattr(gens.os, "open", no_create)
    loaded = []
    real_load = edge.qe.EdgeShard.load
    monkeypatch.setattr(edge.qe.EdgeShard, "load",
                        lambda p: loaded.append(p) or real_load(p))
    with open_store(path=tmp_path / "store", read_only=True) as reader:
        assert reader.count("spectra") == 5
    assert loaded and not any(str(tmp_path / "store") in p for p in loaded)
    assert not list((tmp_path / "store" / "published" / "c").glob("*.lock"))


# ---- item 10: NaN in queries, Rust panics -----------------------------------------------------

@pytest.fixture
def store5(tmp_path):
    _small_store(tmp_path / "store")
    s = open_store(path=tmp_path / "store", read_only=True)
    yield s
    s.close()


@pytest.mark.parametrize("rng", [dict(gte=float("nan")), dict(lte=float("nan")),
                                 dict(gte=0.0, lte=float("inf"))])
def test_a_nan_range_filter_is_a_store_error(store5, rng):
    flt = Filter(must=(Range("ra", **rng),))
    with pytest.raises(StoreError, match="finite"):
        store5.search("spectra", "v", np.ones(4, np.float32), 2, filter=flt)
    with pytest.raises(StoreError, match="finite"):
        store5.count("spectra", filter=flt)


@pytest.mark.parametrize("bad", [np.full(4, np.nan), np.array([1, np.inf, 0, 0])])
def test_a_non_finite_query_vector_is_a_store_error(store5, bad):
    with pytest.raises(StoreError, match="finite"):
        store5.search("spectra", "v", bad, 2)


def test_bad_k_and_field_names_are_store_errors(store5):
    with pytest.raises(StoreError, match="positive"):
        store5.search("spectra", "v", np.ones(4, np.float32), -1)
    with pytest.raises(StoreError, match="positive"):
        store5.order_by("spectra", "ra", -5)
    with pytest.raises(StoreError, match="payload field"):
        store5.search("spectra", "v", np.ones(4, np.float32), 2, payload_keys=["../../etc"])


def test_a_rust_panic_becomes_a_store_error(store5, monkeypatch):
    """pyo3's PanicException derives from BaseException; the store boundary catches it."""
    panic = type("PanicException", (BaseException,), {})
    c = store5._coll("spectra")

    class Panicking:
        def __getattr__(self, name):
            def boom(*a, **k):
                raise panic("called `Option::unwrap()` on a `None` value")
            return boom

    monkeypatch.setattr(c, "shard", Panicking())
    with pytest.raises(StoreError, match="panic"):
        store5.count("spectra")


def test_the_engine_refuses_a_nan_cone_and_nan_filters(store5):
    from engine.query import Engine

    engine = Engine(store5, collection="spectra")
    with pytest.raises(ValueError, match="finite"):
        engine.cone_search(float("nan"), 10.0, 3.0)
    with pytest.raises(ValueError, match="finite"):
        engine.cone_search(10.0, 10.0, float("nan"))
    with pytest.raises(StoreError, match="finite"):
        engine.outliers(None, k=3, filters={"ra": (float("nan"), None)}, score=P.ANOMALY)


# ---- item 11: names are never paths -----------------------------------------------------------

def test_a_crafted_alias_never_deletes_outside_the_store(tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "meta.json").write_text("{}")
    (victim / "precious.txt").write_text("keep me")
    folder = _folder_with(tmp_path, 2)
    root = tmp_path / "deep" / "store"
    open_store(path=root).close()
    (root / "aliases.json").write_text(json.dumps({"spectra": "../../../victim"}))
    store = None
    with pytest.raises(StoreError, match="aliases.json"):
        store = open_store(path=root)
        _sync(store, tmp_path, folder)
    if store is not None:
        store.close()
    assert (victim / "precious.txt").read_text() == "keep me"


@pytest.mark.parametrize("name", ["../../escape", "..", "a/b", "", "x" * 200, "spectra\x00"])
def test_collection_and_alias_names_that_are_paths_are_refused(tmp_path, name):
    root = tmp_path / "store"
    with open_store(path=root) as s:
        with pytest.raises(StoreError, match="invalid"):
            s.create_collection(name, [VectorSpec("v", 4)], {})
        s.create_collection("ok", [VectorSpec("v", 4)], {})
        with pytest.raises(StoreError, match="invalid"):
            s.set_alias(name, "ok")
        with pytest.raises(StoreError):
            s.count(name)
    written = {p.relative_to(tmp_path).parts[0] for p in tmp_path.rglob("*")}
    assert written == {"store"}


def test_index_alias_that_is_a_path_writes_nothing_outside(tmp_path):
    folder = _folder_with(tmp_path, 1)
    root = tmp_path / "a" / "store"
    before = set(tmp_path.rglob("*"))
    with open_store(path=root) as s, pytest.raises(StoreError, match="invalid"):
        Syncer(store=s, embedder=ProjectionEmbedder(), state_path=str(root / "st.json"),
               alias="../../escape", read_workers=0).run(parse_sources([str(folder)]))
    outside = [p for p in set(tmp_path.rglob("*")) - before if root not in p.parents
               and p != root and p not in root.parents]
    assert outside == []


# ---- item 15: store files of the wrong shape --------------------------------------------------

@pytest.mark.parametrize("file,content,read_only", [
    ("aliases.json", "[]", False), ("aliases.json", "[]", True),
    ("aliases.json", '{"spectra": 3}', True),
    ("published/c/CURRENT", "{}", True), ("published/c/CURRENT", '{"gen": "x"}', True),
    ("store.json", "[]", False),
    ("collections/c/meta.json", "[]", False), ("collections/c/meta.json", "{}", False),
])
def test_store_files_of_the_wrong_shape_are_store_errors_naming_the_file(tmp_path, file,
                                                                           content, read_only):
    root = tmp_path / "store"
    _small_store(root)
    (root / file).write_text(content)
    with pytest.raises(StoreError) as err:
        s = open_store(path=root, read_only=read_only)
        try:
            s.count("spectra")
        finally:
            s.close()
    assert Path(file).name in str(err.value)


@pytest.mark.parametrize("content", ["{not json", "[]", '{"sources": 5}'])
def test_a_garbled_indexer_state_is_a_store_error_saying_what_to_do(tmp_path, content):
    path = tmp_path / "indexer_state.json"
    path.write_text(content)
    with pytest.raises(StoreError, match="indexer_state.json.*delete it"):
        SyncState.load(str(path))


# ---- item 16: an old model's generation held by a reader is pruned later ----------------------

def test_a_deleted_collections_generation_held_by_a_reader_is_pruned_later(tmp_path):
    root = tmp_path / "store"
    _small_store(root, name="old")
    reader = open_store(path=root, read_only=True)
    assert reader.count("spectra") == 5                 # holds old's generation
    with open_store(path=root) as w:                     # the model switch
        w.create_collection("new", [VectorSpec("v", 4)], {"ra": "float"})
        w.set_alias("spectra", "new")
        w.delete_collection("old")
        w.flush()
    assert list((root / "published" / "old").glob("0*"))   # still held: kept
    reader.close()
    with open_store(path=root) as w:                     # the next writer session
        w.upsert("new", [Point(_ids(1)[0], {"v": np.ones(4, np.float32)}, {"ra": 1.0})])
    assert not (root / "published" / "old").exists()
    with open_store(path=root, read_only=True) as r:
        assert r.count("spectra") == 1


# ---- item 17: a full disk fails with a message before a generation is written ----------------

def test_publishing_without_free_space_fails_with_a_message(tmp_path, monkeypatch):
    root = tmp_path / "store"
    _small_store(root)
    current = (root / "published" / "c" / "CURRENT").read_text()
    w = open_store(path=root)
    w.upsert("c", [Point(_ids(6)[5], {"v": np.ones(4, np.float32)}, {"ra": 9.0})])
    real = shutil.disk_usage
    monkeypatch.setattr(checks.shutil, "disk_usage",
                        lambda p: real(p)._replace(free=1024 * 1024))
    with pytest.raises(StoreError, match="MiB free"):
        w.flush()
    assert (root / "published" / "c" / "CURRENT").read_text() == current
    monkeypatch.setattr(checks.shutil, "disk_usage", real)
    w.close()                                            # space back: published now
    with open_store(path=root, read_only=True) as r:
        assert r.count("c") == 6


@pytest.mark.parametrize("size_mib", [24, 100])
def test_a_store_filling_a_tmpfs_fails_with_a_message_not_sigbus(tmp_path, size_mib):
    """Real tmpfs mounts (need mount rights; skipped otherwise): 24 MiB, too small for a
    collection, and 100 MiB, filled batch by batch. Before the checks, Edge died of SIGBUS
    in both (it fills its preallocated files through mmap)."""
    import sys

    mnt = tmp_path / "small"
    mnt.mkdir()
    try:
        ok = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mib}m", "tmpfs",
                             str(mnt)], capture_output=True, timeout=10).returncode == 0
    except OSError:
        ok = False
    if not ok:
        pytest.skip("cannot mount a tmpfs here")
    code = f"""
import sys, uuid
import numpy as np
from engine.errors import StoreError
from engine.store import open_store, Point, VectorSpec
rng = np.random.default_rng(0)
try:
    s = open_store(path={str(mnt / "store")!r})
    s.create_collection("c", [VectorSpec("v", 256)], {{"ra": "float"}})
    for b in range(400):
        s.upsert("c", [Point(str(uuid.uuid4()), {{"v": rng.normal(size=256)}},
                             {{"ra": 1.0, "pad": "x" * 500}}) for _ in range(500)])
        if b % 4 == 3:
            s.flush()
except StoreError as e:
    print("REFUSED", e)
    sys.exit(3)
"""
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=300, cwd=Path(__file__).resolve().parents[2])
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True, timeout=10)
    assert proc.returncode == 3 and "MiB free" in proc.stdout, (proc.returncode,
                                                                 proc.stdout[-500:],
                                                                 proc.stderr[-2000:])


# ---- issue 14: options the embedded store cannot honour are refused ---------------------------

@pytest.mark.parametrize("opt", [dict(shard_number=2), dict(replication_factor=2),
                                 dict(write_consistency_factor=2)])
def test_the_embedded_store_refuses_cluster_options(tmp_path, opt):
    from engine.store import CollectionOptions

    with open_store(path=tmp_path / "s") as s:
        with pytest.raises(StoreError, match="one local shard"):
            s.create_collection("c", [VectorSpec("v", 4)], {}, CollectionOptions(**opt))
        assert s.list_collections() == []
