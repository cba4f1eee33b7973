"""Progress where no terminal is: key=value blocks like ffmpeg's `-progress`, or a plain line now and then.

`--progress FILE` (`-` is stderr) gets a block every `--stats-period` seconds (default 0.5, as
ffmpeg's `-stats_period`) and a last one ending in `progress=end`:

    frame=120
    total_frames=300          (an estimate from duration x rate, or N/A)
    fps=25.03
    out_time_us=4800000       (the last written frame's time in the input, or N/A)
    out_time=00:00:04.800000
    speed=1.00x               (seconds of video per second of wall time)
    elapsed_s=4.79
    eta_s=7.2
    progress=continue

When stderr is not a terminal (a job runner, nohup, a CI log) and neither `-q` nor `--progress`
is given, one plain line goes to stderr every 5 seconds instead, so a log shows the run moving.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TextIO, TypeVar

import click

from espcn_video.errors import UsageError

DEFAULT_PERIOD_S = 0.5  # ffmpeg's -stats_period
F = TypeVar("F", bound=Callable[..., Any])


def progress_options(func: F) -> F:
    """--progress FILE|- and --stats-period, the same in every command that reports progress."""
    func = click.option(
        "--stats-period",
        type=click.FloatRange(min=0.05),
        default=None,
        metavar="SECONDS",
        help="Progress period: default 0.5 s for --progress, 5 s for the plain lines a log gets.",
    )(func)
    return click.option(
        "--progress",
        "progress_path",
        default=None,
        metavar="FILE",
        help="Write key=value progress blocks (like ffmpeg's -progress) to FILE; '-' is stderr.",
    )(func)


LOG_LINE_PERIOD_S = 5.0


@dataclass
class ProgressState:
    frame: int
    total_frames: int | None
    out_time_s: float | None
    elapsed_s: float

    @property
    def fps(self) -> float:
        return self.frame / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def speed(self) -> float | None:
        if self.out_time_s is None or self.elapsed_s <= 0:
            return None
        return self.out_time_s / self.elapsed_s

    @property
    def eta_s(self) -> float | None:
        if self.total_frames is None or self.frame == 0 or self.frame > self.total_frames:
            return None
        return (self.total_frames - self.frame) / self.fps


def format_out_time(seconds: float) -> str:
    """ffmpeg's out_time: HH:MM:SS.microseconds."""
    us = round(seconds * 1e6)
    sign = "-" if us < 0 else ""
    us = abs(us)
    return (
        f"{sign}{us // 3_600_000_000:02d}:{us // 60_000_000 % 60:02d}:{us // 1_000_000 % 60:02d}.{us % 1_000_000:06d}"
    )


def format_block(state: ProgressState, ended: bool) -> str:
    def value(x: float | int | None, fmt: str) -> str:
        return "N/A" if x is None else format(x, fmt)

    out_us = None if state.out_time_s is None else round(state.out_time_s * 1e6)
    lines = [
        f"frame={state.frame}",
        f"total_frames={value(state.total_frames, 'd')}",
        f"fps={state.fps:.2f}",
        f"out_time_us={value(out_us, 'd')}",
        f"out_time={'N/A' if state.out_time_s is None else format_out_time(state.out_time_s)}",
        f"speed={'N/A' if state.speed is None else f'{state.speed:.2f}x'}",
        f"elapsed_s={state.elapsed_s:.2f}",
        f"eta_s={value(state.eta_s, '.1f')}",
        f"progress={'end' if ended else 'continue'}",
    ]
    return "\n".join(lines) + "\n"


def format_line(command: str, state: ProgressState) -> str:
    total = f"/{state.total_frames}" if state.total_frames is not None and state.frame <= state.total_frames else ""
    parts = [f"espcn-video: {command}: frame {state.frame}{total}", f"{state.fps:.1f} fps"]
    if state.out_time_s is not None:
        parts.append(format_out_time(state.out_time_s)[:-4])  # to the centisecond, as ffmpeg's stats line
    if state.speed is not None:
        parts.append(f"speed {state.speed:.2f}x")
    if state.eta_s is not None:
        parts.append(f"eta {state.eta_s:.0f} s")
    return ", ".join(parts) + "\n"


class ProgressWriter:
    """Writes progress at a steady period from the main thread's update loop (the stages only
    bump counters); `finish` writes the last block whatever the outcome."""

    def __init__(
        self,
        stream: TextIO,
        command: str,
        *,
        keyvalue: bool,
        period_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.command = command
        self.keyvalue = keyvalue
        self.period_s = period_s
        self.clock = clock
        self.total_frames: int | None = None
        self._started = clock()
        self._last_write: float | None = None
        self._last: tuple[int, float | None] = (0, None)
        self._finished = False

    def start(self, total_frames: int | None) -> None:
        self.total_frames = total_frames
        self._started = self.clock()
        self._last_write = self._started

    def _state(self, frame: int, out_time_s: float | None) -> ProgressState:
        return ProgressState(frame, self.total_frames, out_time_s, self.clock() - self._started)

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            pass  # a reader that went away must not stop the run

    def update(self, frame: int, out_time_s: float | None) -> None:
        self._last = (frame, out_time_s)
        now = self.clock()
        if self._last_write is not None and now - self._last_write < self.period_s:
            return
        self._last_write = now
        state = self._state(frame, out_time_s)
        self._write(format_block(state, False) if self.keyvalue else format_line(self.command, state))

    def finish(self, completed: bool = False) -> None:
        """The last block (once); after a completed run the frame count is the total, not the
        duration x rate estimate, so a reader's percentage ends at 100 and eta at 0."""
        if self._finished or not self.keyvalue:
            self._finished = True
            return
        self._finished = True
        if completed:
            self.total_frames = self._last[0]
        self._write(format_block(self._state(*self._last), True))


@contextlib.contextmanager
def open_progress(
    command: str, path: str | None, period_s: float | None, quiet: bool
) -> Iterator[ProgressWriter | None]:
    """The writer a command's flags ask for: --progress FILE or '-' (stderr), else plain lines
    when stderr is not a terminal and -q is not given, else none."""
    if path is None:
        if quiet or sys.stderr.isatty():
            yield None
        else:
            yield ProgressWriter(sys.stderr, command, keyvalue=False, period_s=period_s or LOG_LINE_PERIOD_S)
        return
    if path == "-":
        yield ProgressWriter(sys.stderr, command, keyvalue=True, period_s=period_s or DEFAULT_PERIOD_S)
        return
    try:
        stream = open(path, "w", encoding="utf-8")  # closed below, after the last block
    except OSError as exc:
        raise UsageError(f"--progress {path}: cannot write it ({exc.strerror})") from None
    try:
        yield ProgressWriter(stream, command, keyvalue=True, period_s=period_s or DEFAULT_PERIOD_S)
    finally:
        stream.close()
