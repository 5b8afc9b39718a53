"""Overlap the stages of a streaming pass on the machine's cores, without changing a bit.

A streaming pass (read, process, measure, write) is a chain of stages, each holding its
own state and fed blocks in order. Running two stages in different threads overlaps
their work on two cores -- numpy, scipy.fft and libsndfile release the GIL in their
loops -- while each stage still sees the same blocks in the same order, so the output is
bit-identical to running them one after the other. Nothing here reorders or splits
blocks: only *who* runs a stage changes.

``threaded=False`` runs everything inline (what a ``-j N`` worker process gets when the
cores are already busy with other files; see ``automix.measure.loudness.THREADS``).

API
---
``ahead(items, threaded=True, depth=2) -> iterator``
    ``items`` produced in a worker thread, up to ``depth`` ahead of the consumer.
``Behind(consume, threaded=True, depth=2)``
    ``put(item)`` hands ``item`` to ``consume`` in a worker thread (in order);
    ``close()`` waits for the last one. A failure in ``consume`` is raised by the next
    ``put`` or by ``close``.
``Beside(function, threaded=True)``
    ``submit(*args) -> Future-like`` runs calls of ``function`` in order in one worker
    thread (``.result()`` waits); for a stage whose result the caller needs back, e.g.
    one detector working beside another on the same block.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

_DONE = object()
#: How long a blocked hand-over waits before checking whether the other side gave up.
_POLL_S = 0.1


def ahead(items: Iterable, threaded: bool = True, depth: int = 2) -> Iterator:
    """Yield ``items``, produced by a worker thread up to ``depth`` items ahead.

    Exceptions in the producer are raised here, in the consumer's thread, at the point
    where the failed item would have come. Closing the iterator early (``break``, an
    exception in the consumer) stops the producer at its next item.
    """
    if not threaded:
        yield from items
        return
    handover: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        iterator = iter(items)
        try:
            for item in iterator:
                if not _offer(handover, (item, None), stop):
                    return
            _offer(handover, (_DONE, None), stop)
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, raised there
            _offer(handover, (_DONE, error), stop)
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:  # a generator holding a file: closed in the thread that ran it
                close()

    worker = threading.Thread(target=produce, name="automix-ahead", daemon=True)
    worker.start()
    try:
        while True:
            item, error = handover.get()
            if error is not None:
                raise error
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
        worker.join()


class Behind:
    """Run ``consume(item)`` for each ``put`` item, in order, in a worker thread."""

    def __init__(self, consume: Callable[[object], None], threaded: bool = True, depth: int = 2):
        self._consume = consume
        self._threaded = threaded
        self._error: BaseException | None = None
        if threaded:
            self._handover: queue.Queue = queue.Queue(maxsize=depth)
            self._stop = threading.Event()
            self._worker = threading.Thread(target=self._run, name="automix-behind", daemon=True)
            self._worker.start()

    def put(self, item) -> None:
        if not self._threaded:
            self._consume(item)
            return
        self._raise_failure()
        if not _offer(self._handover, item, self._stop):
            self._raise_failure()

    def close(self) -> None:
        """Wait until every item was consumed; raise the consumer's failure, if any."""
        if self._threaded:
            _offer(self._handover, _DONE, self._stop)
            self._worker.join()
            self._raise_failure()

    def abandon(self) -> None:
        """Stop without waiting for the items still queued (the pass failed elsewhere)."""
        if self._threaded:
            self._stop.set()
            self._worker.join()

    def _run(self) -> None:
        while True:
            try:
                item = self._handover.get(timeout=_POLL_S)
            except queue.Empty:
                if self._stop.is_set():
                    return
                continue
            if item is _DONE or self._stop.is_set():  # abandoned: the queued items are dropped
                return
            try:
                self._consume(item)
            except BaseException as error:  # noqa: BLE001 - raised in the producer's thread
                self._error = error
                self._stop.set()
                return

    def _raise_failure(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error


class _Done:
    """A finished call, for the inline (unthreaded) case of :class:`Beside`."""

    def __init__(self, value):
        self._value = value

    def result(self):
        return self._value


class Beside:
    """Calls of ``function`` run in order in one worker thread; ``submit`` returns at once."""

    def __init__(self, function: Callable, threaded: bool = True):
        self._function = function
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="automix-beside") if threaded else None

    def submit(self, *args) -> Future | _Done:
        if self._pool is None:
            return _Done(self._function(*args))
        return self._pool.submit(self._function, *args)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def __del__(self):  # a limiter dropped half-way still lets its thread go
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=False)


def _offer(handover: queue.Queue, item, stop: threading.Event) -> bool:
    """Put ``item``, waiting while the queue is full; False if the other side stopped."""
    while not stop.is_set():
        try:
            handover.put(item, timeout=_POLL_S)
            return True
        except queue.Full:
            continue
    return False
