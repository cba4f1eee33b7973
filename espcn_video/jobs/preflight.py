"""Worker preflight: before any task is submitted, ask every Dask worker whether it can do the work.

A task that cannot open its input or find ffmpeg on a remote worker fails there, is retried,
and ends as a traceback far from its cause; a worker without the package cannot even unpickle
the task. One cheap call per worker turns all of that into one line naming the worker.

`probe_worker` runs on the workers and is shipped by value (cloudpickle), so it must use the
standard library only at module level: it has to run where `espcn_video` does not import.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

from espcn_video.errors import WorkerSetupError

PREFLIGHT_TIMEOUT_S = 60.0  # a fresh worker imports torch for the package check: seconds on a busy host


def probe_worker(inputs: list[str], out_dirs: list[str]) -> list[str]:
    """On a worker: what it lacks for these inputs and output folders, one short phrase each."""
    import importlib
    import os
    import tempfile

    missing: list[str] = []
    cwd = os.getcwd()
    for path in inputs:
        where = "" if os.path.isabs(path) else f" (relative to the worker's folder {cwd})"
        if not os.path.isfile(path):
            missing.append(f"no input file {path}{where}")
        elif not os.access(path, os.R_OK):
            missing.append(f"input {path} is not readable{where}")
    for folder in out_dirs:
        where = "" if os.path.isabs(folder) else f" (relative to the worker's folder {cwd})"
        if not os.path.isdir(folder):
            missing.append(f"no output folder {folder}{where}")
            continue
        try:  # a real write: access() says yes to root on a read-only export or a squashed NFS
            fd, name = tempfile.mkstemp(prefix=".espcn-video-preflight-", dir=folder)
            os.close(fd)
            os.unlink(name)
        except OSError as exc:
            missing.append(f"output folder {folder} is not writable ({exc.strerror}){where}")
    try:
        for module in ("espcn_video.jobs.chunked", "espcn_video.jobs.batch"):  # what the tasks unpickle into
            importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - any import failure is the finding
        missing.append(f"the espcn_video package does not import ({type(exc).__name__}: {exc})")
        return missing
    try:
        from espcn_video.ffmpeg.locate import locate_ffmpeg

        locate_ffmpeg()
    except Exception as exc:  # noqa: BLE001 - FFmpegNotFound, or a binary that does not run
        missing.append(f"no usable ffmpeg ({exc})")
    return missing


def _worker_addresses(client: Any, timeout_s: float) -> list[str]:
    workers = sorted(client.nthreads())
    if workers:
        return workers
    try:  # a scheduler started a moment ago may still be waiting for its workers
        client.wait_for_workers(1, timeout=timeout_s)
    except Exception as exc:  # TimeoutError, or a lost scheduler connection
        raise WorkerSetupError(
            f"no Dask worker joined the scheduler within {timeout_s:g} s ({type(exc).__name__})"
        ) from exc
    return sorted(client.nthreads())


def _probe_one(client: Any, address: str, inputs: list[str], out_dirs: list[str], answers: dict[str, Any]) -> None:
    try:
        result = client.run(probe_worker, inputs, out_dirs, workers=[address], on_error="return")
        answers[address] = result.get(address, RuntimeError("the worker left before it answered"))
    except Exception as exc:  # noqa: BLE001 - reported per worker
        answers[address] = exc


def check_workers(client: Any, inputs: list[str], out_dirs: list[str], timeout_s: float = PREFLIGHT_TIMEOUT_S) -> int:
    """Raise WorkerSetupError naming every worker that lacks an input, a writable output folder,
    ffmpeg or the package; return the number of workers checked.

    Paths are checked as given, as the tasks will open them: a relative path resolves against
    each worker's own working folder.
    """
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    workers = _worker_addresses(client, timeout_s)
    answers: dict[str, Any] = {}
    # One daemon thread per worker: a worker that never answers costs the timeout, not a hang,
    # and cannot keep the interpreter from exiting.
    threads = [
        threading.Thread(
            target=_probe_one, args=(client, w, inputs, out_dirs, answers), name=f"espcn-preflight-{w}", daemon=True
        )
        for w in workers
    ]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout_s
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    problems = []
    for w in workers:
        answer = answers.get(w)
        if w not in answers:
            problems.append(f"{w}: no answer within {timeout_s:g} s")
        elif isinstance(answer, BaseException):
            problems.append(f"{w}: the check failed ({type(answer).__name__}: {answer})")
        elif answer:
            problems.append(f"{w}: " + "; ".join(answer))
    if problems:
        raise WorkerSetupError(
            f"{len(problems)} of {len(workers)} Dask workers cannot run the tasks: " + " | ".join(problems)
        )
    return len(workers)
