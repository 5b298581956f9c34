"""Writing a batch's files on a background thread, so the next batch renders meanwhile.

Why: after a batch, its PNGs are encoded (zlib) and written with an fsync each, then its records; on a GPU that is
time the device sits idle, waiting for the disk. One writer thread takes the batch's writes while the main thread
starts the next batch (PNG encoding and file I/O release the GIL). It is bounded: at most `depth` batches wait, so a
slow disk slows the sweep down instead of filling the memory with pictures.

What stays as before: each job is the same function as before (`write_unit`: the PNGs, then the record that marks
the unit done; every file atomic), jobs run one at a time in the order given, and the caller drains the writer
before anything that reads the files back (the end of a shard, the finalizer). A kill leaves no partial file (the
writes are atomic) and the units whose writes had not run are simply not done: a resume renders them again, the same
pictures. A write that fails raises its error in the caller, at the next submit or at the drain.
"""
from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

log = logging.getLogger(__name__)

DEPTH = 2  # batches waiting to be written at most


class BackgroundWriter:
    """`submit(fn, *args)` runs fn(*args) on one writer thread, in order; `drain()` waits for all of them.
    `depth=0` writes in the caller's thread (no thread at all)."""

    def __init__(self, depth: int = DEPTH) -> None:
        self.depth = depth
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fv-writer") if depth > 0 else None
        self._pending: deque[Future] = deque()

    def submit(self, fn: Callable[..., object], *args: object) -> None:
        if self._pool is None:
            fn(*args)
            return
        while len(self._pending) >= self.depth:
            self._pending.popleft().result()  # waits for the oldest; re-raises its error here
        self._pending.append(self._pool.submit(fn, *args))

    def drain(self) -> None:
        """Wait until everything submitted is written (re-raises the first failed write)."""
        while self._pending:
            self._pending.popleft().result()

    def close(self, quiet: bool = False) -> None:
        """Drain and stop the thread. `quiet`: another error is already on its way; log a failed write instead of
        raising it over that one."""
        try:
            self.drain()
        except Exception as exc:  # noqa: BLE001 - re-raised unless quiet
            if not quiet:
                raise
            log.warning("a background write failed too: %s", exc)
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
