"""Progress of a sync, phase by phase, with totals: listing (sources), reading (files),
embedding (spectra) and scoring (points). The library reports through a `Progress` object;
the default logs each phase's count and rate when it ends. The CLI passes `TqdmProgress`
(bars with totals and ETA). Totals are what is known when a phase starts: the embedding
total grows as files are read, since a file's spectra are counted only once it is open."""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

log = logging.getLogger(__name__)

PHASES = ("listing", "reading", "embedding", "scoring")
UNITS = {"listing": "sources", "reading": "files", "embedding": "spectra", "scoring": "points"}


class Progress(Protocol):
    def start(self, phase: str, total: int | None) -> None:
        """Begin (or re-open) ``phase`` with ``total`` items expected (None: not known)."""

    def grow(self, phase: str, n: int) -> None:
        """``n`` more items are now expected in ``phase``."""

    def advance(self, phase: str, n: int = 1) -> None:
        """``n`` items of ``phase`` done."""

    def finish(self, phase: str) -> None:
        """``phase`` is over."""


class LogProgress:
    """Logs one INFO line per finished phase: items, total, seconds, rate."""

    def __init__(self) -> None:
        self._t0: dict[str, float] = {}
        self._done: dict[str, int] = {}
        self._total: dict[str, int | None] = {}

    def start(self, phase: str, total: int | None) -> None:
        self._t0.setdefault(phase, time.perf_counter())
        self._done.setdefault(phase, 0)
        self._total[phase] = total

    def grow(self, phase: str, n: int) -> None:
        self._total[phase] = (self._total.get(phase) or 0) + n

    def advance(self, phase: str, n: int = 1) -> None:
        self._done[phase] = self._done.get(phase, 0) + n

    def finish(self, phase: str) -> None:
        if phase not in self._t0:
            return
        dt = time.perf_counter() - self._t0.pop(phase)
        done = self._done.pop(phase, 0)
        log.info("%s: %d of %s %s in %.1f s (%.0f/s)", phase, done,
                 self._total.pop(phase, None), UNITS.get(phase, "items"), dt,
                 done / dt if dt > 0 else 0.0)


class TqdmProgress:
    """One tqdm bar per phase, with its total and ETA (CLIs only)."""

    def __init__(self, disable: bool = False, **tqdm_kwargs: Any) -> None:
        self.disable = disable
        self.kwargs = tqdm_kwargs
        self._bars: dict[str, Any] = {}
        self._log = LogProgress()

    def start(self, phase: str, total: int | None) -> None:
        from tqdm import tqdm

        self._log.start(phase, total)
        bar = self._bars.get(phase)
        if bar is None:
            self._bars[phase] = tqdm(desc=phase, total=total, unit=UNITS.get(phase, "it"),
                                     disable=self.disable, **self.kwargs)
        else:
            bar.total = total
            bar.refresh()

    def grow(self, phase: str, n: int) -> None:
        self._log.grow(phase, n)
        bar = self._bars.get(phase)
        if bar is not None:
            bar.total = (bar.total or 0) + n
            bar.refresh()

    def advance(self, phase: str, n: int = 1) -> None:
        self._log.advance(phase, n)
        bar = self._bars.get(phase)
        if bar is not None:
            bar.update(n)

    def finish(self, phase: str) -> None:
        self._log.finish(phase)
        bar = self._bars.pop(phase, None)
        if bar is not None:
            bar.close()

    def close(self) -> None:
        for phase in list(self._bars):
            self.finish(phase)
