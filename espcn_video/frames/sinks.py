"""Where upscaled frames go: an ffmpeg encoder (upscale), or a ReferenceSink scoring each frame
against a reference decode (psnr).

A sink is a context manager: entering starts it (the header is known by then), write() takes
frames in order, finish() completes it and raises if it failed, kill() stops it at once from
another thread, and leaving always cleans up.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import numpy as np

from espcn_video.errors import EspcnVideoError, FFmpegError, InputError, summarize_stderr
from espcn_video.ffmpeg import mkv
from espcn_video.ffmpeg.process import FFmpegProcess
from espcn_video.ffmpeg.ssim_pipe import GRAY_FORMATS, build_ssim_args, parse_ssim_stats
from espcn_video.ffmpeg.y4m import FrameGeometry, Y4MHeader, read_frame, read_header, write_frame
from espcn_video.quality.video_metrics import VideoScorer


class FrameSink(Protocol):
    def __enter__(self) -> FrameSink: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

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

    def __init__(
        self,
        cmd: Sequence[str],
        header: Y4MHeader,
        stdout: str = "devnull",
        timed: bool = False,
        video_elements: bytes = b"",
    ) -> None:
        if timed:
            mkv.check_frame_fits(header.geometry)
        self.process = FFmpegProcess("encoder", cmd, stdin="pipe", stdout=stdout)
        self.header = header
        self.timed = timed
        self.video_elements = video_elements
        self.frames_written = 0
        self.shift_us = 0

    def _stream_header(self) -> bytes:
        if not self.timed:
            return self.header.encode()
        rate = self.header.rate
        duration_ns = round(1e9 * rate.denominator / rate.numerator) if rate > 0 else None
        sar = (self.header.sar.numerator, self.header.sar.denominator) if self.header.sar else None
        return mkv.build_stream_header(
            self.header.geometry, sar=sar, frame_duration_ns=duration_ns, video_elements=self.video_elements
        )

    def __enter__(self) -> EncoderSink:
        self.process.__enter__()
        try:
            self.process.stdin.write(self._stream_header())
        except BrokenPipeError:
            self._encoder_died()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.process.__exit__(exc_type, exc, tb)

    def _encoder_died(self) -> None:
        self.process.check(timeout_s=30.0)
        raise EspcnVideoError(
            f"ffmpeg encoder stopped reading after {self.frames_written} frames (exit 0); check the output options"
        )

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


SinkFactory = Callable[[Y4MHeader, Y4MHeader], FrameSink]


def encoder_sink(
    build_cmd: Callable[[Y4MHeader], list[str]],
    stdout: str = "devnull",
    timed: bool = False,
    video_elements: bytes = b"",
) -> SinkFactory:
    """The sink of `upscale`: an ffmpeg encoder whose command depends on the decoded header."""
    return lambda lr, hr: EncoderSink(build_cmd(lr), hr, stdout, timed, video_elements)


# -- the psnr job's sink ------------------------------------------------------------------------


def check_same_geometry(dist: FrameGeometry, ref: FrameGeometry, dist_name: str, ref_name: str) -> None:
    if (dist.width, dist.height) != (ref.width, ref.height):
        raise InputError(
            f"sizes differ: {dist_name} is {dist.width}x{dist.height}, {ref_name} is {ref.width}x{ref.height}"
        )
    if dist.bits != ref.bits:
        raise InputError(
            f"bit depths differ: {dist_name} is {dist.bits}-bit ({dist.pix_fmt}), "
            f"{ref_name} is {ref.bits}-bit ({ref.pix_fmt})"
        )
    if dist.pix_fmt != ref.pix_fmt:
        raise InputError(f"pixel formats differ: {dist_name} is {dist.pix_fmt}, {ref_name} is {ref.pix_fmt}")


def check_decoder(proc: FFmpegProcess, name: str) -> None:
    """Exit 0 and nothing on stderr, else an error naming the file (ffmpeg exits 0 on a cut file)."""
    try:
        proc.check(timeout_s=60.0)
    except FFmpegError as exc:
        raise InputError(f"{name}: ffmpeg cannot read it: {summarize_stderr(exc.stderr_tail)}") from None
    if not proc.killed and (complaint := summarize_stderr(proc.stderr_tail())):
        raise InputError(f"{name}: corrupt or truncated: {complaint}")


def read_first_header(proc: FFmpegProcess, name: str) -> Y4MHeader:
    """The y4m header of a decoder's output, or an error naming the file (its decoder's own first)."""
    header = read_header(proc.stdout, name)
    if header is None:
        check_decoder(proc, name)
        raise InputError(f"{name}: no video frames")
    return header


FFMPEG_SSIM_MIN_SIDE = 16  # smaller planes are scored in numpy (ffmpeg's filter needs whole 8x8 windows)


class ReferenceSink:
    """A FrameSink that decodes the reference alongside and scores each frame it is given.

    Only the current reference frame is held, so memory stays flat however long the clip. With
    `vmaf_cmd` the frames also go to an ffmpeg libvmaf process (its JSON log is read at the end).
    """

    def __init__(
        self,
        ref_cmd: list[str],
        geometry: FrameGeometry,
        scorer: VideoScorer,
        *,
        ref_name: str,
        dist_name: str,
        vmaf_cmd: list[str] | None = None,
        vmaf_log: Path | None = None,
        header: Y4MHeader | None = None,
    ) -> None:
        self.ref = FFmpegProcess("reference decoder", ref_cmd, stdout="pipe")
        self.vmaf = FFmpegProcess("libvmaf", vmaf_cmd, stdin="pipe") if vmaf_cmd else None
        self.ssim: FFmpegProcess | None = None
        self._ssim_dir: tempfile.TemporaryDirectory[str] | None = None
        self._ssim_first = 0
        self._stack: np.ndarray | None = None
        shaved = scorer.shaved_y(np.empty(geometry.plane_shapes[0], np.uint8)).shape
        if min(shaved) >= FFMPEG_SSIM_MIN_SIDE and geometry.bits in GRAY_FORMATS:
            self._ssim_dir = tempfile.TemporaryDirectory(prefix="espcn-video-ssim-")
            stats = Path(self._ssim_dir.name) / "ssim.log"
            cmd = build_ssim_args(ref_cmd[0], shaved[1], shaved[0], geometry.bits, stats)
            self.ssim = FFmpegProcess("ssim", cmd, stdin="pipe")
            self._ssim_stats = stats
            self._stack = np.empty((2 * shaved[0], shaved[1]), geometry.dtype)
        self.geometry, self.scorer, self.header = geometry, scorer, header
        self.ref_name, self.dist_name, self.vmaf_log = ref_name, dist_name, vmaf_log
        self.dist_frames = 0
        self.ref_done = False
        self.vmaf_scores: list[float] | None = None

    def __enter__(self) -> ReferenceSink:
        self.ref.__enter__()
        try:
            header = read_first_header(self.ref, self.ref_name)
            check_same_geometry(self.geometry, header.geometry, self.dist_name, self.ref_name)
            if self.ssim is not None:
                self.ssim.__enter__()
                self._ssim_first = len(self.scorer.frames)
            if self.vmaf is not None:
                self.vmaf.__enter__()
                self._to_vmaf(lambda stream: stream.write((self.header or header).encode()))
        except BaseException as exc:
            # `with` calls __exit__ only after a successful __enter__: reap what was started here.
            self.__exit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None:
            self.kill()
        if self.vmaf is not None:
            self.vmaf.__exit__(exc_type, exc, tb)
        if self.ssim is not None:
            self.ssim.__exit__(exc_type, exc, tb)
        if self._ssim_dir is not None:
            self._ssim_dir.cleanup()
        self.ref.kill()  # a reference left unread would block in its write; its count is known
        self.ref.__exit__(exc_type, exc, tb)

    def write(self, index: int, planes: list[np.ndarray], pts_s: Fraction | None = None) -> None:
        self.dist_frames += 1
        try:
            ref = None if self.ref_done else read_frame(self.ref.stdout, self.geometry, index, self.ref_name)
        except EspcnVideoError:
            check_decoder(self.ref, self.ref_name)  # a cut stream is usually the decoder failing: say why
            raise
        if ref is None:
            self.ref_done = True  # the reference is shorter: counted, reported by finish()
            return
        self.scorer.add(ref, planes, with_ssim=self.ssim is None)
        if self.ssim is not None and self._stack is not None:
            h = self._stack.shape[0] // 2
            self._stack[:h] = self.scorer.shaved_y(ref[0])
            self._stack[h:] = self.scorer.shaved_y(planes[0])
            try:
                self.ssim.stdin.write(self._stack.data.cast("B"))
            except BrokenPipeError:
                self.ssim.check(timeout_s=30.0)
                raise EspcnVideoError("ffmpeg ssim stopped reading its input (exit 0)") from None
        if self.vmaf is not None:
            self._to_vmaf(lambda stream: write_frame(stream, planes))

    def _to_vmaf(self, send: Callable[[Any], None]) -> None:
        assert self.vmaf is not None
        try:
            send(self.vmaf.stdin)
        except BrokenPipeError:
            self.vmaf.check(timeout_s=30.0)  # its own error says why
            raise EspcnVideoError("ffmpeg libvmaf stopped reading its input (exit 0)") from None

    def finish(self) -> None:
        ref_frames = len(self.scorer.frames)
        while not self.ref_done and read_frame(self.ref.stdout, self.geometry, ref_frames, self.ref_name) is not None:
            ref_frames += 1  # drain to count what the reference has left, one frame at a time
        self.ref_done = True
        check_decoder(self.ref, self.ref_name)
        if ref_frames != self.dist_frames:
            raise InputError(
                f"frame counts differ: {self.dist_name} has {self.dist_frames} frames, {self.ref_name} has {ref_frames}"
            )
        if self.ssim is not None:
            self.ssim.close_stdin()
            self.ssim.check(timeout_s=600.0)
            values = parse_ssim_stats(self._ssim_stats.read_text(errors="replace"))
            try:
                self.scorer.set_ssim(values, self._ssim_first)
            except ValueError as exc:
                raise EspcnVideoError(f"ffmpeg ssim: {exc}") from None
        if self.vmaf is not None:
            self.vmaf.close_stdin()
            self.vmaf.check(timeout_s=600.0)
            self.vmaf_scores = read_vmaf_log(self.vmaf_log)

    def kill(self) -> None:
        if self.ssim is not None:
            self.ssim.kill()
        self.ref.kill()
        if self.vmaf is not None:
            self.vmaf.kill()


def read_vmaf_log(path: Path | None) -> list[float]:
    try:
        doc = json.loads(Path(str(path)).read_text())
        return [float(f["metrics"]["vmaf"]) for f in doc["frames"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EspcnVideoError(f"cannot read the libvmaf log {path}: {exc}") from None


class VmafLog:
    """A private folder for libvmaf's JSON log, removed afterwards."""

    def __enter__(self) -> Path:
        self.folder = Path(tempfile.mkdtemp(prefix="espcn-vmaf-"))
        return self.folder / "vmaf.json"

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
