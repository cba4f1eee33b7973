"""The trained model's state and its checkpoints: building the network, saving and resuming.

`TrainState` is what a checkpoint holds (model, optimiser, schedule, RNGs, step, time). The
fingerprint records the settings and images a checkpoint was made with, so that --resume refuses
a checkpoint from a different run. A run starts from the seeded fresh network or, with
--init, from a preset of the same architecture and scale (a warm restart; SRCNN: any scale).
A wider network (--width) may start from a narrower preset: its weights are copied into the first
channels and every weight leaving a new channel is zero, so the widened network computes exactly
what the preset did and training adds to it (a function-preserving widening, as in Net2Net).
A deeper one (--blocks) may start from a shallower preset the same way: each new residual block's
second convolution starts at zero, so the block passes its input through unchanged.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from espcn_video.errors import DataError, EspcnVideoError, UsageError
from espcn_video.files import atomic_path
from espcn_video.model.net import ESPCN, SRCNN
from espcn_video.quality.degrade import parse_training_degradation
from espcn_video.settings import check_scale
from espcn_video.training.config import LR_PATCH, SRCNN_PATCH, TrainConfig
from espcn_video.training.data import DataReport
from espcn_video.training.reparam import expanded


def build_network(config: TrainConfig) -> nn.Module:
    if config.arch not in ("espcn", "srcnn"):
        raise UsageError(f"unknown architecture {config.arch!r}; use espcn or srcnn")
    check_scale(config.scale)
    torch.manual_seed(config.seed)  # same seed, same initial weights
    n1, n2 = config.widths
    if config.arch == "srcnn":
        if config.blocks:
            raise UsageError("--blocks deepens ESPCN; SRCNN has no residual blocks")
        return SRCNN(1, n1, n2)
    return ESPCN(config.scale, 1, n1, n2, config.blocks)


def fingerprint(config: TrainConfig, report: DataReport) -> dict[str, Any]:
    """What must not change between a checkpoint and its --resume."""
    return {
        "arch": config.arch,
        "scale": config.scale,
        "steps": config.steps,
        "batch": config.batch,
        "init": config.init_from,
        "lr": config.lr,
        "lr_min": config.lr_min,
        "seed": config.seed,
        "degrade": parse_training_degradation(config.degrade).spec(),
        "widths": list(config.widths),
        "blocks": config.blocks,
        "patch": config.input_patch,
        "teacher": [config.teacher, config.teacher_weight] if config.teacher else None,
        "loss": config.loss,
        "rescale": list(config.rescale),
        "expand": config.expand,
        "images": hashlib.sha256("\n".join(report.train + report.val).encode()).hexdigest()[:16],
    }


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
        return {
            "step": self.step,
            "elapsed_s": self.elapsed_s,
            "val_psnr_db": self.val_psnr_db,
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "numpy_rng": self.rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "fingerprint": stamp,
        }

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
    saved.setdefault("widths", [64, 32])  # checkpoints from before --width
    saved.setdefault("teacher", None)  # and before --teacher
    saved.setdefault("blocks", 0)  # and before --blocks
    saved.setdefault("loss", "l2")  # and --loss
    saved.setdefault("rescale", [])  # and --rescale
    saved.setdefault("expand", 0)  # and --expand
    saved.setdefault("patch", SRCNN_PATCH if saved.get("arch") == "srcnn" else LR_PATCH)  # and --patch
    diffs = [f"{k}={saved.get(k)!r} (now {v!r})" for k, v in stamp.items() if saved.get(k) != v]
    if diffs:
        raise UsageError(f"--resume: {where} was made with different settings: {', '.join(diffs)}")


def initial_model(config: TrainConfig) -> nn.Module:
    """The seeded fresh network, or the --init preset's weights in it."""
    model = build_network(config)
    if config.init_from:
        model.load_state_dict(widened(initial_weights(config), model.state_dict(), config.init_from))
    if config.expand:
        expanded(model, config.expand)  # the same function: the --init preset's output at step 0
    return model


def widened(preset: dict[str, torch.Tensor], fresh: dict[str, torch.Tensor], name: str) -> dict[str, torch.Tensor]:
    """The preset's weights in the (possibly wider) fresh network, computing the same function.

    Each layer's preset block goes into its first input and output channels. Weights into a new
    channel keep the fresh network's seeded values, so the new channels differ from each other;
    every weight out of a new channel is zero: the output is the preset's, and gradients reach
    every new weight from the second step on. A residual block the preset does not have keeps its
    seeded first convolution and a zero second one (an identity). A network narrower or shallower
    than the preset is refused."""
    extra = sorted(set(preset) - set(fresh))
    if extra:
        raise UsageError(f"--init {name} has layers this network lacks ({extra[0]}, ...): --blocks cannot be fewer")
    out: dict[str, torch.Tensor] = {}
    for key, new in fresh.items():
        if key not in preset:  # a new residual block
            out[key] = torch.zeros_like(new) if ".conv_b." in key else new.clone()
            continue
        old = preset[key]
        if any(o > n for o, n in zip(old.shape, new.shape, strict=True)):
            widths = f"{preset['conv1.weight'].shape[0]},{preset['conv2.weight'].shape[0]}"
            raise UsageError(f"--init {name} has widths {widths}; --width cannot be narrower than the preset's")
        merged = new.clone()
        if key.endswith(".weight") and old.shape[1] < new.shape[1]:
            merged[:, old.shape[1] :] = 0  # out of the new input channels: nothing yet
        merged[tuple(slice(0, s) for s in old.shape)] = old
        out[key] = merged
    return out


