"""`espcn-video psnr`: per-frame PSNR/SSIM (and VMAF) reports of SR methods against reference clips."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from espcn_video.cli.common import (
    SCALE,
    check_raw_options,
    emit_json,
    guarded,
    is_headered,
    parse_rate,
    parse_size,
    raw_input_options,
    stderr_console,
)
from espcn_video.cli.progress import ProgressWriter, open_progress, progress_options
from espcn_video.errors import InputError, OutputError, UsageError
from espcn_video.ffmpeg.args import is_numbered
from espcn_video.settings import InputSpec, RawInput

VIDEO_SUFFIXES = frozenset(
    {
        ".y4m",
        ".yuv",
        ".mp4",
        ".mkv",
        ".mov",
        ".avi",
        ".webm",
        ".nut",
        ".m4v",
        ".ts",
        ".264",
        ".h264",
        ".265",
        ".hevc",
        ".ivf",
        ".obu",
        ".mpg",
        ".mpeg",
        ".flv",
        ".mxf",
    }
)
DEFAULT_METHODS = ("espcn", "bicubic", "lanczos")


def raw_from_name(name: str, pix_fmt: str | None, rate: str | None) -> RawInput | None:
    """UVG names carry the format (Beauty_1920x1080_120fps_420_10bit_YUV.yuv); None without a size."""
    lower = name.lower()
    size = re.search(r"(\d{2,5})x(\d{2,5})", lower)
    if size is None:
        return None
    fps = re.search(r"(\d+(?:\.\d+)?)fps", lower)
    bits = re.search(r"(?<!\d)(8|10|12)bit", lower)
    chroma = re.search(r"(?<!\d)(420|422|444)(?!\d)", lower)
    depth = f"{bits.group(1)}le" if bits and bits.group(1) != "8" else ""
    fmt = pix_fmt or f"yuv{chroma.group(1) if chroma else '420'}p{depth}"
    return RawInput(
        int(size.group(1)), int(size.group(2)), fmt, parse_rate(rate or (fps.group(1) if fps else "25"), "--input-rate")
    )


def build_clip_spec(path: str, size: str | None, pix_fmt: str | None, rate: str | None) -> InputSpec:
    """A .y4m or any file ffmpeg reads as is; a raw .yuv with --input-size/--input-pix-fmt/--input-rate
    or a UVG-style name. The raw options are refused for a file that says its own format (a .mp4, a .y4m)."""
    check_raw_options(path, size, pix_fmt, rate)
    if not path.lower().endswith(".yuv") and size is None:
        if path != "-" and is_numbered(path) and not Path(path).exists():
            # a numbered image sequence (frame_%04d.png: REDS, Vid4 and the like), at --input-rate
            if pix_fmt:
                raise UsageError("--input-pix-fmt describes raw .yuv input, not an image sequence")
            return InputSpec(path, sequence_rate=parse_rate(rate or "25", "--input-rate"))
        return InputSpec(path)
    if size is not None:
        w, h = parse_size(size, "--input-size") or (0, 0)  # parse_size refuses zero sizes
        return InputSpec(path, RawInput(w, h, pix_fmt or "yuv420p", parse_rate(rate or "25", "--input-rate")))
    raw = raw_from_name(Path(path).name, pix_fmt, rate)
    if raw is None:
        raise UsageError(
            f"{path}: raw .yuv needs --input-size WxH (and --input-pix-fmt, --input-rate), or a name with WxH in it"
        )
    return InputSpec(path, raw)


def expand_clips(
    refs: tuple[str, ...], size: str | None, pix_fmt: str | None, rate: str | None
) -> tuple[InputSpec, ...]:
    """Files as given; a folder stands for the video files directly in it, by name. In a folder,
    the raw options describe its raw .yuv files; the others (.y4m, .mp4, ...) say their own format."""
    specs: list[InputSpec] = []
    for ref in refs:
        folder = Path(ref)
        if folder.is_dir():
            found = sorted(
                str(p)
                for p in folder.iterdir()
                if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in VIDEO_SUFFIXES
            )
            if not found:
                raise InputError(f"{ref}: no video clips in this folder ({', '.join(sorted(VIDEO_SUFFIXES))})")
            specs += [
                build_clip_spec(p, None, None, None) if is_headered(p) else build_clip_spec(p, size, pix_fmt, rate)
                for p in found
            ]
        else:
            specs.append(build_clip_spec(ref, size, pix_fmt, rate))
    return tuple(specs)


def parse_methods(text: str | None) -> tuple[str, ...]:
    from espcn_video.jobs.psnr import METHODS

    names = [m.strip().lower() for m in (",".join(DEFAULT_METHODS) if text is None else text).split(",") if m.strip()]
    for name in names:
        if name not in METHODS:
            raise UsageError(f"unknown method {name!r} in --methods; choose from {', '.join(METHODS)}")
    if not names:
        raise UsageError("--methods is empty; choose from " + ", ".join(METHODS))
    return tuple(dict.fromkeys(names))


# What matplotlib writes, by the name's extension (none: PNG).
PLOT_FORMATS = ("", ".png", ".pdf", ".svg", ".jpg", ".jpeg")


def check_output_file(option: str, path: str | None) -> None:
    """Fail before minutes of work, not after."""
    if path is None or (option == "--csv" and path == "-"):  # --csv -: the rows on stdout
        return
    target = Path(path)
    if option == "--plot" and target.suffix.lower() not in PLOT_FORMATS:
        raise UsageError(f"--plot {path}: a plot is written as .png, .pdf, .svg or .jpg, not {target.suffix}")
    if target.is_dir():
        raise OutputError(f"{option} {path}: is a folder; give a file name")
    if not target.parent.is_dir():
        raise OutputError(f"{option} {path}: folder {target.parent} does not exist")


def _db(value: float | None, identical: bool = False) -> str:
    if value is None:
        return "identical" if identical else "-"
    return f"{value:.2f}"


def _gain(value: dict[str, Any] | None, key: str = "mean_psnr_db") -> str:
    if not value or value[key] is None:
        return "-"
    return f"{value[key]:+.2f}"


def print_paper_table(console: Console, report: dict[str, Any]) -> None:
    """Rows: clips; columns: methods (mean of per-frame Y-PSNR, dB), then each gain over bicubic."""
    methods = report["methods"]
    gains = [m for m in methods if m != "bicubic"] if "bicubic" in methods else []
    title = (
        f"Y-PSNR (dB), mean of per-frame PSNR: x{report['scale']}, LR by {report['degradation']['spec']}, "
        f"crop border {report['crop_border']}"
    )
    table = Table(title=title, title_justify="left")
    for col in ("clip", "size", "frames", *methods, *(f"{m} gain" for m in gains)):
        table.add_column(col, justify="left" if col == "clip" else "right")
    for clip in report["clips"]:
        cells = [clip["name"], "{}x{}".format(*clip["size"]), str(clip["frames"])]
        cells += [_db(clip["methods"][m]["y"]["mean_psnr_db"], clip["methods"][m]["y"]["identical"]) for m in methods]
        cells += [_gain(clip["methods"][m]["gain_over_bicubic_db"]) for m in gains]
        table.add_row(*cells)
    overall = report["overall"]
    table.add_section()
    table.add_row(
        "average (clips)",
        "",
        str(overall[methods[0]]["frames"]),
        *[_db(overall[m]["y"]["mean_psnr_db"]) for m in methods],
        *[_gain(overall[m]["gain_over_bicubic_db"]) for m in gains],
    )
    table.add_row(
        "pooled MSE",
        "",
        "",
        *[_db(overall[m]["y"]["psnr_of_mean_mse_db"]) for m in methods],
        *[_gain(overall[m]["gain_over_bicubic_db"], "psnr_of_mean_mse_db") for m in gains],
    )
    console.print(table)


def print_detail_table(console: Console, report: dict[str, Any]) -> None:
    has_vmaf = any("vmaf" in s for c in report["clips"] for s in c["methods"].values())
    table = Table(
        title="Per clip and method: Y-PSNR dB (mean of per-frame, of mean MSE), U and V of mean "
        "MSE, SSIM of Y (ffmpeg's), worst frame",
        title_justify="left",
    )
    cols = ["clip", "method", "Y mean", "Y avg MSE", "U", "V", "SSIM Y", "worst Y"]
    cols += ["VMAF"] if has_vmaf else []
    cols += ["fps"] if report["mode"] == "sr" else []
    for col in cols:
        table.add_column(col, justify="left" if col in ("clip", "method") else "right")
    for clip in report["clips"]:
        for method, s in clip["methods"].items():
            y = s["y"]
            worst = s["worst_frame"]
            row = [
                clip["name"],
                method,
                _db(y["mean_psnr_db"], y["identical"]),
                _db(y["psnr_of_mean_mse_db"], y["identical"]),
                _db(s["u"]["psnr_of_mean_mse_db"], s["u"]["identical"]) if "u" in s else "-",
                _db(s["v"]["psnr_of_mean_mse_db"], s["v"]["identical"]) if "v" in s else "-",
                "-" if s["ssim_y"]["mean"] is None else f"{s['ssim_y']['mean']:.4f}",
                f"#{worst['index']} {_db(worst['psnr_y_db'], True)}",
            ]
            row += [f"{s['vmaf']['mean']:.2f}" if "vmaf" in s else "-"] if has_vmaf else []
            row += [f"{s.get('fps', 0.0):.1f}"] if report["mode"] == "sr" else []
            table.add_row(*row)
    console.print(table)


def _progress(
    enabled: bool, total: int, per_clip: int, writer: ProgressWriter | None
) -> tuple[Callable[[str, str], None], Callable[[int], None]]:
    """One line per (clip, method) run on a terminal; frames scored over all runs to `writer`."""
    count, before, current = [0], [0], [0]

    def on_run(clip: str, method: str) -> None:
        from espcn_video.jobs.psnr import LR_RUN

        if method == LR_RUN:  # not a scored run: said, not counted
            if enabled:
                click.echo(f"psnr {clip}: {LR_RUN}", err=True)
            return
        count[0] += 1
        before[0] += current[0]
        current[0] = 0
        if enabled:
            click.echo(f"psnr [{count[0]}/{total * per_clip}] {clip}: {method}", err=True)

    def on_frames(frames: int) -> None:
        current[0] = frames
        if writer is not None:
            writer.update(before[0] + frames, None)

    return on_run, on_frames


@click.command("psnr")
@click.argument("refs", nargs=-1, required=True, metavar="REF...")
@click.option(
    "--dist", default=None, metavar="DIST", help="Compare DIST with one REF directly (like ffmpeg's psnr/ssim filters)."
)
@click.option("--scale", type=SCALE, default=None, help="Upscaling factor (default: the preset's, else 2).")
@click.option(
    "--preset",
    default=None,
    help="ESPCN preset name or .pt file (default espcn-xSCALE); auto: per clip, the preset "
    "upscale would choose from a look at the LR clip as a file (espcn-xSCALE or espcn-xSCALE-real).",
)
@click.option(
    "--degrade",
    default=None,
    help="How LR is made: bicubic (default), bicubic-noaa, area, bilinear, lanczos or gaussian[:SIGMA], then "
    "optionally ,noise:SIGMA and ,x264:crf=N or ,x265:crf=N: the whole LR clip goes through that encoder "
    "(e.g. bicubic-noaa,x264:crf=28; :inter after N is accepted and changes nothing on video).",
)
@click.option(
    "--methods", default=None, help="Comma list of espcn, bicubic, lanczos, srcnn (default espcn,bicubic,lanczos)."
)
@click.option("--frames", type=click.IntRange(min=1), default=None, help="Score only the first N frames.")
@click.option(
    "--crop-border",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Pixels shaved from each side before measuring (SR papers: the scale).",
)
@raw_input_options
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Model and libvmaf threads.")
@click.option("--json", "as_json", is_flag=True, help="The report as JSON on stdout (with per-frame arrays).")
@click.option(
    "--csv",
    "csv_path",
    default=None,
    help="Per-frame rows (clip, method, frame, PSNR Y/U/V, SSIM Y, VMAF); - for stdout.",
)
@click.option("--plot", "plot_path", default=None, help="PNG of per-frame Y-PSNR for every method, one panel per clip.")
@click.option("--vmaf", is_flag=True, help="Also VMAF per frame (ffmpeg's libvmaf, model vmaf_v0.6.1).")
@click.option(
    "--crops",
    "crops_dir",
    default=None,
    metavar="DIR",
    help="PNG crops of each clip's worst frames (reference and every method, Y, the window of largest error).",
)
@click.option("--worst", type=click.IntRange(min=1), default=None, help="How many worst frames --crops shows (3).")
@click.option("-q", "--quiet", is_flag=True, help="No tables or progress on stderr.")
@progress_options
@guarded
def psnr_cmd(
    refs: tuple[str, ...],
    dist: str | None,
    scale: int | None,
    preset: str | None,
    degrade: str | None,
    methods: str | None,
    frames: int | None,
    crop_border: int,
    input_size: str | None,
    input_pix_fmt: str | None,
    input_rate: str | None,
    threads: int | None,
    as_json: bool,
    csv_path: str | None,
    plot_path: str | None,
    vmaf: bool,
    crops_dir: str | None,
    worst: int | None,
    quiet: bool,
    progress_path: str | None,
    stats_period: float | None,
) -> None:
    """Score SR methods on reference clips: LR made by --degrade, PSNR/SSIM per frame vs REF.

    REF is a .y4m, a raw .yuv, any file ffmpeg reads, or a folder of them. With --dist DIST, DIST
    is compared with REF as is.
    """
    from espcn_video.ffmpeg.locate import has_libvmaf, locate_ffmpeg
    from espcn_video.jobs.psnr import PsnrSettings, compare_clips, evaluate_clips, frame_rows
    from espcn_video.quality.degrade import parse_degradation

    if dist is not None and progress_path is not None:
        raise UsageError("--progress counts the frames of SR runs; it does not apply to --dist")
    if worst is not None and crops_dir is None:
        raise UsageError("--worst N says how many frames --crops DIR shows: add --crops")
    if crops_dir is not None:
        if dist is not None:
            raise UsageError("--crops shows SR methods against the reference; it does not apply to --dist")
        crops = Path(crops_dir)
        if crops.exists() and not crops.is_dir():
            raise OutputError(f"--crops {crops_dir}: is a file; give a folder (made if it is not there)")
        if not crops.parent.is_dir():
            raise OutputError(f"--crops {crops_dir}: folder {crops.parent} does not exist")
        crops.mkdir(exist_ok=True)
    if csv_path == "-" and as_json:
        raise UsageError("--csv - and --json both write to stdout: give --csv a file name")
    check_output_file("--csv", csv_path)
    check_output_file("--plot", plot_path)
    ffmpeg = locate_ffmpeg()
    if vmaf and not has_libvmaf(ffmpeg.path):
        raise UsageError(f"--vmaf: the ffmpeg in use ({ffmpeg.path}) has no libvmaf filter")
    if "-" in (dist, *refs):
        raise UsageError("psnr reads its clips from files, not from stdin (-)")
    if dist is not None:
        if len(refs) != 1:
            raise UsageError(f"--dist compares one DIST with one REF; got {len(refs)} REF arguments")
        if any(v is not None for v in (scale, preset, degrade, methods)):
            raise UsageError(
                "--dist compares two clips as they are: --scale, --preset, --degrade and --methods do not apply"
            )
        report = compare_clips(
            ffmpeg.path,
            build_clip_spec(dist, input_size, input_pix_fmt, input_rate),
            build_clip_spec(refs[0], input_size, input_pix_fmt, input_rate),
            frames=frames,
            crop_border=crop_border,
            vmaf=vmaf,
            threads=threads,
        )
    else:
        method_names = parse_methods(methods)
        degradation = parse_degradation("bicubic" if degrade is None else degrade)
        if scale is None:
            from espcn_video.model.presets import AUTO_PRESET

            named = preset if preset != AUTO_PRESET else None  # auto has no scale of its own
            scale = _preset_scale(named) if named and "espcn" in method_names else 2
        clips = expand_clips(refs, input_size, input_pix_fmt, input_rate)
        settings = PsnrSettings(
            clips, scale, preset, degradation, method_names, frames, crop_border, vmaf, threads,
            Path(crops_dir) if crops_dir is not None else None, worst or 3,
        )  # fmt: skip
        with open_progress("psnr", progress_path, stats_period, quiet) as writer:
            on_run, on_frames = _progress(
                not quiet and sys.stderr.isatty() and progress_path != "-", len(clips), len(method_names), writer
            )
            if writer is not None:  # frames over every (clip, method) run; the total only when --frames bounds it
                writer.start(frames * len(clips) * len(method_names) if frames else None)
            completed = False
            try:
                report = evaluate_clips(ffmpeg.path, settings, on_run, on_frames)
                completed = True
            finally:
                if writer is not None:
                    writer.finish(completed)
    report = {"command": "psnr", "ffmpeg": {"path": ffmpeg.path, "version": ffmpeg.version}, **report}
    _write_outputs(report, csv_path, plot_path, frame_rows)
    if not quiet:
        console = stderr_console()
        if not console.is_terminal:
            console.width = max(console.width, 140)  # a log file: no reason to wrap the table at 80
        if report["mode"] == "sr":
            for clip in report["clips"]:
                if "preset_choice" in clip:
                    console.print(f"preset for {clip['name']}: {clip['preset_choice']}", markup=False, highlight=False)
            print_paper_table(console, report)
        print_detail_table(console, report)
    if as_json:
        emit_json(report)


def _preset_scale(preset: str) -> int:
    from espcn_video.model.presets import load_preset

    return load_preset(preset)[1].scale


def _write_outputs(
    report: dict[str, Any],
    csv_path: str | None,
    plot_path: str | None,
    frame_rows: Callable[[dict[str, Any]], list[dict[str, Any]]],
) -> None:
    if csv_path == "-":
        from espcn_video.files import write_csv

        write_csv(sys.stdout, frame_rows(report))
    elif csv_path:
        from espcn_video.files import write_rows

        write_rows(csv_path, frame_rows(report))
    if plot_path:
        from espcn_video.quality.plots import plot_per_frame_psnr

        plot_per_frame_psnr(report, plot_path)
