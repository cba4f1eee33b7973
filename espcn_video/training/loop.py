"""Training job for the presets: functions only, no printing; progress goes through a callback.

Recipe (measured on 2 CPU cores): Y in [0, 1]; HR mod-cropped; LR by MATLAB antialiased bicubic
(or Gaussian blur + decimation); random 17x17 LR patches re-drawn every step from images held
in memory, with the 8 flips/rotations; Adam 1e-3 with cosine decay to 1e-5 over all steps; MSE;
batch 16 (many small steps beat big batches on a CPU). One epoch is defined as 1000 steps
(STEPS_PER_EPOCH): patches are sampled, so there is no natural pass over the data.

This module is the job itself: the host and device loops, validation, the metadata and
`train`. Settings live in training.config, data and patches in training.data, and the model
state and its checkpoints in training.checkpoints.

Validation holds aside ~5% of the training images (chosen by the seed) and never Set5/Set14;
those are measured once, after training, for the metadata only.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from espcn_video.errors import UsageError
from espcn_video.files import atomic_write_json
from espcn_video.quality.degrade import RandomChains, parse_training_degradation
from espcn_video.quality.image_metrics import compute_psnr
from espcn_video.quality.paper_eval import evaluate_folder, to_code_values, upscale_y
from espcn_video.training.checkpoints import (
    TeacherTargets,
    TrainState,
    atomic_torch_save,
    check_fingerprint,
    fingerprint,
    init_record,
    load_checkpoint,
    new_state,
    teacher_record,
    teacher_targets,
)
from espcn_video.training.config import STEPS_PER_EPOCH, TrainConfig, check_learning_rate, loss_function
from espcn_video.training.data import DataReport, PatchSampler, PlaneSet, prepare_data, with_context
from espcn_video.training.interrupts import StepBoundary
from espcn_video.training.reparam import plain_network

ProgressCallback = Callable[[int, int, float, "float | None"], None]


@dataclass
class TrainResult:
    out: Path
    steps: int
    train_seconds: float
    val_psnr_db: float | None
    data: DataReport
    metadata: dict[str, Any]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available")
    if name != "cpu" and not name.startswith("cuda"):
        raise UsageError(f"unknown device {name!r}; use auto, cpu or cuda")
    return torch.device(name)


def validate(
    model: nn.Module, pairs: list[tuple[np.ndarray, np.ndarray]], scale: int, device: torch.device
) -> float | None:
    """Mean PSNR (Y, shave = scale, 8-bit rounded output) on the held-out training images."""
    if not pairs:
        return None
    model.eval()
    values = [compute_psnr(hr, to_code_values(upscale_y(model, lr, scale, device)), 255.0, scale) for hr, lr in pairs]
    model.train()
    return float(np.mean(values))


def run_steps(
    config: TrainConfig,
    state: TrainState,
    sampler: PatchSampler,
    val_pairs: list[tuple[np.ndarray, np.ndarray]],
    device: torch.device,
    stamp: dict[str, Any],
    on_progress: ProgressCallback | None,
    teacher: TeacherTargets | None = None,
) -> None:
    """The optimisation loop; checkpoints on a timer, and on Ctrl-C before re-raising.

    A Ctrl-C (or SIGTERM) during a step takes effect when the step is done (StepBoundary), so the
    checkpoint it saves is the state between two steps and --resume continues exactly."""
    loss_fn = loss_function(config.loss)
    state.model.train()
    started, last_save = time.monotonic(), time.monotonic()
    base_elapsed = state.elapsed_s
    with StepBoundary() as boundary:
        try:
            while state.step < config.steps:
                with boundary.step:  # the batch drawn, the weights, the schedule and the count: all or none
                    inputs, targets = sampler.batch(config.batch)
                    x, y = torch.from_numpy(inputs).to(device), torch.from_numpy(targets).to(device)
                    if teacher is not None:
                        x, y = teacher(x, y)  # the patch was drawn with the teacher's context around it
                    loss = loss_fn(state.model(x), y)
                    state.optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    state.optimizer.step()
                    state.scheduler.step()
                    state.step += 1
                    state.elapsed_s = base_elapsed + time.monotonic() - started
                val = None
                if state.step % config.val_every == 0 or state.step == config.steps:
                    val = state.val_psnr_db = validate(state.model, val_pairs, config.scale, device)
                if on_progress is not None:
                    on_progress(state.step, config.steps, float(loss.item()), val)
                if time.monotonic() - last_save >= config.checkpoint_interval_s:
                    atomic_torch_save(state.checkpoint(stamp), config.checkpoint_path)
                    last_save = time.monotonic()
        except KeyboardInterrupt:
            atomic_torch_save(state.checkpoint(stamp), config.checkpoint_path)
            raise
    atomic_torch_save(state.checkpoint(stamp), config.checkpoint_path)


def teacher_sampling(planes: PlaneSet, config: TrainConfig, teacher: TeacherTargets | None) -> tuple[PlaneSet, int]:
    """(planes, input patch side) to draw from: with a teacher, the planes padded by its context and
    patches that much larger on every side (TeacherTargets crops the student's centre back out)."""
    context = teacher.margin if teacher is not None else 0
    return with_context(planes, context, config.stride), config.input_patch + 2 * context


def uses_device_loop(config: TrainConfig, device: torch.device) -> bool:
    if config.loop not in ("auto", "host", "device"):
        raise UsageError(f"unknown training loop {config.loop!r}; use auto, host or device")
    return config.loop == "device" or (config.loop == "auto" and device.type == "cuda")


def run_device_loop(
    config: TrainConfig,
    state: TrainState,
    planes: PlaneSet,
    val_pairs: list[tuple[np.ndarray, np.ndarray]],
    device: torch.device,
    stamp: dict[str, Any],
    on_progress: ProgressCallback | None,
    resume: dict[str, Any] | None,
    teacher: TeacherTargets | None = None,
) -> None:
    """training.device's loop: patches drawn on the device, one CUDA graph per step on a GPU.

    Same data, hold-out, schedule and checkpoints as run_steps; progress is reported every step
    on the CPU and every 100 steps on a GPU (each report waits for the device).
    """
    from espcn_video.training.device import DevicePatchSource, GraphStepper, synchronize

    planes, patch = teacher_sampling(planes, config, teacher)
    source = DevicePatchSource(planes.inputs, planes.targets, patch, config.stride, device)
    optimizer_state = None
    if resume is not None:
        state.model.load_state_dict(resume["model"])
        optimizer_state = resume["optimizer"]
        state.step, state.elapsed_s = int(resume["step"]), float(resume["elapsed_s"])
        state.val_psnr_db = resume.get("val_psnr_db")
        torch.set_rng_state(resume["torch_rng"])
        if device.type == "cuda" and resume.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(resume["cuda_rng"], device)
    stepper = GraphStepper(
        state.model,
        source,
        config.batch,
        config.lr,
        config.lr_min,
        config.steps,
        start_step=state.step,
        optimizer_state=optimizer_state,
        use_graph=config.steps - state.step > 16,
        targets=teacher,
        loss=config.loss,
    )
    state.optimizer = stepper.optimizer

    def save() -> None:
        synchronize(device)
        state.step = stepper.step
        ckpt = state.checkpoint(stamp)
        del ckpt["scheduler"], ckpt["numpy_rng"]  # the schedule lives in the step count; no numpy RNG
        ckpt["loop"] = "device"
        ckpt["cuda_rng"] = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
        atomic_torch_save(ckpt, config.checkpoint_path)

    report_every = 100 if device.type == "cuda" else 1
    started, last_save, base_elapsed = time.monotonic(), time.monotonic(), state.elapsed_s
    with StepBoundary() as boundary:  # as in run_steps: an interrupt waits for the step's count
        try:
            with boundary.step:
                stepper.prepare()  # its warm-up steps are counted as they run
            while stepper.step < config.steps:
                with boundary.step:
                    stepper.advance()
                step = stepper.step
                state.elapsed_s = base_elapsed + time.monotonic() - started
                val = None
                due_val = step % config.val_every == 0 or step >= config.steps
                if due_val:
                    synchronize(device)
                    val = state.val_psnr_db = validate(state.model, val_pairs, config.scale, device)
                if on_progress is not None and (due_val or step % report_every == 0):
                    on_progress(step, config.steps, stepper.take_mean_loss(), val)
                if time.monotonic() - last_save >= config.checkpoint_interval_s:
                    save()
                    last_save = time.monotonic()
        except KeyboardInterrupt:
            save()
            raise
    state.step = stepper.step
    save()


def build_metadata(
    config: TrainConfig,
    elapsed_s: float,
    val_psnr_db: float | None,
    report: DataReport,
    threads: int,
    device: torch.device,
) -> dict[str, Any]:
    degradation = parse_training_degradation(config.degrade)
    return {
        "name": config.out.stem,
        "arch": config.arch,
        "scale": config.scale,
        "channels": list(config.widths),
        **({"blocks": config.blocks} if config.blocks else {}),
        "activation": "relu" if config.arch == "srcnn" else "tanh",
        "training": {
            "data": [str(d) for d in config.data_dirs],
            "degradation": degradation.describe(),
            "degrade": degradation.spec(),
            "patch": {"input": config.input_patch, "hr": config.hr_patch},
            "loss": config.loss,
            **({"rescale": list(config.rescale)} if config.rescale else {}),
            **({"expand": config.expand} if config.expand else {}),
            "batch": config.batch,
            "steps": config.steps,
            "epochs": config.steps / STEPS_PER_EPOCH,
            "steps_per_epoch": STEPS_PER_EPOCH,
            "lr": config.lr,
            "lr_min": config.lr_min,
            "seed": config.seed,
            "train_seconds": round(elapsed_s, 1),
            "threads": threads,
            "device": device.type,
            "loop": "device" if uses_device_loop(config, device) else "host",
            "torch": torch.__version__,
            "images": report.as_dict(),
            "val_psnr_db": val_psnr_db,
            "init": init_record(config),
            "teacher": teacher_record(config),
        },
        "eval": {},
        "created": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
    }


def measure_test_sets(config: TrainConfig, model: nn.Module) -> dict[str, Any]:
    """Set5/Set14 numbers for the metadata; measured after training, never used for decisions."""
    results: dict[str, Any] = {}
    # The randomised `real` model is measured on the clean chain (the robustness grid has the rest).
    spec = "bicubic" if isinstance(parse_training_degradation(config.degrade), RandomChains) else config.degrade
    for name, folder in config.eval_dirs:
        report = evaluate_folder(folder, model, config.scale, spec)
        key = "srcnn" if config.arch == "srcnn" else "espcn"
        mean = report["mean"]
        results[name] = {
            "psnr_db": round(mean[key]["psnr_db"], 4),
            "ssim": round(mean[key]["ssim"], 5),
            "bicubic_psnr_db": round(mean["bicubic"]["psnr_db"], 4),
            "bicubic_ssim": round(mean["bicubic"]["ssim"], 5),
            "degradation": report["degradation"],
            "images": len(report["images"]),
        }
    return results


def train(
    config: TrainConfig,
    on_progress: ProgressCallback | None = None,
    on_data: Callable[[DataReport], None] | None = None,
) -> TrainResult:
    """Train, checkpoint, write `<out>` (state_dict) and `<out>.json`; returns the summary.

    `on_data` hears the data report (kept, held out, skipped) before the first step.
    """
    parse_training_degradation(config.degrade)
    if config.steps < 1 or config.batch < 1 or config.val_every < 1:
        raise UsageError("steps, batch and val_every must be positive")
    check_learning_rate("--lr", config.lr, config.lr_min)
    threads = config.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    device = resolve_device(config.device)
    # the presets (--init, --teacher) first: a wrong one is refused before minutes of data preparation
    state = new_state(config, device)
    teacher = teacher_targets(config)
    if teacher is not None:
        teacher.to(device)
    planes, val_pairs, report = prepare_data(config)
    if on_data is not None:
        on_data(report)
    stamp = fingerprint(config, report)
    device_loop = uses_device_loop(config, device)
    stamp["loop"] = "device" if device_loop else "host"
    if device_loop:
        resume = None
        if config.resume:
            resume = load_checkpoint(config.checkpoint_path)
            check_fingerprint(resume, stamp, config.checkpoint_path)
        run_device_loop(config, state, planes, val_pairs, device, stamp, on_progress, resume, teacher)
    else:
        if config.resume:
            state.restore(load_checkpoint(config.checkpoint_path), stamp, config.checkpoint_path)
        planes, patch = teacher_sampling(planes, config, teacher)
        sampler = PatchSampler(planes, patch, config.stride, state.rng)
        run_steps(config, state, sampler, val_pairs, device, stamp, on_progress, teacher)
    model = plain_network(state.model.to("cpu").eval())
    atomic_torch_save({k: v.detach().clone() for k, v in model.state_dict().items()}, config.out)
    metadata = build_metadata(config, state.elapsed_s, state.val_psnr_db, report, threads, device)
    metadata["eval"] = measure_test_sets(config, model)
    atomic_write_json(config.out.with_suffix(".json"), metadata)
    return TrainResult(config.out, state.step, state.elapsed_s, state.val_psnr_db, report, metadata)
