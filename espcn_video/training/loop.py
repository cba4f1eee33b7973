"""Training job for the presets: functions only, no printing; progress goes through a callback.

Recipe (measured on 2 CPU cores): Y in [0, 1]; HR mod-cropped; LR by MATLAB antialiased bicubic
(or Gaussian blur + decimation); random 17x17 LR patches re-drawn every step from images held
in memory, with the 8 flips/rotations; Adam 1e-3 with cosine decay to 1e-5 over all steps; MSE;
batch 16 (many small steps beat big batches on a CPU). One epoch is defined as 1000 steps
(STEPS_PER_EPOCH): patches are sampled, so there is no natural pass over the data.

Validation holds aside ~5% of the training images (chosen by the seed) and never Set5/Set14;
those are measured once, after training, for the metadata only.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from espcn_video.errors import DataError, UsageError
from espcn_video.quality.paper_eval import evaluate_folder, to_code_values, upscale_y
from espcn_video.files import atomic_path, atomic_write_json
from espcn_video.quality.image_metrics import compute_psnr
from espcn_video.quality.degrade import (
    UnusableImage, degrade, imresize, list_images, mod_crop, parse_degradation, read_y_plane,
)
from espcn_video.model.net import ESPCN, SRCNN, SUPPORTED_SCALES

STEPS_PER_EPOCH = 1000
LR_PATCH = 17  # ESPCN trains on 17x17 LR patches (HR 17·r)
SRCNN_PATCH = 33  # SRCNN trains on 33x33 patches of the bicubic-upscaled image
TOO_SMALL = "smaller than one HR patch"

ProgressCallback = Callable[[int, int, float, "float | None"], None]


@dataclass(frozen=True)
class TrainConfig:
    scale: int
    out: Path
    data_dirs: tuple[Path, ...]
    arch: str = "espcn"
    steps: int = 60 * STEPS_PER_EPOCH
    batch: int = 16
    lr: float = 1e-3
    lr_min: float = 1e-5
    seed: int = 0
    degrade: str = "bicubic"
    device: str = "auto"
    threads: int | None = None
    resume: bool = False
    init_from: str | None = None  # a preset whose weights start the run (a warm restart)
    val_fraction: float = 0.05
    val_every: int = 2000
    checkpoint_interval_s: float = 60.0
    eval_dirs: tuple[tuple[str, Path], ...] = ()  # (name, folder) measured after training
    loop: str = "auto"  # host (numpy patches, CPU default) | device (training.device; CUDA default)

    @property
    def checkpoint_path(self) -> Path:
        return self.out.with_suffix(".ckpt")

    @property
    def input_patch(self) -> int:
        return SRCNN_PATCH if self.arch == "srcnn" else LR_PATCH

    @property
    def stride(self) -> int:
        """HR pixels per input pixel: r for ESPCN (LR input), 1 for SRCNN (upscaled input)."""
        return 1 if self.arch == "srcnn" else self.scale

    @property
    def hr_patch(self) -> int:
        return self.input_patch * self.stride


@dataclass
class DataReport:
    train: list[str] = field(default_factory=list)
    val: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    notes: Counter[str] = field(default_factory=Counter)

    def skip_counts(self) -> dict[str, int]:
        return dict(Counter(item["reason"] for item in self.skipped))

    def as_dict(self) -> dict[str, Any]:
        return {"train": len(self.train), "val": len(self.val), "skipped": self.skip_counts(),
                "skipped_files": self.skipped, "converted": dict(self.notes)}


@dataclass
class PlaneSet:
    """Input and target planes (float32, [0, 1]) of the images, kept in memory."""

    inputs: list[np.ndarray] = field(default_factory=list)
    targets: list[np.ndarray] = field(default_factory=list)


@dataclass
class TrainResult:
    out: Path
    steps: int
    train_seconds: float
    val_psnr_db: float | None
    data: DataReport
    metadata: dict[str, Any]


# --- data ---------------------------------------------------------------------------------


def read_hr_planes(config: TrainConfig,
                   preloaded: list[tuple[str, np.ndarray]] | None = None) -> tuple[list[tuple[str, np.ndarray]], DataReport]:
    """Mod-cropped HR Y planes (code values) of every usable image; skips counted with reasons.

    `preloaded` gives (label, full Y plane) pairs already read (a packed copy of the folders,
    made by `pack_y_planes`), in place of reading `config.data_dirs`.
    """
    report = DataReport()
    planes: list[tuple[str, np.ndarray]] = []
    source = _folder_planes(config.data_dirs, report) if preloaded is None else \
        ((label, hr_y.astype(np.float64), None) for label, hr_y in preloaded)
    for label, hr_y, note in source:
        hr_y = mod_crop(hr_y, config.scale)
        if min(hr_y.shape) < config.hr_patch:
            report.skipped.append({"file": label, "reason": TOO_SMALL})
            continue
        if note:
            report.notes[note] += 1
        planes.append((label, hr_y))
    if not planes:
        where = "the packed planes" if preloaded is not None else ", ".join(map(str, config.data_dirs))
        raise DataError(f"no usable training images in {where}")
    return planes, report


def _folder_planes(folders: tuple[Path, ...], report: DataReport) -> Iterator[tuple[str, np.ndarray, str | None]]:
    """(label, full Y plane, conversion note) of each readable image; unreadable ones go to `report`."""
    if not folders:
        raise DataError("no training data folders given")
    for folder in folders:
        if not folder.is_dir():
            raise DataError(f"training data folder {folder} does not exist")
        files = list_images(folder)
        if not files:
            raise DataError(f"training data folder {folder} has no image files")
        for path in files:
            label = f"{folder.name}/{path.name}"
            try:
                hr_y, note = read_y_plane(path)
            except UnusableImage as exc:
                report.skipped.append({"file": label, "reason": exc.reason})
                continue
            yield label, hr_y, note


def split_validation(count: int, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of the deterministic validation hold-out (none when only one image)."""
    if count < 2 or fraction <= 0:
        return np.zeros(0, dtype=np.int64)
    n_val = min(count - 1, max(1, round(count * fraction)))
    return np.sort(np.random.default_rng(seed).permutation(count)[:n_val])


