"""IN before the run: checked, probed facts turned into decisions (deinterlacing, chroma siting,
the output's geometry and tags) and into notes that say whatever the run does beyond upscaling."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

from espcn_video.errors import EspcnVideoError, InputError, UsageError
from espcn_video.ffmpeg.args import (
    RGB_TO_YUV_FILTER,
    OutputVideo,
    audio_replacements,
    build_deinterlace_filter,
    build_input_args,
    build_timed_decode_args,
    carries_attachments,
    carries_covers,
    carries_projection,
    container_name,
    copies_from_source,
    covers_to_attach,
    even_size_for,
    is_image_output,
    keeps_stereo_tag,
    keeps_timecode,
    kept_other_videos,
    subtitle_codec_for,
)
from espcn_video.ffmpeg.mkv import PROJECTION_TYPES
from espcn_video.ffmpeg.probe import ProbeInfo, frame_at
from espcn_video.ffmpeg.y4m import FrameGeometry, Y4MHeader
from espcn_video.settings import InputSpec, UpscaleSettings

DEINTERLACE_MODES = ("auto", "off", "frame", "field")
SIZE_LOOKS = 50  # size changes looked at (one short seek and decode each)


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
        frame_rate=_output_rate(probe, deinterlace),
        crop=crop,
        # FFV1's automatic slice count is 0 (refused) for a picture of a few pixels
        codec_args=("-slices", "1") if codec == "ffv1" and min(hr.width, hr.height) < 16 else (),
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


def check_probed(path: str, probe: ProbeInfo) -> None:
    """Refuse what the pipeline would turn into a wrong picture, naming why."""
    if probe.dolby_vision_profile == 5:
        raise InputError(
            f"{path}: Dolby Vision profile 5 has no backward-compatible base layer: without the "
            "Dolby Vision decoder its frames come out in the wrong colours (IPT-PQ-c2 read as Y'CbCr); "
            "convert it to HDR10 first"
        )


def first_frame_size(probe: ProbeInfo | None) -> tuple[int, int] | None:
    """The size every frame is brought to before SR: the first decoded frame's (OUT has one)."""
    if probe is None:
        return None
    if probe.frame is not None and probe.frame.size is not None:
        return probe.frame.size
    if not (probe.width and probe.height):
        return None
    # ffmpeg turns the frames by the display matrix: a quarter turn swaps the stream's size
    return (probe.height, probe.width) if round(probe.rotation) % 180 == 90 else (probe.width, probe.height)


def build_decode_command(ffmpeg: str, source: InputSpec, probe: ProbeInfo | None, deinterlace: str | None) -> list[str]:
    """The whole file's decode. A probed file decodes with -copyts, its frames' times less the
    container's start (decode_time_offset_us) as the encoder shifts the other streams: without
    it, ffmpeg moves to 0 the start of the streams it reads, which for MPEG-TS is the video's
    own first frame, and the video would lose its offset from the audio."""
    input_args = build_input_args(source)
    if decode_time_offset_us(source, probe) is not None:
        input_args = ["-copyts", *input_args]
    return build_timed_decode_args(ffmpeg, input_args, source_filters(probe, deinterlace), first_frame_size(probe))


def decode_time_offset_us(source: InputSpec, probe: ProbeInfo | None) -> int | None:
    """What build_decode_command's frame times are shifted by: the container's start, in
    microseconds (None: ffmpeg's own shift, for stdin, where nothing is probed first)."""
    if probe is None or source.is_stdin:
        return None
    return round(probe.start_s * 1_000_000)


@dataclass(frozen=True)
class SizeChange:
    """The source's frame size (or depth) changes here; size and format as decoded there."""

    frame: int
    time_s: float
    size: tuple[int, int] | None = None  # None where it could not be looked at (stdin)
    pix_fmt: str | None = None

    def describe(self) -> str:
        what = f"{self.size[0]}x{self.size[1]} {self.pix_fmt or ''}".rstrip() if self.size else "another size"
        return f"{what} from frame {self.frame} ({self.time_s:.3f} s)"

    def to_json(self) -> dict[str, object]:
        doc: dict[str, object] = {"frame": self.frame, "time_s": round(self.time_s, 6)}
        if self.size is not None:
            doc.update(width=self.size[0], height=self.size[1], pix_fmt=self.pix_fmt)
        return doc


def look_at_size_changes(ffmpeg: str, source: InputSpec, where: Sequence[tuple[int, float]]) -> list[SizeChange]:
    """Each change (frame index, time from the start) with the size and format decoded there."""
    if source.is_stdin:
        return [SizeChange(frame, t) for frame, t in where]
    input_args = build_input_args(source)[:-2]
    changes = []
    for n, (frame, t) in enumerate(where):
        if n >= SIZE_LOOKS:  # a stream that flips size all the time: the rest go without a look
            changes.append(SizeChange(frame, t))
            continue
        try:
            props = frame_at(ffmpeg, source.path, t, input_args)
        except EspcnVideoError:  # the run is done and OUT written: the note goes without the size
            changes.append(SizeChange(frame, t))
            continue
        changes.append(SizeChange(frame, t, props.size, props.pix_fmt))
    return changes


