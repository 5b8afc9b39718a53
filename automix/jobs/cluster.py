"""Run a batch's files on a Dask distributed cluster (``automix master --cluster``).

The user starts the cluster (``dask scheduler``, then ``dask worker ADDRESS`` on each
machine, with automix installed there); automix connects to the scheduler as a client,
submits one task per file and handles the results as they finish, in this process: the
progress bar, the per-file lines, the manifest. The files are the same bytes as a local
run's: each task is the same :func:`automix.jobs.master_files.master_job`, run on one
core as a ``-j`` worker runs it, and every worker must run this automix version
(checked when connecting).

Failures:

* a worker that dies or is lost mid-file: the scheduler gives its tasks to other
  workers (up to ``distributed.scheduler.allowed-failures`` deaths per task, 3 by
  default; then the file fails with a one-line reason). A file is only ever written
  whole (``atomic_output`` locally, :func:`automix.io.remote.upload_atomic` for URLs),
  and the client writes its record once, when its result arrives, so every file is
  reported exactly once whatever ran twice;
* a task whose code raised (``master_job`` turns every per-file failure into a record,
  so this is a worker that cannot unpickle a task, for instance): retried once
  (:data:`TASK_RETRIES`), then failed with the reason;
* a scheduler that cannot be reached: one line and exit 2 before any audio is read,
  after at most :data:`CONNECT_TIMEOUT_S`.

``distributed`` is imported here only when ``--cluster`` is used, so ``automix --help``
stays fast, and its absence is one clear error naming ``pip install "automix[cluster]"``.
"""

from __future__ import annotations

import gc
import logging
import os
import socket
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass

from automix import __version__
from automix.errors import AutomixError
from automix.io.remote import INSTALL_HINT

#: Environment variable naming the scheduler when ``--cluster`` is not given.
CLUSTER_ENV = "AUTOMIX_CLUSTER"
#: Seconds to wait for the scheduler to answer before giving up (exit 2).
CONNECT_TIMEOUT_S = 5.0
#: Re-runs of a task whose code raised. ``master_job`` never raises for a file's own
#: failure, so an exception here is the environment (a worker without automix, a
#: transient error unpickling); one retry on another worker is enough to tell.
TASK_RETRIES = 1
#: A temp file a worker on another machine is writing carries that machine's process id,
#: meaningless here: with remote workers, a leftover counts as stale only after an hour
#: without a write (a render writes continuously).
REMOTE_STALE_PART_AGE_S = 3600.0
#: The default port of ``dask scheduler``.
DEFAULT_PORT = 8786


def cluster_address(option: str | None) -> str | None:
    """``--cluster``, else ``$AUTOMIX_CLUSTER``, else None (run locally)."""
    return option or os.environ.get(CLUSTER_ENV) or None


def require_distributed(what: str = "--cluster"):
    """Import ``distributed`` (and check fsspec), or raise the one-line install hint."""
    try:
        import distributed
        import fsspec  # noqa: F401 - URLs on the workers need it too
    except ImportError:
        raise AutomixError(f"{what} needs Dask distributed and fsspec, which are not installed: {INSTALL_HINT}") from None
    return distributed


def _host_port(address: str) -> tuple[str, int]:
    """``tcp://host:port``, ``tls://host:port`` or ``host[:port]`` -> (host, port)."""
    rest = address.split("://", 1)[1] if "://" in address else address
    rest = rest.rstrip("/")
    if rest.startswith("["):  # [IPv6]:port
        host, _, port = rest[1:].partition("]")
        port = port.lstrip(":")
    else:
        host, _, port = rest.rpartition(":") if ":" in rest else (rest, "", "")
    if not host:
        raise AutomixError(f"--cluster {address}: expected a scheduler address like tcp://HOST:{DEFAULT_PORT}")
    try:
        number = int(port) if port else DEFAULT_PORT
    except ValueError:
        raise AutomixError(f"--cluster {address}: {port!r} is not a port number") from None
    if not 0 < number < 65536:
        raise AutomixError(f"--cluster {address}: port {number} is out of range")
    return host, number


def _normalised(address: str) -> str:
    host, port = _host_port(address)
    scheme = address.split("://", 1)[0] if "://" in address else "tcp"
    return f"{scheme}://{host}:{port}" if ":" not in host else f"{scheme}://[{host}]:{port}"


@contextmanager
def _quiet_client_errors():
    """Keep Dask's own logging and a failed Client's clean-up noise ("Exception ignored
    in Client.__del__") off the user's terminal: the failure is reported as one line."""
    logger = logging.getLogger("distributed")
    level = logger.level
    hook = sys.unraisablehook
    logger.setLevel(logging.CRITICAL)
    sys.unraisablehook = lambda unraisable: None
    try:
        yield
    finally:
        gc.collect()  # a half-made Client's __del__ runs now, under the quiet hook
        sys.unraisablehook = hook
        logger.setLevel(level)


