"""Running a batch so that one bad file never stops the others, and a signal stops all.

Three guarantees, shared by ``master``, ``mix`` and ``analyze``:

* **Per-file isolation.** Every exception raised while one file is processed becomes
  that file's error record (one line, no traceback) and the batch goes on. In worker
  processes too: a worker that dies (killed, out of memory) fails the file it was
  working on, found by re-running the files it shared the pool with one at a time.
* **Signals stop the whole job.** SIGINT, SIGTERM and SIGHUP (the terminal or the SSH
  session closed) raise :class:`Stopped` in the main thread (of the parent and of every
  worker), so each ``atomic_output`` block removes its temporary file while the
  exception unwinds; the parent then terminates and joins its workers. The CLI exits
  with 128 + the signal number (130, 143, 129), as shells do.
  A worker whose parent dies, even by SIGKILL, gets SIGTERM from the kernel and
  stops the same way; the next run into a folder removes temp files a SIGKILL left.
* **Bounded parallelism.** ``--jobs`` is capped at the CPUs this process may use.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from automix.errors import AutomixError
from automix.io.paths import os_error_reason

#: Ctrl-C, a kill, and a hangup (the terminal or SSH session that started a batch went
#: away: without a handler, SIGHUP would end the run with its temporary files left).
#: A signal the run was started with ignored stays ignored (``nohup``, background jobs).
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))

#: How long terminated workers get to remove their temporary files before SIGKILL.
WORKER_STOP_TIMEOUT_S = 10.0
#: How often a worker checks that its parent is still there (see _watch_parent).
PARENT_POLL_S = 1.0

BUG_NOTE = "this is a bug in automix, please report it"


class Stopped(BaseException):
    """A stop signal arrived (:data:`STOP_SIGNALS`): stop everything, clean up while unwinding.

    A ``BaseException`` (like ``KeyboardInterrupt``) so that per-file ``except
    Exception`` handlers do not swallow it, while ``except BaseException`` cleanups
    (``atomic_output``) still run.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = int(signum)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name


# --- errors -> one line --------------------------------------------------------------

def describe_error(error: BaseException, subject: str | os.PathLike | None = None) -> str:
    """One line for the user: what went wrong with ``subject`` (a file, usually).

    ``AutomixError`` messages are already worded for people and kept as they are; system
    errors get their reason in plain words; anything else is a defect in automix and
    says so.
    """
    where = f"{subject}: " if subject is not None else ""
    if isinstance(error, AutomixError):
        text = str(error)
        return text if subject is None or str(subject) in text or Path(str(subject)).name in text else where + text
    if isinstance(error, MemoryError):
        return f"{where}out of memory"
    if isinstance(error, OSError):
        reason = os_error_reason(error) if error.errno else (str(error) or type(error).__name__)
        name = error.filename if error.filename is not None else subject
        return f"{name}: {reason}" if name is not None else reason
    text = " ".join(str(error).split()) or "no message"
    if type(error).__name__ == "LibsndfileError" or "sndfile" in type(error).__module__:
        # libsndfile reports a failed write ("System error.") without its errno.
        return f"{where}the audio library failed: {text} (disk full or unwritable folder?)"
    return f"{where}internal error ({type(error).__name__}: {text}); {BUG_NOTE}"


def error_record(error: BaseException, subject) -> dict:
    """``{"status": "error", "error": one line}``; the traceback too, on stderr, with
    ``AUTOMIX_DEBUG=1``."""
    debug_traceback(error)
    return {"status": "error", "error": describe_error(error, subject)}


def debug_traceback(error: BaseException) -> None:
    """Print ``error``'s traceback on stderr if ``AUTOMIX_DEBUG=1`` (for developers;
    users get one line)."""
    if os.environ.get("AUTOMIX_DEBUG") == "1" and not isinstance(error, AutomixError):
        import traceback

        traceback.print_exception(type(error), error, error.__traceback__)


# --- signals -------------------------------------------------------------------------


def _ignore(signum, frame) -> None:
    """Swallow a signal. A Python no-op rather than SIG_IGN: a signal that arrived just
    before the switch still finds a handler (with SIG_IGN, Python prints "Signal N
    ignored due to race condition")."""


