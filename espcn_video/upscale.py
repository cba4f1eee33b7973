"""The `upscale` job: check input and output, probe, run the pipeline, publish OUT atomically."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from espcn_video.config import InputSpec, UpscaleSettings
from espcn_video.errors import InputError, OutputError, UsageError
from espcn_video.ffmpeg.args import build_decode_args, build_encode_args
from espcn_video.ffmpeg.locate import FFmpegBinary, locate_ffmpeg
from espcn_video.ffmpeg.probe import ProbeInfo, probe_file
from espcn_video.ffmpeg.y4m import FrameGeometry, Y4MHeader
from espcn_video.model.engines import LumaEngine, create_engine
from espcn_video.model.export import ranges_from_metadata
from espcn_video.model.presets import PresetInfo, load_preset
from espcn_video.pipeline import Counters, RunResult, encoder_sink, run_pipeline
from espcn_video.upscaling import FrameUpscaler


@dataclass
class UpscaleOutcome:
    result: RunResult
    preset: PresetInfo
    ffmpeg: FFmpegBinary
    probe: ProbeInfo | None


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


def temporary_output(output: str) -> Path:
    out = Path(output)
    return out.with_name(f".{out.stem}.partial-{os.getpid()}-{secrets.token_hex(3)}{out.suffix}")


def check_output(source: InputSpec, output: str, overwrite: bool) -> None:
    if output == "-":
        return
    out = Path(output)
    if not source.is_stdin and out.resolve() == Path(source.path).resolve():
        raise OutputError(f"{output}: output is the input file; choose another name")
    if out.is_dir():
        raise OutputError(f"{output}: is a folder; give a file name")
    if out.exists() and not overwrite:
        raise OutputError(f"{output}: already exists (use -y/--overwrite to replace it)")
    if not out.parent.exists():
        raise OutputError(f"{output}: folder {out.parent} does not exist")
    if not os.access(out.parent, os.W_OK):
        raise OutputError(f"{output}: folder {out.parent} is not writable")


def upscale_video(settings: UpscaleSettings, *, on_start: Callable[[Y4MHeader, ProbeInfo | None], None] | None = None,
                  on_progress: Callable[[Counters], None] | None = None) -> UpscaleOutcome:
    source = settings.input
    if settings.output == "-" and not settings.encode.format:
        raise UsageError("writing to stdout needs --format (e.g. --format nut or --format yuv4mpegpipe)")
    check_input(source)
    check_output(source, settings.output, settings.overwrite)
    model, preset = load_preset(settings.preset)
    ffmpeg = locate_ffmpeg()
    probe = None
    if not source.is_stdin and source.raw is None:
        probe = probe_file(ffmpeg.path, source.path)
    upscaler = FrameUpscaler(preset.scale, build_engine(model, preset, settings))
    target = temporary_output(settings.output) if settings.output != "-" else None
    encode_to = str(target) if target is not None else "-"

    def build_encoder(header: Y4MHeader) -> list[str]:
        return build_encode_args(ffmpeg.path, encode_to, settings.encode, full_range=header.full_range,
                                 source=source, probe=probe)

    def started(header: Y4MHeader) -> None:
        if on_start is not None:
            on_start(header, probe)

    try:
        result = run_pipeline(
            build_decode_args(ffmpeg.path, source),
            encoder_sink(build_encoder, stdout="inherit" if target is None else "devnull"), upscaler,
            decoder_stdin="inherit" if source.is_stdin else "devnull",
            queue_size=settings.queue_size, strict_decode=settings.strict_decode,
            on_start=started, on_progress=on_progress,
        )
        if target is not None:
            os.replace(target, settings.output)
    finally:
        if target is not None and target.exists():
            target.unlink()
    return UpscaleOutcome(result, preset, ffmpeg, probe)
