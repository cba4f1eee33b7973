"""`espcn-video compare IN OUT`: the baseline and ESPCN in one video, to look at."""

from __future__ import annotations

import sys
from typing import Any

import click

from espcn_video.cli.common import SCALE, deinterlace_option, emit_json, guarded, raw_input_options, stderr_console
from espcn_video.cli.progress import open_progress, progress_options
from espcn_video.cli.upscale_cmd import (
    RunDisplay,
    build_input_spec,
    output_check_summary,
    say_preset_choice,
    video_preset_for,
)
from espcn_video.errors import UsageError
from espcn_video.settings import BACKENDS, PRECISIONS, EncodeSettings, InputSpec, UpscaleSettings


def parse_wipe(text: str | None, layout: str) -> float | None:
    """--wipe as CompareSettings takes it (None: sweep); checked before any work is done."""
    if text is None:
        return 0.5
    if layout != "split":
        raise UsageError(f"--wipe applies to --layout split, not {layout}")
    if text == "sweep":
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise UsageError(f"--wipe {text}: a fraction of the width from 0 to 1, or 'sweep'")
    return value


@click.command("compare")
@click.argument("input_path", metavar="IN")
@click.argument("output", metavar="OUT")
@click.option("--scale", type=SCALE, default=None, help="Upscaling factor (default: the preset's, else 2).")
@click.option("--preset", default=None, help="Preset name, .pt file or .onnx model (see upscale --help).")
@click.option(
    "--layout",
    type=click.Choice(["side-by-side", "split", "diff"]),
    default="side-by-side",
    show_default=True,
    help="side-by-side: baseline left, ESPCN right (twice as wide); split: one picture, baseline left of "
    "a wipe, ESPCN right of it; diff: |ESPCN - baseline| x GAIN, where ESPCN changed the picture.",
)
@click.option(
    "--baseline",
    type=click.Choice(["bicubic", "lanczos"]),
    default="bicubic",
    show_default=True,
    help="What ESPCN is shown against (on the same grid, with the same bicubic chroma).",
)
@click.option(
    "--ref",
    "ref_path",
    default=None,
    metavar="REF",
    help="The original at the upscaled size (IN made from it): error maps |REF - baseline| and "
    "|REF - ESPCN| x GAIN go beneath the pictures (side-by-side, split).",
)
@click.option(
    "--wipe",
    default=None,
    metavar="FRACTION|sweep",
    help="split: where the wipe stands (0 left edge, 1 right edge; default 0.5), or 'sweep': it moves "
    "across and back every 8 s.",
)
@click.option(
    "--gain",
    type=click.FloatRange(min=1.0, max=64.0),
    default=4.0,
    show_default=True,
    help="Difference and error maps show |a - b| times this.",
)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Model threads (default: all cores).")
@click.option("--backend", type=click.Choice(["auto", *BACKENDS]), default="auto", show_default=True)
@click.option("--precision", type=click.Choice(["auto", *PRECISIONS]), default="auto", show_default=True)
@click.option("--codec", default=None, help="Any ffmpeg video encoder (default by extension: libx264 for .mp4/.mkv).")
@click.option("--crf", type=int, default=None, help="Constant rate factor (default 18 for libx264).")
@click.option("--encoder-preset", default=None, help="Encoder speed preset, e.g. ultrafast, veryfast, medium.")
@click.option("--no-copy-streams", is_flag=True, help="Do not take audio, subtitles, chapters from IN.")
@raw_input_options
@click.option("--json", "as_json", is_flag=True, help="Summary as JSON on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary on stderr.")
@progress_options
@deinterlace_option
@click.option("-y", "--overwrite", is_flag=True, help="Replace OUT if it exists.")
@guarded
def compare_cmd(
    input_path: str,
    output: str,
    scale: int | None,
    preset: str | None,
    layout: str,
    baseline: str,
    ref_path: str | None,
    wipe: str | None,
    gain: float,
    threads: int | None,
    backend: str,
    precision: str,
    codec: str | None,
    crf: int | None,
    encoder_preset: str | None,
    no_copy_streams: bool,
    input_size: str | None,
    input_pix_fmt: str | None,
    input_rate: str | None,
    as_json: bool,
    quiet: bool,
    progress_path: str | None,
    stats_period: float | None,
    deinterlace: str,
    overwrite: bool,
) -> None:
    """Show the baseline and ESPCN side by side, split or as a difference, in one video.

    \b
    The comparison is an upscale run: the same decode, timestamps, colour
    tags and audio, and the written file is checked (frame count, every
    timestamp) before it is published. The views are cut by ffmpeg's own
    filters (split, crop, lut, blend, hstack, vstack, drawtext) from
    one frame that holds both upscales, so both halves always show the
    same instant. Labels use matplotlib's DejaVu Sans.
    """
    from espcn_video.jobs.compare import CompareSettings, compare_video

    if output == "-":
        raise UsageError("compare writes a file: OUT cannot be '-'")
    wipe_at = parse_wipe(wipe, layout)
    source = build_input_spec(input_path, input_size, input_pix_fmt, input_rate)
    preset_name, choice = video_preset_for(scale, preset, source)
    say_preset_choice(choice, quiet or as_json)
    settings = UpscaleSettings(
        input=source,
        output=output,
        preset=preset_name,
        encode=EncodeSettings(codec=codec, crf=crf, preset=encoder_preset, copy_streams=not no_copy_streams),
        threads=threads,
        backend=backend,
        precision=precision,
        overwrite=overwrite,
        deinterlace=deinterlace,
    )
    compare = CompareSettings(
        layout=layout,
        baseline=baseline,
        reference=InputSpec(ref_path) if ref_path is not None else None,
        wipe=wipe_at,
        gain=gain,
    )
    with open_progress("compare", progress_path, stats_period, quiet) as writer:
        bar = not quiet and sys.stderr.isatty() and progress_path != "-"
        display = RunDisplay(enabled=bar, writer=writer, label="compare")
        completed = False
        try:
            done = compare_video(settings, compare, on_start=display.start, on_progress=display.update)
            completed = True
        finally:
            display.stop(completed)
    run = done.run
    summary: dict[str, Any] = {
        "input": input_path,
        "output": output,
        "reference": ref_path,
        "layout": layout,
        "baseline": baseline,
        "preset": run.preset.name,
        "preset_choice": choice,
        "scale": run.preset.scale,
        "frames": run.check.frames if run.check.frames is not None else run.result.frames_written,
        "lr_size": [run.result.lr.width, run.result.lr.height],
        "output_size": list(done.view_size),
        "wall_s": round(run.result.wall_s, 3),
        "fps": round(run.result.fps, 3),
        "output_check": output_check_summary(run),
        "notes": run.notes,
    }
    if as_json:
        emit_json(summary)
    elif not quiet:
        console = stderr_console()
        lr, view = summary["lr_size"], summary["output_size"]
        console.print(
            f"{summary['frames']} frames {lr[0]}x{lr[1]} -> {view[0]}x{view[1]} {layout} "
            f"({baseline} | {run.preset.name}) in {summary['wall_s']:.2f} s: {summary['fps']:.2f} fps -> {output}"
        )
        check = summary["output_check"]
        if check.get("max_time_error_s") is not None:
            console.print(
                f"checked: {check['frames_in_file']} frames in the written file, {check['frames_read']} read; "
                f"timestamps within {check['max_time_error_s'] * 1e3:.3f} ms of the input's"
            )
        for note in run.notes:
            console.print(f"note: {note}")
