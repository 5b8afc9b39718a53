"""A second process for the stages of a pass that threads cannot overlap.

Two threads of numpy on blocks of audio barely overlap: each operation on a block takes
15-70 us, and between operations the threads hand the GIL to each other. Measured on a
2-core machine, two threads running such operations took 0.6-0.9x the time of one after
the other, two processes 0.5x. So a pass with two independent halves -- the render and
the meters of what it wrote, the analyzer and the tonal and glue meters -- gives one of
them to a helper process.

The helper holds objects (a meter, a detector) that live in it from creation to the
last call: :meth:`Helper.hold` creates one there, :meth:`Held.send` runs a method
without waiting (in the order sent), :meth:`Held.call` and :meth:`Held.ask` give a
method's result. Arguments and results are pickled across (arrays as raw buffers, not
copied into the pickle), so the helper computes the bits this process would: which
process runs a stage never changes the output.

The helper is forked once, before the first pass starts any thread (forking beside
running threads is unsafe), and serves every pass of the run; it ends with its parent,
even one killed outright. Without it -- ``AUTOMIX_THREADS=1``, a ``-j N`` worker, a
platform other than Linux, threads already running -- :func:`helper` returns None and
the callers run every stage in their own process.
"""

from __future__ import annotations

import atexit
import itertools
import multiprocessing
import os
import pickle
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from automix.errors import AutomixError
from automix.io.overlap import Behind

#: Calls sent to one held object and not yet done, at most: bounds the blocks queued
#: when this process runs ahead of the helper.
SEND_DEPTH = 3
#: Pipe capacity asked for (Linux ``F_SETPIPE_SZ``; the default 64 KB would split every
#: block of audio into many hand-overs).
PIPE_BYTES = 1 << 20
_F_SETPIPE_SZ = 1031

_GONE = "the helper process stopped unexpectedly (out of memory?); AUTOMIX_THREADS=1 runs without it"


# --- the wire: a pickle, its arrays' buffers sent raw beside it -------------------------


def _pickled(message) -> tuple[bytes, list]:
    """The message as a pickle and its arrays' raw buffers (a PicklingError if it has
    something that cannot cross, e.g. a closure)."""
    buffers: list[pickle.PickleBuffer] = []
    try:
        data = pickle.dumps(message, protocol=5, buffer_callback=buffers.append)
    except (AttributeError, TypeError) as error:  # what pickle raises for local objects
        raise pickle.PicklingError(str(error)) from None
    return data, [buffer.raw() for buffer in buffers]


def _send(connection, message) -> None:
    _send_pickled(connection, *_pickled(message))


def _send_pickled(connection, data: bytes, raw: list) -> None:
    connection.send_bytes(pickle.dumps([part.nbytes for part in raw]))
    connection.send_bytes(data)
    for part in raw:
        connection.send_bytes(part)


def _receive(connection):
    return _unpickled(*_receive_parts(connection))


def _receive_parts(connection) -> tuple[bytes, list[bytearray]]:
    """One message's parts, all read (so the stream stays in step even if they cannot be
    unpickled)."""
    sizes = pickle.loads(connection.recv_bytes())
    data = connection.recv_bytes()
    buffers = [bytearray(size) for size in sizes]  # writable: the arrays may be changed in place
    for buffer in buffers:
        connection.recv_bytes_into(buffer)
    return data, buffers


def _unpickled(data: bytes, buffers: list[bytearray]):
    return pickle.loads(data, buffers=buffers)


# --- in the helper process -------------------------------------------------------------