def make_planes(config: TrainConfig, hr_planes: list[np.ndarray]) -> PlaneSet:
    degradation = parse_degradation(config.degrade)
    planes = PlaneSet()
    for hr_y in hr_planes:
        hr01 = hr_y / 255.0
        lr01 = degrade(hr01, config.scale, degradation)
        source = imresize(lr01, config.scale) if config.arch == "srcnn" else lr01
        planes.inputs.append(source.astype(np.float32))
        planes.targets.append(hr01.astype(np.float32))
    return planes


def pack_y_planes(folders: tuple[Path, ...], out: Path) -> int:
    """Write the full Y plane (uint8 code values) of every readable image in `folders` to one .npz.

    The pack is what a remote trainer reads in place of the image folders (`read_hr_planes`'s
    `preloaded`); the planes are not mod-cropped, so one pack serves every scale. Unreadable
    files are left out (reading the folders reports them).
    """
    labelled = [(label, hr_y) for label, hr_y, _ in _folder_planes(folders, DataReport())]
    np.savez_compressed(out, labels=np.array([label for label, _ in labelled]),
                        **{f"plane{i:05d}": hr_y.astype(np.uint8) for i, (_, hr_y) in enumerate(labelled)})
    return len(labelled)


def load_y_planes(pack: Path) -> list[tuple[str, np.ndarray]]:
    """The (label, Y plane) pairs of a `pack_y_planes` file; DataError for anything else."""
    try:
        with np.load(pack) as data:
            return [(str(label), data[f"plane{i:05d}"]) for i, label in enumerate(data["labels"])]
    except (OSError, ValueError, KeyError, EOFError) as exc:
        raise DataError(f"{pack}: not a pack of Y planes made by pack_y_planes ({str(exc).splitlines()[0]})") from None


def prepare_data(config: TrainConfig, preloaded: list[tuple[str, np.ndarray]] | None = None,
                 ) -> tuple[PlaneSet, list[tuple[np.ndarray, np.ndarray]], DataReport]:
    """(training planes, validation (HR code values, LR in [0,1]) pairs, report)."""
    labelled, report = read_hr_planes(config, preloaded)
    val_idx = set(split_validation(len(labelled), config.val_fraction, config.seed).tolist())
    train_hr = [hr for i, (_, hr) in enumerate(labelled) if i not in val_idx]
    report.train = [name for i, (name, _) in enumerate(labelled) if i not in val_idx]
    report.val = [name for i, (name, _) in enumerate(labelled) if i in val_idx]
    degradation = parse_degradation(config.degrade)
    val_pairs = [(hr, degrade(hr / 255.0, config.scale, degradation)) for i, (_, hr) in enumerate(labelled) if i in val_idx]
    return make_planes(config, train_hr), val_pairs, report


