"""Probe a file with ffmpeg alone (`ffmpeg -i IN` and its stderr), since ffprobe may be absent.

Only what the pipeline needs: the first video stream's pixel format, size, rate and colour
tags, whether there are audio or subtitle streams and chapters, and the duration.
"""

from __future__ import annotations

import logging
import re
import shlex
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any

from espcn_video.errors import InputError, NoVideoStream

log = logging.getLogger("espcn_video.ffmpeg")

_DURATION = re.compile(r"^\s*Duration: (?:(\d+):(\d+):(\d+(?:\.\d+)?)|N/A)(?:, start: (-?[\d.]+))?")
_FILENAME = re.compile(r"^\s+filename\s*:\s*(.+)$")
_STREAM = re.compile(r"^\s*Stream #0:(\d+)(?:\[[^\]]*\])?(?:\([^)]*\))?: (Video|Audio|Subtitle|Data|Attachment): (.*)$")
_SIZE = re.compile(r"(?<![\w])(\d{1,5})x(\d{1,5})(?![\w])")
_FPS = re.compile(r"([\d.]+)(k?) fps")
# an integer tick rate only: "29.97 tbn" is a rounded 30000/1001, which showinfo's line gives exactly
_TBN = re.compile(r"(?<![\d.])(\d+)(k?) tbn")
_SHOWINFO_CONFIG = re.compile(r"config in time_base: (\d+)/(\d+), frame_rate: (\d+)/(\d+)")
_RANGES = {"tv": "tv", "pc": "pc"}
_ROTATION = re.compile(r"^\s+Display Matrix: rotation of (-?[\d.]+) degrees")
_POSE = r"\((-?[\d.]+)/(-?[\d.]+)/(-?[\d.]+)\)"  # yaw/pitch/roll, degrees
_SPHERICAL = re.compile(rf"^\s+Spherical Mapping: ([a-z ]+?)\s*(?:{_POSE}\s*)?(?:\[pad (\d+)\]|\[[\d, ]+\])?\s*$")
_STEREO3D = re.compile(r"^\s+Stereo 3D: ([\w ]+)")
_STEREO_TAG = re.compile(r"^\s+stereo_mode\s*: \S")
# Pixel formats that hold RGB (or a palette of it), and those with an alpha plane.
_RGB_PIX_FMT = re.compile(r"^(?:rgb|bgr|gbr|argb|abgr|0rgb|0bgr|x2rgb|x2bgr|pal8$)")
_ALPHA_PIX_FMT = re.compile(r"^(?:rgba|bgra|argb|abgr|gbrap|yuva|ya\d|pal8$)")


@dataclass(frozen=True)
class ColorTags:
    """Colour metadata to carry to the output; None where the source leaves it unspecified."""

    range: str | None = None  # "tv" or "pc"
    space: str | None = None
    primaries: str | None = None
    transfer: str | None = None


@dataclass(frozen=True)
class MasteringDisplay:
    """SMPTE ST 2086 mastering display colour volume: CIE xy chromaticities, luminance in cd/m2."""

    red: tuple[float, float]
    green: tuple[float, float]
    blue: tuple[float, float]
    white: tuple[float, float]
    min_luminance: float
    max_luminance: float


@dataclass(frozen=True)
class FrameProps:
    """What the first decoded frame says (showinfo), beside what the container says."""

    chroma_location: str | None = None  # left, center, topleft, top, bottomleft, bottom
    interlaced: str | None = None  # None progressive, "tff" or "bff"
    mastering: MasteringDisplay | None = None
    content_light: tuple[int, int] | None = None  # MaxCLL, MaxFALL
    color: ColorTags = ColorTags()
    size: tuple[int, int] | None = None  # the decoded frame's width and height
    pix_fmt: str | None = None
    # per-frame dynamic HDR metadata, which the pipeline's raw frames cannot carry
    hdr10plus: bool = False  # SMPTE ST 2094-40
    dolby_vision: bool = False  # an RPU on the frame


@dataclass(frozen=True)
class CoverArt:
    """An attached picture: its index among the video streams (0:v:N), codec and filename tag."""

    stream: int
    codec: str
    filename: str = ""  # Matroska attachments have one


@dataclass(frozen=True)
class Spherical:
    """A 360-degree video's projection (ffmpeg's name) and pose in degrees; a cubemap's padding."""

    projection: str
    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    padding: int = 0


