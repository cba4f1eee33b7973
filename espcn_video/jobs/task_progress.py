"""Frame counts from Dask tasks while they run, for chunked and batch progress.

Each task reports its frames written as a Dask event (worker.log_event) every half second; the
driver subscribes to the run's own topic and sums them with the frames of the tasks already done.
Events travel through the scheduler, so this works on a remote cluster with no shared files. A
task that restarts (a retry, a worker lost, a chunk's second seek) starts again from frame 0:
the driver keeps each task's highest count, so the total never goes back.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

REPORT_PERIOD_S = 0.5


class _FrameCounts(Protocol):
    frames_written: int


def new_topic() -> str:
    """A topic of this run only: two runs on one scheduler never read each other's counts."""
    return f"espcn-video-progress-{secrets.token_hex(6)}"


class TaskReporter:
    """The pipeline's on_progress in a task: sends (key, frames) to `topic`, at most every period.
    Outside a Dask worker (a task run in-process) it sends nothing."""

    def __init__(self, topic: str | None, key: str, period_s: float = REPORT_PERIOD_S) -> None:
        self.topic, self.key, self.period_s = topic, key, period_s
        self._last = -float("inf")
        self._worker: Any = None
        if topic is not None:
            try:
                from distributed import get_worker

                self._worker = get_worker()
            except (ImportError, ValueError):
                self._worker = None

    def __call__(self, counters: _FrameCounts) -> None:
        now = time.monotonic()
        if self._worker is None or now - self._last < self.period_s:
            return
        self._last = now
        try:
            self._worker.log_event(self.topic, {"key": self.key, "frames": counters.frames_written})
        except Exception:  # noqa: BLE001 - progress is best effort; the task's work is not
            self._worker = None


class TaskProgress:
    """The driver's side: the frames reported by running tasks, by key."""

    def __init__(self, client: Any, topic: str) -> None:
        self.client, self.topic = client, topic
        self._frames: dict[str, int] = {}
        self._lock = threading.Lock()
        client.subscribe_topic(topic, self._on_event)

    def _on_event(self, event: tuple[float, dict[str, Any]]) -> None:
        msg = event[1]
        with self._lock:
            key = str(msg["key"])
            self._frames[key] = max(self._frames.get(key, 0), int(msg["frames"]))

    def frames(self, keys: Iterable[str]) -> int:
        with self._lock:
            return sum(self._frames.get(k, 0) for k in keys)

    def close(self) -> None:
        try:
            self.client.unsubscribe_topic(self.topic)
        except Exception:  # noqa: BLE001 - a client closing anyway
            pass


def completed_while_ticking(futures: list[Any], tick: Callable[[], None], period_s: float = 0.25) -> Iterator[Any]:
    """Each future as it completes (like dask's as_completed), calling `tick` every period while
    none is ready, so that progress moves between completions."""
    from dask.distributed import as_completed

    pending = as_completed(futures)
    while not pending.is_empty():
        ready = pending.next_batch(block=False)
        yield from ready
        if not ready:
            tick()
            time.sleep(period_s)
