"""Where upscaled frames go: an ffmpeg encoder (upscale), or anything else with the same shape.

A sink is a context manager: entering starts it (the header is known by then), write() takes
frames in order, finish() completes it and raises if it failed, kill() stops it at once from
another thread, and leaving always cleans up.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from types import TracebackType
from typing import Protocol

import numpy as np

from espcn_video.errors import EspcnVideoError
from espcn_video.ffmpeg import mkv
from espcn_video.ffmpeg.process import FFmpegProcess
from espcn_video.ffmpeg.y4m import Y4MHeader, write_frame


class FrameSink(Protocol):
    def __enter__(self) -> FrameSink: ...

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None: ...

    def write(self, index: int, planes: list[np.ndarray], pts_s: Fraction | None = None) -> None: ...

    def finish(self) -> None: ...

    def kill(self) -> None: ...


class EncoderSink:
    """Frames into an ffmpeg encoder's stdin; a broken pipe is reported as the encoder's own error.

    `timed`: Matroska with each frame's timestamp (the encoder reads `-f matroska`), so variable
    frame rates and the offset to the audio survive; else y4m, re-timed at the header's rate.
    A stream that starts before 0 (possible with edit lists) is shifted to 0: Matroska
    timestamps are unsigned; `shift_us` says by how much.
    """

    def __init__(self, cmd: Sequence[str], header: Y4MHeader, stdout: str = "devnull",
                 timed: bool = False, hdr_colour: bytes = b"") -> None:
        self.process = FFmpegProcess("encoder", cmd, stdin="pipe", stdout=stdout)
        self.header = header
        self.timed = timed
        self.hdr_colour = hdr_colour
        self.frames_written = 0
        self.shift_us = 0

    def _stream_header(self) -> bytes:
        if not self.timed:
            return self.header.encode()
        rate = self.header.rate
        duration_ns = round(1e9 * rate.denominator / rate.numerator) if rate > 0 else None
        sar = (self.header.sar.numerator, self.header.sar.denominator) if self.header.sar else None
        return mkv.build_stream_header(self.header.geometry, sar=sar, frame_duration_ns=duration_ns,
                                       hdr_colour=self.hdr_colour)

    def __enter__(self) -> EncoderSink:
        self.process.__enter__()
        try:
            self.process.stdin.write(self._stream_header())
        except BrokenPipeError:
            self._encoder_died()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.process.__exit__(exc_type, exc, tb)

    def _encoder_died(self) -> None:
        self.process.check(timeout_s=30.0)
        raise EspcnVideoError(
            f"ffmpeg encoder stopped reading after {self.frames_written} frames (exit 0); "
            "check the output options")

    def write(self, index: int, planes: list[np.ndarray], pts_s: Fraction | None = None) -> None:
        try:
            if self.timed:
                if pts_s is None:
                    raise EspcnVideoError(f"frame {index} has no timestamp for the encoder")
                pts_us = round(pts_s * 1_000_000)
                if self.frames_written == 0 and pts_us < 0:
                    self.shift_us = -pts_us
                mkv.write_frame(self.process.stdin, planes, pts_us + self.shift_us)
            else:
                write_frame(self.process.stdin, planes)
        except BrokenPipeError:
            self._encoder_died()
        self.frames_written += 1

    def finish(self) -> None:
        try:
            self.process.stdin.flush()
        except BrokenPipeError:
            self._encoder_died()
        self.process.close_stdin()
        self.process.check()

    def kill(self) -> None:
        self.process.kill()
