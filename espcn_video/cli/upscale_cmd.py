"""`espcn-video upscale IN OUT`: the filter."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from espcn_video.cli.common import (
    DEVICE,
    SCALE,
    check_raw_options,
    deinterlace_option,
    emit_json,
    guarded,
    parse_rate,
    parse_size,
    raw_input_options,
    stderr_console,
)
from espcn_video.cli.progress import ProgressWriter, open_progress, progress_options
from espcn_video.cli.render import print_run_summary
from espcn_video.errors import EspcnVideoError, UsageError
from espcn_video.ffmpeg.args import is_numbered
from espcn_video.ffmpeg.probe import ProbeInfo
from espcn_video.ffmpeg.y4m import Y4MHeader
from espcn_video.files import write_rows
from espcn_video.settings import BACKENDS, PRECISIONS, EncodeSettings, InputSpec, RawInput, UpscaleSettings

if TYPE_CHECKING:  # the frame path loads torch: only when a command runs, not for --help
    from espcn_video.frames.pipeline import Counters


def build_input_spec(path: str, size: str | None, pix_fmt: str | None, rate: str | None) -> InputSpec:
    check_raw_options(path, size, pix_fmt, rate)  # a .mp4 or .y4m is never read as raw video
    wh = parse_size(size)
    is_raw = path.lower().endswith(".yuv") or wh is not None
    if not is_raw and path != "-" and is_numbered(path) and not Path(path).exists():
        if pix_fmt:
            raise UsageError("--input-pix-fmt describes raw .yuv input, not an image sequence")
        return InputSpec(path, sequence_rate=parse_rate(rate or "25"))
    if not is_raw:
        if pix_fmt or rate:
            raise UsageError(
                "--input-pix-fmt and --input-rate describe raw .yuv input (add --input-size WxH); "
                "--input-rate also a numbered image sequence such as frame_%04d.png"
            )
        return InputSpec(path)
    if wh is None:
        raise UsageError(f"{path}: raw .yuv needs --input-size WxH (and --input-pix-fmt, --input-rate)")
    return InputSpec(path, RawInput(wh[0], wh[1], pix_fmt or "yuv420p", parse_rate(rate or "25")))


def preset_for(scale: int | None, preset: str | None) -> str:
    """The preset name or path the job loads, checked here so a misfit fails before any work."""
    from espcn_video.model.external import ExternalOnnxEngine, is_external_model
    from espcn_video.model.presets import VIDEO, resolve_preset

    if is_external_model(preset):
        assert preset is not None
        model_scale = ExternalOnnxEngine(preset, threads=1).scale
        if scale is not None and scale != model_scale:
            raise UsageError(f"--preset {preset} is x{model_scale}, not x{scale}")
        return preset
    _, info = resolve_preset(preset, scale=scale, use=VIDEO)
    return preset if preset is not None else info.name


def video_preset_for(
    scale: int | None, preset: str | None, source: InputSpec, check: bool = True
) -> tuple[str, str | None]:
    """preset_for, and without --preset (or with --preset auto) the clean or the real-video preset
    of the scale, chosen by a first look at IN (jobs/preset_choice.py); the reason as a line, else None.
    `check`: refuse a missing or empty IN first (batch leaves that to each file's own run)."""
    from espcn_video.model.presets import AUTO_PRESET, auto_pair, presets_dir

    if preset not in (None, AUTO_PRESET):
        return preset_for(scale, preset), None
    clean, real = auto_pair(scale or 2)
    if not all((presets_dir() / f"{name}.pt").is_file() for name in (clean, real)):
        return preset_for(scale, None), None
    from espcn_video.jobs.inputs import check_input
    from espcn_video.jobs.preset_choice import choose_video_preset

    if check:  # a missing or empty IN fails here, before a look that could only say so vaguely
        check_input(source)
    choice = choose_video_preset(source, clean, real, scale or 2)
    return preset_for(scale, choice.name), choice.reason


def say_preset_choice(reason: str | None, quiet: bool) -> None:
    if reason is not None and not quiet:
        stderr_console().print(f"preset: {reason}", markup=False, highlight=False)


class RunDisplay:
    """Progress while the stages run (they only bump counters): a rich bar on a terminal, and/or
    a ProgressWriter (key=value blocks for --progress, plain lines in a log)."""

    def __init__(self, enabled: bool, writer: ProgressWriter | None = None, label: str = "upscale") -> None:
        self.label = label
        self.progress: Progress | None = None
        self.task: TaskID | None = None
        self.enabled = enabled
        self.writer = writer

    def start(self, header: Y4MHeader, probe: ProbeInfo | None) -> None:
        total = probe.estimated_frames() if probe else None
        if self.writer is not None:
            self.writer.start(total)
        if not self.enabled:
            return
        self.progress = Progress(
            TextColumn(f"[bold]{self.label}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[fps]:.1f} fps"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=stderr_console(),
            transient=True,
        )
        self.progress.start()
        self.task = self.progress.add_task(self.label, total=total, fps=0.0)

    def update(self, counters: Counters) -> None:
        if self.writer is not None:
            self.writer.update(counters.frames_written, counters.last_pts_s)
        if self.progress is None or self.task is None:
            return
        task = self.progress.tasks[0]
        fps = counters.frames_written / task.elapsed if task.elapsed else 0.0
        total = task.total
        if total is not None and counters.frames_written > total:
            total = None  # the estimate was short: never bound anything by it
        self.progress.update(self.task, completed=counters.frames_written, fps=fps, total=total)

    def stop(self, completed: bool = False) -> None:
        if self.writer is not None:
            self.writer.finish(completed)
        if self.progress is not None:
            if self.task is not None:  # the estimate from duration x rate is only an estimate
                done = self.progress.tasks[0].completed
                self.progress.update(self.task, total=done)
            self.progress.stop()


@click.command("upscale")
@click.argument("input_path", metavar="IN")
@click.argument("output", metavar="OUT")
@click.option("--scale", type=SCALE, default=None, help="Upscaling factor (default: the preset's, else 2).")
@click.option(
    "--preset",
    default=None,
    help="Preset name (see `espcn-video presets`), a .pt file, or a one-channel SR model as .onnx "
    "(float32 Y in [0, 1] or uint8 code values, NCHW or NHWC; its scale read from its shapes; ONNX Runtime). "
    "Default (auto): espcn-xSCALE where a first look at IN finds antialiased, lossless or lightly compressed "
    "(H.264 QP <= 20) video, else espcn-xSCALE-real (trained on real degradations; stdin always gets it).",
)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Model threads (default: all cores).")
@click.option("--device", type=DEVICE, default="cpu", show_default=True, help="cpu, cuda (or cuda:N) or auto.")
@click.option(
    "--max-memory",
    "max_memory_mb",
    type=click.FloatRange(min=16),
    default=512,
    show_default=True,
    metavar="MB",
    help="The network's working memory on one frame; larger frames run in strips (same output).",
)
@click.option(
    "--backend",
    type=click.Choice(["auto", *BACKENDS]),
    default="auto",
    show_default=True,
    help="Inference engine; auto: the fastest installed one within 0.05 dB of fp32.",
)
@click.option(
    "--precision",
    type=click.Choice(["auto", *PRECISIONS]),
    default="auto",
    show_default=True,
    help="Arithmetic of the engine; fp32 is the reference.",
)
@click.option("--codec", default=None, help="Any ffmpeg video encoder (default by extension: libx264 for .mp4/.mkv).")
@click.option("--crf", type=int, default=None, help="Constant rate factor (default 18 for libx264).")
@click.option("--encoder-preset", default=None, help="Encoder speed preset, e.g. ultrafast, veryfast, medium.")
@click.option("--format", "fmt", default=None, help="ffmpeg muxer; required when OUT is '-'.")
@click.option("--output-args", default="", help="Extra ffmpeg output options, one shell-quoted string.")
@click.option("--audio-codec", default="copy", show_default=True, help="Codec for audio taken from IN.")
@click.option("--no-copy-streams", is_flag=True, help="Do not take audio, subtitles, chapters from IN.")
@raw_input_options
@click.option("--timings", "timings_path", default=None, help="Per-frame timings file (.csv or .json).")
@click.option("--json", "as_json", is_flag=True, help="Summary as JSON on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary on stderr.")
@progress_options
@click.option("--ignore-decode-errors", is_flag=True, help="Keep the output when the decoder reports a damaged input.")
@deinterlace_option
@click.option("-y", "--overwrite", is_flag=True, help="Replace OUT if it exists.")
@click.option("--chunks", default=None, help="Split into chunks on Dask: 'auto' (about 20 s each) or a number.")
@click.option("--scheduler", default=None, help="Dask scheduler address, e.g. tcp://HOST:8786 (with --chunks).")
@click.option(
    "--local-workers",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="Workers of the local Dask cluster when no --scheduler is given.",
)
@click.option("--resume", is_flag=True, help="Finish an interrupted --chunks run: only missing chunks run.")
@guarded
def upscale_cmd(
    input_path: str,
    output: str,
    scale: int | None,
    preset: str | None,
    threads: int | None,
    device: str,
    max_memory_mb: float,
    backend: str,
    precision: str,
    codec: str | None,
    crf: int | None,
    encoder_preset: str | None,
    fmt: str | None,
    output_args: str,
    audio_codec: str,
    no_copy_streams: bool,
    input_size: str | None,
    input_pix_fmt: str | None,
    input_rate: str | None,
    timings_path: str | None,
    as_json: bool,
    quiet: bool,
    progress_path: str | None,
    stats_period: float | None,
    ignore_decode_errors: bool,
    deinterlace: str,
    overwrite: bool,
    chunks: str | None,
    scheduler: str | None,
    local_workers: int,
    resume: bool,
) -> None:
    """Super-resolve IN into OUT: ESPCN on Y, bicubic U and V, audio and subtitles kept.

    IN and OUT may be '-' for stdin and stdout.
    """
    if output == "-" and as_json:
        raise UsageError("--json writes to stdout, which already carries the video (OUT is '-')")
    try:
        extra = tuple(shlex.split(output_args))
    except ValueError as exc:
        raise UsageError(f"--output-args: {exc}") from None
    source = build_input_spec(input_path, input_size, input_pix_fmt, input_rate)
    preset_name, choice = video_preset_for(scale, preset, source)
    say_preset_choice(choice, quiet or as_json)
    settings = UpscaleSettings(
        input=source,
        output=output,
        preset=preset_name,
        encode=EncodeSettings(
            codec=codec,
            crf=crf,
            preset=encoder_preset,
            format=fmt,
            extra_args=extra,
            audio_codec=audio_codec,
            copy_streams=not no_copy_streams,
        ),
        threads=threads,
        device=device,
        backend=backend,
        precision=precision,
        overwrite=overwrite,
        strict_decode=not ignore_decode_errors,
        deinterlace=deinterlace,
        timings_path=timings_path,
        max_memory_mb=max_memory_mb,
    )
    if chunks is not None or resume or scheduler:
        refused = [
            name
            for name, used in (
                ("--timings", timings_path is not None),
                ("--device", device != "cpu"),
            )
            if used
        ]
        if refused:
            raise UsageError(
                f"{', '.join(refused)} cannot be used with --chunks (each chunk runs on a "
                "Dask worker's CPU and keeps no per-frame timings)"
            )
        with open_progress("upscale", progress_path, stats_period, quiet) as writer:
            run_chunked_cli(settings, chunks, scheduler, local_workers, resume, as_json, quiet, writer, choice)
        return
    from espcn_video.jobs.summary import run_summary, timing_rows
    from espcn_video.jobs.upscale import upscale_video

    with open_progress("upscale", progress_path, stats_period, quiet) as writer:
        # a key=value stream on stderr and a live bar would interleave: the stream wins
        bar = not quiet and sys.stderr.isatty() and progress_path != "-"
        display = RunDisplay(enabled=bar, writer=writer)
        completed = False
        try:
            outcome = upscale_video(settings, on_start=display.start, on_progress=display.update)
            completed = True
        finally:
            display.stop(completed)
    summary: dict[str, Any] = {
        "input": input_path,
        "output": output,
        "preset": outcome.preset.name,
        "preset_choice": choice,
        "scale": outcome.preset.scale,
        "ffmpeg": {"path": outcome.ffmpeg.path, "version": outcome.ffmpeg.version},
        **run_summary(outcome.result),
        "output_check": output_check_summary(outcome),
        "notes": outcome.notes,
    }
    if outcome.size_changes:
        summary["size_changes"] = [c.to_json() for c in outcome.size_changes]
    summary["frames"] = outcome.check.frames if outcome.check.frames is not None else summary["frames"]
    if timings_path:
        try:
            write_rows(
                timings_path,
                timing_rows(outcome.result.timings),
                {"schema_version": 1, "input": input_path, "output": output},
            )
        except OSError as exc:
            raise EspcnVideoError(
                f"--timings {timings_path}: cannot write it ({exc.strerror}); {output} was written"
            ) from None
    if as_json:
        emit_json(summary)
    elif not quiet:
        print_run_summary(stderr_console(), summary, f"espcn-video upscale {input_path} -> {output}")


def output_check_summary(outcome: Any) -> dict[str, Any]:
    """What was measured on the written file: frames counted, timestamps compared."""
    check = outcome.check
    doc: dict[str, Any] = {"frames_in_file": check.frames, "frames_read": outcome.result.frames_read}
    if check.images:
        doc["images"] = True
    if check.max_time_error_s is not None:
        doc.update(
            time_base=check.time_base,
            max_time_error_s=round(check.max_time_error_s, 6),
            start_offset_s=round(check.start_offset_s or 0.0, 6),
        )
    return doc


def parse_chunks(text: str | None) -> int | None:
    if text is None or text == "auto":
        return None
    if not text.isdigit() or int(text) < 1:
        raise UsageError(f"--chunks {text!r}: expected 'auto' or a positive number")
    return int(text)


def run_chunked_cli(
    settings: UpscaleSettings,
    chunks: str | None,
    scheduler: str | None,
    local_workers: int,
    resume: bool,
    as_json: bool,
    quiet: bool,
    writer: ProgressWriter | None = None,
    choice: str | None = None,
) -> None:
    """The chunked run with its progress: frames written over all chunks (the running chunks
    report theirs every half second), as a bar on a terminal and/or through `writer`."""
    from espcn_video.jobs.chunked import upscale_chunked

    progress = None
    if not quiet and sys.stderr.isatty() and not (writer is not None and writer.stream is sys.stderr):
        progress = Progress(
            TextColumn("[bold]upscale (chunks)"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[fps]:.1f} fps"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=stderr_console(),
            transient=True,
        )
        progress.start()
        task = progress.add_task("chunks", total=None, fps=0.0)

    started = False

    def update(done: int, total: int) -> None:
        nonlocal started
        if writer is not None:
            if not started:
                writer.start(total)
                started = True
            writer.update(done, None)
        if progress is not None:
            elapsed = progress.tasks[0].elapsed or 0.0
            progress.update(task, completed=done, total=total, fps=done / elapsed if elapsed else 0.0)

    completed = False
    try:
        outcome = upscale_chunked(
            settings,
            chunks=parse_chunks(chunks),
            scheduler=scheduler,
            local_workers=local_workers,
            resume=resume,
            on_progress=update,
        )
        completed = True
    finally:
        if progress is not None:
            progress.stop()
        if writer is not None:
            writer.finish(completed)
    summary: dict[str, Any] = {
        "input": settings.input.path,
        "output": settings.output,
        "preset": settings.preset,
        "preset_choice": choice,
        "frames": outcome.frames,
        "wall_s": round(outcome.wall_s, 3),
        "fps": round(outcome.frames / outcome.wall_s, 3) if outcome.wall_s else 0.0,
        "chunks": len(outcome.plan.chunks),
        "chunks_run": outcome.chunks_run,
        "chunks_reused": outcome.chunks_reused,
        "workers": outcome.workers,
        "notes": outcome.notes,
    }
    if outcome.size_changes:
        summary["size_changes"] = [c.to_json() for c in outcome.size_changes]
    if as_json:
        emit_json(summary)
    elif not quiet:
        console = stderr_console()
        console.print(
            f"{outcome.frames} frames in {len(outcome.plan.chunks)} chunks ({len(outcome.chunks_run)} run, "
            f"{len(outcome.chunks_reused)} reused) on {outcome.workers} workers: {summary['wall_s']:.2f} s, "
            f"{summary['fps']:.2f} fps"
        )
        for note in outcome.notes:
            console.print(f"note: {note}", markup=False, highlight=False)


@click.command("batch")
@click.argument("inputs", nargs=-1, required=True, metavar="INPUTS...")
@click.option("--out-dir", required=True, help="Folder for the outputs (same names, --suffix added).")
@click.option("--suffix", default="_sr.mkv", show_default=True, help="Output name suffix and extension.")
@click.option("--scale", type=SCALE, default=None, help="Upscaling factor (default: the preset's, else 2).")
@click.option("--preset", default=None, help="Preset name, .pt file or .onnx model (see upscale --help).")
@click.option("--codec", default=None)
@click.option("--crf", type=int, default=None)
@click.option("--encoder-preset", default=None)
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True, help="Model threads per task.")
@click.option("--scheduler", default=None, help="Dask scheduler address; default a local cluster.")
@click.option("--local-workers", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("-y", "--overwrite", is_flag=True, help="Redo every file, also those whose output is already complete.")
@click.option("--json", "as_json", is_flag=True, help="Results as JSON on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No per-file lines, progress or totals on stderr.")
@progress_options
@guarded
def batch_cmd(
    inputs: tuple[str, ...],
    out_dir: str,
    suffix: str,
    scale: int | None,
    preset: str | None,
    codec: str | None,
    crf: int | None,
    encoder_preset: str | None,
    threads: int,
    scheduler: str | None,
    local_workers: int,
    overwrite: bool,
    as_json: bool,
    quiet: bool,
    progress_path: str | None,
    stats_period: float | None,
) -> None:
    """Upscale many files on Dask: each file is one task.

    \b
    INPUTS are video files or folders; a folder adds its video files
    (.mp4 .mkv .mov .webm .avi .ts ... by extension), sorted by name,
    not those of its subfolders.

    A file whose output already exists with the same number of video
    frames as the input is skipped (reported as skipped); any other
    existing output (cut short, unreadable) is redone. -y redoes all.
    Paths reach the workers as written: with --scheduler, give paths
    that every worker sees.
    """
    from espcn_video.jobs.batch import batch_jobs, estimated_frames, find_done_outputs, run_batch
    from espcn_video.model.presets import AUTO_PRESET

    fixed = preset_for(scale, preset) if preset not in (None, AUTO_PRESET) else None
    encode = EncodeSettings(codec=codec, crf=crf, preset=encoder_preset)
    pairs = batch_jobs(list(inputs), out_dir, suffix)
    skipped, partial = ([], set()) if overwrite else find_done_outputs(pairs)
    skip = {r["input"] for r in skipped}
    console = stderr_console()
    # An incomplete output (a crash, a full disk) is replaced without asking for -y.
    all_settings = []
    for spec, out in pairs:
        if spec.path in skip:
            continue
        name = fixed
        if name is None:  # each file gets the preset its own first look chooses
            name, choice = video_preset_for(scale, preset, spec, check=False)
            if choice is not None and not (quiet or as_json):
                console.print(f"preset for {spec.path}: {choice}", markup=False, highlight=False)
        all_settings.append(
            UpscaleSettings(
                input=spec,
                output=out,
                preset=name,
                encode=encode,
                threads=threads,
                overwrite=overwrite or out in partial,
            )
        )

    def done(rec: dict[str, Any]) -> None:
        if as_json or quiet:
            return
        if rec["status"] == "failed":
            console.print(f"[red]failed[/red] {_failure(rec)}")
        elif rec["status"] == "skipped":
            console.print(f"skipped (already done) {rec['input']} -> {rec['output']}: {rec['frames']} frames")
        else:
            console.print(f"done {rec['input']} -> {rec['output']}: {rec['frames']} frames, {rec['fps']:.2f} fps")
            for note in rec.get("notes", []):
                console.print(f"  note: {note}", markup=False, highlight=False)

    for rec in skipped:
        done(rec)
    with open_progress("batch", progress_path, stats_period, quiet) as writer:
        if writer is not None:
            writer.start(estimated_frames(all_settings) if all_settings else 0)
        completed = False
        try:
            ran = run_batch(
                all_settings,
                scheduler=scheduler,
                local_workers=local_workers,
                on_done=done,
                on_progress=(lambda frames: writer.update(frames, None)) if writer is not None else None,
            )
            completed = True
        finally:
            if writer is not None:
                writer.finish(completed)
    order = {spec.path: i for i, (spec, _) in enumerate(pairs)}
    results = sorted(skipped + ran, key=lambda r: order[r["input"]])
    failed = [r for r in results if r["status"] == "failed"]
    if as_json:
        emit_json({"results": results, "done": len(ran) - len(failed), "skipped": len(skipped), "failed": len(failed)})
    if failed:
        raise EspcnVideoError(f"{len(failed)} of {len(results)} files failed (first: {_failure(failed[0])})")
    if not (as_json or quiet):
        console.print(f"{len(ran)} upscaled, {len(skipped)} skipped (already done)")


def _failure(rec: dict[str, Any]) -> str:
    """'IN: error', the file named once (most errors name it already)."""
    error = str(rec["error"])
    return error if error.startswith(f"{rec['input']}:") else f"{rec['input']}: {error}"
