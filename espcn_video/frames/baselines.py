"""The other upscalers the psnr and bench jobs compare ESPCN with: Lanczos-3 and SRCNN, both on the PS grid."""

from __future__ import annotations

import numpy as np
import torch

from espcn_video.errors import PresetError
from espcn_video.frames.resample import upscale_by_phases, upscale_unit_bicubic
from espcn_video.model.engines import from_unit_float, to_unit_float
from espcn_video.model.net import SRCNN

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
        return from_unit_float(upscale_by_phases(to_unit_float(y, peak), self.taps), peak, y.dtype)


class SrcnnEngine:
    """SRCNN at high resolution on the bicubic-upscaled Y (unrounded, on the PS grid), as in its paper."""

    name = "srcnn"

    def __init__(self, model: torch.nn.Module, scale: int) -> None:
        if not isinstance(model, SRCNN):
            raise PresetError(f"the srcnn method needs an SRCNN preset, not a {type(model).__name__}")
        self.model = model.eval()
        self.scale = scale

    @torch.inference_mode()
    def upscale_luma(self, y: np.ndarray, peak: int) -> np.ndarray:
        up = upscale_unit_bicubic(to_unit_float(y, peak), self.scale)
        return from_unit_float(self.model.in_strips(up), peak, y.dtype)