def connect(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> ClusterRunner:
    """Connect to the Dask scheduler at ``address``; a runner for its workers.

    Raises
    ------
    AutomixError
        Without the ``cluster`` extra; for an address that does not parse, a scheduler
        that cannot be reached or does not answer within ``timeout_s``; a worker that
        cannot run automix or runs another version of it.
    """
    distributed = require_distributed(f"--cluster {address}")
    host, port = _host_port(address)
    # A plain TCP connection first: refused, unknown host and unreachable are told apart
    # in plain words and quickly, where the Dask client would retry until its timeout.
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except socket.gaierror:
        raise AutomixError(f"--cluster {address}: unknown host {host!r}") from None
    except TimeoutError:
        raise AutomixError(f"--cluster {address}: no answer within {timeout_s:g} s; is `dask scheduler` running there, "
                           "and the port open?") from None
    except OSError as error:
        reason = "connection refused" if isinstance(error, ConnectionRefusedError) else (error.strerror or str(error))
        raise AutomixError(f"--cluster {address}: {reason}; start a scheduler with `dask scheduler` (it listens on "
                           f"port {DEFAULT_PORT}) and give its address") from None
    with _quiet_client_errors():
        try:
            client = distributed.Client(_normalised(address), timeout=f"{timeout_s}s", set_as_default=False)
        except Exception as error:  # noqa: BLE001 - anything from a peer that is not a Dask scheduler
            text = " ".join(str(error).split())[:200] or type(error).__name__
            raise AutomixError(f"--cluster {address}: no Dask scheduler answered within {timeout_s:g} s ({text})") from None
    try:
        workers = client.run(_worker_info)
    except Exception as error:  # noqa: BLE001 - a worker that cannot import automix, mostly
        client.close()
        text = " ".join(str(error).split())[:200] or type(error).__name__
        raise AutomixError(f"--cluster {address}: a worker cannot run automix ({type(error).__name__}: {text}); install "
                           f"automix {__version__} on every worker: {INSTALL_HINT}") from None
    other = {w: info["automix"] for w, info in workers.items() if info["automix"] != __version__}
    if other:
        client.close()
        worker, version = next(iter(other.items()))
        raise AutomixError(f"--cluster {address}: worker {worker} runs automix {version}, this is {__version__}; the "
                           "masters would differ: install the same version everywhere")
    local = all(info["host"] == socket.gethostname() for info in workers.values())
    # "Couldn't gather 1 keys, rescheduling" when a worker dies holding a finished file is
    # Dask doing its job (the file is mastered again elsewhere); automix reports each
    # file itself, so only the client's errors reach the terminal.
    logging.getLogger("distributed.client").setLevel(logging.ERROR)
    return ClusterRunner(client, workers=len(workers), stale_part_age_s=0.0 if local else REMOTE_STALE_PART_AGE_S)


def _worker_info() -> dict:
    """Run on every worker when connecting: its automix version and host name."""
    return {"automix": __version__, "host": socket.gethostname()}


def _identity(value):
    """A task holding a value shared by every file's task (see ClusterRunner)."""
    return value


def _run_task(fn: Callable[..., dict], *args) -> dict:
    """One file on a worker, on one core as a ``-j`` worker process runs it: the
    cluster's parallelism is across files (the one thread setting, see
    :mod:`automix.measure.loudness`)."""
    os.environ["AUTOMIX_THREADS"] = "1"
    from automix.measure import loudness

    loudness.THREADS = 1
    return fn(*args)


@dataclass
class ClusterRunner:
    """Runs a batch's calls as Dask tasks; yields ``(index, record)`` as they finish.

    Attributes
    ----------
    client : distributed.Client
    workers : int
        Workers connected when the runner was made (0: the files wait for one).
    stale_part_age_s : float
        How old a leftover temp file must be before the client removes it (see
        :data:`REMOTE_STALE_PART_AGE_S`).
    """

    client: object
    workers: int = 0
    stale_part_age_s: float = 0.0

    def __call__(self, fn: Callable[..., dict], arguments: Sequence[tuple], labels: Sequence[str]) -> Iterator[tuple[int, dict]]:
        from distributed import as_completed

        if not arguments:
            return
        # An argument every call shares (the settings, the options, the list of inputs
        # an output must never overwrite) travels once, as a task of its own, not once
        # per file. A task, not scattered data: if the worker holding it dies, the
        # scheduler recomputes it from the graph.
        shared = {}
        for position, value in enumerate(arguments[0]):
            if len(arguments) > 1 and all(args[position] is value for args in arguments):
                shared[position] = self.client.submit(_identity, value, pure=False)
        # one map call, not a submit per file: a catalogue's tens of thousands of tasks
        # reach the scheduler in one message
        columns = [[shared[position]] * len(arguments) if position in shared else [args[position] for args in arguments]
                   for position in range(len(arguments[0]))]
        submitted = self.client.map(_run_task, [fn] * len(arguments), *columns, pure=False, retries=TASK_RETRIES)
        futures = {future: index for index, future in enumerate(submitted)}
        try:
            # with_results: each result is fetched the moment its task ends, not when the
            # caller gets to it; a result still held by a worker that dies would be
            # computed again (the same bytes, but the work twice)
            for future, result in as_completed(list(futures), with_results=True, raise_errors=False, loop=self.client.loop):
                index = futures.pop(future)
                record = self._record(future, result, labels[index])
                future.release()
                yield index, record
        finally:
            with suppress(Exception):  # stopped early (a signal, an error): nothing more to run
                self.client.cancel(list(futures) + list(shared.values()))

    @staticmethod
    def _record(future, result, label: str) -> dict:
        from distributed import KilledWorker

        from automix.jobs.safety import error_record

        if future.cancelled():
            return {"status": "error", "error": f"{label}: the cluster dropped it (scheduler stopped?); nothing was written"}
        if future.status != "error":
            return result
        error = future.exception()
        if isinstance(error, KilledWorker):
            return {"status": "error", "error": f"{label}: the cluster's workers kept dying while working on it "
                                                 "(killed, or out of memory); nothing was written"}
        return error_record(error, label)

    def close(self) -> None:
        with suppress(Exception), _quiet_client_errors():
            self.client.close()
