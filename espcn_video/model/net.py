"""ESPCN (Shi et al., CVPR 2016) and the SRCNN baseline (Dong et al., 2014).

ESPCN runs every convolution at low resolution; one sub-pixel convolution (a conv to
C·r² channels followed by the periodic shuffle PS) makes the high-resolution image:

    PS(T)[x, y, c] = T[x // r, y // r, C·r·(y mod r) + C·(x mod r) + c]

torch.nn.PixelShuffle implements exactly this layout (checked in tests/test_model.py).
"""

from __future__ import annotations

import torch
from torch import nn

from espcn_video.settings import check_scale


def model_scale(model: nn.Module) -> int:
    """An ESPCN's upscaling factor (its `scale` attribute), typed for the code that reads it."""
    scale = getattr(model, "scale", None)
    if not isinstance(scale, int):
        raise TypeError(f"{type(model).__name__} has no integer scale")
    return scale


def frames_read(network: object) -> int:
    """How many frames a network reads for one output frame (1; 3 for a multi-frame preset), or
    the network an engine or upscaler runs (they carry its `frames`)."""
    return int(getattr(network, "frames", 1))


SRCNN_STRIP_ROWS = 540
SRCNN_HALO = 8  # receptive field radius of 9-5-5: 4 + 2 + 2


class ResBlock(nn.Module):
    """x + conv_b(tanh(conv_a(x))): two 3x3 convolutions at low resolution with a skip."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.conv_a = nn.Conv2d(n, n, kernel_size=3, padding=1)
        self.conv_b = nn.Conv2d(n, n, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_b(torch.tanh(self.conv_a(x)))


class ESPCN(nn.Module):
    """5-3-3 ESPCN with 64 and 32 channels, tanh, on one (Y) channel in [0, 1].

    `blocks` > 0 deepens the low-resolution body for the quality frontier (issue #15): that many
    residual blocks (ResBlock, n2 channels) between conv2's tanh and conv3. Each adds two 3x3
    convolutions (2·9·n2² MACs per LR pixel) and 4 LR pixels to the receptive field; with
    blocks = 0 (the presets of the paper's design) the network and its state_dict keys are the
    5-3-3 ones.

    `frames` > 1 (the motion-compensated video presets, frames/motion.py): conv1 reads that many
    frames, the frame to make in the middle and its neighbours warped onto it, as input channels
    (early fusion, as in VESPCN); only conv1 grows, by 25·n1 MACs per LR pixel per extra frame."""

    def __init__(
        self, scale: int, channels: int = 1, n1: int = 64, n2: int = 32, blocks: int = 0, frames: int = 1
    ) -> None:
        super().__init__()
        self.scale = check_scale(scale)
        self.frames = frames
        self.conv1 = nn.Conv2d(channels * frames, n1, kernel_size=5, padding=2)
        self.conv2 = nn.Conv2d(n1, n2, kernel_size=3, padding=1)
        self.blocks = nn.ModuleList(ResBlock(n2) for _ in range(blocks))
        self.conv3 = nn.Conv2d(n2, channels * scale * scale, kernel_size=3, padding=1)
        self.shuffle = nn.PixelShuffle(scale)
        self.act = nn.Tanh()

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        x = self.act(self.conv1(lr))
        x = self.act(self.conv2(x))
        for block in self.blocks:
            x = block(x)
        return self.shuffle(self.conv3(x))

    @property
    def receptive_radius(self) -> int:
        """LR pixels of context each side that reach one output pixel: 2 + 1 + 2 per block + 1."""
        return 4 + 2 * len(self.blocks)

    @staticmethod
    def macs_per_lr_pixel(scale: int, n1: int = 64, n2: int = 32, blocks: int = 0, frames: int = 1) -> int:
        """Multiply-accumulates per low-resolution pixel (1600 + 18432 + 288·r² for 64/32), plus
        2·9·n2² per residual block and 25·n1 per extra input frame."""
        return 25 * n1 * frames + 9 * n1 * n2 + 18 * n2 * n2 * blocks + 9 * n2 * scale * scale


class SRCNN(nn.Module):
    """9-5-5 SRCNN (64, 32) on the bicubic-upscaled Y channel; the paper's speed/quality baseline."""

    def __init__(self, channels: int = 1, n1: int = 64, n2: int = 32) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, n1, kernel_size=9, padding=4)
        self.conv2 = nn.Conv2d(n1, n2, kernel_size=5, padding=2)
        self.conv3 = nn.Conv2d(n2, channels, kernel_size=5, padding=2)
        self.act = nn.ReLU(inplace=True)

    def in_strips(self, upscaled: torch.Tensor) -> torch.Tensor:
        """The way SRCNN runs outside training: strips of rows with a halo (the same output as one
        piece, far less memory: at 4K one piece needs over 2 GB of activations); not clipped."""
        height, out = upscaled.shape[2], torch.empty_like(upscaled)
        for top in range(0, height, SRCNN_STRIP_ROWS):
            lo, hi = max(0, top - SRCNN_HALO), min(height, top + SRCNN_STRIP_ROWS + SRCNN_HALO)
            rows = min(SRCNN_STRIP_ROWS, height - top)
            out[:, :, top : top + rows] = self(upscaled[:, :, lo:hi])[:, :, top - lo : top - lo + rows]
        return out

    def forward(self, upscaled: torch.Tensor) -> torch.Tensor:
        x = self.act(self.conv1(upscaled))
        x = self.act(self.conv2(x))
        return self.conv3(x)


def macs_per_hr_pixel(model: nn.Module) -> float:
    """Multiply-accumulates per output pixel: ESPCN's convolutions run at low resolution (divided
    by scale²), SRCNN's on the upscaled image (the bicubic upscale itself not counted)."""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    macs = sum(c.weight.numel() for c in convs)
    return macs / model_scale(model) ** 2 if isinstance(model, ESPCN) else float(macs)
