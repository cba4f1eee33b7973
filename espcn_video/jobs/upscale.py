"""The `upscale` job: check input and output, probe, run the pipeline, verify, publish OUT atomically."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path

import torch

from espcn_video.errors import UsageError
from espcn_video.ffmpeg.args import (
    Attachment,
    build_encode_args,
    build_input_args,
    build_remux_args,
    can_carry_audio,
    is_image_output,
    is_numbered,
    resolve_codec,
)
from espcn_video.ffmpeg.locate import FFmpegBinary, locate_ffmpeg
from espcn_video.ffmpeg.mkv import build_hdr_colour, build_projection
from espcn_video.ffmpeg.probe import ProbeInfo, probe_file
from espcn_video.ffmpeg.process import FFmpegProcess
from espcn_video.ffmpeg.y4m import FrameGeometry, Y4MHeader
from espcn_video.frames.pipeline import Counters, RunResult, run_pipeline
from espcn_video.frames.sinks import EncoderSink, SinkFactory
from espcn_video.frames.upscaler import FrameUpscaler, Upscaler
from espcn_video.jobs.inputs import (
    _Y4M_SITING,
    SizeChange,
    build_decode_command,
    check_input,
    check_probed,
    choose_deinterlace,
    decode_time_offset_us,
    describe_input,
    look_at_size_changes,
    output_video_for,
    size_change_note,
)
from espcn_video.jobs.outputs import (
    OutputCheck,
    check_output,
    check_output_format,
    check_timings_path,
    discard_temporary,
    extract_covers,
    one_image_error,
    publish,
    publish_sequence,
    sweep_stale_temporaries,
    temporary_output,
    verify_images,
    verify_output,
)
from espcn_video.jobs.stdin_spool import StdinSpool, stdin_has_only_video
from espcn_video.model.backends import create_engine
from espcn_video.model.engines import LumaEngine
from espcn_video.model.external import ExternalOnnxEngine, is_external_model
from espcn_video.model.presets import PresetInfo, int8_params, load_preset, precision_deltas
from espcn_video.settings import InputSpec, UpscaleSettings


@dataclass
class UpscaleOutcome:
    result: RunResult
    preset: PresetInfo
    ffmpeg: FFmpegBinary
    probe: ProbeInfo | None
    check: OutputCheck = field(default_factory=OutputCheck)
    notes: list[str] = field(default_factory=list)
    size_changes: list[SizeChange] = field(default_factory=list)


@dataclass
class UpscalePlan:
    """What the checks and the probe decided before the first frame."""

    settings: UpscaleSettings
    ffmpeg: FFmpegBinary
    probe: ProbeInfo | None
    preset: PresetInfo
    upscaler: Upscaler
    codec: str
    deinterlace: str | None
    notes: list[str]
    target: Path | None  # the temporary OUT; None when OUT is stdout
    image: bool = False  # OUT is one image or a numbered sequence of them (image2)
    # compare: the encoder's view of the stacked frames, and a check before OUT is published
    compose: Callable[[Y4MHeader], str] | None = None
    before_publish: Callable[[RunResult], None] | None = None


def build_engine(
    model: torch.nn.Module, preset: PresetInfo, settings: UpscaleSettings, notes: list[str] | None = None
) -> LumaEngine:
    """The engine the settings ask for; "auto" takes int8 or bf16 only as far as the preset's
    recorded cost of each allows (model/backends.auto_precisions)."""
    return create_engine(
        model,
        backend=settings.backend,
        precision=settings.precision,
        threads=settings.threads,
        device=settings.device,
        int8=int8_params(model, preset),
        deltas=precision_deltas(preset),
        notes=notes,
        memory_mb=settings.max_memory_mb,
    )


def load_engine(settings: UpscaleSettings, notes: list[str] | None = None) -> tuple[LumaEngine, PresetInfo]:
    """The Y engine and what it is: a preset on the engine the settings ask for, or an external
    ONNX model on ONNX Runtime fp32 (the only engine that runs someone else's graph as it is)."""
    if not is_external_model(settings.preset):
        model, preset = load_preset(settings.preset)
        return build_engine(model, preset, settings, notes), preset
    if settings.backend not in ("auto", "onnxruntime") or settings.precision not in ("auto", "fp32"):
        raise UsageError("an ONNX model runs on ONNX Runtime fp32: --backend and --precision do not apply to it")
    if settings.device != "cpu":
        raise UsageError("an ONNX model runs on the CPU (ONNX Runtime): --device does not apply to it")
    engine = ExternalOnnxEngine(settings.preset, settings.threads)
    return engine, engine.info()


def plan_upscale(settings: UpscaleSettings) -> UpscalePlan:
    """Every check that can fail before a frame is decoded, then the probe and its decisions."""
    source = settings.input
    if settings.output == "-" and not settings.encode.format:
        raise UsageError("writing to stdout needs --format (e.g. --format nut or --format yuv4mpegpipe)")
    check_input(source)
    check_output(source, settings.output, settings.overwrite)
    check_timings_path(settings.timings_path)
    engine_notes: list[str] = []
    engine, preset = load_engine(settings, engine_notes)
    ffmpeg = locate_ffmpeg()
    check_output_format(ffmpeg.path, settings.output, settings.encode.format)
    probe = None
    if not source.is_stdin:
        probe = probe_file(ffmpeg.path, source.path, input_args=build_input_args(source)[:-2], first_frame=True)
        check_probed(source.path, probe)
    image = is_image_output(settings.output, settings.encode.format)
    if image and not is_numbered(settings.output) and probe is not None and (probe.estimated_frames() or 1) > 1:
        raise UsageError(one_image_error(settings.output, probe.estimated_frames() or 2, about=True))
    deinterlace = choose_deinterlace(settings, probe)
    siting = probe.frame.chroma_location if probe is not None and probe.frame is not None else None
    upscaler = FrameUpscaler(preset.scale, engine, siting)
    codec, _ = resolve_codec(settings.output, settings.encode)
    target = None
    if settings.output != "-":
        sweep_stale_temporaries(settings.output)
        target = temporary_output(settings.output)
    return UpscalePlan(
        settings,
        ffmpeg,
        probe,
        preset,
        upscaler,
        codec,
        deinterlace,
        describe_input(settings, probe, deinterlace) + engine_notes,
        target,
        image,
    )


def _sink_factory(plan: UpscalePlan, sinks: list[EncoderSink], attach: Sequence[Attachment] = ()) -> SinkFactory:
    """The encoder for the decoded header: its geometry, tags and HDR data from the probe."""
    frame = plan.probe.frame if plan.probe is not None else None
    video_elements = build_hdr_colour(frame.mastering, frame.content_light) if frame is not None else b""
    if plan.probe is not None and plan.compose is None:  # a compare view is not the 360-degree picture
        video_elements += build_projection(plan.probe.spherical, plan.preset.scale)
    encode_to = str(plan.target) if plan.target is not None else "-"

    def make_sink(lr: Y4MHeader, hr: Y4MHeader) -> EncoderSink:
        video, note = output_video_for(
            lr,
            plan.preset.scale,
            plan.codec,
            plan.probe,
            plan.upscaler.chroma_location,
            plan.deinterlace,
            image=plan.image,
        )
        if plan.compose is not None:  # the view crops to its blocks itself; the encoder's note stands
            video = replace(video, compose=plan.compose(lr), crop=None)
        if note:
            plan.notes.append(note)
        cmd = build_encode_args(
            plan.ffmpeg.path,
            encode_to,
            plan.settings.encode,
            source=plan.settings.input,
            probe=plan.probe,
            video=video,
            timed=True,
            attach=attach,
        )
        sink = EncoderSink(cmd, hr, "inherit" if plan.target is None else "devnull", True, video_elements)
        sinks.append(sink)
        return sink

    return make_sink


def _stdin_spool(plan: UpscalePlan) -> StdinSpool | None:
    """Piped input whose audio and subtitles OUT can hold: the pipe is kept on disk as it is read.
    A y4m pipe (only video) is pumped to the decoder without a file: the look at its first bytes
    has taken them from the pipe."""
    settings = plan.settings
    if settings.input.is_stdin and plan.target is not None and settings.encode.copy_streams:
        if not can_carry_audio(settings.output, settings.encode.format):
            return None
        if stdin_has_only_video():
            return StdinSpool(None)
        return StdinSpool(temporary_output(settings.output, ".stdin"))
    return None


def upscale_video(
    settings: UpscaleSettings,
    *,
    on_start: Callable[[Y4MHeader, ProbeInfo | None], None] | None = None,
    on_progress: Callable[[Counters], None] | None = None,
) -> UpscaleOutcome:
    """Upscale settings.input into settings.output; OUT is published only after its frame count and
    timestamps are measured equal to the input's (OutputCheck). Raises EspcnVideoError subclasses."""
    return run_plan(plan_upscale(settings), on_start=on_start, on_progress=on_progress)


def run_plan(
    plan: UpscalePlan,
    *,
    on_start: Callable[[Y4MHeader, ProbeInfo | None], None] | None = None,
    on_progress: Callable[[Counters], None] | None = None,
) -> UpscaleOutcome:
    """Decode, upscale, encode, check and publish what plan_upscale decided."""
    settings = plan.settings
    sinks: list[EncoderSink] = []

    def started(header: Y4MHeader) -> None:
        if plan.upscaler.chroma_location is None and header.geometry.chroma_shift == (1, 1):
            plan.upscaler.chroma_location = _Y4M_SITING.get(header.colorspace_token, None)
        if on_start is not None:
            on_start(header, plan.probe)

    spool = _stdin_spool(plan)
    stdin_mode = spool.decoder_stdin if spool else ("inherit" if settings.input.is_stdin else "devnull")
    temporaries = [t for t in (plan.target,) if t is not None]
    try:
        attach: list[Attachment] = []
        if plan.target is not None and not settings.input.is_stdin and settings.encode.copy_streams:
            attach = extract_covers(
                plan.ffmpeg.path, settings.input.path, plan.probe, settings.output, settings.encode.format, temporaries
            )
        with spool or contextlib.nullcontext():
            result = run_pipeline(
                build_decode_command(plan.ffmpeg.path, settings.input, plan.probe, plan.deinterlace),
                _sink_factory(plan, sinks, attach),
                plan.upscaler,
                decoder_stdin=stdin_mode,
                queue_size=settings.queue_size,
                strict_decode=settings.strict_decode,
                timed=True,
                time_offset_us=decode_time_offset_us(settings.input, plan.probe) or 0,
                on_start=started,
                on_progress=on_progress,
            )
            hr = sinks[0].header.geometry if sinks else None
            check = _check_and_publish(plan, result, sinks[0].shift_us if sinks else 0, spool, temporaries, hr)
    finally:
        for path in temporaries:
            discard_temporary(path)
    changes = _size_changes(plan, result)
    return UpscaleOutcome(result, plan.preset, plan.ffmpeg, plan.probe, check, plan.notes, changes)


def _size_changes(plan: UpscalePlan, result: RunResult) -> list[SizeChange]:
    """Where the source changed frame size mid-stream (its frames were scaled to the first's), said."""
    times = result.frame_times
    if times is None or not times.size_changes:
        return []
    changes = look_at_size_changes(plan.ffmpeg.path, plan.settings.input, times.change_times())
    plan.notes.append(size_change_note(plan.probe, (result.lr.width, result.lr.height), changes))
    return changes


def _check_and_publish(
    plan: UpscalePlan,
    result: RunResult,
    shift_us: int,
    spool: StdinSpool | None,
    temporaries: list[Path],
    hr: FrameGeometry | None = None,
) -> OutputCheck:
    """Mux the spooled streams, measure the written file against the input, publish it as OUT."""
    if shift_us:
        plan.notes.append(f"timestamps shifted by {shift_us / 1e6:.6f} s: the input starts before 0")
    target, settings = plan.target, plan.settings
    if target is None:  # stdout: nothing to measure after the fact
        return OutputCheck(frames=result.frames_written)
    if plan.before_publish is not None:
        plan.before_publish(result)
    if spool is not None and spool.path is not None:
        target = add_spooled_streams(plan.ffmpeg.path, target, settings, spool, plan.notes)
        temporaries.append(target)
    if plan.image:
        return _check_and_publish_images(plan, result, target, hr)
    times = result.frame_times.all_seconds(result.frames_read) if result.frame_times else []
    check = verify_output(
        plan.ffmpeg.path,
        target,
        settings.output,
        settings.encode.format,
        result.frames_written,
        times,
        Fraction(shift_us, 1_000_000),
    )
    publish(target, settings.output, settings.overwrite)
    return check


def _check_and_publish_images(
    plan: UpscalePlan, result: RunResult, target: Path, hr: FrameGeometry | None
) -> OutputCheck:
    """One image, or a numbered sequence of them: counted, sized, then published."""
    settings = plan.settings
    size = (hr.width, hr.height) if hr is not None and plan.compose is None else None
    check = verify_images(plan.ffmpeg.path, target, settings.output, result.frames_written, size)
    if not is_numbered(settings.output):
        publish(target, settings.output, settings.overwrite)
        return check
    left = publish_sequence(target, settings.output, settings.overwrite)
    if left:
        plan.notes.append(
            f"{left} older file(s) of the pattern follow the {check.frames} written (an earlier, longer "
            "sequence): left in place"
        )
    return check


def add_spooled_streams(
    ffmpeg: str, video: Path, settings: UpscaleSettings, spool: StdinSpool, notes: list[str]
) -> Path:
    """Mux the piped input's audio, subtitles and chapters (spooled beside OUT) into the video."""
    if not spool.wait():
        notes.append("stdin: the pipe could not be kept whole on disk; only its video is in OUT")
        return video
    spooled = InputSpec(str(spool.path))
    probe = probe_file(ffmpeg, str(spool.path))
    if not (probe.audio_streams or probe.subtitle_codecs or probe.chapters or probe.attachments or probe.covers):
        return video
    muxed = temporary_output(settings.output)
    covers: list[Path] = []
    try:
        attach = extract_covers(ffmpeg, str(spool.path), probe, settings.output, settings.encode.format, covers)
        cmd = build_remux_args(
            ffmpeg, str(video), str(muxed), settings.encode, source=spooled, probe=probe, attach=attach
        )
        with FFmpegProcess("stream copy", cmd) as proc:
            proc.check()
    finally:
        for path in covers:
            discard_temporary(path)
    notes.append(
        f"stdin: {probe.audio_streams} audio and {len(probe.subtitle_codecs)} subtitle stream(s) kept "
        "(the pipe was spooled beside OUT while it was read)"
    )
    return muxed
