"""The other upscalers the psnr and bench jobs compare ESPCN with: Lanczos-3 and SRCNN, both on the PS grid."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from espcn_video.model.engines import from_unit_float, to_unit_float
from espcn_video.resample import upscale_unit_bicubic

LANCZOS_LOBES = 3


def lanczos(x: np.ndarray, lobes: int = LANCZOS_LOBES) -> np.ndarray:
    return np.where(np.abs(x) < lobes, np.sinc(x) * np.sinc(x / lobes), 0.0)


def lanczos_phase_taps(scale: int) -> np.ndarray:
    """(scale, 7) weights over offsets -3..+3 for output phase p at LR coordinate (p + 0.5)/r - 0.5."""
    offsets = np.arange(-LANCZOS_LOBES, LANCZOS_LOBES + 1, dtype=np.float64)
    taps = np.stack([lanczos((p + 0.5) / scale - 0.5 - offsets) for p in range(scale)])
    return taps / taps.sum(axis=1, keepdims=True)


class LanczosEngine:
    """Lanczos-3 upsampling of Y on the PS grid (the grid ESPCN and our bicubic use), edges repeated."""

    name = "lanczos3"

    def __init__(self, scale: int) -> None:
        self.scale = scale
        self.taps = torch.from_numpy(lanczos_phase_taps(scale)).to(torch.float32)

    @torch.inference_mode()
    def upscale_luma(self, y: np.ndarray, peak: int) -> np.ndarray:
        x, r, k = to_unit_float(y, peak), self.scale, self.taps.shape[1]
        n, _, h, w = x.shape
        pad = k // 2
        horiz = F.conv2d(F.pad(x, (pad, pad, 0, 0), mode="replicate"), self.taps.view(r, 1, 1, k))
        x = horiz.permute(0, 2, 3, 1).reshape(n, 1, h, w * r)
        vert = F.conv2d(F.pad(x, (0, 0, pad, pad), mode="replicate"), self.taps.view(r, 1, k, 1))
        return from_unit_float(vert.permute(0, 2, 1, 3).reshape(n, 1, h * r, w * r), peak, y.dtype)


class SrcnnEngine:
    """SRCNN runs at high resolution on the bicubic-upscaled Y (unrounded), as in its paper."""

    name = "srcnn"

    def __init__(self, model: torch.nn.Module, scale: int) -> None:
        self.model = model.eval()
        self.scale = scale

    @torch.inference_mode()
    def upscale_luma(self, y: np.ndarray, peak: int) -> np.ndarray:
        return from_unit_float(self.model(upscale_unit_bicubic(to_unit_float(y, peak), self.scale)), peak, y.dtype)


# -- the sink --------------------------------------------------------------------------------
