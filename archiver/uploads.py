"""Uploading volumes while the next ones are packed (docs/design.md, "Write ordering", step 5).

A bucket far away answers each request tens of milliseconds later; uploading one volume at a
time from the process that also plans the next volumes and records the last ones leaves the
packers idle meanwhile. The queue sends up to ``slots`` volumes at once, each in a thread whose
only work is the store call (boto3's clients and b2sdk's buckets are safe to share between
threads), and its owner records each finished one in its own thread, in the order they finish,
so the run's sqlite tables and the point's list of objects are only ever touched there.
"""

from __future__ import annotations

import concurrent.futures
from typing import Callable, Generic, TypeVar

from . import interrupt

UPLOADS_IN_FLIGHT = 4  # volumes sent at once; each is a volume's worth of local disk until it is sent

Item = TypeVar("Item")
Sent = TypeVar("Sent")


class UploadQueue(Generic[Item, Sent]):
    """``send`` runs in a thread and owns its item's local file (it removes it, sent or not); ``record`` runs in
    the caller's thread with what ``send`` returned. An error in either stops the queue: what is in flight
    finishes or is cancelled, files of items never sent are removed by ``discard``, and the error is raised."""

    def __init__(self, send: Callable[[Item], Sent], record: Callable[[Item, Sent], None],
                 discard: Callable[[Item], None], slots: int = UPLOADS_IN_FLIGHT) -> None:
        self.send, self.record, self.discard, self.slots = send, record, discard, max(1, slots)
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=self.slots, thread_name_prefix="genarc-upload")
        self._pending: dict[concurrent.futures.Future, Item] = {}

    def __enter__(self) -> "UploadQueue[Item, Sent]":
        return self

    def __exit__(self, kind, value, tb) -> None:
        if kind is None:
            try:
                self.drain(0)
            except BaseException:  # a send or a record failed, or a signal came, at the end: stop as below
                self._stop()
                raise
            self._pool.shutdown(wait=True)
            return
        self._stop()

    def _stop(self) -> None:
        """Cancel what is not sent yet (its file removed) and wait for what is in flight: nothing is sent after the
        queue is left. A send in flight ends with its file removed; it is not recorded."""
        for future, item in list(self._pending.items()):
            if future.cancel():
                self.discard(item)
        self._pool.shutdown(wait=True)

    def add(self, item: Item) -> None:
        """Send ``item`` once a slot is free (recording what finished meanwhile)."""
        self.drain(self.slots - 1)
        interrupt.check()
        self._pending[self._pool.submit(self.send, item)] = item

    def drain(self, most: int) -> None:
        """Record finished sends until at most ``most`` are in flight."""
        while len(self._pending) > most:
            done, _ = concurrent.futures.wait(self._pending, return_when=concurrent.futures.FIRST_COMPLETED)
            for future in done:
                item = self._pending.pop(future)
                self.record(item, future.result())
            interrupt.check()
