"""Run the producer of an iterator on a thread, a few items ahead of its consumer.

Reading (decompression, parsing) and writing (compression, checksums) spend their time in C
code that releases the GIL, so on two threads they overlap with each other and with encoding.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from types import TracebackType

_END = object()


class Ahead[T]:
    """`items`, produced on a thread up to `depth` ahead; its errors surface here, in order.

    The thread starts at once, not at the first read, so a caller that must still wait for
    something else gets its first items read meanwhile. Leaving the `with` block stops the
    thread (and lets go of what it had read) wherever the caller stopped reading."""

    def __init__(self, items: Iterator[T], depth: int = 2) -> None:
        self._queue: queue.Queue = queue.Queue(depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._produce, args=(items,), daemon=True, name="ahead"
        )
        self._thread.start()

    def _produce(self, items: Iterator[T]) -> None:
        try:
            for item in items:
                if self._stop.is_set():
                    return
                self._queue.put((item, None))
        except BaseException as e:  # handed to the consumer, raised where it reads
            self._queue.put((_END, e))
            return
        self._queue.put((_END, None))

    def __iter__(self) -> Iterator[T]:
        while True:
            item, error = self._queue.get()
            if error is not None:
                raise error
            if item is _END:
                return
            yield item

    def __enter__(self) -> Ahead[T]:
        return self

    def __exit__(
        self, kind: type | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._stop.set()
        while self._thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                self._queue.get_nowait()
            except queue.Empty:
                self._thread.join(0.01)
