"""Pure argv builders for the decoder and the encoder; tested as whole lists."""

from __future__ import annotations

from pathlib import PurePath

from espcn_video.config import EncodeSettings, InputSpec
from espcn_video.ffmpeg.probe import ColorTags, ProbeInfo
from espcn_video.ffmpeg.y4m import PIPE_PIX_FMTS

COMMON = ["-nostdin", "-hide_banner", "-loglevel", "error"]

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
_MUXER_AUDIO = {"yuv4mpegpipe": False, "rawvideo": False, "image2": False, "image2pipe": False}
_MP4_FAMILY = {".mp4", ".m4v", ".mov", "mp4", "mov", "ipod"}


def build_decode_args(ffmpeg: str, source: InputSpec) -> list[str]:
    """Decode the first video stream to y4m on stdout, in the pipeline format closest to the source.

    The format filter with a list lets ffmpeg pick the nearest supported layout and depth, so a
    10-bit source stays 10-bit and 4:2:2 stays 4:2:2; y4m carries the range tag.
    """
    args = [ffmpeg, *COMMON]
    if source.raw is not None:
        raw = source.raw
        args += ["-f", "rawvideo", "-pix_fmt", raw.pix_fmt, "-video_size", f"{raw.width}x{raw.height}",
                 "-framerate", f"{raw.rate.numerator}/{raw.rate.denominator}"]
    args += ["-i", source.path, "-map", "0:v:0", "-vf", "format=" + "|".join(PIPE_PIX_FMTS),
             "-fps_mode", "passthrough", "-strict", "-1", "-f", "yuv4mpegpipe", "pipe:1"]
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


def subtitle_codec_for(output: str, fmt: str | None, source_codecs: tuple[str, ...]) -> str:
    """Text subtitles must change codec between MP4 (mov_text) and Matroska/WebM."""
    suffix = PurePath(output).suffix.lower() if output != "-" else ""
    family = fmt or suffix
    bitmap = {"dvd_subtitle", "hdmv_pgs_subtitle", "dvb_subtitle"}
    if any(c in bitmap for c in source_codecs):
        return "copy"
    if family in _MP4_FAMILY:
        return "mov_text"
    if family in (".webm", "webm"):
        return "webvtt"
    if "mov_text" in source_codecs:
        return "srt"
    return "copy"


def build_color_args(color: ColorTags, full_range: bool) -> list[str]:
    args = ["-color_range", "pc" if full_range else (color.range or "tv")]
    if color.primaries:
        args += ["-color_primaries", color.primaries]
    if color.transfer:
        args += ["-color_trc", color.transfer]
    if color.space:
        args += ["-colorspace", color.space]
    return args


def build_source_copy_args(output: str, settings: EncodeSettings, source: InputSpec | None,
                           probe: ProbeInfo | None, video_input: int = 0) -> list[str]:
    """Input 1 is the source file: map our video, then its audio, subtitles, chapters, metadata."""
    copy_from_source = (settings.copy_streams and source is not None and not source.is_stdin
                        and source.raw is None and probe is not None
                        and can_carry_audio(output, settings.format))
    if not copy_from_source:
        return ["-map", f"{video_input}:v:0"]
    assert source is not None and probe is not None
    args = ["-i", source.path, "-map", f"{video_input}:v:0", "-map", "1:a?", "-map", "1:s?",
            "-map_chapters", "1", "-map_metadata", "1", "-c:a", settings.audio_codec]
    if probe.subtitle_codecs:
        args += ["-c:s", subtitle_codec_for(output, settings.format, probe.subtitle_codecs)]
    return args


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
    if output == "-" and (settings.format or "") in _MP4_FAMILY:
        args += ["-movflags", "frag_keyframe+empty_moov"]
    return args + ["-y", "pipe:1" if output == "-" else output]


def build_encode_args(ffmpeg: str, output: str, settings: EncodeSettings, *, full_range: bool,
                      source: InputSpec | None = None, probe: ProbeInfo | None = None) -> list[str]:
    """Encode y4m from stdin into `output`; copy audio, subtitles, chapters and metadata from a file source.

    `output` is the temporary path (or "-" for stdout); muxer and codec follow the final name,
    so the caller passes `settings.format` when the temporary name hides the extension.
    """
    args = [ffmpeg, *COMMON, "-f", "yuv4mpegpipe", "-i", "pipe:0"]
    args += build_source_copy_args(output, settings, source, probe)
    codec, crf = resolve_codec(output, settings)
    args += ["-c:v", codec]
    if crf is not None:
        args += ["-crf", str(crf)]
        if codec in ("libvpx-vp9", "libvpx"):
            args += ["-b:v", "0"]
    if settings.preset:
        args += ["-preset", settings.preset]
    args += build_color_args(probe.color if probe else ColorTags(), full_range)
    args += ["-fps_mode", "passthrough", "-strict", "-1"]
    args += list(settings.extra_args)
    return args + _muxer_args(output, settings)


def build_join_args(ffmpeg: str, concat_list: str, output: str, settings: EncodeSettings, *,
                    source: InputSpec, probe: ProbeInfo) -> list[str]:
    """Join encoded chunk files once (concat demuxer, no re-encode), then mux the source's streams."""
    args = [ffmpeg, *COMMON, "-f", "concat", "-safe", "0", "-i", concat_list]
    args += build_source_copy_args(output, settings, source, probe)
    if output_muxer(output, settings.format) not in ("yuv4mpegpipe", "rawvideo"):
        args += ["-c:v", "copy"]  # y4m and raw re-wrap uncompressed frames instead: still lossless
    args += ["-fps_mode", "passthrough", "-strict", "-1"]
    return args + _muxer_args(output, settings)