def _serve(requests, replies, unused: tuple, parent_pid: int) -> None:
    for end in unused:  # the parent's ends: closed here, so each side sees the other go
        end.close()
    from automix.jobs.safety import STOP_SIGNALS, _stop_with_parent
    from automix.measure import loudness

    # The stop signals that reach the whole process group (Ctrl-C, a hangup): the parent
    # stops the run, the helper goes with it, without a traceback of its own. SIGTERM
    # (from a user, or the kernel when the parent dies) ends it at once: it holds no file
    # to clean up (the parent's CLI handler, inherited through fork, would raise a
    # traceback here)
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_DFL if sig == signal.SIGTERM else signal.SIG_IGN)

    _stop_with_parent(parent_pid)
    loudness.THREADS = 1  # one core each: the parent and the helper
    held: dict[int, Any] = {}
    while True:
        try:
            action, key, payload = _receive(requests)
        except (EOFError, OSError):  # the parent closed its end (or is gone)
            return
        try:
            if action == "make":
                factory, args = payload
                held[key], reply = factory(*args), None
            elif action == "run":
                function, args = payload
                reply = function(*args)
            elif action == "drop":
                held.pop(key, None)
                reply = None
            else:
                method, args, last = payload
                target = held.pop(key) if last else held[key]
                reply = getattr(target, method)(*args)
            outcome = (True, reply)
        except BaseException as error:  # noqa: BLE001 - raised in the parent, where the call was made
            outcome = (False, error)
        try:
            try:
                message = _pickled(outcome)
            except pickle.PicklingError:  # an unpicklable result or error: its words
                message = _pickled((False, AutomixError(f"{type(outcome[1]).__name__}: {outcome[1]}")))
            _send_pickled(replies, *message)
        except OSError:
            return


def same(held: Any) -> Any:
    """A factory for :meth:`Helper.hold`: the object itself, as pickled across."""
    return held


# --- in this process -------------------------------------------------------------------


