"""Bicubic upsampling by an integer factor on the grid ESPCN's periodic shuffle defines.

PS puts high-res pixel k of a row at low-res coordinate (k + 0.5) / r - 0.5 (align_corners=False).
With centred chroma siting the same mapping holds for chroma planes whatever the subsampling,
so U and V are upsampled by r on their own grid and cropped to the output's chroma size (odd
sizes round up, like ffmpeg). Other sitings shift the grid: a chroma sample i of subsampling f
sits at luma coordinate f*i + s (s = 0 for left/top, (f-1)/2 centred, f-1 bottom); the output
keeps the input's siting, so output chroma sample j reads input chroma coordinate
j/r + c*(1-r)/r with c = (s + 0.5)/f, which is the centred formula when c = 1/2.

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
    return np.where(
        ax <= 1,
        (a + 2) * ax**3 - (a + 3) * ax**2 + 1,
        np.where(ax < 2, a * ax**3 - 5 * a * ax**2 + 8 * a * ax - 4 * a, 0.0),
    )


# chroma_location -> sample 0's offset in luma pixels per subsampled axis, as a fraction of
# (f - 1): 0 left/top, 1/2 centred, 1 bottom. The first letter is horizontal, the second vertical.
_SITING: dict[str, tuple[float, float]] = {
    "left": (0.0, 0.5),
    "center": (0.5, 0.5),
    "topleft": (0.0, 0.0),
    "top": (0.5, 0.0),
    "bottomleft": (0.0, 1.0),
    "bottom": (0.5, 1.0),
}
CHROMA_LOCATIONS = tuple(_SITING)


def chroma_centres(location: str | None, shift: tuple[int, int]) -> tuple[float, float]:
    """(c_h, c_v) for phase_taps: 0.5 is centred (and every axis that is not subsampled)."""
    sx, sy = _SITING.get(location or "center", (0.5, 0.5))
    out = []
    for frac, log2 in ((sx, shift[0]), (sy, shift[1])):
        f = 1 << log2
        out.append((frac * (f - 1) + 0.5) / f)
    return out[0], out[1]


@functools.lru_cache(maxsize=32)
def phase_taps(scale: int, centre: float = 0.5) -> np.ndarray:
    """(scale, 5) weights over source offsets -2..+2 for each output phase."""
    taps = np.zeros((scale, 5))
    for p in range(scale):
        d = p / scale + centre * (1 - scale) / scale
        base = math.floor(d)
        frac = d - base
        for off in range(base - 1, base + 3):
            taps[p, off + 2] = cubic(np.array(frac - (off - base)))
    return taps / taps.sum(axis=1, keepdims=True)


def upscale_by_phases(x: torch.Tensor, taps: torch.Tensor, taps_v: torch.Tensor | None = None) -> torch.Tensor:
    """(N, 1, H, W) -> (N, 1, H*r, W*r) with separable per-phase taps (r, k), k odd and centred on
    offset 0 (column j weighs source offset j - k // 2); `taps_v` for the vertical pass when it
    differs (chroma siting); edges replicated."""
    n, _, h, w = x.shape
    r, k = taps.shape
    pad = k // 2
    taps_h = taps.to(x.dtype)
    taps_v = taps_h if taps_v is None else taps_v.to(x.dtype)
    horiz = F.conv2d(F.pad(x, (pad, pad, 0, 0), mode="replicate"), taps_h.view(r, 1, 1, k))
    x = horiz.permute(0, 2, 3, 1).reshape(n, 1, h, w * r)
    vert = F.conv2d(F.pad(x, (0, 0, pad, pad), mode="replicate"), taps_v.view(r, 1, k, 1))
    return vert.permute(0, 2, 1, 3).reshape(n, 1, h * r, w * r)


@functools.lru_cache(maxsize=32)
def _bicubic_taps(scale: int, centre: float = 0.5) -> torch.Tensor:
    return torch.from_numpy(phase_taps(scale, centre)).to(torch.float32)


def upscale_unit_bicubic(x: torch.Tensor, scale: int, centres: tuple[float, float] = (0.5, 0.5)) -> torch.Tensor:
    """(N, 1, H, W) float -> (N, 1, H*r, W*r), edges replicated; `centres` from chroma_centres."""
    return upscale_by_phases(x, _bicubic_taps(scale, centres[0]), _bicubic_taps(scale, centres[1]))


@torch.inference_mode()
def upscale_planes_bicubic(
    planes: list[np.ndarray],
    scale: int,
    out_shapes: list[tuple[int, int]],
    peak: int,
    centres: tuple[float, float] = (0.5, 0.5),
) -> list[np.ndarray]:
    """Upsample planes of equal shape together by `scale`; crop each to its out shape."""
    if not planes:
        return []
    stacked = torch.cat([to_unit_float(p, peak) for p in planes], dim=0)
    up = upscale_unit_bicubic(stacked, scale, centres)
    return [from_unit_float(up[i : i + 1, :, :h, :w], peak, planes[i].dtype) for i, (h, w) in enumerate(out_shapes)]
