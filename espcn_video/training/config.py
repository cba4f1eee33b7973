"""TrainConfig: the settings of one training run, and the constants its defaults are made of.

Kept apart from the job so that the data, checkpoint and loop modules (and the CLI, the
multi-run trainer and the tools) all read one definition without importing each other.
One epoch is defined as STEPS_PER_EPOCH steps: patches are sampled, so there is no natural
pass over the data.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from espcn_video.errors import UsageError

STEPS_PER_EPOCH = 1000
LR_PATCH = 17  # ESPCN trains on 17x17 LR patches (HR 17·r)
SRCNN_PATCH = 33  # SRCNN trains on 33x33 patches of the bicubic-upscaled image
DEFAULT_WIDTHS = (64, 32)  # conv1 and conv2 channels of the paper's networks (ESPCN and SRCNN)
LOSSES = ("l2", "l1")  # the training loss: mean squared error (the papers', what PSNR measures) or mean absolute error
LR_MIN = 1e-5  # where train's cosine schedule ends: --lr may not be below it (the schedule would rise)
QAT_LR_MIN = 1e-7  # the same for quantize's weights (its range and step learning rate follows their ratio)


def loss_function(name: str) -> Callable[[Any, Any], Any]:
    """The training loss `name` (one of LOSSES) as a function of (output, target) tensors."""
    import torch.nn.functional as F  # here, so that reading the settings does not load torch

    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}: {', '.join(LOSSES)}")
    return F.l1_loss if name == "l1" else F.mse_loss


def check_learning_rate(what: str, lr: float, lr_min: float) -> None:
    """A UsageError unless `lr` is a finite number above 0 and at least `lr_min`, where its cosine
    schedule ends (below it the schedule would rise); what the CLI's parameter types refuse, for
    callers of the Python API."""
    if not (math.isfinite(lr) and lr > 0 and 0 <= lr_min <= lr):
        floor = f" and at least {lr_min:g}, where the schedule ends" if lr_min > 0 else ""
        raise UsageError(f"{what} {lr:g}: a learning rate is a finite number above 0{floor}")


@dataclass(frozen=True)
class TrainConfig:
    scale: int
    out: Path
    data_dirs: tuple[Path, ...]
    arch: str = "espcn"
    steps: int = 60 * STEPS_PER_EPOCH
    batch: int = 16
    lr: float = 1e-3
    lr_min: float = LR_MIN
    seed: int = 0
    degrade: str = "bicubic"
    device: str = "auto"
    threads: int | None = None
    resume: bool = False
    init_from: str | None = None  # a preset whose weights start the run (a warm restart)
    widths: tuple[int, int] = DEFAULT_WIDTHS  # conv1 and conv2 channels (the paper's 64, 32)
    patch: int | None = None  # input patch side (default LR_PATCH, SRCNN_PATCH for SRCNN)
    blocks: int = 0  # residual blocks in ESPCN's low-resolution body (0: the paper's 5-3-3)
    teacher: str | None = None  # an ESPCN preset of the same scale whose outputs join the targets
    teacher_weight: float = 0.5  # target = (1 - w)·HR + w·teacher(LR)
    loss: str = "l2"  # LOSSES: l2 (mean squared error) or l1 (mean absolute error)
    expand: int = 0  # train each convolution as three foldable linear branches (training.reparam); 0: off
    rescale: tuple[float, ...] = ()  # scale augmentation: every training image again at these factors (< 1)
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
        if self.patch:
            return self.patch
        return SRCNN_PATCH if self.arch == "srcnn" else LR_PATCH

    @property
    def stride(self) -> int:
        """HR pixels per input pixel: r for ESPCN (LR input), 1 for SRCNN (upscaled input)."""
        return 1 if self.arch == "srcnn" else self.scale

    @property
    def hr_patch(self) -> int:
        return self.input_patch * self.stride
