"""Ctrl-C (and the CLI's SIGTERM) between training steps, never inside one.

A checkpoint is only exact if it is saved between two steps: the patch sampler's RNG has drawn
the next batch, or Adam has updated some of the weights, long before the step counter moves on,
and a checkpoint saved from the middle of a step resumes on different batches (or from half an
update). `StepBoundary` holds a signal whose Python handler unwinds the loop (SIGINT's
KeyboardInterrupt, cli.common's Terminated on SIGTERM) while a step runs and delivers it when
the step is done, so the `except KeyboardInterrupt` that saves the checkpoint always sees the
state after a whole step. Outside a step (validation, progress, a timed save) a signal acts at
once, as before, and so does a second one during a step (a user who insists). The handlers are
swapped once per run, in the main thread only (signals reach no other); a step costs two
attribute writes.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any

HELD_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM") if hasattr(signal, name))


class StepBoundary:
    """`with StepBoundary() as boundary:` around a training loop and `with boundary.step:` around
    each step (everything from drawing its batch to counting it)."""

    def __init__(self) -> None:
        self.busy = False
        self.held: list[tuple[Any, int]] = []
        self.saved: dict[int, Any] = {}
        self.step = _Step(self)

    def __enter__(self) -> StepBoundary:
        if threading.current_thread() is threading.main_thread():
            for signum in HELD_SIGNALS:
                handler = signal.getsignal(signum)
                if callable(handler):  # a Python handler that may raise into the loop (not SIG_DFL/SIG_IGN)
                    self.saved[signum] = handler
                    signal.signal(signum, self._holding(handler))
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self.saved.items():
            signal.signal(signum, handler)
        self.saved.clear()

    def _holding(self, handler: Any) -> Any:
        def on_signal(signum: int, frame: FrameType | None) -> None:
            if self.busy and not self.held:
                self.held.append((handler, signum))
            else:  # between steps, or a second signal during one (a step that does not end): now
                handler(signum, frame)

        return on_signal

    def release(self) -> None:
        """The end of a step: deliver the first signal that came during it (its handler raises)."""
        self.busy = False
        if self.held:
            handler, signum = self.held[0]
            self.held.clear()
            handler(signum, None)


class _Step:
    """One step's context: signals held inside it, delivered on a clean exit."""

    def __init__(self, boundary: StepBoundary) -> None:
        self.boundary = boundary

    def __enter__(self) -> None:
        self.boundary.busy = True

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None:  # the step failed: that error goes on; a held signal has nothing to add
            self.boundary.busy = False
            self.boundary.held.clear()
            return
        self.boundary.release()
