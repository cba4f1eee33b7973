"""One frame, low-res planes in, high-res planes out: Y by ESPCN (or bicubic), U and V bicubic."""

from __future__ import annotations

import numpy as np

from espcn_video.ffmpeg.y4m import FrameGeometry
from espcn_video.model.engines import LumaEngine
from espcn_video.resample import upscale_planes_bicubic


class FrameUpscaler:
    """Super-resolves Y with `engine`; None means plain bicubic for every plane (the baseline)."""

    def __init__(self, scale: int, engine: LumaEngine | None = None) -> None:
        if engine is not None and engine.scale != scale:
            raise ValueError(f"engine scale {engine.scale} != requested scale {scale}")
        self.scale = scale
        self.engine = engine

    @property
    def method(self) -> str:
        return "bicubic" if self.engine is None else self.engine.name

    def upscale(self, planes: list[np.ndarray], lr: FrameGeometry) -> list[np.ndarray]:
        hr = lr.scaled(self.scale)
        shapes = hr.plane_shapes
        if self.engine is None:
            if len(planes) == 1:
                return upscale_planes_bicubic(planes, self.scale, shapes, lr.peak)
            return (upscale_planes_bicubic(planes[:1], self.scale, shapes[:1], lr.peak)
                    + upscale_planes_bicubic(planes[1:], self.scale, shapes[1:], lr.peak))
        start = getattr(self.engine, "start_luma", None)
        if len(planes) > 1 and start is not None:
            # The engine runs on its own threads: resample chroma meanwhile.
            pending = start(planes[0], lr.peak)
            chroma = upscale_planes_bicubic(planes[1:], self.scale, shapes[1:], lr.peak)
            return [pending(), *chroma]
        out = [self.engine.upscale_luma(planes[0], lr.peak)]
        if len(planes) > 1:
            out += upscale_planes_bicubic(planes[1:], self.scale, shapes[1:], lr.peak)
        return out
