"""IN before the run: checked, probed facts turned into decisions (deinterlacing, chroma siting,
the output's geometry and tags) and into notes that say whatever the run does beyond upscaling."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from espcn_video.errors import InputError, UsageError
from espcn_video.ffmpeg.args import (
    RGB_TO_YUV_FILTER,
    OutputVideo,
    audio_replacements,
    build_deinterlace_filter,
    build_input_args,
    build_timed_decode_args,
    carries_attachments,
    carries_covers,
    container_name,
    copies_from_source,
    covers_to_attach,
    even_size_for,
    is_image_output,
    subtitle_codec_for,
)
from espcn_video.ffmpeg.probe import ProbeInfo
from espcn_video.ffmpeg.y4m import FrameGeometry, Y4MHeader
from espcn_video.settings import InputSpec, UpscaleSettings

DEINTERLACE_MODES = ("auto", "off", "frame", "field")


# y4m's 4:2:0 tokens carry the siting ffmpeg decoded (C420mpeg2 left, C420paldv top-left).
_Y4M_SITING = {"420mpeg2": "left", "420paldv": "topleft", "420jpeg": "center"}


def check_input(source: InputSpec) -> None:
    """Fail early, naming the file, where ffmpeg's own message would be vague."""
    if source.is_stdin:
        return
    path = Path(source.path)
    if source.sequence_rate is not None:
        if not any(path.with_name(path.name % n).is_file() for n in range(5)):
            raise InputError(
                f"{source.path}: no image of this numbered sequence (numbers 0 to 4, where ffmpeg starts one)"
            )
        return
    if not path.exists():
        raise InputError(f"{source.path}: no such file")
    if path.is_dir():
        raise InputError(f"{source.path}: is a folder, not a video file")
    size = path.stat().st_size
    if size == 0:
        raise InputError(f"{source.path}: the file is empty")
    if source.raw is not None:
        raw = source.raw
        try:
            frame_bytes = FrameGeometry(raw.width, raw.height, raw.pix_fmt).frame_bytes
        except Exception:
            return  # a raw format outside our table: ffmpeg checks it
        if size % frame_bytes:
            raise InputError(
                f"{source.path}: {size} bytes is not a whole number of {raw.width}x{raw.height} "
                f"{raw.pix_fmt} frames ({frame_bytes} bytes each; {size // frame_bytes} frames "
                f"and {size % frame_bytes} bytes left over)"
            )
    elif path.suffix.lower() == ".y4m":
        check_y4m_size(path, size)


def check_y4m_size(path: Path, size: int) -> None:
    """A .y4m with plain FRAME markers must be header + n whole frames; else it was truncated."""
    from espcn_video.ffmpeg.y4m import parse_header  # local: only .y4m inputs need it

    with path.open("rb") as fh:
        line = fh.readline(4096)
        first_marker = fh.read(6)
    if not line.endswith(b"\n") or first_marker != b"FRAME\n":
        return  # frame parameters or an odd header: leave the check to the stream reader
    header = parse_header(line[:-1], str(path))
    per_frame = 6 + header.geometry.frame_bytes
    body = size - len(line)
    if body % per_frame:
        raise InputError(
            f"{path}: truncated y4m: {body // per_frame} whole frames and {body % per_frame} bytes of a partial one"
        )


def output_video_for(
    header: Y4MHeader,
    scale: int,
    codec: str,
    probe: ProbeInfo | None,
    chroma_location: str | None,
    deinterlace: str | None,
    image: bool = False,
) -> tuple[OutputVideo, str | None]:
    """Everything the encoder sets on the frames, from the decoded header and the probe; and a
    note when the encoder needs the size cropped to even, or when an image output had to assume
    the matrix its RGB is made with."""
    hr = header.geometry.scaled(scale)
    crop = even_size_for(codec, hr.width, hr.height, hr.chroma_shift) if hr.has_chroma else None
    note = None
    if crop is not None:
        note = f"cropped {hr.width}x{hr.height} to {crop[0]}x{crop[1]}: {codec} needs even sizes for {hr.pix_fmt}"
    frame = probe.frame if probe is not None else None
    color = probe.decoded_color if probe else OutputVideo().color
    if image and color.space is None and header.geometry.has_chroma:
        # RGB needs the matrix: an untagged source is read as players read it, by its height.
        hd = header.geometry.height >= 720
        color = replace(color, space="bt709" if hd else "smpte170m")
        note = (
            f"the source does not tag its Y'CbCr matrix: read as {'BT.709 (HD' if hd else 'BT.601 (SD'}"
            f", {header.geometry.height} lines), as players do, to make the images' RGB"
        )
    video = OutputVideo(
        image=image,
        full_range=header.full_range,
        color=color,
        chroma_location=chroma_location if header.geometry.has_chroma else None,
        mastering=frame.mastering if frame else None,
        content_light=frame.content_light if frame else None,
        time_base=probe.time_base if probe is not None and deinterlace != "field" else None,
        crop=crop,
        source_start_s=probe.start_s if probe is not None else 0.0,
        field_mode=(probe.interlaced or "prog") if probe is not None and deinterlace is None else "prog",
    )
    return video, note