@dataclass(frozen=True)
class OtherVideo:
    """A video stream after the first that is not a cover (another angle, a proxy, a preview)."""

    stream: int  # its index among the video streams (0:v:N)
    codec: str
    size: tuple[int, int] | None = None


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
    field_order: str | None = None  # as `ffmpeg -i` prints it: "top first", "bottom first", ...
    time_base: Fraction | None = None  # the video stream's (tbn; exact from showinfo with first_frame)
    # the stream's frame rate, exact (showinfo's, first_frame probes only): what a container that
    # stores a fixed rate (y4m, AVI) is given
    frame_rate: Fraction | None = None
    frame: FrameProps | None = None  # from the first decoded frame, when probed with first_frame
    attachments: int = 0  # Matroska attachments (the fonts of ASS subtitles, cover art)
    audio_codecs: tuple[str, ...] = ()  # each audio stream's codec, in order
    # attached pictures (cover images, Matroska image attachments); they are not the video (the
    # decoders map 0:V:0, the first video stream that is not one)
    covers: tuple[CoverArt, ...] = ()
    rotation: float = 0.0  # the video's display matrix, degrees counter-clockwise (ffmpeg applies it)
    dolby_vision_profile: int | None = None  # the video's DOVI configuration record
    other_videos: tuple[OtherVideo, ...] = ()  # not upscaled: copied where OUT takes them
    # what the encoder cannot be given from the raw frames, said when it is there
    spherical: Spherical | None = None  # 360-degree projection (equirectangular, cubemap...)
    stereo3d: str | None = None  # stereo layout (side by side, top and bottom...)
    stereo_tag: bool = False  # Matroska's stereo_mode tag, which the tags copy carries along
    closed_captions: bool = False  # EIA-608/708 carried inside the video stream (A/53)
    data_codecs: tuple[str, ...] = ()  # data streams (tmcd timecode, GoPro gpmd, KLV...)

    @property
    def cover_streams(self) -> tuple[int, ...]:
        return tuple(c.stream for c in self.covers)

    @property
    def cover_names(self) -> tuple[str, ...]:
        return tuple(c.filename for c in self.covers)

    @property
    def interlaced(self) -> str | None:
        """ "tff"/"bff" when the decoded frames or the stream say interlaced, else None."""
        if self.frame is not None and self.frame.interlaced:
            return self.frame.interlaced
        if self.field_order and "first" in self.field_order:
            return "bff" if self.field_order.startswith("bottom") else "tff"
        return None

    @property
    def best_color(self) -> ColorTags:
        """The stream's tags, completed by the first decoded frame's (codec-level VUI)."""
        if self.frame is None:
            return self.color
        f, c = self.frame.color, self.color
        return ColorTags(c.range or f.range, c.space or f.space, c.primaries or f.primaries, c.transfer or f.transfer)

    @property
    def is_rgb(self) -> bool:
        """RGB frames (PNG, GIF, RGB ffv1/utvideo/qtrle, screen captures), which the decoders
        convert to YCbCr explicitly (ffmpeg/args.py RGB_TO_YUV_FILTER)."""
        return bool(self.pix_fmt and _RGB_PIX_FMT.match(self.pix_fmt)) or self.best_color.space == "gbr"

    @property
    def has_alpha(self) -> bool:
        """An alpha plane, which the Y'CbCr pipeline does not carry."""
        return bool(self.pix_fmt and _ALPHA_PIX_FMT.match(self.pix_fmt))

    @property
    def decoded_color(self) -> ColorTags:
        """The tags of the frames the decoders hand over: the source's, except that RGB arrives as
        full-range BT.709 Y'CbCr (what RGB_TO_YUV_FILTER makes); its primaries and transfer stay."""
        color = self.best_color
        if not self.is_rgb:
            return color
        return ColorTags("pc", "bt709", color.primaries, color.transfer)

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
        if "first" in token or token == "progressive":
            continue
        if token in _RANGES:
            rng = token
        elif "/" in token:
            parts = token.split("/")
            if len(parts) == 3:
                space, prim, trc = parts
        elif token.startswith(
            ("bt", "smpte", "fcc", "ycgco", "gbr", "film", "iec", "arib", "linear", "log", "jedec", "ebu", "chroma")
        ):
            space = prim = trc = token
    if pix_fmt.startswith("yuvj") and rng is None:
        rng = "pc"
    clean = [None if v in (None, "unknown", "reserved") else v for v in (space, prim, trc)]
    return pix_fmt, ColorTags(rng, clean[0], clean[1], clean[2])


def _parse_field_order(desc: str) -> str | None:
    match = re.search(r"\((?:[^()]*, )?((?:top|bottom) (?:coded )?first(?: \(swapped\))?|progressive)[,)]", desc)
    return match.group(1) if match else None