class Helper:
    """One helper process (see the module docstring)."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("fork")
        requests_in, self._requests = context.Pipe(duplex=False)
        self._replies, replies_out = context.Pipe(duplex=False)
        for end in (requests_in, self._requests, self._replies, replies_out):
            _widen(end)
        self._process = context.Process(target=_serve, name="automix-helper", daemon=True,
                                        args=(requests_in, replies_out, (self._requests, self._replies), os.getpid()))
        self._process.start()
        requests_in.close()
        replies_out.close()
        self._lock = threading.Lock()  # one request (and its place in the reply order) at a time
        self._waiting: deque[Future] = deque()
        self._gone = False
        self._keys = itertools.count()
        self._reader = threading.Thread(target=self._read_replies, name="automix-helper-replies", daemon=True)
        self._reader.start()

    def hold(self, factory: Callable, *args) -> Held:
        """Create ``factory(*args)`` in the helper and return a handle to it."""
        key = next(self._keys)
        held = Held(self, key)
        held._pending.append(self._request("make", key, (factory, args)))
        return held

    def submit(self, function: Callable, *args) -> Future:
        """``function(*args)`` in the helper (a module-level function: it is pickled by
        name); its future."""
        return self._request("run", -1, (function, args))

    def _request(self, action: str, key: int, payload) -> Future:
        message = _pickled((action, key, payload))  # before taking a place in the reply order
        future: Future = Future()
        with self._lock:
            if self._gone:
                raise AutomixError(_GONE)
            self._waiting.append(future)
            try:
                _send_pickled(self._requests, *message)
            except OSError:
                self._waiting.remove(future)
                raise AutomixError(_GONE) from None
            except BaseException:  # a signal's exception half-way through: the stream is out of step
                self._waiting.remove(future)
                threading.Thread(target=self._break, daemon=True).start()  # the lock is ours until we return
                raise
        return future

    def _read_replies(self) -> None:
        while True:
            try:
                parts = _receive_parts(self._replies)
            except (EOFError, OSError):
                break
            try:
                future = self._waiting.popleft()
            except IndexError:  # given up (_break, after a signal) while this reply was on its way
                break
            try:
                ok, value = _unpickled(*parts)
            except Exception as error:  # noqa: BLE001 - e.g. an exception class that cannot be rebuilt
                ok, value = False, AutomixError(f"the helper's reply could not be read: {error}")
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
        self._break()

    def _break(self) -> None:
        """Give the helper up: every waiting request fails, and a new one is started next
        time (after a request was cut off half-way, the stream is out of step)."""
        with self._lock:
            self._gone = True
            while self._waiting:
                self._waiting.popleft().set_exception(AutomixError(_GONE))
            if not self._requests.closed:  # once: shutdown() may be closing it too
                self._requests.close()
        if self._process.is_alive():
            self._process.kill()

    def shutdown(self) -> None:
        """Let the helper finish what it was sent and end."""
        with self._lock:
            if not self._requests.closed:
                self._requests.close()
        self._process.join(5.0)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()


class Held:
    """An object living in the helper process (see :meth:`Helper.hold`)."""

    def __init__(self, owner: Helper, key: int) -> None:
        self._owner, self._key = owner, key
        self._pending: deque[Future] = deque()

    def send(self, method: str, *args) -> None:
        """Run ``method(*args)`` there, in order, without waiting for it; a failure is
        raised by a later ``send``, ``call`` or ``ask``."""
        self._pending.append(self._owner._request("call", self._key, (method, args, False)))
        while len(self._pending) > SEND_DEPTH:
            self._pending.popleft().result()

    def call(self, method: str, *args) -> Future:
        """``method(*args)`` there, in order; its future."""
        return self._owner._request("call", self._key, (method, args, False))

    def ask(self, method: str, *args, last: bool = False) -> Any:
        """``method(*args)`` there once everything sent before it ran, and its result;
        ``last``: the object is dropped there afterwards."""
        future = self._owner._request("call", self._key, (method, args, last))
        while self._pending:
            self._pending.popleft().result()
        return future.result()

    def drop(self) -> None:
        """Forget the object there (a pass that failed, or a finished detector)."""
        self._pending.clear()
        try:
            self._owner._request("drop", self._key, None)
        except AutomixError:  # gone: nothing is left there either
            pass


def _widen(connection) -> None:
    try:
        import fcntl

        fcntl.fcntl(connection.fileno(), _F_SETPIPE_SZ, PIPE_BYTES)
    except (ImportError, OSError):  # not Linux, or over the system's limit: the default works too
        pass


#: False: run every stage in this process, on threads (tests of that fallback set it).
ENABLED = True


def _fork_is_safe(platform: str, start_methods: list[str]) -> bool:
    """Linux only: macOS has ``fork`` but its system libraries (Accelerate, libdispatch)
    may crash in a child forked after they started; Windows has no ``fork``."""
    return platform.startswith("linux") and "fork" in start_methods


_FORK_IS_SAFE = _fork_is_safe(sys.platform, multiprocessing.get_all_start_methods())

_lock = threading.Lock()
_helper: tuple[int, Helper] | None = None  # (pid that started it, helper)


class Here:
    """An object held in this process, with :class:`Held`'s ``send``/``ask``/``drop``:
    what :func:`beside` gives when there is no helper. Sent calls run in order in a
    worker thread (``threaded``) or at once."""

    def __init__(self, held: Any, threaded: bool) -> None:
        self._held, self._threaded = held, threaded
        self._behind = Behind(self._run, threaded)

    def _run(self, call: tuple) -> None:
        method, args = call
        getattr(self._held, method)(*args)

    def send(self, method: str, *args) -> None:
        self._behind.put((method, args))

    def ask(self, method: str, *args, last: bool = False) -> Any:
        self._behind.close()  # everything sent before it ran (or raises what failed)
        if not last:
            self._behind = Behind(self._run, self._threaded)
        return getattr(self._held, method)(*args)

    def drop(self) -> None:
        self._behind.abandon()


def beside(factory: Callable, *args, threaded: bool) -> Held | Here:
    """``factory(*args)`` in the helper process if there is one, else here (its sent calls
    on a thread when ``threaded``): a stage that runs beside this process's own work."""
    remote = helper()
    return remote.hold(factory, *args) if remote is not None else Here(factory(*args), threaded)


def helper() -> Helper | None:
    """The run's helper process, started at the first call; None when this process is to
    use one core (``automix.measure.loudness.THREADS`` is 1), off Linux (see
    ``_FORK_IS_SAFE``), or when threads already run (call this before a pass starts them)."""
    global _helper
    from automix.measure import loudness

    if not ENABLED or loudness.THREADS < 2 or not _FORK_IS_SAFE:
        return None
    with _lock:
        if _helper is None or _helper[0] != os.getpid() or _helper[1]._gone:  # not one inherited through fork
            if threading.active_count() > 1:
                return None
            _helper = (os.getpid(), Helper())
            atexit.register(_helper[1].shutdown)
        return _helper[1]
