"""Where upscaled frames go: an ffmpeg encoder (upscale), or anything else with the same shape.

A sink is a context manager: entering starts it (the header is known by then), write() takes
frames in order, finish() completes it and raises if it failed, kill() stops it at once from
another thread, and leaving always cleans up.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Protocol

import numpy as np

from espcn_video.errors import EspcnVideoError
from espcn_video.ffmpeg.process import FFmpegProcess
from espcn_video.ffmpeg.y4m import Y4MHeader, write_frame


class FrameSink(Protocol):
    def __enter__(self) -> FrameSink: ...

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None: ...

    def write(self, index: int, planes: list[np.ndarray]) -> None: ...

    def finish(self) -> None: ...

    def kill(self) -> None: ...


class EncoderSink:
    """y4m into an ffmpeg encoder's stdin; a broken pipe is reported as the encoder's own error."""

    def __init__(self, cmd: Sequence[str], header: Y4MHeader, stdout: str = "devnull") -> None:
        self.process = FFmpegProcess("encoder", cmd, stdin="pipe", stdout=stdout)
        self.header = header
        self.frames_written = 0

    def __enter__(self) -> EncoderSink:
        self.process.__enter__()
        try:
            self.process.stdin.write(self.header.encode())
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

    def write(self, index: int, planes: list[np.ndarray]) -> None:
        try:
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
