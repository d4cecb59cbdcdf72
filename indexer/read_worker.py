"""The reader process behind `indexer.reading.FileReader`: `python -m indexer.read_worker ADDR`.

It connects back to the indexer over a local socket, authenticated with the one-off key the
indexer writes on its stdin, then answers each list of paths with `readers.read_many(paths)`
until the indexer hangs up (or dies: the socket closes and this process exits with it).
"""

from __future__ import annotations

import os
import sys
from multiprocessing.connection import Client


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    key = bytes.fromhex(sys.stdin.readline().strip())
    conn = Client(argv[0], family="AF_UNIX", authkey=key)
    from engine import readers        # after connecting: the indexer is not kept waiting

    while True:
        try:
            paths = conn.recv()
            result = readers.read_many(paths)
            conn.send(result)
        except (EOFError, OSError):
            # The indexer hung up (or died): nothing is buffered, so skip the interpreter's
            # teardown (~0.2 s with astropy loaded) that the indexer would wait for.
            os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