def _ignore_further_signals() -> None:
    # Further signals while unwinding would interrupt the cleanup itself; it is bounded
    # (WORKER_STOP_TIMEOUT_S).
    for sig in STOP_SIGNALS:
        signal.signal(sig, _ignore)


def _raise_stopped(signum, frame) -> None:
    _ignore_further_signals()
    raise Stopped(signum)


def install_stop_handlers() -> None:
    """In the main process: the :data:`STOP_SIGNALS` raise :class:`Stopped`.

    A signal the process was started with ignored stays ignored (a shell runs
    background jobs with SIGINT ignored, so Ctrl-C meant for the foreground job does
    not stop them), as Python itself does for SIGINT.
    """
    for sig in STOP_SIGNALS:
        if signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, _raise_stopped)


_IN_JOB = False
_STOPPED_BY: int | None = None  # the stop signal a worker received, once it has


def _worker_signal(signum, frame) -> None:
    global _STOPPED_BY
    # A second signal (Ctrl-C reaches the worker, then the parent's SIGTERM follows)
    # must not interrupt the cleanup the first one started.
    _ignore_further_signals()
    _STOPPED_BY = signum
    if _IN_JOB:
        raise Stopped(signum)  # unwinds the job: atomic_output removes its temp file
    os._exit(128 + signum)  # idle: nothing to clean up


def _worker_init(parent_pid: int | None = None) -> None:
    for sig in STOP_SIGNALS:
        if signal.getsignal(sig) is not signal.SIG_IGN:  # inherited from the parent
            signal.signal(sig, _worker_signal)
    if parent_pid is not None:
        _stop_with_parent(parent_pid)
        _watch_parent(parent_pid)
    # The files already use every core, one per worker: threads inside a file would only
    # compete with the other workers (the one thread setting, see automix.measure.loudness).
    os.environ["AUTOMIX_THREADS"] = "1"
    from automix.measure import loudness

    loudness.THREADS = 1
    # Forked while the parent held these signals blocked (see _submit): a signal that
    # arrived in between is pending and is delivered now, to the handler above.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def _stop_with_parent(parent_pid: int) -> None:
    """Have the kernel send this worker SIGTERM when its parent dies, even by SIGKILL
    (Linux ``PR_SET_PDEATHSIG``): it then removes its temp file and exits instead of
    finishing its file, and lingering, for nobody."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the parent's own cleanup still applies
        return
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(128 + signal.SIGTERM)


def _watch_parent(parent_pid: int) -> None:
    """Check every ``PARENT_POLL_S`` that the parent is still there; if not, stop as its
    death signal would (SIGTERM to this worker), and leave outright if that does not
    end it within ``WORKER_STOP_TIMEOUT_S``.

    Where ``PR_SET_PDEATHSIG`` exists this is the second line: a worker of a killed batch
    was once found idle a quarter of an hour later, its signal handled but lost. Elsewhere
    (macOS, BSD) it is the only one.
    """

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_POLL_S)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(WORKER_STOP_TIMEOUT_S)
        os._exit(128 + signal.SIGTERM)

    threading.Thread(target=watch, name="automix-parent-watch", daemon=True).start()


def _submit(pool: ProcessPoolExecutor, fn: Callable, args: tuple):
    """``pool.submit`` with the stop signals held back: submitting may fork a worker, and a
    signal handled half-way through would leave a worker the pool does not know of."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        return pool.submit(_call_in_worker, fn, args)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def _call_in_worker(fn: Callable, args: tuple):
    global _IN_JOB
    _IN_JOB = True
    try:
        return fn(*args)
    except Stopped as stop:
        # The job's cleanups ran while Stopped propagated; leave now rather than
        # take the next file from the queue.
        os._exit(stop.exit_code)
    finally:
        _IN_JOB = False
        if _STOPPED_BY is not None:
            # The signal came, but its Stopped never reached here: raised where Python
            # swallows exceptions (a __del__, a weakref callback: "Exception ignored
            # in ..."). The job ended anyway; leave as the signal asked, never idle on.
            os._exit(128 + _STOPPED_BY)


# --- workers -------------------------------------------------------------------------


