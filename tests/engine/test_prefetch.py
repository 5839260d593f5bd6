"""background(): order kept, bounded look-ahead, errors re-raised where they happen, early exit stops it."""

import threading
import time

import pytest

from pipeline.engine.prefetch import background


def test_order_and_overlap():
    produced = []

    def slow():
        for i in range(5):
            time.sleep(0.02)
            produced.append(i)
            yield i

    start = time.perf_counter()
    out = []
    for item in background(slow(), depth=2):
        time.sleep(0.02)  # the consumer's work overlaps the producer's
        out.append(item)
    assert out == [0, 1, 2, 3, 4]
    assert time.perf_counter() - start < 0.19  # serial would take 0.2 s


def test_look_ahead_is_bounded():
    produced = []

    def numbers():
        for i in range(100):
            produced.append(i)
            yield i

    iterator = background(numbers(), depth=2)
    assert next(iterator) == 0
    time.sleep(0.1)
    assert len(produced) <= 4  # the item handed over, `depth` queued, and one waiting to be put
    iterator.close()


def test_errors_reach_the_consumer_in_order():
    def failing():
        yield 1
        raise OSError("truncated")

    got = []
    with pytest.raises(OSError, match="truncated"):
        for item in background(failing()):
            got.append(item)
    assert got == [1]


def test_early_exit_stops_the_producer():
    def endless():
        i = 0
        while True:
            yield i
            i += 1

    for item in background(endless()):
        if item == 3:
            break
    time.sleep(0.1)
    assert not any(t.name == "prefetch" and t.is_alive() for t in threading.enumerate())
