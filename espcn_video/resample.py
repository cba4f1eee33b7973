"""Bicubic upsampling by an integer factor on the grid ESPCN's periodic shuffle defines.

PS puts high-res pixel k of a row at low-res coordinate (k + 0.5) / r - 0.5 (align_corners=False).
With centred chroma siting the same mapping holds for chroma planes whatever the subsampling,
so U and V are upsampled by r on their own grid and cropped to the output's chroma size (odd
sizes round up, like ffmpeg).

The kernel is Keys' cubic with a = -0.5 (MATLAB's imresize, the SR papers' "bicubic"); unlike
torch's a = -0.75 it reproduces linear ramps exactly. An integer factor has only r phases, so
each pass is one 5-tap convolution with r output channels, then an interleave.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F

from espcn_video.model.engines import from_unit_float, to_unit_float


def cubic(x: np.ndarray, a: float = -0.5) -> np.ndarray:
    ax = np.abs(x)
    return np.where(ax <= 1, (a + 2) * ax**3 - (a + 3) * ax**2 + 1,
                    np.where(ax < 2, a * ax**3 - 5 * a * ax**2 + 8 * a * ax - 4 * a, 0.0))


@functools.lru_cache(maxsize=16)
def phase_taps(scale: int) -> np.ndarray:
    """(scale, 5) weights over source offsets -2..+2 for each output phase."""
    taps = np.zeros((scale, 5))
    for p in range(scale):
        d = (p + 0.5) / scale - 0.5
        base = math.floor(d)
        frac = d - base
        for j, off in enumerate(range(base - 1, base + 3)):
            taps[p, off + 2] = cubic(np.array(frac - (off - base)))
    return taps / taps.sum(axis=1, keepdims=True)


def upscale_by_phases(x: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) -> (N, 1, H*r, W*r) with separable per-phase taps (r, k), k odd and centred on
    offset 0 (column j weighs source offset j - k // 2); edges replicated."""
    n, _, h, w = x.shape
    r, k = taps.shape
    pad = k // 2
    taps = taps.to(x.dtype)
    horiz = F.conv2d(F.pad(x, (pad, pad, 0, 0), mode="replicate"), taps.view(r, 1, 1, k))
    x = horiz.permute(0, 2, 3, 1).reshape(n, 1, h, w * r)
    vert = F.conv2d(F.pad(x, (0, 0, pad, pad), mode="replicate"), taps.view(r, 1, k, 1))
    return vert.permute(0, 2, 1, 3).reshape(n, 1, h * r, w * r)


@functools.lru_cache(maxsize=16)
def _bicubic_taps(scale: int) -> torch.Tensor:
    return torch.from_numpy(phase_taps(scale)).to(torch.float32)


def upscale_unit_bicubic(x: torch.Tensor, scale: int) -> torch.Tensor:
    """(N, 1, H, W) float -> (N, 1, H*r, W*r), edges replicated."""
    return upscale_by_phases(x, _bicubic_taps(scale))


@torch.inference_mode()
def upscale_planes_bicubic(planes: list[np.ndarray], scale: int, out_shapes: list[tuple[int, int]],
                           peak: int) -> list[np.ndarray]:
    """Upsample planes of equal shape together by `scale`; crop each to its out shape."""
    if not planes:
        return []
    stacked = torch.cat([to_unit_float(p, peak) for p in planes], dim=0)
    up = upscale_unit_bicubic(stacked, scale)
    return [from_unit_float(up[i:i + 1, :, :h, :w], peak, planes[i].dtype)
            for i, (h, w) in enumerate(out_shapes)]