_SHOWINFO_FRAME = re.compile(r"\] n:\s*0 .*? cl:(\w+) .*? i:([PTB])")
_SHOWINFO_FORMAT = re.compile(r" fmt:(\w+) .*? s:(\d+)x(\d+) ")
_SHOWINFO_COLOR = re.compile(r"\] color_range:(\w+) color_space:([\w-]+) color_primaries:([\w-]+) color_trc:([\w-]+)")
_XY = r"\(\s*([\d.]+)[, ]\s*([\d.]+)\)"
_MASTERING = re.compile(
    rf"Mastering display metadata: has_primaries:(\d) has_luminance:(\d) r{_XY} g{_XY} b{_XY} "
    rf"wp{_XY} min_luminance=([\d.]+), max_luminance=([\d.]+)"
)
_LIGHT = re.compile(r"Content light level metadata: MaxCLL=(\d+), MaxFALL=(\d+)")
_HDR10PLUS = re.compile(r"side data - HDR Dynamic Metadata SMPTE2094-40")
_DOVI_FRAME = re.compile(r"side data - Dolby Vision (?:RPU|Metadata)")
_DOVI_STREAM = re.compile(r"^\s+DOVI configuration record: .*?profile: (\d+)")


def parse_first_frame(stderr: str) -> FrameProps:
    """showinfo's lines for frame 0: chroma siting, interlacing, colour, HDR10 side data."""
    siting = interlaced = pix_fmt = None
    size: tuple[int, int] | None = None
    mastering = light = None
    color = ColorTags()
    seen_frame = hdr10plus = dovi = False
    for line in stderr.splitlines():
        if m := _SHOWINFO_FRAME.search(line):
            if seen_frame:
                break
            seen_frame = True
            siting = None if m.group(1) in ("unspecified", "unknown") else m.group(1)
            interlaced = {"T": "tff", "B": "bff"}.get(m.group(2))
            if f := _SHOWINFO_FORMAT.search(line):
                pix_fmt, size = f.group(1), (int(f.group(2)), int(f.group(3)))
        elif not seen_frame:
            continue
        elif (m := _MASTERING.search(line)) and m.group(1) == "1" and m.group(2) == "1":
            v = [float(x) for x in m.groups()[2:]]
            mastering = MasteringDisplay((v[0], v[1]), (v[2], v[3]), (v[4], v[5]), (v[6], v[7]), v[8], v[9])
        elif m := _LIGHT.search(line):
            light = (int(m.group(1)), int(m.group(2)))
        elif _HDR10PLUS.search(line):
            hdr10plus = True
        elif _DOVI_FRAME.search(line):
            dovi = True
        elif m := _SHOWINFO_COLOR.search(line):
            vals = [None if v in ("unknown", "reserved", "unspecified") else v for v in m.groups()]
            color = ColorTags(*vals)
    return FrameProps(siting, interlaced, mastering, light, color, size, pix_fmt, hdr10plus, dovi)


def parse_probe_output(stderr: str) -> ProbeInfo:
    duration = fps = None
    start = 0.0
    vcodec = pix_fmt = field_order = None
    time_base: Fraction | None = None
    width = height = None
    color = ColorTags()
    audio: list[str] = []
    subs: list[str] = []
    attachments = 0
    covers: list[CoverArt] = []
    last_cover = False  # the metadata lines that follow belong to a cover stream
    in_video = False  # the metadata and side data lines that follow belong to the video
    video_lines: list[str] = []
    others: list[OtherVideo] = []
    data: list[str] = []
    captions = False
    videos = 0
    chapters = 0
    in_chapters = False
    for line in stderr.splitlines():
        if line.startswith(("Stream mapping:", "Output #")):
            break  # the first-frame decode's own output follows: not the file's streams
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
            if in_video:
                video_lines.append(line)
            if last_cover and (fm := _FILENAME.match(line)):
                covers[-1] = replace(covers[-1], filename=fm.group(1).strip())
            elif not line.startswith("    "):
                last_cover = False
            continue
        in_chapters = False
        last_cover = in_video = False
        kind, desc = m.group(2), m.group(3)
        codec = desc.split(",")[0].split()[0] if desc else "unknown"
        if kind == "Audio":
            audio.append(codec)
        elif kind == "Subtitle":
            subs.append(codec)
        elif kind == "Attachment":
            attachments += 1
        elif kind == "Data":
            tag = re.match(r"none \((\w{4}) /", desc) if codec == "none" else None
            data.append(tag.group(1) if tag else codec)
        elif kind == "Video":
            videos += 1
        if kind == "Video" and "(attached pic)" in desc:
            covers.append(CoverArt(videos - 1, codec))
            last_cover = True
        elif kind == "Video" and vcodec is not None:
            sm = _SIZE.search(desc)
            others.append(OtherVideo(videos - 1, codec, (int(sm.group(1)), int(sm.group(2))) if sm else None))
        elif kind == "Video" and vcodec is None:
            vcodec = codec
            in_video = True
            captions = ", Closed Captions" in desc
            # The pixel format follows the first top-level comma (parentheses nest).
            depth, cut = 0, None
            for i, ch in enumerate(desc):
                depth += ch == "("
                depth -= ch == ")"
                if ch == "," and depth == 0:
                    cut = i
                    break
            if cut is not None:
                pix_fmt, color = _parse_pix_fmt(desc[cut + 1 :])
                field_order = _parse_field_order(desc[cut + 1 :])
            if sm := _SIZE.search(desc[cut or 0 :]):
                width, height = int(sm.group(1)), int(sm.group(2))
            if fm := _FPS.search(desc):
                fps = float(fm.group(1)) * (1000 if fm.group(2) else 1)
            if tm := _TBN.search(desc):
                time_base = Fraction(1, int(tm.group(1)) * (1000 if tm.group(2) else 1))
    return ProbeInfo(
        duration,
        vcodec,
        pix_fmt,
        width,
        height,
        fps,
        color,
        len(audio),
        tuple(subs),
        chapters,
        start,
        field_order,
        time_base,
        attachments=attachments,
        audio_codecs=tuple(audio),
        covers=tuple(covers),
        other_videos=tuple(others),
        data_codecs=tuple(data),
        closed_captions=captions,
        **_video_side_data(video_lines),
    )


