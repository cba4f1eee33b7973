"""`espcn-video bench [CLIP]`: speed of the pipeline, the SR stage, bicubic and SRCNN; `--compare A B`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from espcn_video.cli.common import DEVICE, SCALE, SCHEMA_VERSION, emit_json, guarded, parse_size, stderr_console
from espcn_video.errors import InputError
from espcn_video.settings import BACKENDS, PRECISIONS

RESULT_COLUMNS = (
    ("sr fps", "sr_fps"),
    ("frame fps", "frame_fps"),
    ("pipeline fps", "pipeline_fps"),
    ("ceiling fps", "ceiling_fps"),
    ("bicubic fps", "bicubic_fps"),
    ("srcnn fps", "srcnn_fps"),
    ("fp32 ref fps", "reference_sr_fps"),
    ("espcn/srcnn", "espcn_vs_srcnn"),
    ("GFLOP/s", "gflops"),
)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def results_table(doc: dict[str, Any]) -> Table:
    """One column per job, one row per figure: fits a terminal however many columns the figures need."""
    machine = doc["machine"]
    table = Table(
        title=f"espcn-video bench: {machine['cpu_model']}, {machine['threads']} threads", title_justify="left"
    )
    table.add_column("")
    for job in doc["jobs"]:
        table.add_column(f"{job['lr_size'][0]}x{job['lr_size'][1]} x{job['scale']}", justify="right")
    table.add_row("engine", *(job["engine"] for job in doc["jobs"]))
    for title, key in RESULT_COLUMNS:
        table.add_row(title, *(_cell(job.get(key)) for job in doc["jobs"]))
    return table


def stages_table(job: dict[str, Any]) -> Table:
    table = Table(
        title=f"{job['name']}: per-frame ms ({job['frames']} frames, encoder {job['encoder']})", title_justify="left"
    )
    for col in ("stage", "mean", "p50", "p95", "max"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for stage, s in job["stages"].items():
        table.add_row(stage, *(f"{s[k]:.2f}" for k in ("mean_ms", "p50_ms", "p95_ms", "max_ms")))
    return table


def print_results(console: Console, doc: dict[str, Any]) -> None:
    for job in doc["jobs"]:
        console.print(stages_table(job))
        cpu = job["cpu_ms_per_frame"]
        console.print(
            f"  CPU per frame: python {cpu['python']:.1f} ms + ffmpeg {cpu['ffmpeg']:.1f} ms; "
            f"peak memory {job['peak_memory']['python_mb']:.0f} MB; weights {job['weights']}"
        )
    console.print(results_table(doc))


def read_result(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not a bench result: {exc}") from None
    if (
        not isinstance(doc, dict)
        or doc.get("command") != "bench"
        or not isinstance(doc.get("jobs"), list)
        or not all(isinstance(job, dict) for job in doc["jobs"])
    ):
        raise InputError(f"{path}: not an `espcn-video bench --json` result")
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise InputError(f"{path}: schema_version {doc.get('schema_version')} is not {SCHEMA_VERSION}")
    return doc


def compare_table(rows: list[dict[str, Any]], a: Path, b: Path) -> Table:
    table = Table(title=f"bench compare: B = {b.name}, A = {a.name}", title_justify="left")
    for col in ("job", "metric", "A", "B", "B/A"):
        table.add_column(col, justify="left" if col in ("job", "metric") else "right")
    for row in rows:
        table.add_row(
            row["job"],
            row["metric"],
            _cell(row["a"]),
            _cell(row["b"]),
            "-" if row["ratio"] is None else f"{row['ratio']:.2f}x",
        )
    return table


def run_compare(paths: tuple[Path, Path], as_json: bool) -> None:
    from espcn_video.jobs.bench import compare_runs

    a, b = (read_result(p) for p in paths)
    rows = compare_runs(a, b)
    if not rows:
        raise InputError(f"{paths[0]} and {paths[1]} have no job in common (same input, scale and size)")
    stderr_console().print(compare_table(rows, *paths))
    if as_json:
        emit_json({"command": "bench-compare", "a": str(paths[0]), "b": str(paths[1]), "rows": rows})


@click.command("bench")
@click.argument("clip", required=False, metavar="[CLIP]")
@click.option("--scale", type=SCALE, default=None, help="Only this scale; a CLIP's scale (default 2).")
@click.option("--lr-size", default=None, metavar="WxH", help="Low-res size: one synthetic clip, or CLIP resized to it.")
@click.option("--frames", type=click.IntRange(min=1), default=60, show_default=True, help="Frames per job.")
@click.option("--backend", type=click.Choice(["auto", *BACKENDS]), default="auto", show_default=True)
@click.option("--precision", type=click.Choice(["auto", *PRECISIONS]), default="auto", show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Model threads (default: all cores).")
@click.option("--device", type=DEVICE, default="cpu", show_default=True, help="cpu, cuda (or cuda:N) or auto.")
@click.option(
    "--encoder",
    default="null",
    show_default=True,
    help="ffmpeg video encoder for the pipeline and bicubic runs; null discards frames (-f null).",
)
@click.option("--encoder-preset", default=None, help="Encoder speed preset, e.g. ultrafast.")
@click.option("--preset", default=None, help="Weights (default: the shipped espcn-xR, else random ones).")
@click.option(
    "--srcnn-frames",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    help="Frames through SRCNN (seconds each at 1080p); 0 skips it.",
)
@click.option(
    "--reference-frames",
    type=click.IntRange(min=0),
    default=3,
    show_default=True,
    help="Frames through the torch fp32 reference engine; 0 skips it.",
)
@click.option("--json", "as_json", is_flag=True, help="Results as JSON on stdout.")
@click.option(
    "--compare",
    nargs=2,
    type=click.Path(path_type=Path),
    default=None,
    metavar="A.json B.json",
    help="Print two saved --json runs side by side as ratios B/A, and run nothing.",
)
@guarded
def bench_cmd(
    clip: str | None,
    scale: int | None,
    lr_size: str | None,
    frames: int,
    backend: str,
    precision: str,
    threads: int | None,
    device: str,
    encoder: str,
    encoder_preset: str | None,
    preset: str | None,
    srcnn_frames: int,
    reference_frames: int,
    as_json: bool,
    compare: tuple[Path, Path] | None,
) -> None:
    """Time decode -> SR -> encode, the SR stage alone, bicubic and SRCNN on the same frames.

    Without CLIP: synthetic lavfi clips for the standard jobs (640x360 x3, 960x540 x2,
    480x270 x4, 1920x1080 x2), or one of them with --scale.
    """
    if compare is not None:
        run_compare(compare, as_json)
        return
    from espcn_video.jobs.bench import BenchSettings, build_jobs, run_bench

    settings = BenchSettings(
        jobs=build_jobs(clip, scale, parse_size(lr_size, "--lr-size")),
        frames=frames,
        backend=backend,
        precision=precision,
        threads=threads,
        device=device,
        encoder=encoder,
        encoder_preset=encoder_preset,
        preset=preset,
        srcnn_frames=srcnn_frames,
        reference_frames=reference_frames,
    )
    console = stderr_console()
    doc = run_bench(settings, on_job=lambda spec: console.print(f"bench: {spec.label} ..."))
    print_results(console, doc)
    if as_json:
        emit_json(doc)
