"""Indexer bookkeeping that is not in the store itself.

The store is the source of truth for *which spectra are indexed* (stable ids + content
hashes in payloads), so a killed run loses nothing: the next run re-checks every batch
against the store. This small JSON file only remembers which sources were registered and
whether the collection-wide anomaly scores are fresh. It is written atomically and always
*after* the store writes it describes (write the vector store first, bookkeeping second).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field

from engine.errors import StoreError
from engine.jsonfile import atomic_write_json

log = logging.getLogger(__name__)


@dataclass
class SyncState:
    sources: list[dict] = field(default_factory=list)     # [{"spec", "labels"}]
    scores_fresh: dict[str, bool] = field(default_factory=dict)   # collection -> fresh?
    runs: list[dict] = field(default_factory=list)        # short summaries of past runs
    # collection -> points whose neighbour score may lag since the last full scoring pass
    scores_stale: dict[str, int] = field(default_factory=dict)
    # collection -> survey -> score -> its quantiles at the last full pass (percentiles of
    # incrementally scored points come from these)
    score_quantiles: dict[str, dict] = field(default_factory=dict)
    # collection -> indexer.scoring.SCORING_VERSION of its last full pass (absent: a state
    # written before versions were recorded, taken as the current version)
    scoring_version: dict[str, int] = field(default_factory=dict)
    # "crossmatch" / "positions" -> the absolute path of the table the syncs join, so that a
    # re-sync without the option joins it again instead of dropping what it linked
    tables: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str) -> "SyncState":
        if not os.path.exists(path):
            return cls()
        fix = ("delete it and run again: the store itself records what is indexed, so the "
               "next run only re-checks every spectrum (pass the same SOURCES, since the "
               "list of sources registered before is in this file)")
        try:
            with open(path) as fh:
                data = json.load(fh)
        except (OSError, ValueError) as e:
            raise StoreError(f"{path}: unreadable indexer state ({e}); {fix}") from None
        state = cls(sources=data.get("sources", []), scores_fresh=data.get("scores_fresh", {}),
                    runs=data.get("runs", []), scores_stale=data.get("scores_stale", {}),
                    score_quantiles=data.get("score_quantiles", {}),
                    scoring_version=data.get("scoring_version", {}),
                    tables=data.get("tables", {})) \
            if isinstance(data, dict) else None
        if state is None or not _well_formed(state):
            raise StoreError(f"{path}: not an indexer state file (wrong shape); {fix}")
        return state

    def save(self, path: str) -> None:
        atomic_write_json(path, asdict(self))

    def registered(self, spec: str) -> bool:
        """Was a source of this path synced before (compared as absolute paths)?"""
        key = os.path.abspath(spec)
        return any(s["spec"] == spec or os.path.abspath(s["spec"]) == key
                   for s in self.sources)

    def register(self, spec: str, labels: tuple[str, ...]) -> None:
        entry = {"spec": spec, "labels": list(labels)}
        if entry not in self.sources:
            self.sources = [s for s in self.sources if s["spec"] != spec] + [entry]



def _well_formed(state: SyncState) -> bool:
    return (isinstance(state.sources, list)
            and all(isinstance(s, dict) and isinstance(s.get("spec"), str)
                    for s in state.sources)
            and isinstance(state.scores_fresh, dict) and isinstance(state.runs, list)
            and isinstance(state.scores_stale, dict) and isinstance(state.score_quantiles, dict)
            and isinstance(state.scoring_version, dict)
            and isinstance(state.tables, dict)
            and all(isinstance(v, str) for v in state.tables.values()))
