"""The `upscale` job: check input and output, probe, run the pipeline, verify, publish OUT atomically."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import torch

from espcn_video.settings import InputSpec, UpscaleSettings
from espcn_video.errors import InputError, OutputError, UsageError
from espcn_video.ffmpeg.args import (OutputVideo, build_deinterlace_filter, build_encode_args,
                                     build_input_args, build_remux_args, build_timed_decode_args,
                                     can_carry_audio, copies_from_source, even_size_for, output_muxer,
                                     resolve_codec)
from espcn_video.ffmpeg.locate import FFmpegBinary, locate_ffmpeg
from espcn_video.ffmpeg.probe import ProbeInfo, probe_file
from espcn_video.ffmpeg.process import FFmpegProcess
from espcn_video.ffmpeg.timestamps import list_packets
from espcn_video.ffmpeg.y4m import FrameGeometry, Y4MHeader
from espcn_video.model.engines import LumaEngine, create_engine
from espcn_video.model.graphs import ranges_from_metadata
from espcn_video.model.presets import PresetInfo, load_preset
from espcn_video.ffmpeg.mkv import build_hdr_colour
from espcn_video.frames.pipeline import Counters, RunResult, run_pipeline
from espcn_video.frames.sinks import EncoderSink
from espcn_video.jobs.stdin_spool import StdinSpool, stdin_has_only_video
from espcn_video.frames.upscaler import FrameUpscaler

DEINTERLACE_MODES = ("auto", "off", "frame", "field")
TIMINGS_SUFFIXES = (".csv", ".json")
# Muxers that store no timestamps: frames are written in order, so only their count is checked.
_UNTIMED_MUXERS = ("yuv4mpegpipe", "rawvideo")
# y4m's 4:2:0 tokens carry the siting ffmpeg decoded (C420mpeg2 left, C420paldv top-left).
_Y4M_SITING = {"420mpeg2": "left", "420paldv": "topleft", "420jpeg": "center"}


@dataclass
class OutputCheck:
    """What was measured on the written file before it was published."""

    frames: int | None = None  # video packets counted in the file
    max_time_error_s: float | None = None  # largest |output pts - input pts|, relative to frame 0
    start_offset_s: float | None = None  # output's first pts minus the input's
    time_base: str | None = None


@dataclass
class UpscaleOutcome:
    result: RunResult
    preset: PresetInfo
    ffmpeg: FFmpegBinary
    probe: ProbeInfo | None
    check: OutputCheck = field(default_factory=OutputCheck)
    notes: list[str] = field(default_factory=list)


def check_input(source: InputSpec) -> None:
    """Fail early, naming the file, where ffmpeg's own message would be vague."""
    if source.is_stdin:
        return
    path = Path(source.path)
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
                f"and {size % frame_bytes} bytes left over)")
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
        raise InputError(f"{path}: truncated y4m: {body // per_frame} whole frames and "
                         f"{body % per_frame} bytes of a partial one")


def build_engine(model: torch.nn.Module, preset: PresetInfo, settings: UpscaleSettings) -> LumaEngine:
    """The engine the settings ask for; int8 only with the preset's calibrated ranges."""
    return create_engine(model, backend=settings.backend, precision=settings.precision,
                         threads=settings.threads, device=settings.device,
                         calibration=ranges_from_metadata(preset.metadata, model))


_TEMP = re.compile(r"^\.(?P<stem>.*)\.partial-(?P<pid>\d+)-[0-9a-f]{6}(?P<suffix>.*)$")


def temporary_output(output: str, suffix: str | None = None) -> Path:
    """A hidden name beside OUT; `suffix` for the other files a run keeps there (a stdin spool)."""
    out = Path(output)
    return out.with_name(f".{out.stem}.partial-{os.getpid()}-{secrets.token_hex(3)}"
                         f"{out.suffix if suffix is None else suffix}")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # not ours to signal, or a platform that cannot tell: assume alive
    return True


