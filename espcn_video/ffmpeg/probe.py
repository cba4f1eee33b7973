"""Probe a file with ffmpeg alone (`ffmpeg -i IN` and its stderr), since ffprobe may be absent.

Only what the pipeline needs: the first video stream's pixel format, size, rate and colour
tags, whether there are audio or subtitle streams and chapters, and the duration.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field

from espcn_video.errors import InputError

_DURATION = re.compile(r"^\s*Duration: (?:(\d+):(\d+):(\d+(?:\.\d+)?)|N/A)(?:, start: (-?[\d.]+))?")
_STREAM = re.compile(r"^\s*Stream #0:(\d+)(?:\[[^\]]*\])?(?:\([^)]*\))?: (Video|Audio|Subtitle|Data|Attachment): (.*)$")
_SIZE = re.compile(r"(?<![\w])(\d{1,5})x(\d{1,5})(?![\w])")
_FPS = re.compile(r"([\d.]+)(k?) fps")
_RANGES = {"tv": "tv", "pc": "pc"}


@dataclass(frozen=True)
class ColorTags:
    """Colour metadata to carry to the output; None where the source leaves it unspecified."""

    range: str | None = None  # "tv" or "pc"
    space: str | None = None
    primaries: str | None = None
    transfer: str | None = None


@dataclass(frozen=True)
class ProbeInfo:
    duration_s: float | None
    video_codec: str | None
    pix_fmt: str | None
    width: int | None
    height: int | None
    fps: float | None
    color: ColorTags = ColorTags()
    audio_streams: int = 0
    subtitle_codecs: tuple[str, ...] = field(default_factory=tuple)
    chapters: int = 0
    start_s: float = 0.0  # the container's start time; input -ss positions count from it

    @property
    def has_video(self) -> bool:
        return self.video_codec is not None

    def estimated_frames(self) -> int | None:
        """For progress and ETA only; never a loop bound."""
        if self.duration_s and self.fps:
            return max(1, round(self.duration_s * self.fps))
        return None


def _parse_pix_fmt(desc: str) -> tuple[str | None, ColorTags]:
    """'yuv420p(tv, bt709/unknown/unknown, progressive)' -> ('yuv420p', ColorTags)."""
    match = re.match(r"\s*([a-z0-9_]+)(?:\(([^)]*)\))?", desc)
    if not match:
        return None, ColorTags()
    pix_fmt, inner = match.group(1), match.group(2) or ""
    rng = space = prim = trc = None
    for token in (t.strip() for t in inner.split(",")):
        if token in _RANGES:
            rng = token
        elif "/" in token:
            parts = token.split("/")
            if len(parts) == 3:
                space, prim, trc = parts
        elif token.startswith(("bt", "smpte", "fcc", "ycgco", "gbr", "film", "iec", "arib", "linear", "log", "jedec", "ebu", "chroma")):
            space = prim = trc = token
    if pix_fmt.startswith("yuvj") and rng is None:
        rng = "pc"
    clean = [None if v in (None, "unknown", "reserved") else v for v in (space, prim, trc)]
    return pix_fmt, ColorTags(rng, clean[0], clean[1], clean[2])


def parse_probe_output(stderr: str) -> ProbeInfo:
    duration = fps = None
    start = 0.0
    vcodec = pix_fmt = None
    width = height = None
    color = ColorTags()
    audio = 0
    subs: list[str] = []
    chapters = 0
    in_chapters = False
    for line in stderr.splitlines():
        if m := _DURATION.match(line):
            if m.group(1) is not None:
                duration = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
            start = float(m.group(4)) if m.group(4) else 0.0
            continue
        if line.strip() == "Chapters:":
            in_chapters = True
            continue
        if in_chapters and line.strip().startswith("Chapter #"):
            chapters += 1
            continue
        m = _STREAM.match(line)
        if not m:
            continue
        in_chapters = False
        kind, desc = m.group(2), m.group(3)
        codec = desc.split(",")[0].split()[0] if desc else "unknown"
        if kind == "Audio":
            audio += 1
        elif kind == "Subtitle":
            subs.append(codec)
        elif kind == "Video" and vcodec is None and "(attached pic)" not in desc:
            vcodec = codec
            # The pixel format follows the first top-level comma (parentheses nest).
            depth, cut = 0, None
            for i, ch in enumerate(desc):
                depth += ch == "("
                depth -= ch == ")"
                if ch == "," and depth == 0:
                    cut = i
                    break
            if cut is not None:
                pix_fmt, color = _parse_pix_fmt(desc[cut + 1:])
            if sm := _SIZE.search(desc[cut or 0:]):
                width, height = int(sm.group(1)), int(sm.group(2))
            if fm := _FPS.search(desc):
                fps = float(fm.group(1)) * (1000 if fm.group(2) else 1)
    return ProbeInfo(duration, vcodec, pix_fmt, width, height, fps, color, audio, tuple(subs), chapters,
                     start)


def build_probe_args(ffmpeg: str, path: str) -> list[str]:
    return [ffmpeg, "-nostdin", "-hide_banner", "-i", path]


def probe_file(ffmpeg: str, path: str, timeout_s: float = 60.0) -> ProbeInfo:
    """Run `ffmpeg -i path` (it exits 1: no output given) and parse what it printed."""
    cmd = build_probe_args(ffmpeg, path)
    try:
        done = subprocess.run(cmd, capture_output=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise InputError(f"{path}: ffmpeg took over {timeout_s:.0f} s to open it") from exc
    text = done.stderr.decode("utf-8", errors="replace")
    if "Error opening input" in text or "Input #0" not in text:
        reason = next((ln.split(":", 1)[-1].strip() for ln in reversed(text.splitlines())
                       if "Error opening input" in ln), text.strip().splitlines()[-1] if text.strip() else "")
        raise InputError(f"{path}: ffmpeg cannot read it ({reason or 'unknown format'})")
    info = parse_probe_output(text)
    if not info.has_video:
        raise InputError(f"{path}: no video stream")
    return info
