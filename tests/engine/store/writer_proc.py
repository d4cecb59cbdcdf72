"""The writer side of the two-process test: upserts batches into an embedded store and
publishes after each, like the indexer does.

usage: python -m tests.engine.store.writer_proc STORE BATCHES BATCH_SIZE
"""

import sys
import time

from engine.store import open_store
from tests.engine.store.conftest import make_points

if __name__ == "__main__":
    path, batches, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    store = open_store(path=path)
    print("writer open", flush=True)
    for b in range(batches):
        store.upsert("c", make_points(size, seed=100 + b, start=(b + 1) * size))
        store.flush()                      # durable + publish a generation for readers
        print("published", store.count("c"), flush=True)
        # the indexer publishes once per sync, seconds apart; back to back, a publication
        # (~0.1 s here since seals map rather than read) can replace and prune a generation
        # before a busy reader switches to it, and the test would see none in between
        time.sleep(0.5)
    store.close()
    print("writer done", flush=True)