def _video_side_data(lines: list[str]) -> dict[str, Any]:
    """The ProbeInfo fields read from the lines under the video's Stream line: its display
    matrix, Dolby Vision record, 360-degree projection and stereo layout (side data, or
    Matroska's stereo_mode tag)."""
    found: dict[str, Any] = {}
    for line in lines:
        if m := _ROTATION.match(line):
            found["rotation"] = float(m.group(1))
        elif m := _DOVI_STREAM.match(line):
            found["dolby_vision_profile"] = int(m.group(1))
        elif m := _SPHERICAL.match(line):
            yaw, pitch, roll = (float(v) if v else 0.0 for v in m.group(2, 3, 4))
            found["spherical"] = Spherical(m.group(1), yaw, pitch, roll, int(m.group(5) or 0))
        elif (m := _STEREO3D.match(line)) and m.group(1).strip() not in ("2D", "unspecified"):
            found["stereo3d"] = m.group(1).strip()
        elif _STEREO_TAG.match(line):
            found["stereo_tag"] = True
    return found


def build_probe_args(ffmpeg: str, path: str, input_args: Sequence[str] = (), first_frame: bool = False) -> list[str]:
    args = [ffmpeg, "-nostdin", "-hide_banner", *input_args, "-i", path]
    if first_frame:  # decode one frame: its siting, field flags and HDR side data are the codec's
        args += ["-map", "0:V:0?", "-frames:v", "1", "-vf", "showinfo", "-f", "null", "-"]
    return args


def probe_file(
    ffmpeg: str, path: str, timeout_s: float = 60.0, *, input_args: Sequence[str] = (), first_frame: bool = False
) -> ProbeInfo:
    """Run `ffmpeg -i path` (with first_frame, decode one frame through showinfo) and parse it."""
    cmd = build_probe_args(ffmpeg, path, input_args, first_frame)
    try:
        log.debug("ffmpeg probe: %s", shlex.join(cmd))
        done = subprocess.run(cmd, capture_output=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
        log.debug("ffmpeg probe: exit %d (it has no output file; its stderr is the answer)", done.returncode)
    except subprocess.TimeoutExpired as exc:
        raise InputError(f"{path}: ffmpeg took over {timeout_s:.0f} s to open it") from exc
    text = done.stderr.decode("utf-8", errors="replace")
    if "Error opening input" in text or "Input #0" not in text:
        reason = next(
            (ln.split(":", 1)[-1].strip() for ln in reversed(text.splitlines()) if "Error opening input" in ln),
            text.strip().splitlines()[-1] if text.strip() else "",
        )
        raise InputError(f"{path}: ffmpeg cannot read it ({reason or 'unknown format'})")
    info = parse_probe_output(text)
    if not info.has_video:
        raise NoVideoStream(f"{path}: no video stream")
    if first_frame:
        info = replace(info, frame=parse_first_frame(text))
        if m := _SHOWINFO_CONFIG.search(text):
            tb_num, tb_den, fr_num, fr_den = (int(g) for g in m.groups())
            info = replace(
                info,
                time_base=Fraction(tb_num, tb_den) if tb_num and tb_den else info.time_base,
                frame_rate=Fraction(fr_num, fr_den) if fr_num and fr_den else None,
            )
    return info


def frame_at(ffmpeg: str, path: str, seconds: float, input_args: Sequence[str] = ()) -> FrameProps:
    """The frame shown at `seconds` (from the file's start, as -ss counts): its size and format.

    The seek is accurate (ffmpeg decodes from the key frame before and drops what precedes);
    half a millisecond early, so that a time rounded up still finds its own frame."""
    at = ["-ss", f"{max(0.0, seconds - 0.0005):.6f}"]
    info = probe_file(ffmpeg, path, input_args=[*input_args, *at], first_frame=True)
    assert info.frame is not None
    return info.frame
