"""reader -> model -> writer threads between two ffmpeg processes.

Bounded queues keep memory flat however long the video; one cancel event stops every stage;
the first stage error wins, is named by stage and frame, and is re-raised in the main thread
after both ffmpeg processes are killed and reaped.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import IO, Any

import numpy as np

from espcn_video.errors import EspcnVideoError, FrameCountMismatch, InputError, StageError, summarize_stderr
from espcn_video.ffmpeg.process import FFmpegProcess
from espcn_video.ffmpeg.timestamps import FrameTimes
from espcn_video.ffmpeg.y4m import FrameGeometry, Y4MHeader, read_frame, read_header
from espcn_video.frames.sinks import FrameSink, SinkFactory
from espcn_video.frames.upscaler import Neighbours, Upscaler
from espcn_video.model.net import frames_read

POLL_S = 0.1
NO_FRAMES = "the input has no video frames (0 frames decoded)"
_END = object()  # the sentinel, forwarded stage to stage


class _Cancelled(Exception):
    """A stage noticed the cancel event; not an error of its own."""


@dataclass
class FrameTiming:
    index: int
    read_ms: float
    model_ms: float
    write_ms: float


@dataclass
class Counters:
    """Bumped by the stages, read by the main thread for progress."""

    frames_read: int = 0
    frames_upscaled: int = 0
    frames_written: int = 0
    last_pts_s: float | None = None  # the last written frame's time in the input (for progress)


@dataclass
class RunResult:
    lr: FrameGeometry
    hr: FrameGeometry
    rate: Fraction
    full_range: bool
    method: str
    frames_read: int
    frames_written: int
    wall_s: float
    timings: list[FrameTiming] = field(default_factory=list)
    frame_times: FrameTimes | None = None  # each frame's pts, for a timed decode

    @property
    def fps(self) -> float:
        return self.frames_written / self.wall_s if self.wall_s > 0 else 0.0


@dataclass
class _Item:
    index: int
    planes: list[np.ndarray]
    read_ms: float
    pts_s: Fraction | None = None
    model_ms: float = 0.0


class _Run:
    """State shared by the three stage threads of one run."""

    def __init__(
        self,
        dec: FFmpegProcess,
        sink: FrameSink,
        header: Y4MHeader,
        upscaler: Upscaler,
        queue_size: int,
        times: FrameTimes | None,
        edges: Neighbours | None = None,
    ) -> None:
        self.dec, self.sink, self.header, self.upscaler = dec, sink, header, upscaler
        self.times = times
        self.edges = edges
        self.to_model: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self.to_writer: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self.cancel = threading.Event()
        self.counters = Counters()
        self.timings: list[FrameTiming] = []
        self.error: StageError | None = None
        self._lock = threading.Lock()
        self._frame: dict[str, int | None] = {}

    # -- plumbing ---------------------------------------------------------------------------
    def fail(self, stage: str, exc: BaseException) -> None:
        with self._lock:
            if self.error is None and not self.cancel.is_set():
                self.error = StageError(stage, self._frame.get(stage), exc)
            self.cancel.set()
        self.dec.kill()
        self.sink.kill()

    def put(self, q: queue.Queue[Any], item: Any) -> None:
        while True:
            if self.cancel.is_set():
                raise _Cancelled
            try:
                q.put(item, timeout=POLL_S)
                return
            except queue.Full:
                continue

    def get(self, q: queue.Queue[Any]) -> Any:
        while True:
            if self.cancel.is_set():
                raise _Cancelled
            try:
                return q.get(timeout=POLL_S)
            except queue.Empty:
                continue

    def stage(self, name: str, body: Callable[[], None]) -> threading.Thread:
        def run() -> None:
            try:
                body()
            except _Cancelled:
                pass
            except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
                self.fail(name, exc)

        return threading.Thread(target=run, name=f"espcn-{name}", daemon=True)

    # -- stages -----------------------------------------------------------------------------
    def read_stage(self) -> None:
        geometry, index = self.header.geometry, 0
        while not self.cancel.is_set():
            self._frame["reader"] = index
            t0 = time.perf_counter()
            try:
                planes = read_frame(self.dec.stdout, geometry, index, "decoder output")
            except EspcnVideoError:
                self._decoder_error_first()
                raise
            if planes is None:
                self._decoder_error_first()
                self.put(self.to_model, _END)
                return
            pts_s = None
            if self.times is not None:
                try:
                    pts_s = self.times.seconds(index, self.cancel.is_set)
                except InterruptedError:
                    raise _Cancelled from None
                except EspcnVideoError:
                    self._decoder_error_first()
                    raise
            self.put(self.to_model, _Item(index, planes, (time.perf_counter() - t0) * 1e3, pts_s))
            index += 1
            self.counters.frames_read = index

    def _decoder_error_first(self) -> None:
        """A short or broken stream is usually the decoder failing: its own error says why."""
        self.dec.check(timeout_s=30.0)

    def model_stage(self) -> None:
        if frames_read(self.upscaler) > 1:
            self._model_stage_with_neighbours()
            return
        geometry = self.header.geometry
        while True:
            item = self.get(self.to_model)
            if item is _END:
                self.put(self.to_writer, _END)
                return
            self._frame["model"] = item.index
            t0 = time.perf_counter()
            item.planes = self.upscaler.upscale(item.planes, geometry)
            item.model_ms = (time.perf_counter() - t0) * 1e3
            self.put(self.to_writer, item)
            self.counters.frames_upscaled += 1

    def _model_stage_with_neighbours(self) -> None:
        """A multi-frame preset: each frame is made once the next one is read (one frame of
        delay), with the LR Y of the frames before and after it; the first frame has no previous
        one and the last no next one, unless the run is a chunk of a longer stream (`edges`: the
        Y of the frames just outside it, so that a chunk's frames equal a whole run's)."""
        geometry = self.header.geometry
        previous_y, after_last = self.edges if self.edges is not None else (None, None)
        waiting: _Item | None = None
        while True:
            item = self.get(self.to_model)
            if waiting is not None:
                self._frame["model"] = waiting.index
                t0 = time.perf_counter()
                y = waiting.planes[0]
                following = after_last if item is _END else item.planes[0]
                waiting.planes = self.upscaler.upscale(waiting.planes, geometry, (previous_y, following))
                waiting.model_ms = (time.perf_counter() - t0) * 1e3
                previous_y = y
                self.put(self.to_writer, waiting)
                self.counters.frames_upscaled += 1
            if item is _END:
                self.put(self.to_writer, _END)
                return
            waiting = item

    def write_stage(self) -> None:
        while True:
            item = self.get(self.to_writer)
            if item is _END:
                if self.counters.frames_written == 0:  # an encoder given no frame fails; say why
                    raise InputError(NO_FRAMES)
                self.sink.finish()
                return
            self._frame["writer"] = item.index
            t0 = time.perf_counter()
            self.sink.write(item.index, item.planes, item.pts_s)
            write_ms = (time.perf_counter() - t0) * 1e3
            self.timings.append(FrameTiming(item.index, item.read_ms, item.model_ms, write_ms))
            if item.pts_s is not None:
                self.counters.last_pts_s = float(item.pts_s)
            self.counters.frames_written += 1


def run_pipeline(
    decode_cmd: Sequence[str],
    make_sink: SinkFactory,
    upscaler: Upscaler,
    *,
    decoder_stdin: str | IO[bytes] = "devnull",
    queue_size: int = 4,
    strict_decode: bool = True,
    timed: bool = False,
    time_offset_us: int = 0,
    on_start: Callable[[Y4MHeader], None] | None = None,
    on_progress: Callable[[Counters], None] | None = None,
    edges: Neighbours | None = None,
) -> RunResult:
    """Decode, super-resolve and hand frames to a sink; raise the first failure, named, after cleaning up.

    `timed`: the decode command writes framecrc timestamps to stderr (build_timed_decode_args);
    each frame then reaches the sink with its pts in seconds, less `time_offset_us`. `edges`: for
    a multi-frame preset on a chunk, the LR Y of the frames just before and after it.
    """
    t_start = time.perf_counter()
    times = FrameTimes(time_offset_us) if timed else None
    with FFmpegProcess("decoder", decode_cmd, stdin=decoder_stdin, stdout="pipe", stderr_router=times) as dec:
        header = read_header(dec.stdout, "decoder output")
        if header is None:
            dec.check(timeout_s=30.0)
            raise InputError(NO_FRAMES)
        hr = upscaler.output_geometry(header.geometry)
        hr_header = Y4MHeader(hr, header.rate, header.sar, "p", header.full_range)
        if on_start is not None:
            on_start(header)
        with make_sink(header, hr_header) as sink:
            run = _Run(dec, sink, header, upscaler, queue_size, times, edges)
            _run_stages(run, on_progress)
            dec.check(timeout_s=30.0)
            if strict_decode and (complaint := summarize_stderr(dec.stderr_tail())):
                # ffmpeg exits 0 on a file cut short or damaged mid-way; at -loglevel error
                # anything it prints means frames were lost or invented.
                raise InputError(
                    f"the input is corrupt or truncated: {complaint} (--ignore-decode-errors keeps such output)"
                )
    counters = run.counters
    if counters.frames_written != counters.frames_read:
        raise FrameCountMismatch(counters.frames_read, counters.frames_written)
    return RunResult(
        lr=header.geometry,
        hr=hr_header.geometry,
        rate=header.rate,
        full_range=header.full_range,
        method=upscaler.method,
        frames_read=counters.frames_read,
        frames_written=counters.frames_written,
        wall_s=time.perf_counter() - t_start,
        timings=run.timings,
        frame_times=times,
    )


def _run_stages(run: _Run, on_progress: Callable[[Counters], None] | None) -> None:
    """Start the three stages, draw progress, and re-raise the first stage error here."""
    threads = [
        run.stage("reader", run.read_stage),
        run.stage("model", run.model_stage),
        run.stage("writer", run.write_stage),
    ]
    for t in threads:
        t.start()
    try:
        while any(t.is_alive() for t in threads):
            threads[-1].join(timeout=POLL_S)
            if on_progress is not None:
                on_progress(run.counters)
    except BaseException:
        run.cancel.set()
        run.dec.kill()
        run.sink.kill()
        for t in threads:
            t.join(timeout=5.0)
        raise
    if run.error is not None:
        raise run.error
