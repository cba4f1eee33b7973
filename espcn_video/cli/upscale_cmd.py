"""`espcn-video upscale IN OUT`: the filter."""

from __future__ import annotations

import re
import shlex
import sys
from fractions import Fraction
from typing import Any

import click
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)

from espcn_video.cli.common import emit_json, guarded, stderr_console
from espcn_video.config import EncodeSettings, InputSpec, RawInput, UpscaleSettings
from espcn_video.errors import UsageError
from espcn_video.ffmpeg.probe import ProbeInfo
from espcn_video.ffmpeg.y4m import Y4MHeader
from espcn_video.model.espcn import SUPPORTED_SCALES
from espcn_video.model.presets import default_preset_name
from espcn_video.pipeline import Counters
from espcn_video.report import print_run_summary, write_rows
from espcn_video.stats import run_summary, timing_rows


def parse_size(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    m = re.fullmatch(r"(\d+)[xX](\d+)", text.strip())
    if not m or int(m.group(1)) == 0 or int(m.group(2)) == 0:
        raise UsageError(f"--input-size {text!r}: expected WxH, e.g. 1920x1080")
    return int(m.group(1)), int(m.group(2))


def parse_rate(text: str) -> Fraction:
    try:
        rate = Fraction(text.replace(":", "/"))
    except (ValueError, ZeroDivisionError):
        raise UsageError(f"--input-rate {text!r}: expected a number or N/D, e.g. 25 or 30000/1001") from None
    if rate <= 0:
        raise UsageError(f"--input-rate {text!r}: must be positive")
    return rate


def build_input_spec(path: str, size: str | None, pix_fmt: str | None, rate: str | None) -> InputSpec:
    wh = parse_size(size)
    is_raw = path.lower().endswith(".yuv") or wh is not None
    if not is_raw:
        if pix_fmt or rate:
            raise UsageError("--input-pix-fmt and --input-rate describe raw .yuv input; add --input-size WxH")
        return InputSpec(path)
    if wh is None:
        raise UsageError(f"{path}: raw .yuv needs --input-size WxH (and --input-pix-fmt, --input-rate)")
    return InputSpec(path, RawInput(wh[0], wh[1], pix_fmt or "yuv420p", parse_rate(rate or "25")))


def resolve_preset(scale: int | None, preset: str | None) -> str:
    from espcn_video.model.presets import load_preset
    if preset is None:
        return default_preset_name(scale or 2)
    if scale is not None:
        _, info = load_preset(preset)
        if info.scale != scale:
            raise UsageError(f"--preset {preset} is x{info.scale} but --scale {scale} was given")
    return preset


class _Display:
    """A rich progress bar on stderr while the stages run; the stages only bump counters."""

    def __init__(self, enabled: bool) -> None:
        self.progress: Progress | None = None
        self.task: TaskID | None = None
        self.enabled = enabled

    def start(self, header: Y4MHeader, probe: ProbeInfo | None) -> None:
        if not self.enabled:
            return
        total = probe.estimated_frames() if probe else None
        self.progress = Progress(
            TextColumn("[bold]upscale"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[fps]:.1f} fps"), TimeElapsedColumn(), TextColumn("ETA"),
            TimeRemainingColumn(), console=stderr_console(), transient=True,
        )
        self.progress.start()
        self.task = self.progress.add_task("upscale", total=total, fps=0.0)

    def update(self, counters: Counters) -> None:
        if self.progress is None or self.task is None:
            return
        task = self.progress.tasks[0]
        fps = counters.frames_written / task.elapsed if task.elapsed else 0.0
        total = task.total
        if total is not None and counters.frames_written > total:
            total = None  # the estimate was short: never bound anything by it
        self.progress.update(self.task, completed=counters.frames_written, fps=fps, total=total)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()


@click.command("upscale")
@click.argument("input_path", metavar="IN")
@click.argument("output", metavar="OUT")
@click.option("--scale", type=click.IntRange(min=1), default=None, help="Upscaling factor: 2, 3 or 4 (default 2).")
@click.option("--preset", default=None, help="Preset name (see `espcn-video presets`) or a .pt file.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Model threads (default: all cores).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or auto.")
@click.option("--codec", default=None, help="Any ffmpeg video encoder (default by extension: libx264 for .mp4/.mkv).")
@click.option("--crf", type=int, default=None, help="Constant rate factor (default 18 for libx264).")
@click.option("--encoder-preset", default=None, help="Encoder speed preset, e.g. ultrafast, veryfast, medium.")
@click.option("--format", "fmt", default=None, help="ffmpeg muxer; required when OUT is '-'.")
@click.option("--output-args", default="", help="Extra ffmpeg output options, one shell-quoted string.")
@click.option("--audio-codec", default="copy", show_default=True, help="Codec for audio taken from IN.")
@click.option("--no-copy-streams", is_flag=True, help="Do not take audio, subtitles, chapters from IN.")
@click.option("--input-size", default=None, help="Raw .yuv input: WxH.")
@click.option("--input-pix-fmt", default=None, help="Raw .yuv input: pixel format (default yuv420p).")
@click.option("--input-rate", default=None, help="Raw .yuv input: frame rate (default 25).")
@click.option("--timings", "timings_path", default=None, help="Per-frame timings file (.csv or .json).")
@click.option("--json", "as_json", is_flag=True, help="Summary as JSON on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary on stderr.")
@click.option("--ignore-decode-errors", is_flag=True, help="Keep the output when the decoder reports a damaged input.")
@click.option("-y", "--overwrite", is_flag=True, help="Replace OUT if it exists.")
@guarded
def upscale_cmd(input_path: str, output: str, scale: int | None, preset: str | None,
                threads: int | None, device: str, codec: str | None, crf: int | None,
                encoder_preset: str | None, fmt: str | None, output_args: str, audio_codec: str,
                no_copy_streams: bool, input_size: str | None, input_pix_fmt: str | None,
                input_rate: str | None, timings_path: str | None, as_json: bool, quiet: bool,
                ignore_decode_errors: bool, overwrite: bool) -> None:
    """Super-resolve IN into OUT: ESPCN on Y, bicubic U and V, audio and subtitles kept.

    IN and OUT may be '-' for stdin and stdout.
    """
    if scale is not None and scale not in SUPPORTED_SCALES:
        raise UsageError(f"unsupported scale {scale}: choose 2, 3 or 4")
    if output == "-" and as_json:
        raise UsageError("--json writes to stdout, which already carries the video (OUT is '-')")
    try:
        extra = tuple(shlex.split(output_args))
    except ValueError as exc:
        raise UsageError(f"--output-args: {exc}") from None
    settings = UpscaleSettings(
        input=build_input_spec(input_path, input_size, input_pix_fmt, input_rate),
        output=output, preset=resolve_preset(scale, preset),
        encode=EncodeSettings(codec=codec, crf=crf, preset=encoder_preset, format=fmt,
                              extra_args=extra, audio_codec=audio_codec,
                              copy_streams=not no_copy_streams),
        threads=threads, device=device, overwrite=overwrite, strict_decode=not ignore_decode_errors,
    )
    from espcn_video.upscale import upscale_video
    display = _Display(enabled=not quiet and sys.stderr.isatty())
    try:
        outcome = upscale_video(settings, on_start=display.start, on_progress=display.update)
    finally:
        display.stop()
    summary: dict[str, Any] = {
        "input": input_path, "output": output, "preset": outcome.preset.name,
        "scale": outcome.preset.scale, "ffmpeg": {"path": outcome.ffmpeg.path, "version": outcome.ffmpeg.version},
        **run_summary(outcome.result),
    }
    if timings_path:
        write_rows(timings_path, timing_rows(outcome.result.timings),
                   {"schema_version": 1, "input": input_path, "output": output})
    if as_json:
        emit_json(summary)
    elif not quiet:
        print_run_summary(stderr_console(), summary, f"espcn-video upscale {input_path} -> {output}")
