"""The Dask side of chunked runs and batch: a client to a scheduler or a local loopback cluster,
closed within a bound (its worker processes killed and reaped if it hangs), and one line per
failed task."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import tempfile
from collections.abc import Iterator
from typing import Any

from espcn_video.errors import EspcnVideoError, FFmpegError, StageError, UsageError

log = logging.getLogger(__name__)

TASK_RETRIES = 2  # for a task that raises; a batch task returns its file's own errors instead


CLOSE_TIMEOUT_S = 20.0


_WORKER_PROCESS_NAME = "Dask Worker process (from Nanny)"  # distributed.nanny.WorkerProcess


@contextlib.contextmanager
def open_client(scheduler: str | None, local_workers: int) -> Iterator[Any]:
    """A Dask client: to a running scheduler, or to a local cluster kept on loopback.

    The local cluster's scratch space lives in a temporary folder removed afterwards, and every
    worker process it started is gone when this returns, whatever state the workers were in.
    """
    try:
        import dask
        from dask.distributed import Client, LocalCluster
    except ImportError as exc:
        raise UsageError("chunked upscaling needs Dask: pip install 'espcn-video[distributed]'") from exc
    if scheduler:
        try:
            client = Client(scheduler, timeout="10s")
        except (OSError, TimeoutError) as exc:
            raise EspcnVideoError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from exc
        try:
            yield client
        finally:
            with contextlib.suppress(Exception):  # a scheduler gone meanwhile has nothing to close
                client.close(timeout=CLOSE_TIMEOUT_S)
        return
    # ignore_cleanup_errors: a worker killed mid-write may leave a file being removed twice.
    # The scheduler in this process makes a scratch folder too (from "temporary-directory", not from
    # local_directory): without the config both would leave /tmp/dask-scratch-space behind.
    with (
        tempfile.TemporaryDirectory(prefix="espcn-video-dask-", ignore_cleanup_errors=True) as scratch,
        dask.config.set({"temporary-directory": scratch}),
    ):
        cluster = LocalCluster(
            n_workers=local_workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            silence_logs=logging.ERROR,
            local_directory=scratch,
            preload=[__name__],  # dask_setup below, in every worker (one its nanny restarts too)
        )
        try:
            with Client(cluster) as client:
                try:
                    yield client
                except BaseException:
                    # A worker inside a chunk does not stop for a graceful close (its task thread is
                    # in native code or blocked on a pipe): kill it, so Ctrl-C and errors return at
                    # once. Its ffmpeg children see a broken pipe or EOF and exit; parts stay unpublished.
                    _kill_processes(_worker_processes(cluster))
                    raise
        finally:
            _shut_down(cluster)


def _worker_processes(cluster: Any) -> list[Any]:
    """The cluster's live worker processes and their children (ffmpeg), as psutil handles."""
    import psutil

    found = []
    for nanny in list(cluster.workers.values()):
        pid = getattr(nanny, "pid", None)
        with contextlib.suppress(psutil.Error, TypeError, ValueError):
            proc = psutil.Process(pid)
            found.append(proc)
            found.extend(proc.children(recursive=True))
    # A worker the nanny is still restarting is not in cluster.workers' pids yet.
    for child in multiprocessing.active_children():
        if child.name == _WORKER_PROCESS_NAME and child.pid is not None:
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(child.pid)
                found.append(proc)
                found.extend(proc.children(recursive=True))
    return found


def _kill_processes(procs: list[Any]) -> None:
    import psutil

    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.kill()  # psutil checks the create time: a reused pid is not ours and is left alone


def _shut_down(cluster: Any) -> None:
    """Close the cluster with a bound on the time; SIGKILL and reap whatever outlived the close.

    A graceful close asks each worker to stop and only then SIGKILLs it; a worker stuck at
    interpreter shutdown, or restarted by its nanny while the cluster closes, can escape that
    and outlive us holding our stderr, which hangs anyone reading it to EOF (pytest's capture).
    """
    import psutil

    before = _worker_processes(cluster)
    try:
        cluster.close(timeout=CLOSE_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - the kill below is the fallback
        log.warning("closing the local Dask cluster failed (%s); killing its workers", exc)
    left = [p for p in before + _worker_processes(cluster) if p.is_running()]
    _kill_processes(left)
    psutil.wait_procs(left, timeout=5.0)  # reaps our own children, waits out the others
    for child in multiprocessing.active_children():  # reaps the multiprocessing handles
        if child.name == _WORKER_PROCESS_NAME:
            child.join(timeout=1.0)


def is_crash(exc: BaseException) -> bool:
    """An ffmpeg killed by a signal (an encoder that aborts now and then, the kernel's OOM
    killer): worth running the task again, unlike an error that the input or the settings
    cause, which the same task would only meet again."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, FFmpegError):
            return cause.returncode < 0
        cause = cause.cause if isinstance(cause, StageError) else cause.__cause__
    return False


def _error_class_names(cls: type[BaseException] = EspcnVideoError) -> set[str]:
    names = {cls.__name__}
    for sub in cls.__subclasses__():
        names |= _error_class_names(sub)
    return names


class _ProjectErrorFilter(logging.Filter):
    """Drops the worker's "Compute Failed ... Traceback" record for the project's own errors.

    A chunk that raises one is run again (TASK_RETRIES), and the error that is left reaches the
    user once, as one line; the local workers share the command's stderr, where every attempt
    printed its traceback. Other exceptions (a bug) keep theirs.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not (isinstance(record.msg, str) and record.msg.startswith("Compute Failed")):
            return True
        args = record.args if isinstance(record.args, tuple) else ()
        text = str(args[3]) if len(args) > 3 else ""  # "Exception: %r", the exception's repr
        return not text.startswith(tuple(f"{name}(" for name in _error_class_names()))


def dask_setup(worker: Any) -> None:
    """Run in each worker of the local cluster as it starts (its `preload` names this module):
    installs _ProjectErrorFilter. Workers of a --scheduler keep their own logging."""
    target = logging.getLogger("distributed.worker")
    if not any(isinstance(f, _ProjectErrorFilter) for f in target.filters):
        target.addFilter(_ProjectErrorFilter())


def describe_task_error(exc: BaseException) -> str:
    """One line for a failed task: our errors as they are, Dask's and Python's named by type."""
    text = str(exc) if isinstance(exc, EspcnVideoError) else f"{type(exc).__name__}: {exc}"
    text = " ".join(text.split())  # KilledWorker's message runs over several lines
    return text if len(text) <= 400 else text[:397] + "..."
