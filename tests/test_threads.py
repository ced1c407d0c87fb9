"""util/threads.py: producing items on a thread ahead of their consumer."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from util.threads import Ahead


def test_ahead_starts_producing_before_the_first_item_is_asked_for() -> None:
    first = threading.Event()

    def items() -> Iterator[int]:
        first.set()
        yield from range(5)

    with Ahead(items()) as ahead:
        assert first.wait(5)  # nothing has been read from `ahead` yet
        assert list(ahead) == [0, 1, 2, 3, 4]


def test_ahead_raises_the_producers_error_after_the_items_before_it() -> None:
    def items() -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("bad item 3")

    got = []
    with Ahead(items()) as ahead, pytest.raises(ValueError, match="bad item 3"):
        for item in ahead:
            got.append(item)
    assert got == [1, 2]


def test_leaving_ahead_early_stops_its_producer() -> None:
    produced = []

    def endless() -> Iterator[int]:
        while True:
            produced.append(len(produced))
            yield produced[-1]

    with Ahead(endless(), depth=2) as ahead:
        assert next(iter(ahead)) == 0
    count = len(produced)
    time.sleep(0.2)
    assert len(produced) == count <= 5  # the item taken, the queue's two, one in hand, one more
    assert not [t for t in threading.enumerate() if t.name == "ahead" and t.is_alive()]