def new_state(config: TrainConfig, device: torch.device) -> TrainState:
    model = initial_model(config).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.steps, eta_min=config.lr_min)
    rng = np.random.default_rng([config.seed, 1])  # a stream apart from the validation split's
    return TrainState(model, optimizer, scheduler, rng)


def initial_weights(config: TrainConfig) -> dict[str, torch.Tensor]:
    """The --init preset's weights, refused unless it is the same architecture and scale. SRCNN
    may start from another scale's preset: it runs on the bicubic-upscaled image, so its weights
    have no scale in them (the paper's x2 and x4 baselines start from the x3 one)."""
    from espcn_video.model.presets import check_single_frame, resolve_preset

    any_scale = config.arch == "srcnn"
    model, info = resolve_preset(
        str(config.init_from), scale=None if any_scale else config.scale, arch=config.arch, what="--init"
    )
    check_single_frame(model, info, "--init")
    return model.state_dict()


def init_record(config: TrainConfig) -> dict[str, Any] | None:
    """Where a warm restart started: the preset's name and its own training record."""
    if not config.init_from:
        return None
    from espcn_video.model.presets import load_preset

    _, info = load_preset(str(config.init_from))
    return {"preset": info.name, "training": info.metadata.get("training")}


class TeacherTargets:
    """Distillation: each batch's target becomes (1 - w)·HR + w·teacher(LR).

    Minimising the MSE to that mixed target is minimising (1 - w)·MSE(HR) + w·MSE(teacher) (the
    two differ by a constant), so both training loops keep their one MSE. The teacher is a frozen
    ESPCN preset of the same scale (any width or depth), in fp32 and unclamped: its outputs on
    endless random crops and flips are a larger training set than the 391 images.

    The teacher reads `margin` more LR pixels on every side of the student's patch (its receptive
    radius), so its target for every pixel of the patch is what it gives on the whole image, not
    what it gives at a zero-padded patch border (a deep teacher's 25x25 view is larger than a
    17x17 patch). The loops draw patches that much larger (`with_context`) and the call returns the
    centre: the student's input patch and the mixed target."""

    def __init__(self, teacher: nn.Module, weight: float) -> None:
        from espcn_video.model.engines import receptive_radius

        self.teacher = teacher.eval().requires_grad_(False)
        self.weight = weight
        self.margin = receptive_radius(teacher)

    def to(self, device: torch.device) -> TeacherTargets:
        self.teacher.to(device)
        return self

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the centre input patch, its target) of a patch drawn `margin` LR pixels larger."""
        m, s = self.margin, y.shape[-1] // x.shape[-1]
        with torch.no_grad():
            t = self.teacher(x)
            if m:
                x = x[..., m:-m, m:-m].contiguous()
                y, t = (v[..., m * s : -m * s, m * s : -m * s] for v in (y, t))
            return x, torch.lerp(y, t, self.weight).contiguous()


def teacher_targets(config: TrainConfig) -> TeacherTargets | None:
    """The --teacher preset as a target mixer, refused unless it is ESPCN at the run's scale."""
    if not config.teacher:
        return None
    from espcn_video.model.presets import check_single_frame, resolve_preset

    if config.arch != "espcn":
        raise UsageError("--teacher: distillation is for ESPCN students (the teacher reads the same LR patch)")
    if not 0.0 < config.teacher_weight <= 1.0:
        raise UsageError(f"--teacher-weight {config.teacher_weight} is not in (0, 1]")
    model, info = resolve_preset(config.teacher, scale=config.scale, arch="espcn", what="--teacher")
    check_single_frame(model, info, "--teacher")
    return TeacherTargets(model.float(), config.teacher_weight)


def teacher_record(config: TrainConfig) -> dict[str, Any] | None:
    """The teacher's name, width and validation PSNR, for the preset's metadata."""
    if not config.teacher:
        return None
    from espcn_video.model.engines import model_widths, receptive_radius
    from espcn_video.model.presets import load_preset

    model, info = load_preset(config.teacher)
    training = info.metadata.get("training") or {}
    return {
        "preset": info.name,
        "weight": config.teacher_weight,
        "channels": list(model_widths(model)),
        "val_psnr_db": training.get("val_psnr_db"),
        "context_lr_pixels": receptive_radius(model),
    }


def load_checkpoint(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UsageError(f"--resume: no checkpoint at {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a corrupt checkpoint is a data problem, not a crash
        raise DataError(f"{path}: unreadable checkpoint: {str(exc).splitlines()[0] if str(exc) else exc!r}") from None


def checkpoint_progress(path: Path) -> tuple[int, int] | None:
    """(step, steps of its run) of a training checkpoint; None when it cannot be read as one."""
    try:
        saved = load_checkpoint(path)
        return int(saved["step"]), int(saved["fingerprint"]["steps"])
    except (EspcnVideoError, KeyError, TypeError, ValueError):  # not one of ours, or damaged
        return None
