"""The reader process behind `indexer.reading.FileReader`:
`python -m indexer.read_worker ADDR PARENT_PID`.

It connects back to the indexer over a local socket, authenticated with the one-off key the
indexer writes on its stdin, then answers each list of paths with `readers.read_many(paths)`
until the indexer hangs up.

It never outlives the indexer, even while busy on a file (a read that blocks or runs long
would otherwise never see the socket close): on Linux the kernel kills it when its parent
dies (PR_SET_PDEATHSIG), and a watchdog thread exits when the parent pid changes (other
systems, and the moment before prctl took effect).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time
from multiprocessing.connection import Client

PR_SET_PDEATHSIG = 1
WATCH_INTERVAL_S = 0.5


def die_with_parent(parent_pid: int) -> None:
    """Exit as soon as `parent_pid` is no longer our parent (it died: we were re-parented)."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):      # no prctl: the watchdog below still works
            pass
    if os.getppid() != parent_pid:             # died before prctl took effect
        os._exit(0)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(WATCH_INTERVAL_S)
        os._exit(0)

    threading.Thread(target=watch, name="specclip-parent-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) > 1:
        die_with_parent(int(argv[1]))
    key = bytes.fromhex(sys.stdin.readline().strip())
    try:
        conn = Client(argv[0], family="AF_UNIX", authkey=key)
    except OSError:
        # the indexer stopped before this worker connected (e.g. it refused the store):
        # it reports why; a traceback from here would only bury that message
        return 0
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
