"""Bicubic resampling on the grid ESPCN's periodic shuffle defines.

PS puts high-res pixel k of a row at low-res coordinate (k + 0.5) / r - 0.5: exactly
align_corners=False at scale factor r. With centred chroma siting the same mapping holds
for chroma planes whatever the subsampling, so U and V are upsampled by r on their own
grid and cropped to the output's chroma size (odd sizes round up, like ffmpeg).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from espcn_video.model.engines import from_unit_float, to_unit_float


@torch.inference_mode()
def upscale_planes_bicubic(planes: list[np.ndarray], scale: int, out_shapes: list[tuple[int, int]],
                           peak: int) -> list[np.ndarray]:
    """Upsample planes of equal shape together by `scale`; crop each to its out shape."""
    if not planes:
        return []
    stacked = torch.cat([to_unit_float(p, peak) for p in planes], dim=1)
    up = F.interpolate(stacked, scale_factor=float(scale), mode="bicubic", align_corners=False,
                       recompute_scale_factor=False)
    result = []
    for i, (h, w) in enumerate(out_shapes):
        result.append(from_unit_float(up[:, i:i + 1, :h, :w].contiguous(), peak, planes[i].dtype))
    return result
