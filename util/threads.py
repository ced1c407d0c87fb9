"""Run the producer of an iterator on a thread, a few items ahead of its consumer.

Reading (decompression, parsing) and writing (compression, checksums) spend their time in C
code that releases the GIL, so on two threads they overlap with each other and with encoding.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

_END = object()


def ahead[T](items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """`items`, produced on a thread up to `depth` ahead; its errors surface here, in order."""
    q: queue.Queue = queue.Queue(depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                q.put((item, None))
        except BaseException as e:  # handed to the consumer, raised where it reads
            q.put((_END, e))
            return
        q.put((_END, None))

    thread = threading.Thread(target=produce, daemon=True, name="ahead")
    thread.start()
    try:
        while True:
            item, error = q.get()
            if error is not None:
                raise error
            if item is _END:
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(0.01)
