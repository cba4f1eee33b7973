"""Pure argv builders for the decoder and the encoder; tested as whole lists."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import PurePath

from espcn_video.ffmpeg.probe import ColorTags, MasteringDisplay, ProbeInfo
from espcn_video.ffmpeg.y4m import PIPE_PIX_FMTS
from espcn_video.settings import EncodeSettings, InputSpec

COMMON = ["-nostdin", "-hide_banner", "-loglevel", "error"]
# frames as they come (no frame dropped or duplicated to a rate), any depth, as y4m on stdout
Y4M_PIPE_OUT = ("-fps_mode", "passthrough", "-strict", "-1", "-f", "yuv4mpegpipe", "pipe:1")

# extension -> (muxer or None to let ffmpeg guess, default video codec, default crf, can carry audio)
_CONTAINERS: dict[str, tuple[str | None, str, int | None, bool]] = {
    ".mp4": (None, "libx264", 18, True),
    ".m4v": (None, "libx264", 18, True),
    ".mov": (None, "libx264", 18, True),
    ".mkv": (None, "libx264", 18, True),
    ".ts": (None, "libx264", 18, True),
    ".webm": (None, "libvpx-vp9", 24, True),
    ".nut": (None, "ffv1", None, True),
    ".avi": (None, "ffv1", None, True),
    ".y4m": ("yuv4mpegpipe", "rawvideo", None, False),
    ".yuv": ("rawvideo", "rawvideo", None, False),
}
# Still images through ffmpeg's image2 muxer: a name with a printf number (frame_%04d.png) is a
# numbered sequence, one file per frame; any other name holds exactly one frame.
_IMAGE_CODECS = {
    ".png": "png",
    ".jpg": "mjpeg",
    ".jpeg": "mjpeg",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".bmp": "bmp",
    ".dpx": "dpx",
    ".webp": "libwebp",
}
_CONTAINERS.update({suffix: ("image2", codec, None, False) for suffix, codec in _IMAGE_CODECS.items()})
# The quality a still gets by default (as crf 18 for video); --output-args can override it.
_IMAGE_QUALITY = {"mjpeg": ("-q:v", "2"), "libwebp": ("-quality", "90")}
# Image encoders get RGB converted by the frames' own matrix and range (8 or 16 bits, by the
# source's depth), marked RGB so that an encoder's own conversion from there (JPEG's full-range
# BT.601, WebP's) is its format's convention and not the frames' former matrix.
IMAGE_PIX_FMTS = ("rgb24", "rgb48le", "rgb48be")  # PNG takes 16 bits big-endian only
_NUMBERED = re.compile(r"%0?\d*d")
_MUXER_AUDIO = {"yuv4mpegpipe": False, "rawvideo": False, "image2": False, "image2pipe": False}
_MP4_FAMILY = {".mp4", ".m4v", ".mov", "mp4", "mov", "ipod"}
# RGB sources become Y'CbCr by a stated conversion, not swscale's untagged BT.601 default: the
# BT.709 matrix at full range (no RGB level is merged); the format list then keeps 4:4:4 at the
# source's depth. ProbeInfo.decoded_color is what the encoder tags the result with.
RGB_TO_YUV_FILTER = "scale=out_color_matrix=bt709:out_range=full"


def known_suffix(suffix: str) -> bool:
    """An extension this project maps to a muxer and a codec (_CONTAINERS)."""
    return suffix in _CONTAINERS


def is_numbered(path: str) -> bool:
    """A printf frame number in the file name (frame_%04d.png): a numbered image sequence."""
    return bool(_NUMBERED.search(PurePath(path).name))


def is_image_output(output: str, fmt: str | None) -> bool:
    return output != "-" and output_muxer(output, fmt) == "image2"


def build_input_args(source: InputSpec) -> list[str]:
    """`-i IN`, with the size, format and rate a headerless .yuv needs, and the rate of a
    numbered image sequence (`--input-rate`, else image2's 25)."""
    args: list[str] = []
    if source.sequence_rate is not None:
        rate = source.sequence_rate
        return ["-f", "image2", "-framerate", f"{rate.numerator}/{rate.denominator}", "-i", source.path]
    if source.raw is not None:
        raw = source.raw
        args += [
            "-f",
            "rawvideo",
            "-pix_fmt",
            raw.pix_fmt,
            "-video_size",
            f"{raw.width}x{raw.height}",
            "-framerate",
            f"{raw.rate.numerator}/{raw.rate.denominator}",
        ]
    return [*args, "-i", source.path]


def build_deinterlace_filter(mode: str | None) -> list[str]:
    """bwdif at the frame rate ("frame") or the field rate ("field"); "flagged" touches only the
    frames that say they are interlaced (for stdin, where nothing is probed first)."""
    if mode in (None, "off"):
        return []
    if mode == "flagged":
        return ["bwdif=mode=send_frame:parity=auto:deint=interlaced"]
    send = "send_field" if mode == "field" else "send_frame"
    return [f"bwdif=mode={send}:parity=auto:deint=all"]


def build_timed_decode_args(
    ffmpeg: str, input_args: Sequence[str], filters: Sequence[str] = (), size: tuple[int, int] | None = None
) -> list[str]:
    """Decode the first video stream to y4m on stdout and each frame's pts and size to stderr.

    y4m has no timestamps, so the filtered video is split: one branch is the y4m pipe, the other
    a framecrc of the frames as rawvideo on pipe:2, one line per frame in the filter's time base,
    flushed per frame (see ffmpeg/timestamps.py). That branch is not scaled (-noautoscale): its
    packet sizes show a frame size that changes mid-stream, which y4m cannot. The y4m branch is
    scaled to `size` (the first frame's: an explicit scale, a no-op until the size changes, so
    that a chunk that starts after a change gets the same frames as a whole run); without a
    size, ffmpeg's own output scaler does the same. The format list lets ffmpeg pick the nearest
    layout.
    """
    head = ",".join([*filters, "split=2[pick][times]"])
    scale = [f"scale={size[0]}:{size[1]}"] if size is not None else []
    frames = ",".join([*scale, "format=" + "|".join(PIPE_PIX_FMTS)])
    return [
        ffmpeg,
        *COMMON,
        *input_args,
        "-filter_complex",
        f"[0:V:0]{head};[pick]{frames}[frames]",
        *("-map", "[frames]", *Y4M_PIPE_OUT),
        *("-map", "[times]", "-noautoscale", "-c:v", "rawvideo", "-fps_mode", "passthrough"),
        *("-enc_time_base", "filter", "-flush_packets", "1", "-f", "framecrc", "pipe:2"),
    ]


def build_decode_args(ffmpeg: str, source: InputSpec) -> list[str]:
    """Decode the first video stream to y4m on stdout, in the pipeline format closest to the source.

    The format filter with a list lets ffmpeg pick the nearest supported layout and depth, so a
    10-bit source stays 10-bit and 4:2:2 stays 4:2:2; y4m carries the range tag.
    """
    args = [ffmpeg, *COMMON, *build_input_args(source)]
    args += ["-map", "0:V:0", "-vf", "format=" + "|".join(PIPE_PIX_FMTS), *Y4M_PIPE_OUT]
    return args


def default_codec_for(output: str, fmt: str | None) -> tuple[str, int | None]:
    suffix = PurePath(output).suffix.lower() if output != "-" else ""
    if suffix in _CONTAINERS:
        _, codec, crf, _ = _CONTAINERS[suffix]
        return codec, crf
    if fmt in ("yuv4mpegpipe", "rawvideo"):
        return "rawvideo", None
    if fmt in ("nut", "avi"):
        return "ffv1", None
    return "libx264", 18


def output_muxer(output: str, fmt: str | None) -> str | None:
    if fmt:
        return fmt
    suffix = PurePath(output).suffix.lower()
    return _CONTAINERS.get(suffix, (None,))[0]


def can_carry_audio(output: str, fmt: str | None) -> bool:
    muxer = output_muxer(output, fmt)
    if muxer is not None and muxer in _MUXER_AUDIO:
        return _MUXER_AUDIO[muxer]
    suffix = PurePath(output).suffix.lower() if output != "-" else ""
    return _CONTAINERS.get(suffix, (None, "", None, True))[3]


_BITMAP_SUBTITLES = {"dvd_subtitle", "hdmv_pgs_subtitle", "dvb_subtitle"}


def subtitle_codec_for(output: str, fmt: str | None, source_codecs: tuple[str, ...]) -> str | None:
    """How the source's subtitles go into the output, or None where the container has no proper
    place for them (AVI, NUT, FLV; MPEG-TS takes DVB bitmaps only: it would write text as an
    opaque data stream). Text changes codec between MP4 (mov_text), WebM (WebVTT) and Matroska."""
    family = _container_family(output, fmt)
    bitmap = [c for c in source_codecs if c in _BITMAP_SUBTITLES]
    if carries_attachments(output, fmt):  # Matroska takes every kind
        return "srt" if "mov_text" in source_codecs else "copy"
    if family in _MP4_FAMILY:
        if not bitmap:
            return "mov_text"
        return "copy" if all(c == "dvd_subtitle" for c in source_codecs) else None
    if family in (".webm", "webm"):
        return None if bitmap else "webvtt"
    if family in (".ts", ".m2ts", ".mts", "mpegts") and all(c == "dvb_subtitle" for c in source_codecs):
        return "copy"
    return None


@dataclass(frozen=True)
class OutputVideo:
    """What the encoder must set on the upscaled frames so that nothing of the source is lost."""

    full_range: bool = False
    color: ColorTags = ColorTags()
    chroma_location: str | None = None
    mastering: MasteringDisplay | None = None
    content_light: tuple[int, int] | None = None  # MaxCLL, MaxFALL
    time_base: Fraction | None = None  # the source's, restored at the encoder (timed input)
    frame_rate: Fraction | None = None  # the output's nominal rate: a fixed-rate container's clock
    crop: tuple[int, int] | None = None  # (width, height): an encoder that needs even sizes
    codec_args: tuple[str, ...] = ()  # what the picture's size needs of the codec
    source_start_s: float = 0.0  # the source container's start time: audio is shifted by it
    field_mode: str = "prog"  # setparams' field_mode: tff/bff only for woven fields kept on purpose
    compose: str | None = None  # compare's view, cut from the stacked frame (ffmpeg/compose.py)
    image: bool = False  # still images: converted to RGB by the tags above (IMAGE_PIX_FMTS)


# Encoders that code interlaced pictures as such (-flags +ildct+ilme); the others code woven
# fields as progressive frames and their bitstream says so.
_INTERLACED_CODING = ("libx264", "mpeg2video")

# Encoders that take 4:2:0 (and 4:2:2) only at even sizes.
_EVEN_ONLY = (
    "libx264",
    "libx265",
    "libsvtav1",
    "libaom-av1",
    "librav1e",
    "libopenh264",
    "libvvenc",
    "libkvazaar",
    "mpeg2video",
    "mpeg4",
    "libxvid",
    "_nvenc",
    "_vaapi",
    "_qsv",
    "_amf",
    "_videotoolbox",
    "_vulkan",
)


def even_size_for(codec: str, width: int, height: int, chroma_shift: tuple[int, int]) -> tuple[int, int] | None:
    """The cropped size when `codec` cannot take width x height with this subsampling, else None."""
    if not any(codec == name or (name.startswith("_") and codec.endswith(name)) for name in _EVEN_ONLY):
        return None
    w = width - (width % 2 if chroma_shift[0] else 0)
    h = height - (height % 2 if chroma_shift[1] else 0)
    return (w, h) if (w, h) != (width, height) else None


def build_color_args(color: ColorTags, full_range: bool) -> list[str]:
    args = ["-color_range", "pc" if full_range else (color.range or "tv")]
    if color.primaries:
        args += ["-color_primaries", color.primaries]
    if color.transfer:
        args += ["-color_trc", color.transfer]
    if color.space:
        args += ["-colorspace", color.space]
    return args


def build_output_filter(video: OutputVideo) -> str:
    """setparams puts the source's colour, siting and progressive flag on every frame: since
    ffmpeg 7.1 the -color_* output options are ignored when the input says nothing."""
    params = [f"range={'pc' if video.full_range else (video.color.range or 'tv')}"]
    for key, value in (
        ("color_primaries", video.color.primaries),
        ("color_trc", video.color.transfer),
        ("colorspace", video.color.space),
        ("chroma_location", video.chroma_location),
    ):
        if value:
            params.append(f"{key}={value}")
    chain = [f"setparams=field_mode={video.field_mode}:" + ":".join(params)]
    if video.compose is not None:
        chain.append(video.compose)
    if video.crop is not None:
        chain.append(f"crop={video.crop[0]}:{video.crop[1]}:0:0")
    if video.image:
        chain += ["format=" + "|".join(IMAGE_PIX_FMTS), "setparams=colorspace=gbr:range=pc"]
    return ",".join(chain)


def _x265_xy(p: tuple[float, float]) -> str:
    return f"({round(p[0] / 0.00002)},{round(p[1] / 0.00002)})"  # units of 0.00002


def _x265_luminance(v: float) -> str:
    return str(round(v * 10000))  # units of 0.0001 cd/m2


def _svt_xy(p: tuple[float, float]) -> str:
    return f"({p[0]:.4f},{p[1]:.4f})"


def _svt_luminance(v: float) -> str:
    return f"{v:.4f}"


# encoder -> (its params option, mastering key, light key, chromaticity and luminance formats)
_HDR_PARAMS: dict[str, tuple[str, str, str, Callable[[tuple[float, float]], str], Callable[[float], str]]] = {
    "libx265": ("-x265-params", "master-display", "max-cll", _x265_xy, _x265_luminance),
    "libsvtav1": ("-svtav1-params", "mastering-display", "content-light", _svt_xy, _svt_luminance),
}


def build_hdr_args(codec: str, video: OutputVideo) -> list[str]:
    """HDR10 static metadata in the encoder's own terms (its SEI / OBU), for x265 and SVT-AV1."""
    m, light = video.mastering, video.content_light
    if codec not in _HDR_PARAMS or (m is None and light is None):
        return []
    option, mastering_key, light_key, xy, luminance = _HDR_PARAMS[codec]
    params = []
    if m is not None:
        params.append(
            f"{mastering_key}=G{xy(m.green)}B{xy(m.blue)}R{xy(m.red)}WP{xy(m.white)}"
            f"L({luminance(m.max_luminance)},{luminance(m.min_luminance)})"
        )
    if light is not None:
        params.append(f"{light_key}={light[0]},{light[1]}")
    return [option, ":".join(params)]


def copies_from_source(
    output: str, settings: EncodeSettings, source: InputSpec | None, probe: ProbeInfo | None
) -> bool:
    return (
        settings.copy_streams
        and source is not None
        and not source.is_stdin
        and source.raw is None
        and probe is not None
        and can_carry_audio(output, settings.format)
    )


def build_source_copy_args(
    output: str,
    settings: EncodeSettings,
    source: InputSpec | None,
    probe: ProbeInfo | None,
    video_input: int = 0,
    source_offset_s: float | None = None,
    attach: Sequence[Attachment] = (),
) -> list[str]:
    """Input 1 is the source file: map our video, then its audio, subtitles, chapters, metadata.

    `attach`: files to attach (Matroska), after the source's own attachments: its covers.

    `source_offset_s`: with -copyts, shift the source's streams by this (minus its start time) so
    they line up with video timestamps that the decoder already normalised.
    """
    if not copies_from_source(output, settings, source, probe):
        # no source to copy from: drop the tags the Matroska pipe invents (its default language "eng")
        return ["-map", f"{video_input}:v:0", "-map_metadata:s:v:0", "-1"]
    assert source is not None and probe is not None
    offset = ["-itsoffset", f"{source_offset_s:.6f}"] if source_offset_s else []
    args = [
        *offset,
        "-i",
        source.path,
        "-map",
        f"{video_input}:v:0",
        "-map",
        "1:a?",
        "-map_chapters",
        "1",
        "-map_metadata",
        "1",
        # the video track's own tags (language, title, handler) are the source video's, not the pipe's
        "-map_metadata:s:v:0",
        "1:s:V:0",
        *audio_codec_args(output, settings, probe),
    ]
    subtitles = subtitle_codec_for(output, settings.format, probe.subtitle_codecs) if probe.subtitle_codecs else None
    if subtitles is not None:
        args += ["-map", "1:s", "-c:s", subtitles]
    matroska = carries_attachments(output, settings.format)
    if probe.attachments and matroska:
        args += ["-map", "1:t?"]  # the fonts an ASS subtitle names; copied as they are
    covers = kept_covers(output, settings.format, probe)
    others = kept_other_videos(output, settings.format, probe)
    for k in (*covers, *others):  # output video streams 1.. (cover_args copies them)
        args += ["-map", f"1:v:{k}"]
    # The video's mapping above turns off ffmpeg's default per-stream copy for every stream, so
    # each other stream's tags (language, title; an attachment's filename and mimetype) are
    # mapped one by one: input and output streams of a kind are in the same order.
    kinds = [("a", probe.audio_streams), ("s", len(probe.subtitle_codecs) if subtitles else 0)]
    if matroska:
        kinds.append(("t", probe.attachments))
    for kind, count in kinds:
        for i in range(count):
            args += [f"-map_metadata:s:{kind}:{i}", f"1:s:{kind}:{i}"]
    for j, k in enumerate((*covers, *others), start=1):
        args += [f"-map_metadata:s:v:{j}", f"1:s:v:{k}"]
    for j, file in enumerate(attach, start=probe.attachments if matroska else 0):
        args += ["-attach", file.path, f"-metadata:s:t:{j}", f"mimetype={file.mimetype}"]
        args += [f"-metadata:s:t:{j}", f"filename={file.filename}"]
    return args


# Cover images as files: ffmpeg writes an attached picture into Matroska as a one-frame video
# track, so for Matroska each cover is copied out to a file (its own bytes) and attached again.
COVER_FILES = {"mjpeg": (".jpg", "image/jpeg"), "png": (".png", "image/png"), "bmp": (".bmp", "image/bmp")}
COVER_FILES.update({"gif": (".gif", "image/gif"), "webp": (".webp", "image/webp")})


@dataclass(frozen=True)
class Attachment:
    """A file the output gets as a Matroska attachment (`-attach`)."""

    path: str
    filename: str
    mimetype: str


def covers_to_attach(output: str, fmt: str | None, probe: ProbeInfo | None) -> list[tuple[int, str, str, str]]:
    """(video stream index, file suffix, filename, mimetype) of each source cover Matroska OUT
    gets as an attachment: the covers in an image format (COVER_FILES)."""
    if probe is None or not carries_attachments(output, fmt):
        return []
    found = []
    for j, cover in enumerate(probe.covers):
        if cover.codec in COVER_FILES:
            suffix, mime = COVER_FILES[cover.codec]
            found.append((cover.stream, suffix, cover.filename or f"cover{j or ''}{suffix}", mime))
    return found


def build_cover_extract_args(ffmpeg: str, source: str, stream: int, path: str) -> list[str]:
    """Copy one attached picture's bytes out to `path` (no decoding)."""
    return [ffmpeg, *COMMON, "-i", source, "-map", f"0:v:{stream}", "-c", "copy", "-frames:v", "1"] + [
        *("-f", "image2", "-update", "1", "-y", path)
    ]


def kept_covers(output: str, fmt: str | None, probe: ProbeInfo | None) -> tuple[int, ...]:
    """The source's cover images (attached pictures) the output keeps: MP4 takes them. ffmpeg
    writes one into Matroska as a one-frame video track, not as an attachment (even with -c copy
    alone), and QuickTime .mov and the others have no place for them."""
    return probe.cover_streams if probe is not None and carries_covers(output, fmt) else ()


def carries_covers(output: str, fmt: str | None) -> bool:
    return _container_family(output, fmt) in (".mp4", ".m4v")


# The codecs a container takes as a second video track by stream copy (None: any); the others
# (AVI, y4m, images...) keep only the upscaled video.
_OTHER_VIDEO_CODECS: dict[str, set[str] | None] = {
    ".mkv": None,
    "matroska": None,
    ".nut": None,
    "nut": None,
    ".mp4": {"h264", "hevc", "av1", "mpeg4", "mjpeg", "vp9"},
    ".m4v": {"h264", "hevc", "mpeg4"},
    ".mov": {"h264", "hevc", "av1", "mpeg4", "mjpeg", "prores", "dnxhd"},
    ".webm": {"vp8", "vp9", "av1"},
    ".ts": {"h264", "hevc", "mpeg2video"},
    "mpegts": {"h264", "hevc", "mpeg2video"},
}


def kept_other_videos(output: str, fmt: str | None, probe: ProbeInfo | None) -> tuple[int, ...]:
    """The source's other video streams (OtherVideo) OUT keeps, copied as they are (not upscaled):
    the ones its container takes."""
    family = _container_family(output, fmt)
    if probe is None or family not in _OTHER_VIDEO_CODECS:
        return ()
    allowed = _OTHER_VIDEO_CODECS[family]
    return tuple(v.stream for v in probe.other_videos if allowed is None or v.codec in allowed)


def cover_args(output: str, settings: EncodeSettings, source: InputSpec | None, probe: ProbeInfo | None) -> list[str]:
    """The source's covers OUT keeps as pictures (kept_covers), then its other video streams
    (kept_other_videos), are OUT's video streams 1..N, mapped by build_source_copy_args and
    copied as they are here (after the video's -c:v, which this overrides)."""
    if not copies_from_source(output, settings, source, probe):
        return []
    args: list[str] = []
    covers = len(kept_covers(output, settings.format, probe))
    for j in range(1, covers + 1):
        args += [f"-c:v:{j}", "copy", f"-disposition:v:{j}", "attached_pic"]
    for j in range(covers + 1, covers + 1 + len(kept_other_videos(output, settings.format, probe))):
        args += [f"-c:v:{j}", "copy"]
    return args


# What a container cannot take by stream copy (the bundled ffmpeg's muxers, measured), and what
# such an audio stream becomes there: lossless stays lossless where the container has a lossless
# codec, the rest goes to the container's usual codec. AVI refuses Opus, and AAC, MP3 and Vorbis
# (which start before zero) make its muxer move the video by a frame: they become PCM there.
_AUDIO_ONLY = {".webm": ({"opus", "vorbis"}, "libopus"), ".m4v": ({"aac", "ac3", "eac3", "alac"}, "aac")}
_AUDIO_REFUSED = {
    ".mov": {"flac": "alac", "opus": "aac"},
    ".avi": {codec: "pcm_s16le" for codec in ("opus", "aac", "mp3", "vorbis")},
}


def audio_replacements(output: str, fmt: str | None, codecs: Sequence[str]) -> dict[int, tuple[str, str]]:
    """{audio stream index: (its codec, the encoder it needs)} for the source's audio streams that
    the output container cannot carry as they are (stream copy)."""
    family = _container_family(output, fmt)
    out: dict[int, tuple[str, str]] = {}
    for i, codec in enumerate(codecs):
        if family in _AUDIO_ONLY:
            allowed, encoder = _AUDIO_ONLY[family]
            if codec not in allowed:
                out[i] = (codec, encoder)
        elif codec in _AUDIO_REFUSED.get(family, {}):
            out[i] = (codec, _AUDIO_REFUSED[family][codec])
    return out


def _container_family(output: str, fmt: str | None) -> str:
    """The output's container as an extension (`-f` names mapped to theirs)."""
    if fmt:
        return {"webm": ".webm", "mov": ".mov", "ipod": ".m4v", "avi": ".avi", "mp4": ".mp4"}.get(fmt, fmt)
    return PurePath(output).suffix.lower() if output != "-" else ""


def stores_fixed_rate(output: str, fmt: str | None) -> bool:
    """A container whose clock is one frame rate (y4m's header, AVI's stream rate): no timestamps."""
    return _container_family(output, fmt) in (".y4m", "yuv4mpegpipe", ".avi")


def container_name(output: str, fmt: str | None) -> str:
    """How a note names the output's container: its -f name or its extension."""
    return fmt or _container_family(output, fmt) or "the output"


def audio_codec_args(output: str, settings: EncodeSettings, probe: ProbeInfo) -> list[str]:
    """-c:a: the user's codec, else a copy of each stream, except the ones the container cannot
    carry, which are encoded (audio_replacements; the job says so in its notes)."""
    args = ["-c:a", settings.audio_codec]
    if settings.audio_codec == "copy":
        for i, (_, encoder) in sorted(audio_replacements(output, settings.format, probe.audio_codecs).items()):
            args += [f"-c:a:{i}", encoder]
    return args


_MATROSKA_FAMILY = {".mkv", ".mka", ".mk3d", "matroska"}
_WEBM_FAMILY = {".webm", "webm"}


def carries_attachments(output: str, fmt: str | None) -> bool:
    """Matroska (not WebM) keeps attached files; the other containers have no place for them."""
    return _container_family(output, fmt) in _MATROSKA_FAMILY


def keeps_stereo_tag(output: str, fmt: str | None) -> bool:
    """Matroska and WebM write a copied stereo_mode tag as their StereoMode element."""
    return _container_family(output, fmt) in _MATROSKA_FAMILY | _WEBM_FAMILY


def carries_projection(output: str, fmt: str | None) -> bool:
    """The containers that write a 360-degree projection from the stream's side data (Matroska
    Projection, MP4/MOV sv3d with -strict -1)."""
    return _container_family(output, fmt) in _MATROSKA_FAMILY | _WEBM_FAMILY | _MP4_FAMILY


def keeps_timecode(output: str, fmt: str | None) -> bool:
    """MP4/MOV re-make a timecode track from the copied timecode tag; Matroska keeps the tag."""
    return _container_family(output, fmt) in _MATROSKA_FAMILY | _MP4_FAMILY


def resolve_codec(output: str, settings: EncodeSettings) -> tuple[str, int | None]:
    """The encoder and CRF the output gets: the user's, else the extension's default."""
    default_codec, default_crf = default_codec_for(output, settings.format)
    codec = settings.codec or default_codec
    crf = settings.crf if settings.crf is not None else (default_crf if settings.codec is None else None)
    return codec, crf


def _muxer_args(output: str, settings: EncodeSettings) -> list[str]:
    args = []
    muxer = output_muxer(output, settings.format)
    if muxer:
        args += ["-f", muxer]
    if muxer == "image2" and output != "-" and not is_numbered(output):
        args += ["-update", "1"]  # one file, one frame (the job checks that IN has one)
    if output == "-" and (settings.format or "") in _MP4_FAMILY:
        args += ["-movflags", "frag_keyframe+empty_moov"]
    return args + ["-y", "pipe:1" if output == "-" else output]


def build_encode_args(
    ffmpeg: str,
    output: str,
    settings: EncodeSettings,
    *,
    full_range: bool = False,
    source: InputSpec | None = None,
    probe: ProbeInfo | None = None,
    video: OutputVideo | None = None,
    timed: bool = False,
    attach: Sequence[Attachment] = (),
) -> list[str]:
    """Encode frames from stdin into `output`; copy audio, subtitles, chapters and metadata from a file source.

    `timed`: stdin is Matroska with each frame's timestamp (ffmpeg/mkv.py), kept as they are
    (-copyts; the source's streams shifted by its start time as the decoder shifted the video);
    else y4m. `output` is the temporary path (or "-" for stdout); muxer and codec follow the
    final name, so the caller passes `settings.format` when the temporary name hides the extension.
    """
    if video is None:
        video = OutputVideo(full_range=full_range, color=probe.color if probe else ColorTags())
    args = [ffmpeg, *COMMON]
    if timed:
        args += ["-copyts", "-f", "matroska", "-i", "pipe:0"]
        args += build_source_copy_args(
            output, settings, source, probe, source_offset_s=-video.source_start_s, attach=attach
        )
    else:
        args += ["-f", "yuv4mpegpipe", "-i", "pipe:0"]
        args += build_source_copy_args(output, settings, source, probe, attach=attach)
    codec, crf = resolve_codec(output, settings)
    # the filter on our video alone (-vf would reach copied cover images too, which ffmpeg refuses)
    args += ["-filter:v:0", build_output_filter(video), "-c:v", codec]
    args += cover_args(output, settings, source, probe)
    args += list(video.codec_args)
    if crf is not None:
        args += ["-crf", str(crf)]
        if codec in ("libvpx-vp9", "libvpx"):
            args += ["-b:v", "0"]
    if settings.preset:
        args += ["-preset", settings.preset]
    if video.image:  # RGB by now: the image format's own convention, no Y'CbCr tags
        args += list(_IMAGE_QUALITY.get(codec, ()))
    else:
        args += build_color_args(video.color, video.full_range)
    args += build_hdr_args(codec, video)
    if video.field_mode in ("tff", "bff") and codec in _INTERLACED_CODING:
        # woven fields kept on purpose: coded as fields (MBAFF), so the stream says interlaced
        args += ["-flags:v:0", "+ildct+ilme"]
    if timed and video.frame_rate and stores_fixed_rate(output, settings.format):
        # y4m and AVI take the stream's time base as their frame rate: one tick a frame
        rate = video.frame_rate
        args += ["-enc_time_base", f"{rate.denominator}/{rate.numerator}"]
    elif timed and video.time_base is not None and video.time_base >= Fraction(1, 500_000):
        # The pipe's microseconds round back to the source's own ticks.
        args += ["-enc_time_base", f"{video.time_base.numerator}/{video.time_base.denominator}"]
    args += ["-fps_mode", "passthrough"]
    if not video.image:  # y4m's odd layouts; an image encoder keeps to its standard (JPEG: full range)
        args += ["-strict", "-1"]
    args += list(settings.extra_args)
    return args + _muxer_args(output, settings)


def build_join_args(
    ffmpeg: str,
    concat_list: str,
    output: str,
    settings: EncodeSettings,
    *,
    source: InputSpec,
    probe: ProbeInfo,
    video_start_s: float = 0.0,
    video: OutputVideo | None = None,
    attach: Sequence[Attachment] = (),
) -> list[str]:
    """Join encoded chunk files once (concat demuxer, no re-encode), then mux the source's streams.

    The concat demuxer starts the joined video at 0; -itsoffset puts it back at its first frame's
    time, and the source's streams are shifted by its start time, as in an unchunked run.
    """
    args = [
        ffmpeg,
        *COMMON,
        "-copyts",
        "-itsoffset",
        f"{video_start_s:.6f}",
        "-f",
        "concat",
        "-safe",
        "0",
        "-i",
        concat_list,
    ]
    args += build_source_copy_args(output, settings, source, probe, source_offset_s=-probe.start_s, attach=attach)
    if output_muxer(output, settings.format) not in ("yuv4mpegpipe", "rawvideo"):
        args += ["-c:v", "copy"]  # y4m and raw re-wrap uncompressed frames instead: still lossless
        args += cover_args(output, settings, source, probe)
        # the default track, as an unchunked run's video is (the concat input marks none)
        args += ["-disposition:v:0", "default"]
    if video is not None:  # the parts (NUT) carry no colour tags: set them on the stream copy
        args += build_color_args(video.color, video.full_range)
        if video.chroma_location:
            args += ["-chroma_sample_location", video.chroma_location]
        if video.frame_rate and stores_fixed_rate(output, settings.format):
            # y4m and AVI take the stream's time base as their frame rate: one tick a frame
            tb_arg = f"{video.frame_rate.denominator}/{video.frame_rate.numerator}"
            if output_muxer(output, settings.format) == "yuv4mpegpipe":
                args += ["-enc_time_base", tb_arg]
            else:
                args += ["-bsf:v:0", f"setts=time_base={tb_arg}"]
        tb = video.time_base
        mp4 = _container_family(output, settings.format) in _MP4_FAMILY
        if mp4 and tb is not None and tb.numerator == 1 and tb.denominator <= 500_000:
            # the track time scale an unchunked run gets (the parts' is finer): the source's time
            # base, doubled while under 10000 as the muxer does (1/1000 -> 16000)
            scale = tb.denominator
            while scale < 10_000:
                scale *= 2
            args += ["-video_track_timescale", str(scale)]
    args += ["-fps_mode", "passthrough", "-strict", "-1"]
    return args + _muxer_args(output, settings)


def build_remux_args(
    ffmpeg: str,
    video_path: str,
    output: str,
    settings: EncodeSettings,
    *,
    source: InputSpec,
    probe: ProbeInfo,
    attach: Sequence[Attachment] = (),
) -> list[str]:
    """The encoded video (timestamps kept) with the streams of `source`, no re-encode.

    For stdin input: the bytes that fed the decoder were spooled to `source`, which is read
    once the video is done, for its audio, subtitles, chapters and metadata.
    """
    args = [ffmpeg, *COMMON, "-copyts", "-i", video_path]
    args += build_source_copy_args(output, settings, source, probe, source_offset_s=-probe.start_s, attach=attach)
    args += ["-c:v", "copy"]
    args += cover_args(output, settings, source, probe)
    args += ["-fps_mode", "passthrough", "-strict", "-1"]
    return args + _muxer_args(output, settings)
