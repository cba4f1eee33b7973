"""The frames of `compare`: the baseline and ESPCN (and the reference) side by side in one frame.

The pipeline hands the encoder one stacked frame per input frame, [baseline | ESPCN] or
[baseline | ESPCN | reference]; the encoder's filter graph (ffmpeg/compose.py) cuts the views
out of it. Both upscalers share the bicubic chroma, so the blocks differ in Y only, as the real
outputs do.
"""

from __future__ import annotations

from dataclasses import replace
from types import TracebackType

import numpy as np

from espcn_video.errors import EspcnVideoError, InputError
from espcn_video.ffmpeg.process import FFmpegProcess
from espcn_video.ffmpeg.y4m import FrameGeometry, read_frame
from espcn_video.frames.sinks import check_decoder, check_same_geometry, read_first_header
from espcn_video.frames.upscaler import FrameUpscaler, Neighbours


def block_geometry(hr: FrameGeometry) -> FrameGeometry:
    """One block: the upscaled frame, cut to even sizes where chroma is subsampled, so that blocks
    stack without splitting a chroma sample (and any encoder takes the result)."""
    sx, sy = hr.chroma_shift if hr.has_chroma else (0, 0)
    return replace(hr, width=hr.width - (hr.width % 2 if sx else 0), height=hr.height - (hr.height % 2 if sy else 0))


def _cut(planes: list[np.ndarray], block: FrameGeometry) -> list[np.ndarray]:
    return [p[:h, :w] for p, (h, w) in zip(planes, block.plane_shapes, strict=True)]


class ReferenceFrames:
    """The reference clip decoded alongside, one frame per input frame, checked like psnr's."""

    def __init__(self, cmd: list[str], name: str) -> None:
        self.proc = FFmpegProcess("reference decoder", cmd, stdout="pipe")
        self.name = name
        self.geometry: FrameGeometry | None = None
        self.frames = 0

    def __enter__(self) -> ReferenceFrames:
        self.proc.__enter__()
        try:
            self.geometry = read_first_header(self.proc, self.name).geometry
        except BaseException as exc:
            self.__exit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.proc.kill()  # a reference left unread would block in its write
        self.proc.__exit__(exc_type, exc, tb)

    def check_fits(self, hr: FrameGeometry, input_name: str) -> None:
        assert self.geometry is not None
        check_same_geometry(hr, self.geometry, f"{input_name} upscaled", self.name)

    def next(self) -> list[np.ndarray]:
        assert self.geometry is not None
        try:
            planes = read_frame(self.proc.stdout, self.geometry, self.frames, self.name)
        except EspcnVideoError:
            check_decoder(self.proc, self.name)
            raise
        if planes is None:
            check_decoder(self.proc, self.name)
            raise InputError(f"frame counts differ: {self.name} ends after {self.frames} frames, the input goes on")
        self.frames += 1
        return planes

    def finish(self, input_frames: int) -> None:
        """After the last input frame: the reference must end there too."""
        assert self.geometry is not None
        left = 0
        while read_frame(self.proc.stdout, self.geometry, self.frames + left, self.name) is not None:
            left += 1
        check_decoder(self.proc, self.name)
        if left:
            raise InputError(
                f"frame counts differ: the input has {input_frames} frames, {self.name} has {input_frames + left}"
            )


class CompareUpscaler:
    """Upscales each frame twice (baseline, ESPCN) and stacks the blocks left to right, the
    reference's frame last when there is one."""

    def __init__(self, espcn: FrameUpscaler, baseline: FrameUpscaler, reference: ReferenceFrames | None = None) -> None:
        if espcn.scale != baseline.scale:
            raise ValueError("the baseline and ESPCN must upscale by the same factor")
        self.espcn, self.baseline, self.reference = espcn, baseline, reference
        self.scale = espcn.scale

    @property
    def method(self) -> str:
        return f"{self.baseline.method} | {self.espcn.method}"

    @property
    def chroma_location(self) -> str | None:
        return self.espcn.chroma_location

    @chroma_location.setter
    def chroma_location(self, value: str | None) -> None:
        self.espcn.chroma_location = self.baseline.chroma_location = value

    @property
    def blocks(self) -> int:
        return 2 if self.reference is None else 3

    def output_geometry(self, lr: FrameGeometry) -> FrameGeometry:
        block = block_geometry(lr.scaled(self.scale))
        return replace(block, width=block.width * self.blocks)

    @property
    def frames(self) -> int:
        """The frames ESPCN's network reads (3 for a motion-compensated preset)."""
        return self.espcn.frames

    def upscale(
        self, planes: list[np.ndarray], lr: FrameGeometry, neighbours: Neighbours | None = None
    ) -> list[np.ndarray]:
        block = block_geometry(lr.scaled(self.scale))
        espcn = self.espcn.upscale(planes, lr, neighbours)
        parts = [_cut(self.baseline.upscale(planes, lr), block), _cut(espcn, block)]
        if self.reference is not None:
            parts.append(_cut(self.reference.next(), block))
        return [np.concatenate(column, axis=1) for column in zip(*parts, strict=True)]
