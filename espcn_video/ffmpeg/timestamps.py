"""Frame timestamps beside the y4m frames, and the packet timestamps of a written file.

y4m carries no timestamps, so the decoder splits its filtered video: one branch goes to the y4m
pipe, the other as unscaled rawvideo to a `framecrc` muxer on stderr (`pipe:2`), one line per
frame with its pts in the filter's time base and its size in bytes. The stderr drain thread
routes those lines here; the reader pairs frame n with line n. framecrc is flushed per packet, so
each line is one write and cannot interleave with ffmpeg's log lines. A change of the byte size
is a change of the frame size (or depth) in the source, which the y4m branch scales away.
"""

from __future__ import annotations

import logging
import re
import shlex
import subprocess
import threading
from array import array
from collections.abc import Callable
from fractions import Fraction

from espcn_video.errors import EspcnVideoError, FFmpegError, InputError

log = logging.getLogger("espcn_video.ffmpeg")

# ffmpeg writes a log line in several writes (prefix, then message), so a framecrc line can land
# between them: "[in#0 @ 0x55] 0,  1840,  1840,  40,  424, 0x0f3e1b9c". Hence search, not match.
_FRAMECRC_ENTRY = re.compile(r"(?<![\w,])(\d+),\s+(-?\d+),\s+(-?\d+),\s+(-?\d+),\s+(\d+),\s+0x[0-9a-f]{8}\b")
_FRAMECRC_HEADER = re.compile(r"^#(software|tb|media_type|codec_id|dimensions|sar|format|version|hash)\b")
_TB = re.compile(r"^#tb (\d+): (\d+)/(\d+)")
_TB_ANYWHERE = re.compile(r"#tb (\d+): (\d+)/(\d+)")
NOPTS = -9223372036854775808
WAIT_S = 0.1


class FrameTimes:
    """The decoder's frame timestamps, filled by its stderr drain thread, read by the reader."""

    def __init__(self, offset_us: int = 0) -> None:
        """`offset_us` is subtracted from every pts, rounded to the stream's ticks as ffmpeg does
        when it moves a file's start to 0 (a chunk decodes with -copyts, the whole file without)."""
        self.offset_us = offset_us
        self.time_base: Fraction | None = None
        self._pts = array("q")  # 8 bytes a frame: a whole film's timestamps stay small
        self.first_bytes: int | None = None  # the first frame's size as rawvideo
        self.last_bytes: int | None = None
        self.size_changes: list[tuple[int, int, int]] = []  # (frame index, bytes before, after)
        self._offset_ticks: int | None = None
        self._ended = False
        self._cond = threading.Condition()

    def route(self, line: str) -> bool:
        """Take the timestamp data in `line`; True when nothing else was in it (else it is also
        a log line, cut into by our data, and goes to the log tail as it is)."""
        if m := _TB_ANYWHERE.search(line):
            with self._cond:
                self.time_base = Fraction(int(m.group(2)), int(m.group(3)))
            return m.start() == 0
        if _FRAMECRC_HEADER.match(line):
            return True
        entries = list(_FRAMECRC_ENTRY.finditer(line))
        if not entries:
            return False
        with self._cond:
            for m in entries:
                size = int(m.group(5))
                if self.last_bytes is None:
                    self.first_bytes = size
                elif size != self.last_bytes:
                    self.size_changes.append((len(self._pts), self.last_bytes, size))
                self.last_bytes = size
                self._pts.append(int(m.group(3)))
            self._cond.notify_all()
        return entries[0].start() == 0 and entries[-1].end() == len(line.rstrip())

    def close(self) -> None:
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    def seconds(self, index: int, cancelled: Callable[[], bool]) -> Fraction:
        """Frame `index`'s time in seconds, waiting for its line; None-safe against a dead decoder."""
        with self._cond:
            while len(self._pts) <= index:
                if self._ended:
                    raise EspcnVideoError(f"the decoder gave no timestamp for frame {index}")
                if cancelled():
                    raise InterruptedError
                self._cond.wait(WAIT_S)
            if self.time_base is None:
                raise EspcnVideoError("the decoder's timestamp stream has no time base")
            if self._pts[index] == NOPTS:
                raise InputError(f"frame {index} has no timestamp")
            return (self._pts[index] - self._offset()) * self.time_base

    def _offset(self) -> int:
        """offset_us in the stream's ticks, rounded half away from zero as av_rescale does."""
        if self._offset_ticks is None:
            assert self.time_base is not None
            ticks = Fraction(self.offset_us, 1_000_000) / self.time_base
            half = Fraction(1, 2)
            self._offset_ticks = int(ticks + half) if ticks >= 0 else -int(-ticks + half)
        return self._offset_ticks

    def change_times(self) -> list[tuple[int, float]]:
        """(frame index, seconds) of each frame whose size differs from the one before it."""
        return [(i, float(self.seconds(i, lambda: False))) for i, _, _ in self.size_changes]

    def all_seconds(self, count: int) -> list[Fraction]:
        """The first `count` frames' times (for the check of the written file)."""
        return [self.seconds(i, lambda: False) for i in range(count)]


def build_packet_list_args(ffmpeg: str, path: str) -> list[str]:
    """Every video packet's pts and key flag, without decoding (framecrc of a stream copy)."""
    return [
        ffmpeg,
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-copyts",
        "-i",
        path,
        "-map",
        "0:V:0",
        "-c",
        "copy",
        "-f",
        "framecrc",
        "pipe:1",
    ]


def parse_framecrc(text: str, source: str) -> tuple[Fraction, list[int], list[int]]:
    """(time base, frame pts in presentation order, keyframe pts) from framecrc output."""
    tb: Fraction | None = None
    pts_all: list[int] = []
    keys: list[int] = []
    for line in text.splitlines():
        if line.startswith("#"):
            if m := _TB.match(line):
                tb = Fraction(int(m.group(2)), int(m.group(3)))
            continue
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 6:
            continue
        pts = int(parts[2])
        if pts == NOPTS:
            raise InputError(f"{source}: packets carry no timestamps (a raw elementary stream?)")
        pts_all.append(pts)
        if not any(p.startswith("F=") for p in parts[6:]):
            keys.append(pts)
    if tb is None or not pts_all:
        raise InputError(f"{source}: no video packets found")
    return tb, sorted(pts_all), sorted(keys)


def list_packets(ffmpeg: str, path: str, timeout_s: float = 3600.0) -> tuple[Fraction, list[int], list[int]]:
    cmd = build_packet_list_args(ffmpeg, path)
    try:
        log.debug("ffmpeg packet listing: %s", shlex.join(cmd))
        done = subprocess.run(cmd, capture_output=True, stdin=subprocess.DEVNULL, timeout=timeout_s)
        log.debug("ffmpeg packet listing: exit %d", done.returncode)
    except subprocess.TimeoutExpired as exc:
        raise EspcnVideoError(f"{path}: listing its packets took over {timeout_s:.0f} s") from exc
    if done.returncode != 0:
        raise FFmpegError("packet listing", cmd, done.returncode, done.stderr.decode(errors="replace"))
    return parse_framecrc(done.stdout.decode(errors="replace"), path)