class PatchSampler:
    """Random aligned input/target patches with the 8 dihedral transforms, from one numpy RNG."""

    def __init__(self, planes: PlaneSet, input_patch: int, stride: int, rng: np.random.Generator) -> None:
        self.planes = planes
        self.patch = input_patch
        self.stride = stride
        self.rng = rng
        self.positions = np.array([(h - input_patch + 1, w - input_patch + 1) for h, w in (p.shape for p in planes.inputs)])
        # Weight images by their number of patch positions: every position equally likely.
        counts = self.positions.prod(axis=1).astype(np.float64)
        self.weights = counts / counts.sum()

    def batch(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        p, s = self.patch, self.stride
        which = self.rng.choice(len(self.weights), size=size, p=self.weights)
        corners = np.floor(self.rng.random((size, 2)) * self.positions[which]).astype(np.int64)
        transforms = self.rng.integers(0, 8, size=size)
        inputs = np.empty((size, 1, p, p), dtype=np.float32)
        targets = np.empty((size, 1, p * s, p * s), dtype=np.float32)
        for b, (i, (y, x), t) in enumerate(zip(which, corners, transforms)):
            src = self.planes.inputs[i][y : y + p, x : x + p]
            dst = self.planes.targets[i][y * s : (y + p) * s, x * s : (x + p) * s]
            inputs[b, 0] = _dihedral(src, int(t))
            targets[b, 0] = _dihedral(dst, int(t))
        return inputs, targets


def _dihedral(patch: np.ndarray, transform: int) -> np.ndarray:
    rotated = np.rot90(patch, transform % 4)
    return rotated.T if transform >= 4 else rotated


# --- model, checkpoints -------------------------------------------------------------------


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available")
    if name != "cpu" and not name.startswith("cuda"):
        raise UsageError(f"unknown device {name!r}; use auto, cpu or cuda")
    return torch.device(name)


def build_network(config: TrainConfig) -> nn.Module:
    if config.arch not in ("espcn", "srcnn"):
        raise UsageError(f"unknown architecture {config.arch!r}; use espcn or srcnn")
    if config.scale not in SUPPORTED_SCALES:
        raise UsageError(f"unsupported scale {config.scale}; choose one of {SUPPORTED_SCALES}")
    torch.manual_seed(config.seed)  # same seed, same initial weights
    return SRCNN() if config.arch == "srcnn" else ESPCN(config.scale)


def fingerprint(config: TrainConfig, report: DataReport) -> dict[str, Any]:
    """What must not change between a checkpoint and its --resume."""
    return {"arch": config.arch, "scale": config.scale, "steps": config.steps, "batch": config.batch,
            "init": config.init_from,
            "lr": config.lr, "lr_min": config.lr_min, "seed": config.seed,
            "degrade": parse_degradation(config.degrade).spec(), "images": hashlib.sha256("\n".join(report.train + report.val).encode()).hexdigest()[:16]}


def atomic_torch_save(obj: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


@dataclass
class TrainState:
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    rng: np.random.Generator
    step: int = 0
    elapsed_s: float = 0.0
    val_psnr_db: float | None = None

    def checkpoint(self, stamp: dict[str, Any]) -> dict[str, Any]:
        return {"step": self.step, "elapsed_s": self.elapsed_s, "val_psnr_db": self.val_psnr_db,
                "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "numpy_rng": self.rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                "fingerprint": stamp}

    def restore(self, ckpt: dict[str, Any], stamp: dict[str, Any], where: Path) -> None:
        check_fingerprint(ckpt, stamp, where)
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.rng.bit_generator.state = ckpt["numpy_rng"]
        torch.set_rng_state(ckpt["torch_rng"])
        self.step, self.elapsed_s = int(ckpt["step"]), float(ckpt["elapsed_s"])
        self.val_psnr_db = ckpt.get("val_psnr_db")


def check_fingerprint(ckpt: dict[str, Any], stamp: dict[str, Any], where: Path) -> None:
    saved = dict(ckpt.get("fingerprint", {}))
    saved.setdefault("loop", "host")  # checkpoints from before the device loop
    diffs = [f"{k}={saved.get(k)!r} (now {v!r})" for k, v in stamp.items() if saved.get(k) != v]
    if diffs:
        raise UsageError(f"--resume: {where} was made with different settings: {', '.join(diffs)}")


def initial_model(config: TrainConfig) -> nn.Module:
    """The seeded fresh network, or the --init preset's weights in it."""
    model = build_network(config)
    if config.init_from:
        model.load_state_dict(initial_weights(config))
    return model


def new_state(config: TrainConfig, device: torch.device) -> TrainState:
    model = initial_model(config).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.steps, eta_min=config.lr_min)
    rng = np.random.default_rng([config.seed, 1])  # a stream apart from the validation split's
    return TrainState(model, optimizer, scheduler, rng)


def initial_weights(config: TrainConfig) -> dict[str, torch.Tensor]:
    """The --init preset's weights, refused unless it is the same architecture and scale."""
    from espcn_video.model.presets import load_preset
    model, info = load_preset(str(config.init_from))
    if (info.arch, info.scale) != (config.arch, config.scale):
        raise UsageError(f"--init {config.init_from} is {info.arch} x{info.scale}, "
                         f"not {config.arch} x{config.scale}")
    return model.state_dict()


def init_record(config: TrainConfig) -> dict[str, Any] | None:
    """Where a warm restart started: the preset's name and its own training record."""
    if not config.init_from:
        return None
    from espcn_video.model.presets import load_preset
    _, info = load_preset(str(config.init_from))
    return {"preset": info.name, "training": info.metadata.get("training")}


def load_checkpoint(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UsageError(f"--resume: no checkpoint at {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a corrupt checkpoint is a data problem, not a crash
        raise DataError(f"{path}: unreadable checkpoint: {str(exc).splitlines()[0] if str(exc) else exc!r}") from None


# --- the job ------------------------------------------------------------------------------


def validate(model: nn.Module, pairs: list[tuple[np.ndarray, np.ndarray]], scale: int, device: torch.device) -> float | None:
    """Mean PSNR (Y, shave = scale, 8-bit rounded output) on the held-out training images."""
    if not pairs:
        return None
    model.eval()
    values = [compute_psnr(hr, to_code_values(upscale_y(model, lr, scale, device)), 255.0, scale) for hr, lr in pairs]
    model.train()
    return float(np.mean(values))


def run_steps(config: TrainConfig, state: TrainState, sampler: PatchSampler, val_pairs: list[tuple[np.ndarray, np.ndarray]],
              device: torch.device, stamp: dict[str, Any], on_progress: ProgressCallback | None) -> None:
    """The optimisation loop; checkpoints on a timer, and on Ctrl-C before re-raising."""
    loss_fn = nn.MSELoss()
    state.model.train()
    started, last_save = time.monotonic(), time.monotonic()
    base_elapsed = state.elapsed_s
    try:
        while state.step < config.steps:
            inputs, targets = sampler.batch(config.batch)
            x, y = torch.from_numpy(inputs).to(device), torch.from_numpy(targets).to(device)
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


def uses_device_loop(config: TrainConfig, device: torch.device) -> bool:
    if config.loop not in ("auto", "host", "device"):
        raise UsageError(f"unknown training loop {config.loop!r}; use auto, host or device")
    return config.loop == "device" or (config.loop == "auto" and device.type == "cuda")


def run_device_loop(config: TrainConfig, state: TrainState, planes: PlaneSet, val_pairs: list[tuple[np.ndarray, np.ndarray]],
                    device: torch.device, stamp: dict[str, Any], on_progress: ProgressCallback | None,
                    resume: dict[str, Any] | None) -> None:
    """training.device's loop: patches drawn on the device, one CUDA graph per step on a GPU.

    Same data, hold-out, schedule and checkpoints as run_steps; progress is reported every step
    on the CPU and every 100 steps on a GPU (each report waits for the device).
    """
    from espcn_video.training.device import DevicePatchSource, GraphStepper, synchronize
    source = DevicePatchSource(planes.inputs, planes.targets, config.input_patch, config.stride, device)
    optimizer_state = None
    if resume is not None:
        state.model.load_state_dict(resume["model"])
        optimizer_state = resume["optimizer"]
        state.step, state.elapsed_s = int(resume["step"]), float(resume["elapsed_s"])
        state.val_psnr_db = resume.get("val_psnr_db")
        torch.set_rng_state(resume["torch_rng"])
        if device.type == "cuda" and resume.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(resume["cuda_rng"], device)
    stepper = GraphStepper(state.model, source, config.batch, config.lr, config.lr_min, config.steps,
                           start_step=state.step, optimizer_state=optimizer_state,
                           use_graph=config.steps - state.step > 16)
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
    try:
        stepper.prepare()
        while stepper.step < config.steps:
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


def build_metadata(config: TrainConfig, state: TrainState, report: DataReport, threads: int, device: torch.device) -> dict[str, Any]:
    degradation = parse_degradation(config.degrade)
    return {
        "name": config.out.stem, "arch": config.arch, "scale": config.scale, "channels": [64, 32],
        "activation": "relu" if config.arch == "srcnn" else "tanh",
        "training": {
            "data": [str(d) for d in config.data_dirs], "degradation": degradation.describe(),
            "degrade": degradation.spec(),
            "patch": {"input": config.input_patch, "hr": config.hr_patch}, "batch": config.batch,
            "steps": config.steps, "epochs": config.steps / STEPS_PER_EPOCH,
            "steps_per_epoch": STEPS_PER_EPOCH, "lr": config.lr, "lr_min": config.lr_min,
            "seed": config.seed, "train_seconds": round(state.elapsed_s, 1), "threads": threads,
            "device": device.type, "loop": "device" if uses_device_loop(config, device) else "host",
            "torch": torch.__version__, "images": report.as_dict(),
            "val_psnr_db": state.val_psnr_db,
            "init": init_record(config),
        },
        "eval": {},
        "created": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
    }


def measure_test_sets(config: TrainConfig, model: nn.Module) -> dict[str, Any]:
    """Set5/Set14 numbers for the metadata; measured after training, never used for decisions."""
    results: dict[str, Any] = {}
    for name, folder in config.eval_dirs:
        report = evaluate_folder(folder, model, config.scale, config.degrade)
        key = "srcnn" if config.arch == "srcnn" else "espcn"
        mean = report["mean"]
        results[name] = {"psnr_db": round(mean[key]["psnr_db"], 4), "ssim": round(mean[key]["ssim"], 5),
                         "bicubic_psnr_db": round(mean["bicubic"]["psnr_db"], 4),
                         "bicubic_ssim": round(mean["bicubic"]["ssim"], 5), "degradation": report["degradation"],
                         "images": len(report["images"])}
    return results


def train(config: TrainConfig, on_progress: ProgressCallback | None = None,
          on_data: Callable[[DataReport], None] | None = None) -> TrainResult:
    """Train, checkpoint, write `<out>` (state_dict) and `<out>.json`; returns the summary.

    `on_data` hears the data report (kept, held out, skipped) before the first step.
    """
    try:
        parse_degradation(config.degrade)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if config.steps < 1 or config.batch < 1 or config.val_every < 1:
        raise UsageError("steps, batch and val_every must be positive")
    threads = config.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    device = resolve_device(config.device)
    planes, val_pairs, report = prepare_data(config)
    if on_data is not None:
        on_data(report)
    state = new_state(config, device)
    stamp = fingerprint(config, report)
    device_loop = uses_device_loop(config, device)
    stamp["loop"] = "device" if device_loop else "host"
    if device_loop:
        resume = None
        if config.resume:
            resume = load_checkpoint(config.checkpoint_path)
            check_fingerprint(resume, stamp, config.checkpoint_path)
        run_device_loop(config, state, planes, val_pairs, device, stamp, on_progress, resume)
    else:
        if config.resume:
            state.restore(load_checkpoint(config.checkpoint_path), stamp, config.checkpoint_path)
        sampler = PatchSampler(planes, config.input_patch, config.stride, state.rng)
        run_steps(config, state, sampler, val_pairs, device, stamp, on_progress)
    model = state.model.to("cpu").eval()
    atomic_torch_save({k: v.detach().clone() for k, v in model.state_dict().items()}, config.out)
    metadata = build_metadata(config, state, report, threads, device)
    metadata["eval"] = measure_test_sets(config, model)
    atomic_write_json(config.out.with_suffix(".json"), metadata)
    return TrainResult(config.out, state.step, state.elapsed_s, state.val_psnr_db, report, metadata)