def sweep_stale_temporaries(output: str) -> list[Path]:
    """Remove temporary outputs for OUT left by runs that died (SIGKILL, power loss)."""
    out = Path(output)
    removed: list[Path] = []
    if not out.parent.is_dir():
        return removed
    for entry in out.parent.glob(f".{out.stem}.partial-*"):
        m = _TEMP.match(entry.name)
        if m and m["stem"] == out.stem and not pid_alive(int(m["pid"])):
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def check_writable_file(path: str, what: str) -> None:
    """An output file's folder must exist and be writable, before hours of work are spent."""
    target = Path(path)
    if target.is_dir():
        raise OutputError(f"{what} {path}: is a folder; give a file name")
    parent = target.parent
    if not parent.exists():
        raise OutputError(f"{what} {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"{what} {path}: folder {parent} is not writable")


def check_output(source: InputSpec, output: str, overwrite: bool) -> None:
    if output == "-":
        return
    out = Path(output)
    if not source.is_stdin and out.resolve() == Path(source.path).resolve():
        raise OutputError(f"{output}: output is the input file; choose another name")
    if out.exists() and not out.is_dir() and not overwrite:
        raise OutputError(f"{output}: already exists (use -y/--overwrite to replace it)")
    check_writable_file(output, "OUT")


def check_timings_path(path: str | None) -> None:
    if path is None:
        return
    if Path(path).suffix.lower() not in TIMINGS_SUFFIXES:
        raise UsageError(f"--timings {path}: use a .csv or .json file name")
    check_writable_file(path, "--timings")


def publish(target: Path, output: str, overwrite: bool) -> None:
    """Move the verified file into place; without -y never over a file that appeared meanwhile."""
    if overwrite:
        os.replace(target, output)
        return
    try:
        os.link(target, output)  # atomic and fails if OUT exists
    except FileExistsError:
        raise OutputError(f"{output}: appeared while this run was working; not replaced "
                          "(run again with -y to replace it)") from None
    except OSError:
        if os.path.exists(output):  # no hard links on this file system: check, then rename
            raise OutputError(f"{output}: appeared while this run was working; not replaced "
                              "(run again with -y to replace it)") from None
        os.replace(target, output)
        return
    target.unlink()


def verify_output(ffmpeg: str, path: Path, output: str, muxer_name: str | None, frames: int,
                  frame_times_s: list[Fraction], shift_s: Fraction = Fraction(0)) -> OutputCheck:
    """Count the written file's video packets and compare their timestamps with the input's
    (`frame_times_s`, shifted by `shift_s`), relative to the first frame."""
    tb, pts, _ = list_packets(ffmpeg, str(path))
    check = OutputCheck(frames=len(pts), time_base=f"{tb.numerator}/{tb.denominator}")
    if len(pts) != frames:
        raise OutputError(f"{output}: the written file has {len(pts)} frames, {frames} were encoded; "
                          "not published")
    if output_muxer(output, muxer_name) in _UNTIMED_MUXERS or not frame_times_s:
        return check
    want = [t + shift_s for t in frame_times_s]
    got = [p * tb for p in pts]
    check.start_offset_s = float(got[0] - want[0])
    errors = [abs((g - got[0]) - (w - want[0])) for g, w in zip(got, want)]
    check.max_time_error_s = float(max(errors))
    tolerance = tb + Fraction(1, 1_000_000)  # one output tick, plus the pipe's microsecond
    if max(errors) > tolerance:
        worst = errors.index(max(errors))
        raise OutputError(f"{output}: frame {worst} is at {float(got[worst] - got[0]):.6f} s in the written "
                          f"file but {float(want[worst] - want[0]):.6f} s in the input; not published (a container "
                          "that stores a fixed frame rate, such as AVI, cannot keep these timestamps: use .mkv "
                          "or .mp4)")
    return check


def output_video_for(header: Y4MHeader, scale: int, codec: str, probe: ProbeInfo | None,
                     chroma_location: str | None, deinterlace: str | None) -> tuple[OutputVideo, str | None]:
    """Everything the encoder sets on the frames, from the decoded header and the probe; and a
    note when the encoder needs the size cropped to even."""
    hr = header.geometry.scaled(scale)
    crop = even_size_for(codec, hr.width, hr.height, hr.chroma_shift) if hr.has_chroma else None
    note = None
    if crop is not None:
        note = f"cropped {hr.width}x{hr.height} to {crop[0]}x{crop[1]}: {codec} needs even sizes for {hr.pix_fmt}"
    frame = probe.frame if probe is not None else None
    video = OutputVideo(
        full_range=header.full_range, color=probe.best_color if probe else OutputVideo().color,
        chroma_location=chroma_location if header.geometry.has_chroma else None,
        mastering=frame.mastering if frame else None, content_light=frame.content_light if frame else None,
        time_base=probe.time_base if probe is not None and deinterlace != "field" else None,
        crop=crop, source_start_s=probe.start_s if probe is not None else 0.0,
        field_mode=(probe.interlaced or "prog") if probe is not None and deinterlace is None else "prog")
    return video, note


def choose_deinterlace(settings: UpscaleSettings, probe: ProbeInfo | None) -> str | None:
    """auto: bwdif on the frames flagged interlaced, when the source says it is (a stdin source is
    not probed, so the filter waits for the flags); frame/field: bwdif on every frame; off: none."""
    if settings.deinterlace not in DEINTERLACE_MODES:
        raise UsageError(f"--deinterlace {settings.deinterlace}: choose {', '.join(DEINTERLACE_MODES)}")
    if settings.deinterlace != "auto":
        return None if settings.deinterlace == "off" else settings.deinterlace
    return "flagged" if probe is None or probe.interlaced else None


def build_decode_command(ffmpeg: str, source: InputSpec, deinterlace: str | None) -> list[str]:
    return build_timed_decode_args(ffmpeg, build_input_args(source), build_deinterlace_filter(deinterlace))


def upscale_video(settings: UpscaleSettings, *, on_start: Callable[[Y4MHeader, ProbeInfo | None], None] | None = None,
                  on_progress: Callable[[Counters], None] | None = None) -> UpscaleOutcome:
    source = settings.input
    if settings.output == "-" and not settings.encode.format:
        raise UsageError("writing to stdout needs --format (e.g. --format nut or --format yuv4mpegpipe)")
    check_input(source)
    check_output(source, settings.output, settings.overwrite)
    check_timings_path(settings.timings_path)
    model, preset = load_preset(settings.preset)
    ffmpeg = locate_ffmpeg()
    probe = None
    if not source.is_stdin:
        probe = probe_file(ffmpeg.path, source.path, input_args=build_input_args(source)[:-2],
                           first_frame=True)
    deinterlace = choose_deinterlace(settings, probe)
    siting = probe.frame.chroma_location if probe is not None and probe.frame is not None else None
    upscaler = FrameUpscaler(preset.scale, build_engine(model, preset, settings), siting)
    codec, _ = resolve_codec(settings.output, settings.encode)
    notes = describe_input(settings, probe, deinterlace)
    target = None
    if settings.output != "-":
        sweep_stale_temporaries(settings.output)
        target = temporary_output(settings.output)
    encode_to = str(target) if target is not None else "-"
    sinks: list[EncoderSink] = []

    def build_encoder(header: Y4MHeader) -> list[str]:
        video, note = output_video_for(header, preset.scale, codec, probe, upscaler.chroma_location,
                                       deinterlace)
        if note:
            notes.append(note)
        return build_encode_args(ffmpeg.path, encode_to, settings.encode, source=source, probe=probe,
                                 video=video, timed=True)

    frame = probe.frame if probe is not None else None
    hdr_colour = build_hdr_colour(frame.mastering, frame.content_light) if frame is not None else b""

    def make_sink(lr: Y4MHeader, hr: Y4MHeader) -> EncoderSink:
        sink = EncoderSink(build_encoder(lr), hr, "inherit" if target is None else "devnull", True, hdr_colour)
        sinks.append(sink)
        return sink

    def started(header: Y4MHeader) -> None:
        if upscaler.chroma_location is None and header.geometry.chroma_shift == (1, 1):
            upscaler.chroma_location = _Y4M_SITING.get(header.colorspace_token, None)
        if on_start is not None:
            on_start(header, probe)

    spool = None
    if (source.is_stdin and target is not None and settings.encode.copy_streams
            and can_carry_audio(settings.output, settings.encode.format) and not stdin_has_only_video()):
        spool = StdinSpool(temporary_output(settings.output, ".stdin"))
    temporaries = [t for t in (target,) if t is not None]
    try:
        with spool or contextlib.nullcontext():
            result = run_pipeline(
                build_decode_command(ffmpeg.path, source, deinterlace), make_sink, upscaler,
                decoder_stdin=spool.decoder_stdin if spool else ("inherit" if source.is_stdin else "devnull"),
                queue_size=settings.queue_size, strict_decode=settings.strict_decode, timed=True,
                on_start=started, on_progress=on_progress,
            )
            check = OutputCheck(frames=result.frames_written)
            shift_us = sinks[0].shift_us if sinks else 0
            if shift_us:
                notes.append(f"timestamps shifted by {shift_us / 1e6:.6f} s: the input starts before 0")
            if target is not None:
                if spool is not None:
                    target = add_spooled_streams(ffmpeg.path, target, settings, spool, notes)
                    temporaries.append(target)
                check = verify_output(ffmpeg.path, target, settings.output, settings.encode.format,
                                      result.frames_written,
                                      result.frame_times.all_seconds(result.frames_read) if result.frame_times else [],
                                      Fraction(shift_us, 1_000_000))
                publish(target, settings.output, settings.overwrite)
    finally:
        for path in temporaries:
            path.unlink(missing_ok=True)
    return UpscaleOutcome(result, preset, ffmpeg, probe, check, notes)


def add_spooled_streams(ffmpeg: str, video: Path, settings: UpscaleSettings, spool: StdinSpool,
                        notes: list[str]) -> Path:
    """Mux the piped input's audio, subtitles and chapters (spooled beside OUT) into the video."""
    if not spool.wait():
        notes.append("stdin: the pipe could not be kept whole on disk; only its video is in OUT")
        return video
    spooled = InputSpec(str(spool.path))
    probe = probe_file(ffmpeg, str(spool.path))
    if not (probe.audio_streams or probe.subtitle_codecs or probe.chapters):
        return video
    muxed = temporary_output(settings.output)
    cmd = build_remux_args(ffmpeg, str(video), str(muxed), settings.encode, source=spooled, probe=probe)
    with FFmpegProcess("stream copy", cmd) as proc:
        proc.check()
    notes.append(f"stdin: {probe.audio_streams} audio and {len(probe.subtitle_codecs)} subtitle stream(s) kept "
                 "(the pipe was spooled beside OUT while it was read)")
    return muxed


def describe_input(settings: UpscaleSettings, probe: ProbeInfo | None, deinterlace: str | None) -> list[str]:
    """Lines for the summary: whatever the run does beyond upscaling, said, never silent."""
    notes = []
    if deinterlace in ("frame", "field"):
        rate = "one frame per frame" if deinterlace == "frame" else "one frame per field (double rate)"
        notes.append(f"deinterlaced with bwdif, every frame, {rate}: --deinterlace {deinterlace}")
    elif deinterlace == "flagged" and probe is not None:
        notes.append(f"deinterlaced with bwdif, one frame per frame, the frames flagged interlaced: the source "
                     f"is interlaced ({probe.interlaced}); --deinterlace off keeps the fields woven")
    elif deinterlace == "flagged":
        notes.append("stdin: frames flagged interlaced are deinterlaced with bwdif (--deinterlace off keeps them woven)")
    elif probe is not None and probe.interlaced and settings.deinterlace == "off":
        notes.append(f"the source is interlaced ({probe.interlaced}); kept woven (--deinterlace off)")
    src = settings.input
    if src.is_stdin and settings.encode.copy_streams and settings.output == "-":
        notes.append("stdin to stdout: only the video of the pipe is read; audio, subtitles and chapters are "
                     "not kept (give a file as IN or OUT to keep them)")
    elif probe is not None and probe.audio_streams and not copies_from_source(
            settings.output, settings.encode, src, probe) and settings.encode.copy_streams:
        notes.append(f"{probe.audio_streams} audio stream(s) not kept: the output format has no place for them")
    return notes
