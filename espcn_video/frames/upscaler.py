"""One frame, low-res planes in, high-res planes out: Y by ESPCN (or bicubic), U and V bicubic."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from espcn_video.ffmpeg.y4m import FrameGeometry
from espcn_video.frames.resample import chroma_centres, upscale_planes_bicubic
from espcn_video.model.engines import LumaEngine
from espcn_video.model.net import frames_read


class Upscaler(Protocol):
    """What the pipeline runs on each frame: FrameUpscaler, or compare's CompareUpscaler."""

    scale: int
    chroma_location: str | None

    @property
    def method(self) -> str: ...

    def output_geometry(self, lr: FrameGeometry) -> FrameGeometry: ...

    def upscale(
        self, planes: list[np.ndarray], lr: FrameGeometry, neighbours: Neighbours | None = None
    ) -> list[np.ndarray]: ...


Neighbours = tuple["np.ndarray | None", "np.ndarray | None"]  # the LR Y planes before and after a frame


class FrameUpscaler:
    """Super-resolves Y with `engine`; None means plain bicubic for every plane (the baseline).

    `chroma_location` (ffmpeg's name: left, center, topleft, ...) puts the chroma grid where the
    source sited it; the output keeps the same siting.
    """

    def __init__(self, scale: int, engine: LumaEngine | None = None, chroma_location: str | None = None) -> None:
        if engine is not None and engine.scale != scale:
            raise ValueError(f"engine scale {engine.scale} != requested scale {scale}")
        self.scale = scale
        self.engine = engine
        self.chroma_location = chroma_location
        # a multi-frame preset (frames = 3): Y goes in as (previous, frame, next), both neighbours
        # warped onto the frame (frames/motion.py)
        self.frames = frames_read(engine)
        self.aligner = None
        if self.frames > 1:
            from espcn_video.frames.motion import MotionAligner

            self.aligner = MotionAligner()

    @property
    def method(self) -> str:
        return "bicubic" if self.engine is None else self.engine.name

    def output_geometry(self, lr: FrameGeometry) -> FrameGeometry:
        """The size of what upscale() returns."""
        return lr.scaled(self.scale)

    def _chroma(self, planes: list[np.ndarray], lr: FrameGeometry, shapes: list[tuple[int, int]]) -> list[np.ndarray]:
        centres = chroma_centres(self.chroma_location, lr.chroma_shift)
        return upscale_planes_bicubic(planes, self.scale, shapes, lr.peak, centres)

    def upscale(
        self, planes: list[np.ndarray], lr: FrameGeometry, neighbours: Neighbours | None = None
    ) -> list[np.ndarray]:
        """The HR planes of one frame; `neighbours`: the LR Y planes of the frames before and after
        it (None where there is none), read by a multi-frame preset only."""
        hr = lr.scaled(self.scale)
        shapes = hr.plane_shapes
        if self.engine is None:
            if len(planes) == 1:
                return upscale_planes_bicubic(planes, self.scale, shapes, lr.peak)
            return upscale_planes_bicubic(planes[:1], self.scale, shapes[:1], lr.peak) + self._chroma(
                planes[1:], lr, shapes[1:]
            )
        y = planes[0]
        if self.aligner is not None:
            before, after = neighbours if neighbours is not None else (None, None)
            y = self.aligner.stack(before, y, after, lr.peak)
        start = getattr(self.engine, "start_luma", None)
        if len(planes) > 1 and start is not None:
            # The engine runs on its own threads: resample chroma meanwhile.
            pending = start(y, lr.peak)
            chroma = self._chroma(planes[1:], lr, shapes[1:])
            return [pending(), *chroma]
        out = [self.engine.upscale_luma(y, lr.peak)]
        if len(planes) > 1:
            out += self._chroma(planes[1:], lr, shapes[1:])
        return out
