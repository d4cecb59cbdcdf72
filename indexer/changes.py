"""What a batch of records changes in the store: stable ids, content hashes, skipping the
spectra the store already holds unchanged, embedding the rest and building their points.
One function for the single-process sync and for the Dask workers, so both give every
spectrum the same id, hash and payload."""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import pyarrow as pa

from engine.records import SURVEYS, SpectrumRecord
from engine.spectrum_archive import SpectrumArchiveWriter, encode_rows
from engine.store.types import Point, VectorStore
from indexer.ids import content_hash, point_id
from indexer.points import build_points, with_spectrum_refs


@dataclass
class Changes:
    """The outcome of one batch. ``groups`` are the new and changed points, each group with
    its spectra encoded for the store's archive (row i is the spectrum of point i; encoded
    where the embedding happened, e.g. on a Dask worker). ``present`` maps each file
    (absolute path) to the ids of its spectra that the store holds once the points are
    written (new, updated or unchanged); spectra the model refused are not among them."""

    groups: list[tuple[list[Point], pa.RecordBatch]] = field(default_factory=list)
    present: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    added: int = 0
    updated: int = 0
    skipped: int = 0
    duplicates: int = 0
    refused: list[dict] = field(default_factory=list)

    @property
    def points(self) -> list[Point]:
        return [p for points, _ in self.groups for p in points]

    def merge(self, other: "Changes") -> None:
        self.groups.extend(other.groups)
        for path, ids in other.present.items():
            self.present[path].extend(ids)
        self.added += other.added
        self.updated += other.updated
        self.skipped += other.skipped
        self.duplicates += other.duplicates
        self.refused.extend(other.refused)


class PartIds:
    """What the batches of one catalogue file (or of the XP library) have yielded so far:
    the file index records it once all of them are written."""

    def __init__(self) -> None:
        self.ids: set[str] = set()
        self.refused = False

    def add(self, changes: Changes, refused: bool = False) -> None:
        """A batch's changes; ``refused``: the reader refused something of it."""
        self.ids.update(i for ids in changes.present.values() for i in ids)
        self.refused = self.refused or refused or bool(changes.refused)

    def clear(self) -> None:
        self.__init__()


def file_key(path: Any) -> str:
    """How files are named in the file index and in ``Changes.present``."""
    return os.path.abspath(os.fspath(path))


def embed_changes(records: Sequence[SpectrumRecord], source_root: str, embedder: Any,
                  stored_hashes: Callable[[list[str]], dict[str, Any]],
                  seen: set[str]) -> Changes:
    """Points for the new and changed spectra among ``records``.

    ``stored_hashes(ids)`` answers {id: content_hash} for the ids the store holds; ``seen``
    holds the ids already handled in this run (a repeated spectrum is a duplicate, not a new
    point) and is updated.
    """
    out = Changes()
    ids, hashes, keep = [], [], []
    for r in records:
        pid = point_id(r)
        if pid in seen:          # one point per spectrum: a repeated row is not a new one
            out.duplicates += 1
            continue
        seen.add(pid)
        ids.append(pid)
        hashes.append(content_hash(r))
        keep.append(r)
    stored = stored_hashes(ids) if ids else {}
    todo = []
    for i, pid in enumerate(ids):
        if stored.get(pid) == hashes[i]:
            out.present[file_key(keep[i].source_path)].append(pid)
        else:
            todo.append(i)
    out.skipped = len(ids) - len(todo)
    for survey in SURVEYS:
        idx = [i for i in todo if keep[i].survey == survey]
        if not idx:
            continue
        recs = [keep[i] for i in idx]
        emb = embedder.embed(recs)
        points = build_points(recs, emb, [ids[i] for i in idx], [hashes[i] for i in idx],
                              source_root, embedder.version, embedder=embedder)
        out.refused += [{"path": r.source_path, "reason": f"{r.survey} {r.object_id}: too few "
                         "usable pixels for the model"}
                        for j, r in enumerate(recs) if not bool(emb.valid[j])]
        # a refused spectrum is not "seen": the point it had before (old vectors, hash and
        # predictions) goes with the vanished ones
        seen.difference_update(ids[i] for j, i in enumerate(idx) if not bool(emb.valid[j]))
        by_id = {ids[i]: keep[i] for i in idx}
        for p in points:
            if p.id in stored:
                out.updated += 1
            else:
                out.added += 1
            out.present[file_key(by_id[p.id].source_path)].append(p.id)
        if points:
            at = {ids[i]: i for i in idx}
            out.groups.append((points, encode_rows(
                [p.id for p in points], [hashes[at[p.id]] for p in points],
                [keep[at[p.id]] for p in points])))
    return out


def upsert_with_spectra(store: VectorStore, collection: str, archive: SpectrumArchiveWriter,
                        groups: Sequence[tuple[list[Point], pa.RecordBatch]]) -> None:
    """Write each group's spectra to the archive, then upsert its points naming them: a kill
    in between leaves only an archive file no point names (collected later), never a point
    without its spectrum."""
    for points, rows in groups:
        ref = archive.write_rows(collection, rows)
        store.upsert(collection, with_spectrum_refs(points, ref,
                                                    {p.id: i for i, p in enumerate(points)}))