def available_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def cap_jobs(requested: int, files: int) -> tuple[int, str | None]:
    """Workers to start, and a note if ``requested`` was more than the CPUs."""
    cpus = available_cpus()
    note = None
    if requested > cpus:
        note = f"--jobs {requested} capped at {cpus}, the number of CPUs available"
    return max(1, min(requested, cpus, max(files, 1))), note


def _new_pool(workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=workers, initializer=_worker_init, initargs=(os.getpid(),))


def terminate_pool(pool: ProcessPoolExecutor) -> None:
    """Stop every worker: SIGTERM (they clean up and exit), then SIGKILL stragglers."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for process in processes:
        try:
            process.terminate()
        except (OSError, ValueError, AttributeError):
            pass
    deadline = time.monotonic() + WORKER_STOP_TIMEOUT_S
    for process in processes:
        try:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join(2.0)
        except (OSError, ValueError, AssertionError, AttributeError):
            pass
    pool.shutdown(wait=True, cancel_futures=True)


def run_batch(fn: Callable[..., dict], arguments: Sequence[tuple], labels: Sequence[str], workers: int = 1) -> Iterator[tuple[int, dict]]:
    """Run ``fn(*arguments[i])`` for every i; yield ``(i, record)`` in input order.

    ``fn`` returns a record (a dict with a ``status``); any exception it raises becomes
    an error record for ``labels[i]``. With ``workers > 1`` the calls run in worker
    processes (``fn`` and its arguments must pickle). A worker that dies fails only the
    file it was processing: the files that were in flight with it are re-run one at a
    time, and the one that kills its worker again is reported.

    :class:`Stopped` (and ``KeyboardInterrupt``) propagate after every worker has been
    terminated and joined.
    """
    count = len(arguments)
    if workers <= 1 or count <= 1:
        for index, args in enumerate(arguments):
            try:
                yield index, fn(*args)
            except Exception as error:  # noqa: BLE001 - one file's failure is its record
                yield index, error_record(error, labels[index])
        return

    pending = deque(range(count))
    alone: deque[int] = deque()  # suspects of a crash, re-run one at a time
    ran_alone: set[int] = set()
    results: dict[int, dict] = {}
    in_flight: dict = {}
    next_out = 0
    pool = _new_pool(workers)
    inline = False  # no worker could be started: run the rest in this process

    def start(index: int) -> None:
        nonlocal pool, inline
        for _ in range(2):
            if inline:
                break
            try:
                in_flight[_submit(pool, fn, arguments[index])] = index
                return
            except BrokenProcessPool:  # a worker died while idle: a fresh pool, once
                terminate_pool(pool)
                pool = _new_pool(workers)
            except OSError:  # fork failed (process or memory limits)
                inline = True
        inline = True
        try:
            results[index] = fn(*arguments[index])
        except Exception as error:  # noqa: BLE001
            results[index] = error_record(error, labels[index])

    try:
        while next_out < count:
            if alone:
                if not in_flight:
                    index = alone.popleft()
                    ran_alone.add(index)
                    start(index)
            else:
                while pending and len(in_flight) < workers:
                    start(pending.popleft())
                    if inline:
                        break  # report this one before running the next
            if in_flight:
                done, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
                broken = []
                for future in done:
                    index = in_flight.pop(future)
                    try:
                        results[index] = future.result()
                    except BrokenProcessPool:
                        broken.append(index)
                    except Exception as error:  # noqa: BLE001 - e.g. a result that does not pickle
                        results[index] = error_record(error, labels[index])
                if broken:
                    # Every other call in flight fails the same way: collect them too.
                    for future in list(in_flight):
                        index = in_flight.pop(future)
                        try:
                            results[index] = future.result()
                        except BrokenProcessPool:
                            broken.append(index)
                        except Exception as error:  # noqa: BLE001
                            results[index] = error_record(error, labels[index])
                    terminate_pool(pool)
                    pool = _new_pool(workers)
                    for index in sorted(broken):
                        if index in ran_alone or len(broken) == 1:
                            results[index] = {"status": "error", "error": (
                                f"{labels[index]}: the worker process stopped while working on it "
                                "(killed, or out of memory); nothing was written")}
                        else:
                            alone.append(index)
            while next_out in results:
                yield next_out, results.pop(next_out)
                next_out += 1
    except BaseException:
        terminate_pool(pool)
        raise
    pool.shutdown(wait=True)
