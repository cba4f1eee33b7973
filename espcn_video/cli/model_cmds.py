"""`espcn-video train | eval | presets`: thin commands over training/, quality/paper_eval.py, model/presets.py."""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from espcn_video.cli.common import DEVICE, SCALE, emit_json, guarded, stderr_console
from espcn_video.errors import UsageError
from espcn_video.settings import BACKENDS, PRECISIONS
from espcn_video.training.config import LOSSES, LR_MIN, QAT_LR_MIN

SHARED_TRAIN_SETS = ("T91", "General100", "BSD200")
SHARED_TEST_SETS = ("Set5", "Set14")

# How LR is made, the same grammar for train and eval (quality/degrade.py)
DEGRADE_HELP = (
    "How LR is made: bicubic (MATLAB, antialiased), bicubic-noaa, area, bilinear, lanczos or "
    "gaussian[:SIGMA], then optionally ,noise:SIGMA and ,x264:crf=N or ,x265:crf=N (e.g. bicubic-noaa,x264:crf=28): "
    "a one-frame encode; x264:crf=N:inter codes each image as a short moving clip and keeps a P or B frame."
)
degrade_option = click.option("--degrade", default="bicubic", show_default=True, help=DEGRADE_HELP)
train_degrade_option = click.option(
    "--degrade",
    default="bicubic",
    show_default=True,
    help=DEGRADE_HELP + " Or real[:noaa=P][:noise=P][:encode=P][:inter=P]: 8 randomised chains per image "
    "(the robust presets; docs/training.md).",
)


def shared_data_root() -> Path:
    """../shared/data relative to the working directory (a project checkout's neighbour).

    Kept relative so preset metadata records no machine-specific absolute paths.
    """
    return Path("..") / "shared" / "data"


def default_data_dirs() -> tuple[Path, ...]:
    root = shared_data_root() / "train"
    return tuple(root / name for name in SHARED_TRAIN_SETS if (root / name).is_dir())


def default_eval_dirs() -> tuple[tuple[str, Path], ...]:
    root = shared_data_root() / "test"
    return tuple((name, root / name) for name in SHARED_TEST_SETS if (root / name).is_dir())


def finite_or_none(value: Any) -> Any:
    """JSON has no inf/nan: identical images give PSNR inf, reported as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite_or_none(v) for v in value]
    return value


def resolve_steps(steps: int | None, epochs: int | None) -> int:
    from espcn_video.training.config import STEPS_PER_EPOCH

    if steps is not None and epochs is not None:
        raise UsageError("give --steps or --epochs, not both")
    if steps is not None:
        return steps
    return (epochs if epochs is not None else 60) * STEPS_PER_EPOCH


class TrainReporter:
    """Rich progress when stderr is a terminal; otherwise one log line per validation."""

    def __init__(self, console_is_tty: bool) -> None:
        self.console = stderr_console()
        self.tty = console_is_tty
        self.progress: Progress | None = None
        self.task: Any = None
        self.started = time.monotonic()
        self.first_step: int | None = None

    def data(self, report: Any) -> None:
        skipped = report.skip_counts()
        self.console.print(
            f"data: {len(report.train)} training images, {len(report.val)} held out for validation"
            + (f", skipped {skipped}" if skipped else "")
        )

    def step(self, step: int, total: int, loss: float, val_psnr_db: float | None) -> None:
        if self.first_step is None:
            self.first_step, self.started = step - 1, time.monotonic()
        if self.tty:
            self._draw(step, total, loss, val_psnr_db)
        elif val_psnr_db is not None:
            rate = (step - self.first_step) / max(time.monotonic() - self.started, 1e-9)
            self.console.print(f"step {step}/{total}  loss {loss:.6f}  val {val_psnr_db:.3f} dB  {rate:.1f} steps/s")

    def _draw(self, step: int, total: int, loss: float, val_psnr_db: float | None) -> None:
        if self.progress is None:
            self.progress = Progress(
                TextColumn("train"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}  val {task.fields[val]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self.console,
            )
            self.progress.start()
            self.task = self.progress.add_task("train", total=total, completed=step, loss="-", val="-")
        fields: dict[str, Any] = {"loss": f"{loss:.6f}"}
        if val_psnr_db is not None:
            fields["val"] = f"{val_psnr_db:.3f} dB"
        self.progress.update(self.task, completed=step, **fields)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


class FiniteRange(click.FloatRange):
    """click.FloatRange that refuses nan and inf too (a range check alone lets nan through)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