def size_change_note(probe: ProbeInfo | None, lr_size: tuple[int, int], changes: Sequence[SizeChange]) -> str:
    """Say that frames were scaled to the first frame's size, and from where."""
    first = probe.frame if probe is not None else None
    start = f"{lr_size[0]}x{lr_size[1]}" + (f" {first.pix_fmt}" if first is not None and first.pix_fmt else "")
    shown = "; then ".join(c.describe() for c in changes[:4])
    more = f"; and {len(changes) - 4} more changes" if len(changes) > 4 else ""
    return (
        f"the source changes frame size or format mid-stream: {start}, then {shown}{more}; frames of another size "
        f"were scaled (bicubic) to {lr_size[0]}x{lr_size[1]} before SR, as OUT has one frame size "
        "(to upscale each part at its own size, cut IN at the change with ffmpeg -ss/-to -c copy)"
    )


def lost_stereo(settings: UpscaleSettings, probe: ProbeInfo) -> bool:
    """A stereo layout OUT loses: all but Matroska's stereo_mode tag copied into Matroska/WebM."""
    kept = (
        probe.stereo_tag and keeps_stereo_tag(settings.output, settings.encode.format) and settings.encode.copy_streams
    )
    return probe.stereo3d is not None and not kept


def lost_spherical(settings: UpscaleSettings, probe: ProbeInfo, chunked: bool = False) -> bool:
    """A 360-degree projection OUT loses: the encoder's pipe carries an equirectangular or cubemap
    one (mkv.build_projection) into Matroska/WebM and MP4/MOV; a chunked run's parts do not."""
    if probe.spherical is None:
        return False
    carried = carries_projection(settings.output, settings.encode.format)
    return chunked or not carried or probe.spherical.projection not in PROJECTION_TYPES


def describe_input(
    settings: UpscaleSettings, probe: ProbeInfo | None, deinterlace: str | None, chunked: bool = False
) -> list[str]:
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
    if probe is not None and round(probe.rotation) % 360:
        notes.append(
            f"the source's display rotation ({probe.rotation:g} degrees) is applied to the frames: "
            "OUT is written upright, without a rotation tag"
        )
    frame = probe.frame if probe is not None else None
    if frame is not None and frame.hdr10plus:
        notes.append(
            "the source's HDR10+ dynamic metadata (SMPTE ST 2094-40, per frame) is not carried: the "
            "frames pass through a raw pipe; OUT keeps the static HDR10 metadata where its codec takes it"
        )
    if probe is not None and (probe.dolby_vision_profile is not None or (frame is not None and frame.dolby_vision)):
        profile = f" (profile {probe.dolby_vision_profile})" if probe.dolby_vision_profile is not None else ""
        notes.append(
            f"the source's Dolby Vision metadata{profile} is not carried: OUT is its base layer's "
            "picture, without the RPU"
        )
    if probe is not None and probe.closed_captions:
        notes.append(
            "the source's closed captions (EIA-608/708 inside the video stream) are not carried: "
            "they travel with the coded frames, which are decoded and encoded anew"
        )
    lost = []
    if probe is not None and probe.spherical is not None and lost_spherical(settings, probe, chunked):
        lost.append(f"360-degree ({probe.spherical.projection})")
    if probe is not None and lost_stereo(settings, probe):
        lost.append(f"stereo 3D ({probe.stereo3d})")
    if lost:
        notes.append(
            f"the source's {' and '.join(lost)} metadata is not carried: players will show OUT as a "
            "flat picture until it is tagged again"
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
    kept = kept_other_videos(out, fmt, probe)
    for video in probe.other_videos:
        size = f" {video.size[0]}x{video.size[1]}" if video.size else ""
        what = f"video stream {video.stream} ({video.codec}{size})"
        if video.stream in kept:
            notes.append(f"{what} copied as it is: only the first video stream is upscaled")
        else:
            notes.append(f"{what} not kept: {container} cannot carry it as it is (.mkv can)")
    data = [c for c in probe.data_codecs if c != "tmcd" or not keeps_timecode(out, fmt)]
    if data:
        codecs = ", ".join(dict.fromkeys(data))
        notes.append(f"{len(data)} data stream(s) ({codecs}) not kept: they are not copied")
    return notes


def _output_rate(probe: ProbeInfo | None, deinterlace: str | None) -> Fraction | None:
    """The source's frame rate, doubled where each field becomes a frame."""
    if probe is None or probe.frame_rate is None:
        return None
    return probe.frame_rate * 2 if deinterlace == "field" else probe.frame_rate
