"""Publishing without copying the shard: generations share (hard links) the write-once files
the writer has not touched and every file of a segment it did not change, and a reader of an
old generation never sees a later write."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from engine.store import CollectionOptions, open_store
from engine.store import fs_probes
from engine.store import generations as gens
from engine.store.edge_publish import linkable
from tests.engine.store.conftest import INDEXES, VECTORS, make_points


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def everything(store, name="c") -> dict:
    return {h.id: (h.payload, {k: v.tolist() for k, v in (h.vectors or {}).items()})
            for h in store.scroll(name, with_vectors=True)}


def gen_path(root: Path, gen: int) -> Path:
    return gens.gen_dir(root / "published" / "c", gen)


@pytest.fixture
def short_racy_window(monkeypatch):
    # files written within RACY_NS before a publication are never linked; the tests wait
    # out a shorter window instead of 2 s per round
    monkeypatch.setattr(gens, "RACY_NS", 300_000_000)
    return lambda: time.sleep(0.4)


@pytest.fixture
def linking_fs(tmp_path):
    """Tests that expect links: where tmp_path's filesystem does not stamp writes through
    memory maps (tmpfs), publishing rightly links nothing (fs_probes.mmap_writes_stamp_mtime)."""
    if not fs_probes.mmap_writes_stamp_mtime(tmp_path):
        pytest.skip(f"{tmp_path} is on a filesystem that does not stamp mmap writes (tmpfs)")


@pytest.fixture
def tmpfs_dir(tmp_path):
    """A folder on a tmpfs: one mounted here where we may (root), else /dev/shm when it is
    one with room; skipped otherwise."""
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    try:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1g", "tmpfs", str(mnt)],
                                 capture_output=True, timeout=10).returncode == 0
    except OSError:
        mounted = False
    if mounted:
        yield mnt
        # lazy: a failed test may leave a store open there
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=10)
        return
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)
            and shutil.disk_usage(shm).free > 2**30
            and not fs_probes._probe(shm, fs_probes._writes_stamp)):
        pytest.skip("no tmpfs to mount and no /dev/shm tmpfs with 1 GiB free")
    folder = Path(tempfile.mkdtemp(dir=shm))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_linkable_names_only_write_once_segment_files():
    assert linkable("shard/segments/u/vector_storage-shared/matrix.dat")
    assert linkable("shard/segments/u/vector_index-shared/links_compressed.bin")
    assert linkable("shard/segments/u/payload_storage/page_0.dat")
    for rel in ("shard/segments/u/id_tracker.versions", "shard/segments/u/segment.json",
                "shard/segments/u/vector_storage-a/deleted.dat", "shard/edge_config.json",
                "shard/segments/u/payload_storage/tracker.dat", "meta.json"):
        assert not linkable(rel), rel


def _published_store(root: Path):
    """A writer with 3,000 points, optimised and published once (one indexed segment)."""
    w = open_store(path=root)
    w.create_collection("c", VECTORS, INDEXES, CollectionOptions(indexing_threshold=500))
    w.upsert("c", make_points(3000))
    w.optimize("c")
    w.publish()
    return w


def test_generations_share_unchanged_files_and_old_readers_are_untouched(
        tmp_path, short_racy_window, linking_fs):
    root = tmp_path / "s"
    w = _published_store(root)
    rng = np.random.default_rng(1)
    leases = []
    for round_ in range(3):
        short_racy_window()
        reader = open_store(path=root, read_only=True)
        seen_before = everything(reader)                 # this reader now holds gen n
        old_gen = reader.info("c")["generation"]
        old_files = digests(gen_path(root, old_gen))
        leases.append(reader)
        # every kind of write: new points, deletions, replaced payloads, then optimize
        w.upsert("c", make_points(60, seed=10 + round_, start=5000 + 100 * round_))
        w.delete("c", [p.id for p in make_points(3000)][round_ * 7:round_ * 7 + 5])
        changed = [replace(p, payload={**p.payload, "snr": -1.0})
                   for p in make_points(3000)[100 + round_ * 10:110 + round_ * 10]]
        w.upsert("c", changed)
        w.optimize("c")
        w.publish()
        new = gen_path(root, old_gen + 1)
        shared = [p for p in new.rglob("*") if p.is_file() and os.stat(p).st_nlink > 1]
        assert shared, "nothing linked: publishing copied the whole shard"
        assert digests(gen_path(root, old_gen)) == old_files   # old generation untouched
        fresh = open_store(path=root, read_only=True)
        assert everything(fresh) == everything(w)              # new generation is exact
        fresh.close()
        q = rng.normal(size=16).astype(np.float32)
        assert [h.id for h in reader.search("c", "shared", q, 5)] == \
            [h.id for h in w.search("c", "shared", q, 5)]      # the old reader moves on
        assert seen_before != everything(reader)
    for r in leases:
        r.close()
    w.close()


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_units_the_writer_did_not_change_are_taken_prepared_from_the_last_generation(
        tmp_path, short_racy_window, linking_fs):
    """Without Qdrant: a unit (a segment) whose files kept their stat, or were rewritten with
    the same content, is copied from the previous generation as its preparation left it;
    only the others are prepared again."""
    src, pub = tmp_path / "w", tmp_path / "pub"
    for u in ("a", "b", "c"):
        _write(src / u / "data", f"{u} data")
        _write(src / u / "journal", f"{u} journal")
        _write(src / u / "conf.json", '{"x": 1, "y": [2]}')
    prepared: list[set[str]] = []

    def prepare(tmp: Path, todo: set[str]) -> None:     # a stand-in for sealing
        prepared.append(set(todo))
        for u in todo:
            (tmp / u / "journal").unlink(missing_ok=True)
            _write(tmp / u / "sealed", (tmp / u / "data").read_text())

    unit = lambda rel: rel.split("/")[0] if "/" in rel else None      # noqa: E731
    gens.publish(src, pub, prepare, unit=unit)
    assert prepared[-1] == {"a", "b", "c"}
    short_racy_window()
    _write(src / "a" / "data", "a changed")           # changed content
    _write(src / "b" / "journal", "b journal")        # rewritten, same content
    _write(src / "b" / "conf.json", '{"y": [2], "x": 1}')   # same data, keys reordered
    _write(src / "c" / "conf.json", '{"y": [3], "x": 1}')   # other data
    _write(src / "d" / "data", "d new")               # a new unit
    gen = gens.publish(src, pub, prepare, unit=unit)
    assert prepared[-1] == {"a", "c", "d"}
    new = gens.gen_dir(pub, gen)
    assert (new / "a" / "sealed").read_text() == "a changed"
    assert (new / "b" / "sealed").read_text() == "b data" and not (new / "b" / "journal").exists()
    assert (new / "c" / "sealed").read_text() == "c data"
    short_racy_window()
    os.unlink(src / "c" / "journal")                   # a unit that lost a file
    _write(src / "b" / "data", "b data")               # same content again
    gens.publish(src, pub, prepare, unit=unit)
    assert prepared[-1] == {"c"}
    short_racy_window()
    os.unlink(src / "b" / "journal")                   # the writer did what preparing did
    _write(src / "b" / "sealed", "b data")
    _write(src / "d" / "sealed", "d other")            # ... but not with the same content
    gens.publish(src, pub, prepare, unit=unit)
    assert prepared[-1] == {"d"}


def test_a_small_write_seals_only_the_segments_it_changed(tmp_path, short_racy_window,
                                                         monkeypatch, linking_fs):
    from engine.store import edge_publish

    sealed: list[tuple[int, int]] = []
    real_seal = edge_publish.seal

    def spy(path: Path, segments=None):
        present = len(list((path / "segments").iterdir()))
        sealed.append((present if segments is None else len(segments), present))
        real_seal(path, segments)

    monkeypatch.setattr(edge_publish, "seal", spy)
    root = tmp_path / "s"
    w = _published_store(root)
    assert sealed[-1][0] == sealed[-1][1]                # the first generation: all of it
    short_racy_window()
    w.upsert("c", make_points(5, seed=7, start=9000))   # new points only
    w.publish()
    assert 1 <= sealed[-1][0] < sealed[-1][1], sealed
    fresh = open_store(path=root, read_only=True)
    assert everything(fresh) == everything(w)
    short_racy_window()
    w.delete("c", [p.id for p in make_points(3000)][:3])          # old segments change
    w.upsert("c", [replace(p, payload={**p.payload, "snr": -2.0})
                   for p in make_points(3000)[1000:1003]])
    w.publish()
    assert everything(fresh) == everything(w)
    short_racy_window()
    w.upsert("c", make_points(5, seed=8, start=9100))
    w.publish()
    assert sealed[-1][0] < sealed[-1][1], sealed
    assert everything(fresh) == everything(w)
    assert fresh.count("c") == 3007
    w.close()                                  # a writer that reopens the shard (replaying
    short_racy_window()                        # its journals) still seals only what changed
    w = open_store(path=root)
    w.upsert("c", make_points(5, seed=9, start=9200))
    w.publish()
    assert sealed[-1][0] < sealed[-1][1], sealed
    assert everything(fresh) == everything(w)
    fresh.close()
    w.close()


def _files(folder: Path) -> dict[str, tuple[str, int]]:
    return {str(p.relative_to(folder)): (hashlib.md5(p.read_bytes()).hexdigest(),
                                         os.stat(p).st_ino)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_segment_the_writer_did_not_change_is_shared_whole_and_readers_leave_it_as_is(
        tmp_path, short_racy_window, linking_fs):
    """Publishing hard-links every file of an unchanged segment, its flag and tracker files
    too (at 1M points, copying those was most of a 1-file add). That is sound only while a
    reader's load writes into them no byte they do not already hold and replaces what it
    rewrites by rename: checked here on the pinned Edge, with readers of both generations
    loaded while they share the files."""
    root = tmp_path / "s"
    w = _published_store(root)
    old_reader = open_store(path=root, read_only=True)
    old_reader.count("c")                                  # loads generation 1, holds it
    g1, g2 = gen_path(root, 1), gen_path(root, 2)
    short_racy_window()
    w.upsert("c", make_points(5, seed=7, start=9000))     # only the appendable segment
    w.publish()
    before = _files(g1)
    segments = {p.name for p in (g2 / "shard" / "segments").iterdir()}
    whole = {s for s in segments if (g1 / "shard" / "segments" / s).is_dir() and all(
        os.path.samefile(p, g1 / p.relative_to(g2))
        for p in (g2 / "shard" / "segments" / s).rglob("*") if p.is_file())}
    assert whole and whole != segments, (whole, segments)
    mutable = [p for s in whole for p in (g2 / "shard" / "segments" / s).rglob("*")
               if p.is_file() and not linkable(str(p.relative_to(g2)))]
    assert mutable, "the shared segment has no flag or tracker files: nothing is tested"
    fresh = open_store(path=root, read_only=True)          # loads generation 2
    q = np.random.default_rng(3).normal(size=16).astype(np.float32)
    assert [h.id for h in fresh.search("c", "shared", q, 5)] == \
        [h.id for h in w.search("c", "shared", q, 5)]
    assert everything(fresh) == everything(w)
    fresh.close()
    again = open_store(path=root, read_only=True)          # and again, once closed
    assert again.count("c") == 3005
    again.close()
    after = _files(g1)
    assert set(after) == set(before)
    rewritten = [rel for rel, (md5, ino) in after.items()
                 if md5 != before[rel][0] and ino == before[rel][1]]
    assert not rewritten, f"a load changed bytes of shared files in place: {rewritten[:5]}"
    old_reader.close()
    w.close()


def test_where_mmap_writes_keep_the_mtime_publishing_copies_instead_of_linking_stale_files(
        tmpfs_dir, short_racy_window):
    """tmpfs never gives a file a new mtime for a write through a memory map, so a writer's
    stat there cannot say "unchanged". Before the probe (fs_probes.mmap_writes_stamp_mtime), the
    second publication linked the appendable segment's payload pages, which Edge had
    appended to in place, from the first generation: sealing failed on the stale copy
    ("Failed to decompress LZ4 value"), and so did every later publication."""
    assert not fs_probes.mmap_writes_stamp_mtime(tmpfs_dir)
    root = tmpfs_dir / "s"
    w = open_store(path=root)
    w.create_collection("c", VECTORS, INDEXES)
    w.upsert("c", make_points(20))
    short_racy_window()                  # so that the stat test, not the racy rule, decides
    w.publish()
    old_reader = open_store(path=root, read_only=True)
    assert old_reader.count("c") == 20                   # holds generation 1
    short_racy_window()
    w.upsert("c", make_points(20, seed=1, start=20))
    w.publish()
    with open_store(path=root, read_only=True) as r:
        assert everything(r) == everything(w) and r.count("c") == 40
    g1, g2 = (_files(gen_path(root, g)) for g in (1, 2))
    assert not {ino for _, ino in g1.values()} & {ino for _, ino in g2.values()}
    assert old_reader.count("c") == 40                   # and moves on
    old_reader.close()
    w.close()


def test_the_space_a_publication_asks_for_follows_what_changed(tmp_path, short_racy_window,
                                                               linking_fs, monkeypatch):
    """A small write asks for room for what it copies and the segments it seals, not for
    the whole shard twice (at 1M points that was ~7 GB free to add one file), and what it
    then writes fits in what it asked for."""
    from engine.store import checks

    root = tmp_path / "s"
    w = _published_store(root)
    holder = open_store(path=root, read_only=True)
    holder.count("c")                    # keeps generation 1, so that links stay links
    short_racy_window()
    asked: list[int] = []
    real = checks.check_free_space

    def spy(folder, need, what):
        if what.startswith("publish"):
            asked.append(need)
        real(folder, need, what)

    monkeypatch.setattr(checks, "check_free_space", spy)
    w.upsert("c", make_points(5, seed=3, start=9000))
    w.publish()
    new = gen_path(root, 2)
    written = sum(os.stat(p).st_blocks * 512 for p in new.rglob("*")
                  if p.is_file() and os.stat(p).st_nlink == 1)
    shard = checks.allocated_bytes(root / "collections" / "c" / "shard")
    print(f"asked {asked[0] / 2**20:.1f} MiB, wrote {written / 2**20:.1f} MiB, shard "
          f"{shard / 2**20:.1f} MiB")
    assert len(asked) == 1 and written <= asked[0] + checks.MARGIN_BYTES
    assert asked[0] < shard / 2          # the old estimate: the whole shard twice
    holder.close()
    w.close()


def test_the_probes_see_a_tmpfs_for_what_it_is(tmpfs_dir, monkeypatch):
    # a new mount may reuse an unmounted one's device number: probe afresh
    monkeypatch.setattr(fs_probes, "_STAMPS", {})
    monkeypatch.setattr(fs_probes, "_HOLES", {})
    (tmpfs_dir / (fs_probes.PREFIX + "x")).write_text("")   # left by a killed probe
    assert not fs_probes.mmap_writes_stamp_mtime(tmpfs_dir)
    assert fs_probes.mapped_holes_take_space(tmpfs_dir)
    assert not list(tmpfs_dir.iterdir())                 # the scratch files are gone


def test_sealing_maps_storages_lazily_and_leaves_every_file_as_a_plain_load_does(
        tmp_path, monkeypatch):
    """seal() loads segments with their "in RAM" storages switched to the on-disk placement
    of the same files (a load then maps them instead of reading them whole) and puts each
    segment's own config back. Checked against a plain load of the same copy, on an indexed
    (HNSW) segment and an appendable one with journals to replay, sealing all or some."""
    from engine.store import edge_publish

    w = open_store(path=tmp_path / "s")
    w.create_collection("c", VECTORS, INDEXES, CollectionOptions(indexing_threshold=500))
    w.upsert("c", make_points(3000))
    w.optimize("c")
    w.upsert("c", make_points(40, seed=5, start=8000))     # the appendable segment
    w.flush(publish=False)
    shard = tmp_path / "s" / "collections" / "c" / "shard"
    kinds = {json.loads((s / "segment.json").read_text())["config"]["vector_data"]["shared"]
             ["index"]["type"] for s in (shard / "segments").iterdir()}
    assert kinds == {"hnsw", "plain"}, kinds
    placements: list[set[str]] = []
    real_load = edge_publish.qe.EdgeShard.load

    def spy(path, *a):
        placements.append({v["storage_type"] for s in Path(path, "segments").iterdir()
                           for v in json.loads((s / "segment.json").read_text())
                           ["config"]["vector_data"].values()})
        return real_load(path, *a)

    monkeypatch.setattr(edge_publish.qe.EdgeShard, "load", spy)
    appendable = next(f"shard/segments/{s.name}" for s in (shard / "segments").iterdir()
                      if "tracker_journal.dat" in {p.name for p in s.rglob("*")})
    for segments in (None, {appendable}):
        plain, lazy = tmp_path / "plain", tmp_path / "lazy"
        for d in (plain, lazy):
            shutil.rmtree(d, ignore_errors=True)
            shutil.copytree(shard, d / "shard", ignore=shutil.ignore_patterns("wal"))
        with monkeypatch.context() as m:
            m.setattr(edge_publish, "_lazy_config", lambda seg: None)
            edge_publish.seal(plain / "shard", segments)
        assert placements[-1] & {"InRamChunkedMmap", "InRamMmap"}
        edge_publish.seal(lazy / "shard", segments)
        assert not placements[-1] & {"InRamChunkedMmap", "InRamMmap"}, placements[-1]
        got, want = ({rel: gens.content_digest(str(root / rel))
                      for rel in gens._listing(root)} for root in (lazy, plain))
        assert got == want
        assert not [p for p in lazy.rglob("*") if p.name.endswith(".tmp")]
    monkeypatch.undo()
    sealed = edge_publish.qe.EdgeShard.load(str(lazy / "shard"))
    assert sealed.count(edge_publish.qe.CountRequest()) == 3040
    sealed.close()
    w.close()
