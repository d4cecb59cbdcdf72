"""Run one sync in a subprocess (the kill -9 test kills this process mid-run).

usage: python -m tests.indexer.kill_target STORE STATE SOURCE DELAY [READ_WORKERS]
DELAY seconds of sleep per embedded batch widen the window in which a kill lands mid-run;
READ_WORKERS reader processes (default 0: read in a thread), used however few the files.
SPECCLIP_TEST_STALE_FRACTION / SPECCLIP_TEST_DEFER_FRACTION, when set, replace the scoring
bounds (indexer/scoring.py STALE_FRACTION, indexer/incremental.py DEFER_FRACTION): a store of
a few dozen points needs them lifted to take the incremental path and keep refreshes deferred.
"""

import json
import os
import sys
import time

from engine.store import open_store
from indexer.sources import parse_sources
from indexer.sync import Syncer
from tests.indexer.doubles import ProjectionEmbedder


class SlowEmbedder(ProjectionEmbedder):
    def __init__(self, delay: float):
        super().__init__()
        self.delay = delay

    def embed(self, records):
        time.sleep(self.delay)
        print("embedded", len(records), flush=True)   # the test kills after a few of these
        return super().embed(records)


if __name__ == "__main__":
    from indexer import incremental, scoring

    if "SPECCLIP_TEST_STALE_FRACTION" in os.environ:
        scoring.STALE_FRACTION = float(os.environ["SPECCLIP_TEST_STALE_FRACTION"])
    if "SPECCLIP_TEST_DEFER_FRACTION" in os.environ:
        incremental.DEFER_FRACTION = float(os.environ["SPECCLIP_TEST_DEFER_FRACTION"])
    store_path, state_path, source, delay = sys.argv[1:5]
    workers = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    store = open_store(path=store_path)
    report = Syncer(store=store, embedder=SlowEmbedder(float(delay)), state_path=state_path,
                    batch_size=4, read_workers=workers, min_files_for_process=1
                    ).run(parse_sources([source]))
    store.close()
    print(json.dumps({"added": report.added, "skipped": report.skipped,
                      "files_read": report.files_read, "scoring": report.scoring}))
