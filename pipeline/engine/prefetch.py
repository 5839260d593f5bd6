"""Run an iterator in a background thread, a bounded number of items ahead of its consumer.

The worker decodes the next samples (JPEG and mp4 decoding release the GIL) while the model runs on
the current one, so the accelerator does not wait for decoding, and memory stays bounded by ``depth``.
"""

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
_END = object()


def background(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """Yield ``items`` as a background thread produces them, at most ``depth`` ahead.

    An exception raised by ``items`` is re-raised here, at the point the consumer reaches it. Leaving the
    loop early stops the producer at its next item.
    """
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(value) -> bool:
        while not stop.is_set():
            try:
                buffer.put(value, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
        except BaseException as error:  # handed to the consumer, who re-raises it
            put((None, error))
            return
        put((_END, None))

    thread = threading.Thread(target=produce, name="prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, error = buffer.get()
            if error is not None:
                raise error
            if item is _END:
                return
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)