def choose_deinterlace(settings: UpscaleSettings, probe: ProbeInfo | None) -> str | None:
    """auto: bwdif on the frames flagged interlaced, when the source says it is (a stdin source is
    not probed, so the filter waits for the flags); frame/field: bwdif on every frame; off: none."""
    if settings.deinterlace not in DEINTERLACE_MODES:
        raise UsageError(f"--deinterlace {settings.deinterlace}: choose {', '.join(DEINTERLACE_MODES)}")
    if settings.deinterlace != "auto":
        return None if settings.deinterlace == "off" else settings.deinterlace
    return "flagged" if probe is None or probe.interlaced else None


def source_filters(probe: ProbeInfo | None, deinterlace: str | None) -> list[str]:
    """What every decoder of IN runs before the pipeline's format list: RGB to Y'CbCr, stated
    (RGB_TO_YUV_FILTER), then the deinterlacer."""
    rgb = [RGB_TO_YUV_FILTER] if probe is not None and probe.is_rgb else []
    return [*rgb, *build_deinterlace_filter(deinterlace)]


def build_decode_command(ffmpeg: str, source: InputSpec, probe: ProbeInfo | None, deinterlace: str | None) -> list[str]:
    return build_timed_decode_args(ffmpeg, build_input_args(source), source_filters(probe, deinterlace))


def describe_input(settings: UpscaleSettings, probe: ProbeInfo | None, deinterlace: str | None) -> list[str]:
    """Lines for the summary: whatever the run does beyond upscaling, said, never silent."""
    notes = []
    if deinterlace in ("frame", "field"):
        rate = "one frame per frame" if deinterlace == "frame" else "one frame per field (double rate)"
        notes.append(f"deinterlaced with bwdif, every frame, {rate}: --deinterlace {deinterlace}")
    elif deinterlace == "flagged" and probe is not None:
        notes.append(
            f"deinterlaced with bwdif, one frame per frame, the frames flagged interlaced: the source "
            f"is interlaced ({probe.interlaced}); --deinterlace off keeps the fields woven"
        )
    elif deinterlace == "flagged":
        notes.append(
            "stdin: frames flagged interlaced are deinterlaced with bwdif (--deinterlace off keeps them woven)"
        )
    elif probe is not None and probe.interlaced and settings.deinterlace == "off":
        notes.append(f"the source is interlaced ({probe.interlaced}); kept woven (--deinterlace off)")
    if probe is not None and probe.is_rgb:
        back = (
            "and written back as RGB"
            if is_image_output(settings.output, settings.encode.format)
            else "and the output tagged so"
        )
        notes.append(
            f"RGB source ({probe.pix_fmt}): converted to Y'CbCr 4:4:4 with the BT.709 matrix at full range, {back}"
        )
    if probe is not None and probe.has_alpha:
        notes.append(f"the source's alpha channel ({probe.pix_fmt}) is not kept: the output is opaque")
    src = settings.input
    if src.is_stdin and settings.encode.copy_streams and settings.output == "-":
        notes.append(
            "stdin to stdout: only the video of the pipe is read; audio, subtitles and chapters are "
            "not kept (give a file as IN or OUT to keep them)"
        )
    elif (
        probe is not None
        and probe.audio_streams
        and not copies_from_source(settings.output, settings.encode, src, probe)
        and settings.encode.copy_streams
    ):
        notes.append(f"{probe.audio_streams} audio stream(s) not kept: the output format has no place for them")
    if probe is not None and copies_from_source(settings.output, settings.encode, src, probe):
        notes += copied_stream_notes(settings, probe)
    return notes


def copied_stream_notes(settings: UpscaleSettings, probe: ProbeInfo) -> list[str]:
    """What OUT's container does to the source's other streams: audio it re-encodes, and the
    subtitles, cover images and attached files it has no place for."""
    out, fmt = settings.output, settings.encode.format
    container = container_name(out, fmt)
    notes = []
    if settings.encode.audio_codec == "copy":
        for i, (codec, encoder) in sorted(audio_replacements(out, fmt, probe.audio_codecs).items()):
            said = f"{container} cannot carry {codec} as it is"
            notes.append(f"audio stream {i} ({codec}) encoded with {encoder}: {said}")
    if probe.subtitle_codecs and subtitle_codec_for(out, fmt, probe.subtitle_codecs) is None:
        codecs = ", ".join(dict.fromkeys(probe.subtitle_codecs))
        notes.append(
            f"{len(probe.subtitle_codecs)} subtitle stream(s) ({codecs}) not kept: {container} has no place for them "
            "(.mkv has)"
        )
    dropped = 0 if carries_covers(out, fmt) else len(probe.covers) - len(covers_to_attach(out, fmt, probe))
    if dropped:
        notes.append(
            f"{dropped} cover image(s) (attached pictures) not kept: "
            "only MP4 (as pictures) and Matroska (as attachments, JPEG/PNG/BMP/GIF/WebP) carry them"
        )
    if probe.attachments and not carries_attachments(out, fmt):
        notes.append(
            f"{probe.attachments} attached file(s) (fonts, cover art) not kept: only Matroska (.mkv) carries them"
        )
    return notes
