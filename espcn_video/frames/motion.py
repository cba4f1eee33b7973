"""Motion compensation for the multi-frame presets: a frame's neighbours warped onto it.

A preset with `frames` = 3 (model.net.ESPCN) reads the frame to make and its two neighbours as
three input channels. The neighbours are first moved onto the frame by dense optical flow:
OpenCV's DIS (Kroeger et al., ECCV 2016) at its FAST preset, estimated on the LR Y planes as
they come out of the decoder (8-bit; a deeper plane is shifted down for the estimate only), then
each neighbour is resampled at the flow (bicubic, reflected at the borders) in its own bit depth.
About 4 ms per neighbour at 640x360 on one core. The presets were trained on exactly this warp
(tools/temporal_probe.py), so it is part of the network's input, not a tunable.

Where a neighbour does not exist (the first and last frame of a run), or is across a scene cut,
the frame itself stands in for it, which the network reads as a still scene. A cut is a warped
neighbour whose mean absolute difference from the frame is above CUT_MAD (8-bit code values): on
the training clips of tools/temporal_probe.py (2,887 neighbours, 81 of them across a cut), 25
misjudged 5 (3 neighbours taken for cuts, 2 cuts missed), the fewest of any threshold from 15 to 40.
"""

from __future__ import annotations

import numpy as np

from espcn_video.errors import UsageError

CUT_MAD = 25.0  # a warped neighbour this far from the frame (mean |difference|, 8-bit) is across a cut


class MotionAligner:
    """Stacks (previous, frame, next) with both neighbours warped onto the frame. One per thread:
    its DIS instance keeps state between calls."""

    def __init__(self) -> None:
        try:
            import cv2
        except ImportError:
            raise UsageError(
                "a multi-frame preset needs OpenCV for its optical flow: pip install 'espcn-video[motion]'"
            ) from None
        self._cv2 = cv2
        # the FAST preset: the warp the multi-frame presets were trained on
        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)  # type: ignore[attr-defined]
        self._grid: tuple[tuple[int, int], np.ndarray, np.ndarray] | None = None

    def _base_grid(self, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        grid = self._grid
        if grid is None or grid[0] != shape:
            gy, gx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
            grid = self._grid = (shape, gx, gy)
        return grid[1], grid[2]

    def warp(self, frame: np.ndarray, neighbour: np.ndarray, peak: int = 255) -> np.ndarray:
        """`neighbour` resampled so that it lines up with `frame` (same shape and dtype); `peak`
        is the planes' largest code value (1023 for 10-bit)."""
        if neighbour is frame:
            return frame
        cv2 = self._cv2
        shift = max(0, int(peak).bit_length() - 8)
        if frame.dtype == np.uint8 and shift == 0:
            flow = self._dis.calc(frame, neighbour, None)
        else:
            flow = self._dis.calc(
                np.ascontiguousarray((frame >> shift).astype(np.uint8)),
                np.ascontiguousarray((neighbour >> shift).astype(np.uint8)),
                None,
            )
        gx, gy = self._base_grid(frame.shape)
        return cv2.remap(
            neighbour, gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT
        )

    def stack(
        self, previous: np.ndarray | None, frame: np.ndarray, following: np.ndarray | None, peak: int = 255
    ) -> np.ndarray:
        """(3, H, W) of `frame`'s dtype: the warped previous frame, the frame, the warped next one
        (the frame itself for a neighbour that is missing or of another size)."""
        before = frame if previous is None or previous.shape != frame.shape else self.warp(frame, previous, peak)
        after = frame if following is None or following.shape != frame.shape else self.warp(frame, following, peak)
        return np.stack([self._unless_cut(frame, before, peak), frame, self._unless_cut(frame, after, peak)])

    @staticmethod
    def _unless_cut(frame: np.ndarray, warped: np.ndarray, peak: int) -> np.ndarray:
        """The warped neighbour, or the frame itself where the two are across a scene cut."""
        if warped is frame:
            return frame
        mad = float(np.abs(warped.astype(np.float32) - frame.astype(np.float32)).mean()) * 255.0 / peak
        return frame if mad > CUT_MAD else warped