def learning_rate(lr_min: float) -> FiniteRange:
    """A learning rate: above 0 and, for one decayed by a cosine schedule, at least its end."""
    return FiniteRange(min=lr_min, min_open=lr_min == 0)


def parse_widths(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, int]:
    """--width N1,N2: two positive channel counts."""
    parts = value.split(",")
    if len(parts) != 2 or not all(p.strip().isdigit() and 0 < int(p) <= 1024 for p in parts):
        raise click.BadParameter(f"{value!r} is not N1,N2 (two channel counts from 1 to 1024, e.g. 128,64)")
    return int(parts[0]), int(parts[1])


def parse_rescale(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[float, ...]:
    """--rescale F[,F...]: distinct factors strictly between 0.2 and 1."""
    if not value:
        return ()
    try:
        factors = tuple(float(part) for part in value.split(","))
    except ValueError:
        factors = ()
    if not factors or not all(0.2 <= f < 1.0 for f in factors) or len(set(factors)) != len(factors):
        raise click.BadParameter(
            f"{value!r} is not a list of distinct factors from 0.2 to below 1, e.g. 0.9,0.8,0.7,0.6"
        )
    return factors


@click.command("train")
@click.option("--scale", type=SCALE, default=3, show_default=True)
@click.option(
    "--arch",
    type=click.Choice(["espcn", "srcnn"]),
    default="espcn",
    show_default=True,
    help="srcnn: the paper's baseline, on the MATLAB-bicubic-upscaled Y, 33x33 patches.",
)
@click.option(
    "--data",
    "data_dirs",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Training image folder (repeatable). Default: ../shared/data/train/{T91,General100,BSD200}.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Output state_dict. Default presets/ARCH-xSCALE.pt; metadata goes to .json, checkpoints to .ckpt.",
)
@click.option(
    "--steps", type=click.IntRange(min=1), default=None, help="Optimiser steps (the cosine schedule spans them)."
)
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=None,
    help="Steps in units of 1000 (one 'epoch' = 1000 steps of random patches). Default 60.",
)
@click.option("--batch", type=click.IntRange(min=1), default=16, show_default=True)
@click.option(
    "--lr",
    type=learning_rate(LR_MIN),
    default=1e-3,
    show_default=True,
    help=f"Adam learning rate, cosine-decayed to {LR_MIN:g} (so not below it).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@train_degrade_option
@click.option("--resume", is_flag=True, help="Continue exactly from OUT's .ckpt (same settings required).")
@click.option("--init", "init_from", default=None, help="Start from this preset's weights (a warm restart).")
@click.option(
    "--width",
    "widths",
    default="64,32",
    show_default=True,
    callback=parse_widths,
    help="conv1,conv2 channels. Wider than --init's preset: the preset is widened exactly (new channels "
    "start silent), e.g. --width 128,64 --init espcn-x3 (docs/training.md).",
)
@click.option(
    "--patch",
    type=click.IntRange(min=8, max=96),
    default=None,
    help="Input patch side in pixels (default 17 for ESPCN's LR patches, 33 for SRCNN's); a deeper "
    "network sees more context per output pixel and may want larger patches.",
)
@click.option(
    "--blocks",
    type=click.IntRange(min=0, max=16),
    default=0,
    show_default=True,
    help="Residual blocks (two 3x3 convolutions at conv2's width) between conv2 and conv3: a deeper "
    "low-resolution body. From a shallower --init preset the new blocks start as identities.",
)
@click.option(
    "--teacher",
    default=None,
    help="Distil from this ESPCN preset of the same scale (any width, e.g. a --width 128,64 run): the targets "
    "become (1 - W)·HR + W·teacher(LR).",
)
@click.option(
    "--teacher-weight",
    type=FiniteRange(min=0.0, max=1.0, min_open=True),
    default=0.5,
    show_default=True,
    help="W, the teacher's share of the target (with --teacher).",
)
@click.option(
    "--loss",
    type=click.Choice(LOSSES),
    default="l2",
    show_default=True,
    help="l2: mean squared error (what PSNR measures); l1: mean absolute error. An L1-then-L2 schedule is an "
    "l1 run, then an l2 run with --init (docs/training.md).",
)
@click.option(
    "--expand",
    type=click.IntRange(min=0, max=8),
    default=0,
    show_default=True,
    help="Train every convolution as three linear branches (itself, a 1x1 then kxk factorisation E times "
    "wider, a 1x1) that fold into one: the preset written is the plain network, same speed (docs/training.md).",
)
@click.option(
    "--rescale",
    default=None,
    callback=parse_rescale,
    help="Scale augmentation: every training image is also used downscaled by each factor (antialiased "
    "bicubic, rounded to 8 bits), e.g. 0.9,0.8,0.7,0.6 as in FSRCNN. The held-out images are not.",
)
@click.option("--device", type=DEVICE, default="auto", show_default=True, help="auto, cpu or cuda (or cuda:N).")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch CPU threads. Default: all cores.")
@click.option(
    "--loop",
    type=click.Choice(["auto", "host", "device"]),
    default="auto",
    show_default=True,
    help="host: patches drawn in numpy (the CPU default); device: patches drawn on the device and, "
    "on a GPU, each step one CUDA graph (the CUDA default).",
)
@click.option(
    "--val-every",
    type=click.IntRange(min=1),
    default=2000,
    show_default=True,
    help="Validate on the held-out ~5% of training images every N steps.",
)
@click.option("--no-eval", is_flag=True, help="Skip measuring Set5/Set14 after training.")
@click.option(
    "-y",
    "--overwrite",
    is_flag=True,
    help="Start again over OUT (and an unfinished run's .ckpt) if there is one; --resume continues it instead.",
)
@guarded
def train_cmd(
    scale: int,
    arch: str,
    data_dirs: tuple[Path, ...],
    out: Path | None,
    steps: int | None,
    epochs: int | None,
    batch: int,
    lr: float,
    seed: int,
    degrade: str,
    resume: bool,
    init_from: str | None,
    widths: tuple[int, int],
    patch: int | None,
    blocks: int,
    teacher: str | None,
    teacher_weight: float,
    loss: str,
    expand: int,
    rescale: tuple[float, ...],
    device: str,
    threads: int | None,
    loop: str,
    val_every: int,
    no_eval: bool,
    overwrite: bool,
) -> None:
    """Train an ESPCN (or SRCNN) preset on the Y channel; JSON summary on stdout."""
    from espcn_video.training.config import TrainConfig
    from espcn_video.training.loop import train

    if teacher is None and given(click.get_current_context(), "teacher_weight"):
        raise UsageError("--teacher-weight is the teacher's share of the target: it needs --teacher")
    dirs = data_dirs or default_data_dirs()
    if not dirs:
        raise UsageError("no --data given and ../shared/data/train has none of T91, General100, BSD200")
    out = out or Path("presets") / f"{arch}-x{scale}.pt"
    check_train_out(out)
    if not resume and not overwrite:
        check_fresh_start(out)
    config = TrainConfig(
        scale=scale,
        arch=arch,
        data_dirs=tuple(dirs),
        steps=resolve_steps(steps, epochs),
        out=out,
        batch=batch,
        lr=lr,
        seed=seed,
        degrade=degrade,
        device=device,
        threads=threads or os.cpu_count(),
        resume=resume,
        init_from=init_from,
        widths=widths,
        patch=patch,
        blocks=blocks,
        teacher=teacher,
        teacher_weight=teacher_weight,
        loss=loss,
        expand=expand,
        rescale=rescale,
        val_every=val_every,
        loop=loop,
        eval_dirs=() if no_eval else default_eval_dirs(),
    )
    reporter = TrainReporter(sys.stderr.isatty())
    try:
        result = train(config, reporter.step, reporter.data)
    finally:
        reporter.close()
    emit_json(
        finite_or_none(
            {
                "command": "train",
                "out": str(result.out),
                "metadata": str(result.out.with_suffix(".json")),
                "steps": result.steps,
                "train_seconds": round(result.train_seconds, 1),
                "val_psnr_db": result.val_psnr_db,
                "data": result.data.as_dict(),
                "eval": result.metadata["eval"],
            }
        )
    )


def check_train_out(out: Path) -> None:
    """--out and the .json and .ckpt written beside it are files: a folder under one of those names
    fails now, not when the trained weights are written."""
    from espcn_video.errors import OutputError

    if out.is_dir():
        raise OutputError(f"--out {out}: is a folder; give a file name")
    for companion in (out.with_suffix(".json"), out.with_suffix(".ckpt")):
        if companion.is_dir():
            raise OutputError(
                f"{companion}: is a folder, where train writes --out's {companion.suffix}; choose another --out"
            )


def given(ctx: click.Context, name: str) -> bool:
    """Whether the user gave option `name` (on the command line or through the environment)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source not in (ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)


def check_fresh_start(out: Path) -> None:
    """A run without --resume or -y starts nothing over an earlier one: an unfinished run's
    checkpoint beside OUT (which --resume would continue), or a finished OUT, is refused now,
    before the data is read."""
    from espcn_video.errors import OutputError
    from espcn_video.training.checkpoints import checkpoint_progress

    ckpt = out.with_suffix(".ckpt")
    if ckpt.is_file():
        progress = checkpoint_progress(ckpt)
        if progress is None:
            raise OutputError(f"{out}: {ckpt} already exists (use -y/--overwrite to replace it)")
        step, steps = progress
        if step < steps:
            raise OutputError(
                f"{out}: {ckpt} holds an unfinished run (step {step} of {steps}); add --resume to continue it, "
                "or -y/--overwrite to start again"
            )
        if not out.exists():
            raise OutputError(
                f"{out}: {ckpt} holds a finished run (step {step} of {steps}) that {out} was not written from; "
                "add --resume to write it, or -y/--overwrite to start again"
            )
    if out.exists():
        raise OutputError(f"{out}: already exists (use -y/--overwrite to replace it)")


def eval_table(report: dict[str, Any]) -> Table:
    keys = list(report["mean"])
    table = Table(
        title=f"{report['folder']}  x{report['scale']}  {report['degradation']}  (Y, shave {report['scale']})"
    )
    table.add_column("image")
    for key in keys:
        table.add_column(f"{key} PSNR dB", justify="right")
        table.add_column(f"{key} SSIM", justify="right")
    for row in [*report["images"], {"name": "mean", **report["mean"]}]:
        cells = [row["name"]]
        for key in keys:
            cells += [f"{row[key]['psnr_db']:.2f}", f"{row[key]['ssim']:.4f}"]
        table.add_row(*cells, end_section=row is report["images"][-1])
    return table


@click.command("eval")
@click.argument("dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--preset",
    default=None,
    help="Preset name or .pt file. Default: espcn-xSCALE. auto: per image, the preset upscale's look "
    "would choose for that LR as a file (espcn-xSCALE or espcn-xSCALE-real).",
)
@click.option(
    "--scale",
    type=SCALE,
    default=None,
    help="Scale to check against the preset (default: the preset's; 3 when no preset).",
)
@degrade_option
@click.option(
    "--backend",
    type=click.Choice(["auto", *BACKENDS]),
    default=None,
    help="Run the preset on this engine, from 8-bit LR as video is (default: torch fp32 on float LR, the papers').",
)
@click.option(
    "--precision",
    type=click.Choice(["auto", *PRECISIONS]),
    default=None,
    help="The engine's precision (int8 runs the preset's int8 twin when it has one); implies --backend auto.",
)
@click.option("--json", "as_json", is_flag=True, help="Also write the results as JSON on stdout.")
@guarded
def eval_cmd(
    dirs: tuple[Path, ...],
    preset: str | None,
    scale: int | None,
    degrade: str,
    backend: str | None,
    precision: str | None,
    as_json: bool,
) -> None:
    """PSNR/SSIM of a preset vs bicubic on HR image folders (SR-paper conventions)."""
    from espcn_video.model.presets import AUTO_PRESET, default_preset_name
    from espcn_video.quality.paper_eval import check_folder, evaluate_folder

    for folder in dirs:  # every folder before any work (a model load, the first folder's images)
        check_folder(folder)
    name = preset or default_preset_name(scale or 3)
    console = stderr_console()
    engine = None
    if name == AUTO_PRESET and (backend is not None or precision is not None):
        raise UsageError("--preset auto runs each image's preset in torch fp32; --backend/--precision need one preset")
    if backend is not None or precision is not None:
        from espcn_video.model.backends import create_engine
        from espcn_video.model.presets import int8_params, precision_deltas, resolve_preset

        model, info = resolve_preset(name, scale=scale, arch=None)
        if info.arch != "espcn":
            raise UsageError("--backend/--precision run ESPCN presets; SRCNN runs in torch fp32")
        notes: list[str] = []
        engine = create_engine(
            model,
            backend or "auto",
            precision or "auto",
            int8=int8_params(model, info),
            deltas=precision_deltas(info),
            notes=notes,
        )
        console.print(f"engine: {engine.name}, from 8-bit LR (code values, as decoded video)")
        for note in notes:
            console.print(f"note: {note}")
    reports = []
    for folder in dirs:
        report = evaluate_folder(folder, name, scale, degrade, engine)
        console.print(eval_table(report))
        if "auto" in report:
            console.print("auto: " + ", ".join(f"{p} on {n} images" for p, n in report["auto"].items()))
        for skip in report["skipped"]:
            console.print(f"skipped {skip['name']}: {skip['reason']}")
        reports.append(report)
    if as_json:
        emit_json(finite_or_none({"command": "eval", "preset": name, "folders": reports}))


@click.command("quantize")
@click.option("--preset", required=True, help="ESPCN preset name or .pt file; its int8 twin is written beside it.")
@click.option(
    "--data",
    "data_dirs",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Training image folder (repeatable). Default: the preset's own, else ../shared/data/train/*.",
)
@click.option("--steps", type=click.IntRange(min=1), default=1500, show_default=True)
@click.option("--batch", type=click.IntRange(min=1), default=256, show_default=True)
@click.option(
    "--lr",
    type=learning_rate(QAT_LR_MIN),
    default=4e-6,
    show_default=True,
    help=f"Adam learning rate of the weights, cosine-decayed to {QAT_LR_MIN:g} (so not below it).",
)
@click.option(
    "--quant-lr",
    type=learning_rate(0.0),
    default=2e-3,
    show_default=True,
    help="Of the log ranges and log steps (decayed with --lr's schedule).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch CPU threads. Default: all cores.")
@click.option("--no-eval", is_flag=True, help="Do not measure the int8 and bf16 cost on Set5/Set14 afterwards.")
@click.option("--all-layers", is_flag=True, help="conv3 in int8 too: faster, but costs about twice as much PSNR.")
@click.option(
    "--float-channels",
    type=click.IntRange(min=0, max=63),
    default=0,
    show_default=True,
    help="Keep the K inputs of conv2 that carry the most int8 noise in bf16 (x2: 32 brings int8 within 0.02 dB).",
)
@click.option(
    "--rest",
    type=click.Choice(["bf16", "fp32"]),
    default="bf16",
    show_default=True,
    help="How the convolutions left in float (conv3) run: bf16 (where the CPU has it) or fp32, "
    "for a preset whose bf16 arithmetic alone costs too much (espcn-x2-deep).",
)
@click.option(
    "--measure-only",
    is_flag=True,
    help="Fine-tune nothing: measure the int8 (the twin as it is) and bf16 cost on Set5/Set14 again and record it.",
)
@guarded
def quantize_cmd(
    preset: str,
    data_dirs: tuple[Path, ...],
    steps: int,
    batch: int,
    lr: float,
    quant_lr: float,
    seed: int,
    threads: int | None,
    no_eval: bool,
    all_layers: bool,
    float_channels: int,
    rest: str,
    measure_only: bool,
) -> None:
    """Fine-tune a preset's int8 twin for the int8 engine and record what int8 and bf16 cost.

    \b
    The twin computes exactly as OpenVINO's int8 engine does (conv1 and
    conv2 int8 with learned activation ranges and weight steps, conv3
    bf16; --all-layers: conv3 int8 too; --float-channels K: K of conv2's
    inputs in bf16 beside the int8 rest; --rest fp32: conv3 in fp32) and is
    fine-tuned on the preset's training images with straight-through
    rounding; the checkpoint with the best int8 PSNR on the held-out
    training images is kept. Set5/Set14 are measured afterwards (int8 and
    bf16 against fp32, from 8-bit LR) and recorded in the preset's JSON:
    "auto" runs int8 only when that cost is within 0.05 dB. --measure-only
    measures and records that cost again (after an engine change).
    """
    from espcn_video.model.presets import check_single_frame, load_preset
    from espcn_video.training.qat import (
        QatConfig,
        measure_precision_deltas,
        quantization_aware_finetune,
        record_deltas,
        record_twin,
    )

    model, info = load_preset(preset)
    check_single_frame(model, info, "quantize:")
    if measure_only:
        _measure_only(preset, info.name, threads, no_eval)
        return
    if not data_dirs:
        own = tuple(Path(d) for d in (info.metadata.get("training") or {}).get("data", []))
        data_dirs = own if own and all(d.is_dir() for d in own) else default_data_dirs()
    if not data_dirs:
        raise UsageError("no --data given and ../shared/data/train has none of T91, General100, BSD200")
    from espcn_video.model.quant import INT8_ALL, INT8_TWIN_LAYERS

    config = QatConfig(
        preset,
        data_dirs,
        steps=steps,
        batch=batch,
        lr=lr,
        quant_lr=quant_lr,
        seed=seed,
        threads=threads,
        layers=INT8_ALL if all_layers else INT8_TWIN_LAYERS,
        float_channels=float_channels,
        rest=rest,
    )
    console = stderr_console()
    with Progress(
        TextColumn("[bold]quantize"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[val]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not sys.stderr.isatty(),
    ) as bar:
        task = bar.add_task("steps", total=steps, val="")

        def progress(step: int, total: int, loss: float, val: float | None) -> None:
            if val is not None:
                bar.update(task, val=f"val int8 {val:.3f} dB")
            bar.update(task, completed=step)

        result = quantization_aware_finetune(config, progress)
    twin = record_twin(preset, result, config)
    deltas = None
    if not no_eval and default_eval_dirs():
        deltas = measure_precision_deltas(preset, default_eval_dirs(), threads)  # with the twin just written
        record_deltas(preset, deltas)
    val = result.val_psnr_db
    console.print(
        f"held-out training images: fp32 {val['fp32']:.3f} dB, int8 {val['int8_before']:.3f} before "
        f"and {val['int8_after']:.3f} after fine-tuning (step {result.best_step}, {result.seconds:.0f} s)"
    )
    for precision, per_set in (deltas or {}).items():
        console.print(f"{precision} vs fp32: " + ", ".join(f"{k} {v:+.3f} dB" for k, v in per_set.items()))
    emit_json(
        finite_or_none(
            {
                "command": "quantize",
                "preset": info.name,
                "twin": str(twin),
                "float_channels": list(result.float_channels),
                "rest": result.rest_precision,
                "val_psnr_db": val,
                "best_step": result.best_step,
                "seconds": round(result.seconds, 1),
                "precision_delta_db": deltas,
            }
        )
    )


def _measure_only(preset: str, name: str, threads: int | None, no_eval: bool) -> None:
    """quantize --measure-only: the int8 and bf16 cost of the preset as it is, recorded."""
    from espcn_video.training.qat import measure_precision_deltas, record_deltas

    if no_eval:
        raise UsageError("--measure-only measures on Set5/Set14: it cannot go with --no-eval")
    if not default_eval_dirs():
        raise UsageError("--measure-only needs ../shared/data/test/Set5 and Set14, and neither is there")
    deltas = measure_precision_deltas(preset, default_eval_dirs(), threads)
    if not deltas:
        raise UsageError("--measure-only needs the OpenVINO engine (pip install 'espcn-video[fast]')")
    record_deltas(preset, deltas)
    console = stderr_console()
    for precision, per_set in deltas.items():
        console.print(f"{precision} vs fp32: " + ", ".join(f"{k} {v:+.3f} dB" for k, v in per_set.items()))
    emit_json({"command": "quantize", "preset": name, "measure_only": True, "precision_delta_db": deltas})


@click.command("presets")
@click.option("--json", "as_json", is_flag=True, help="Write the list as JSON on stdout.")
@guarded
def presets_cmd(as_json: bool) -> None:
    """List the shipped presets: Set5/Set14 PSNR, training LR, default use, MACs and fps.

    PSNR on clean bicubic LR (the papers' protocol), what LR each preset was trained on (its
    --degrade spec), which commands use it when no --preset is given, its cost in
    multiply-accumulates per output pixel and its recorded speed (tools/frontier.py)."""
    from espcn_video.model.presets import (
        PAPER,
        VIDEO,
        auto_pair,
        default_preset_name,
        list_presets,
        motion_preset,
        presets_dir,
    )

    presets = list_presets()
    names = {info.name for info in presets}
    table = Table(title=f"presets in {presets_dir()}; PSNR dB on clean bicubic LR")
    columns = (
        "name", "arch", "scale", "trained on", "default of", "Set5 (bicubic)", "Set14 (bicubic)", "MACs/px", "fps",
    )  # fmt: skip
    for column in columns:
        table.add_column(column, justify="left" if column in ("name", "trained on", "default of") else "right")
    table.caption = "MACs per output pixel; fps: the SR stage on the standard job, as recorded by tools/frontier.py"
    rows = []
    for info in presets:
        spec = str(info.metadata.get("training", {}).get("degrade", "?"))
        if info.arch == "srcnn":  # only psnr's srcnn method loads one by default
            commands = {PAPER: "psnr's srcnn"}
        else:
            commands = {VIDEO: "upscale", PAPER: "eval, psnr"}
        uses = [text for use, text in commands.items() if default_preset_name(info.scale, info.arch, use) == info.name]
        clean, real = auto_pair(info.scale)
        mc = motion_preset(info.scale)
        # upscale chooses by a look at IN where it looks at this scale (else the real preset, always)
        if auto_looks(info.scale) and info.name in (clean, real, mc) and {clean, real} <= names:
            uses = [u for u in uses if u != "upscale"]
            looked = {clean: "clean input", real: "other input" if mc is None else "other still or lossless input"}
            uses.append(f"upscale ({looked.get(info.name, 'other lossy video')})")
        used_by = ", ".join(uses) or "-"
        cells = [info.name, info.arch, f"x{info.scale}", spec, used_by]
        for test_set in SHARED_TEST_SETS:
            numbers = info.metadata.get("eval", {}).get(test_set)
            cells.append(f"{numbers['psnr_db']:.2f} ({numbers['bicubic_psnr_db']:.2f})" if numbers else "-")
        macs = info.macs_per_hr_pixel
        speed = info.metadata.get("speed") or {}
        fps = speed.get("sr_fps")
        macs_cell = f"{macs:,.0f}" if macs is not None else "-"
        cells += [macs_cell, f"{fps:.{0 if fps >= 10 else 1}f} ({speed.get('engine', '?')})" if fps else "-"]
        table.add_row(*cells)
        rows.append({"trained_on": spec, "default_of": used_by, "macs_per_hr_pixel": macs, "speed": speed or None})
    stderr_console().print(table)
    if as_json:
        emit_json(
            finite_or_none(
                {
                    "command": "presets",
                    "presets": [
                        {
                            "name": i.name,
                            "arch": i.arch,
                            "scale": i.scale,
                            "path": str(i.path),
                            "eval": i.metadata.get("eval", {}),
                            **row,
                        }
                        for i, row in zip(presets, rows, strict=True)
                    ],
                }
            )
        )


@click.command("export")
@click.option("--preset", required=True, help="Preset name (see `espcn-video presets`) or a .pt file.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["onnx", "openvino", "torchscript"]),
    default="onnx",
    show_default=True,
    help="onnx (.onnx); openvino: IR, OUT.xml with OUT.bin beside it; torchscript (.pt, float I/O only).",
)
@click.option(
    "--io",
    "io_kind",
    type=click.Choice(["float", "uint8", "uint16"]),
    default="float",
    show_default=True,
    help="float: float32 Y in [0, 1] in and out (ffmpeg dnn_processing, OpenVINO, most tools); "
    "uint8/uint16: integer code values in and out, rounding inside the graph.",
)
@click.option(
    "--layout",
    type=click.Choice(["nchw", "nhwc"]),
    default="nchw",
    show_default=True,
    help="nchw: (1, 1, H, W) in and out; nhwc: (1, H, W, 1), as OpenCV's dnn_superres feeds.",
)
@click.option("-y", "--overwrite", is_flag=True, help="Replace OUT if it exists.")
@click.argument("out", metavar="OUT")
@guarded
def export_cmd(preset: str, fmt: str, io_kind: str, layout: str, overwrite: bool, out: str) -> None:
    """Write a preset as an ONNX graph: input 'lr' (1, 1, H, W) -> output 'hr' (1, 1, rH, rW), any H and W.

    Also as OpenVINO IR or TorchScript (--format). The tests load each format in its own runtime
    and compare it with the torch reference.
    """
    from espcn_video.errors import OutputError
    from espcn_video.jobs.outputs import check_writable_file
    from espcn_video.model.net import frames_read
    from espcn_video.model.presets import load_preset

    model, info = load_preset(preset)
    if info.arch != "espcn":
        raise UsageError(f"export supports ESPCN presets; {info.name} is {info.arch}")
    if frames_read(model) > 1:
        raise UsageError(
            f"{info.name} reads {model.frames} frames, its neighbours warped onto each frame by optical flow, "
            "which an exported graph cannot do; export a single-frame preset"
        )
    if fmt == "torchscript" and io_kind != "float":
        raise UsageError("--format torchscript takes float I/O (Y in [0, 1]); integer I/O is for onnx and openvino")
    if out == "-":
        raise UsageError("export writes a model file: give OUT a name (stdout is not a file; - is not a name)")
    if fmt == "openvino" and not out.endswith(".xml"):
        raise UsageError(f"--format openvino writes OUT.xml and OUT.bin: give OUT as NAME.xml, not {out}")
    target = Path(out)
    targets = [target, target.with_suffix(".bin")] if fmt == "openvino" else [target]
    check_writable_file(out, "OUT")  # a folder, or one in a folder that is missing: with or without -y
    if targets[-1].is_dir() and targets[-1] != target:
        raise OutputError(f"{targets[-1]}: is a folder, where --format openvino writes OUT's .bin; choose another OUT")
    for path in targets:
        if path.exists() and not overwrite:
            raise OutputError(f"{path}: already exists (use -y/--overwrite to replace it)")
    size = _write_export(model, fmt, io_kind, layout, target)
    stderr_console().print(
        f"wrote {out}: {info.name} (x{info.scale}), {fmt} {io_kind} {layout} input 'lr' -> output 'hr', {size} bytes"
    )


def _write_export(model: Any, fmt: str, io_kind: str, layout: str, target: Path) -> int:
    """The file(s) of one export, each written atomically; the size of OUT."""
    from espcn_video.files import atomic_path, atomic_write_bytes
    from espcn_video.model.graphs import build_onnx_model, build_openvino_ir, build_torchscript

    if fmt == "torchscript":
        blob = build_torchscript(model, layout)
        atomic_write_bytes(target, blob)
        return len(blob)
    try:
        blob = build_onnx_model(
            model, 65535 if io_kind == "uint16" else 255, float_io=io_kind == "float", layout=layout
        )
    except ImportError:
        raise UsageError("export needs the onnx package: pip install 'espcn-video[fast]'") from None
    if fmt == "onnx":
        atomic_write_bytes(target, blob)
        return len(blob)
    try:
        import openvino  # noqa: F401 - only to say what is missing
    except ImportError:
        raise UsageError("--format openvino needs the openvino package: pip install 'espcn-video[fast]'") from None
    with atomic_path(target.with_suffix(".bin")) as bin_tmp, atomic_path(target) as xml_tmp:
        staged = bin_tmp.with_name(bin_tmp.name + ".xml")  # save_model names the .bin after the .xml
        try:
            build_openvino_ir(blob, staged)
            staged.replace(xml_tmp)
            staged.with_suffix(".bin").replace(bin_tmp)
        finally:
            staged.unlink(missing_ok=True)
            staged.with_suffix(".bin").unlink(missing_ok=True)
    return target.stat().st_size


def auto_looks(scale: int) -> bool:
    """Whether upscale's auto choice looks at its input at `scale`: only where
    quality.input_look.ALIAS_MAX holds a limit for the scale (what jobs/preset_choice.py asks first).
    Elsewhere the real preset runs on every input: the clean one is never chosen by a look."""
    from espcn_video.quality.input_look import ALIAS_MAX

    return ALIAS_MAX.get(scale) is not None
