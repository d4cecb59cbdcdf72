"""`--watch`: keep the store in sync as new files arrive, by re-running the (idempotent,
cheap when nothing changed) sync on a timer. Each cycle publishes what it wrote, so readers
such as the app see new spectra within one interval. Polling rather than inotify: it works
the same on network file systems and in containers, and an unchanged cycle costs one
listing and one stat per file of a folder source, and one stat for the XP library and each
catalogue: no file is opened, and the store is asked only for its collection, alias and
pending-score count (see indexer/file_index.py)."""

from __future__ import annotations

import logging
import time
from typing import Callable, Sequence

from indexer.sources import Source
from indexer.sync import SyncReport, Syncer

log = logging.getLogger(__name__)


def watch(syncer: Syncer, sources: Sequence[Source], interval_s: float = 10.0,
          max_cycles: int | None = None, on_report: Callable[[SyncReport], None] = lambda r: None,
          sleep: Callable[[float], None] = time.sleep) -> int:
    """Sync every `interval_s` seconds until interrupted (or `max_cycles`). Returns cycles run."""
    cycles = 0
    try:
        while max_cycles is None or cycles < max_cycles:
            report = syncer.run(sources)
            cycles += 1
            on_report(report)
            if report.wrote:
                log.info("watch cycle %d: +%d ~%d -%d", cycles, report.added, report.updated,
                         report.deleted)
            if max_cycles is None or cycles < max_cycles:
                sleep(interval_s)
    except KeyboardInterrupt:
        log.info("watch stopped after %d cycles", cycles)
    return cycles
