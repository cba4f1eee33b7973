"""How LR is made from HR: the one degradation grammar (bicubic | area | gaussian[:SIGMA]), made
on images in numpy (train, eval) and as ffmpeg filters in the decode of a video (psnr).

`imresize` is a numpy port of MATLAB's `imresize(..., 'bicubic')` (the same algorithm as BasicSR's
`basicsr/utils/matlab_functions.py`): Keys cubic with a = -0.5, kernel width 4, the kernel
stretched by 1/scale when shrinking (antialiasing), and out-of-range taps mirrored symmetrically.
Every published SR number (bicubic Set5 x3 = 30.39 dB, ...) was made with it, so a different
resampler would not be comparable. Each axis is one dense weight matrix, so a resize is two
matrix products.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from espcn_video.errors import UsageError
from espcn_video.ffmpeg.y4m import FrameGeometry

DEFAULT_GAUSSIAN_SIGMA = 1.6  # the usual "BD" blur of the SR literature (RDN, SRMD)


def mod_crop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crop the bottom/right so height and width are multiples of `scale` (SR-paper convention)."""
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys cubic convolution kernel with a = -0.5 (MATLAB's 'bicubic')."""
    absx = np.abs(x)
    absx2 = absx * absx
    absx3 = absx2 * absx
    near = (1.5 * absx3 - 2.5 * absx2 + 1.0) * (absx <= 1)
    far = (-0.5 * absx3 + 2.5 * absx2 - 4.0 * absx + 2.0) * ((absx > 1) & (absx <= 2))
    return near + far


def _output_length(in_length: int, scale: float) -> int:
    # MATLAB takes ceil(scale * size); the tolerance keeps 1/3 * 255 = 84.99999999999999 at 85.
    return max(1, math.ceil(in_length * scale - 1e-9))


def resize_matrix(in_length: int, out_length: int, scale: float, antialias: bool = True) -> np.ndarray:
    """Dense (out_length, in_length) weights of MATLAB's bicubic resize along one axis."""
    kernel_width = 4.0
    shrink_aa = scale < 1 and antialias
    if shrink_aa:
        kernel_width /= scale  # wider support = low-pass before decimation
    x = np.arange(1, out_length + 1, dtype=np.float64)
    # Centre-aligned mapping of output pixel x to input coordinate u (1-based, as MATLAB).
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - kernel_width / 2.0)
    taps = math.ceil(kernel_width) + 2
    indices = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]
    distance = u[:, None] - indices
    weights = scale * _cubic(distance * scale) if shrink_aa else _cubic(distance)
    weights /= weights.sum(axis=1, keepdims=True)
    # Symmetric boundary: MATLAB's aux = [1:n, n:-1:1] indexed modulo 2n.
    mirror = np.concatenate([np.arange(in_length), np.arange(in_length - 1, -1, -1)])
    cols = mirror[np.mod(indices.astype(np.int64) - 1, 2 * in_length)]
    rows = np.repeat(np.arange(out_length), taps)
    matrix = np.zeros((out_length, in_length), dtype=np.float64)
    np.add.at(matrix, (rows, cols.ravel()), weights.ravel())
    return matrix


def imresize(img: np.ndarray, scale: float, antialias: bool = True) -> np.ndarray:
    """MATLAB `imresize(img, scale, 'bicubic')` for a 2-D (or HxWxC) float array; float64 out.

    No clipping or rounding (MATLAB on double input does neither).
    """
    arr = np.asarray(img, dtype=np.float64)
    if arr.ndim not in (2, 3):
        raise ValueError(f"expected a 2-D or HxWxC array, got shape {arr.shape}")
    in_h, in_w = arr.shape[:2]
    rows = resize_matrix(in_h, _output_length(in_h, scale), scale, antialias)
    cols = resize_matrix(in_w, _output_length(in_w, scale), scale, antialias)
    if arr.ndim == 2:
        return rows @ arr @ cols.T
    return np.einsum("oh,hwc,pw->opc", rows, arr, cols, optimize=True)


def gaussian_kernel1d(sigma: float, radius: int | None = None) -> np.ndarray:
    """Normalised 1-D Gaussian taps; radius defaults to ceil(3 sigma)."""
    if sigma <= 0:
        raise ValueError(f"Gaussian sigma must be > 0, got {sigma}")
    radius = math.ceil(3.0 * sigma) if radius is None else radius
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    taps = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return taps / taps.sum()


def _filter_axis(arr: np.ndarray, taps: np.ndarray, axis: int) -> np.ndarray:
    """Same-size 1-D correlation along `axis` with symmetric (edge-repeating) padding."""
    radius = len(taps) // 2
    pad = [(0, 0)] * arr.ndim
    pad[axis] = (radius, radius)
    padded = np.pad(arr, pad, mode="symmetric")
    length = arr.shape[axis]
    out = np.zeros_like(arr, dtype=np.float64)
    for k, tap in enumerate(taps):
        out += tap * np.take(padded, np.arange(k, k + length), axis=axis)
    return out


def gaussian_degrade(img: np.ndarray, scale: int, sigma: float = DEFAULT_GAUSSIAN_SIGMA) -> np.ndarray:
    """Gaussian blur then decimation by `scale` (the ESPCN paper's degradation); float64 out.

    The kept sample of each scale x scale block is index (scale - 1) // 2: its centre for odd
    scales, half a pixel up-left of it for even scales (plain decimation has no exact centre there).
    """
    arr = np.asarray(img, dtype=np.float64)
    taps = gaussian_kernel1d(sigma)
    blurred = _filter_axis(_filter_axis(arr, taps, 0), taps, 1)
    offset = (scale - 1) // 2
    h, w = arr.shape[:2]
    return blurred[offset : h - h % scale : scale, offset : w - w % scale : scale]


AREA = "area"
BICUBIC = "bicubic"
GAUSSIAN = "gaussian"
TAP_ONE = 4096  # ffmpeg's convolution filter takes integer taps: these sum to about this
MAX_TAPS = 49  # ffmpeg's convolution filter, row/column mode: sigma at most (49 - 3) / 2 / 3


@dataclass(frozen=True)
class Degradation:
    """How LR is made from HR, the one grammar of `train --degrade`, `eval --degrade` and
    `psnr --degrade`: 'bicubic' | 'area' | 'gaussian[:SIGMA]'. `degrade` makes it on images
    (numpy), `build_degrade_filter` makes the same thing in ffmpeg's decode of a video."""

    kind: str
    sigma: float | None = None

    def spec(self) -> str:
        return f"gaussian:{self.sigma:g}" if self.kind == GAUSSIAN else self.kind

    def describe(self) -> str:
        if self.kind == GAUSSIAN:
            return f"Gaussian blur sigma {self.sigma:g} + decimation (kept sample (r-1)//2)"
        if self.kind == AREA:
            return "area average (the mean of each r x r block)"
        return "bicubic a=-0.5, antialiased (MATLAB imresize; swscale bicubic B=0 C=0.5 on video)"


def parse_degradation(text: str) -> Degradation:
    """'bicubic' | 'area' | 'gaussian' | 'gaussian:SIGMA' -> Degradation; UsageError otherwise."""
    kind, _, arg = text.strip().lower().partition(":")
    if kind in (BICUBIC, AREA) and not arg:
        return Degradation(kind)
    if kind != GAUSSIAN:
        raise UsageError(f"--degrade {text!r}: choose bicubic, area or gaussian[:SIGMA]")
    try:
        sigma = float(arg) if arg else DEFAULT_GAUSSIAN_SIGMA
    except ValueError:
        raise UsageError(f"--degrade {text!r}: SIGMA must be a number") from None
    radius_max = (MAX_TAPS - 3) // 2
    if not math.isfinite(sigma) or not 0 < sigma <= radius_max / 3:
        raise UsageError(
            f"--degrade {text!r}: SIGMA must be in (0, {radius_max / 3:.2f}] "
            f"(ffmpeg's convolution filter takes at most {MAX_TAPS} taps)"
        )
    return Degradation(GAUSSIAN, sigma)


def area_degrade(img: np.ndarray, scale: int) -> np.ndarray:
    """The mean of each scale x scale block (swscale's `area` for an integer factor); float64 out."""
    arr = np.asarray(img, dtype=np.float64)
    h, w = arr.shape[0] // scale * scale, arr.shape[1] // scale * scale
    blocks = arr[:h, :w].reshape(h // scale, scale, w // scale, scale, *arr.shape[2:])
    return blocks.mean(axis=(1, 3))


def degrade(hr: np.ndarray, scale: int, degradation: Degradation) -> np.ndarray:
    """LR of a mod-cropped HR plane by the chosen degradation."""
    if degradation.kind == GAUSSIAN:
        assert degradation.sigma is not None
        return gaussian_degrade(hr, scale, degradation.sigma)
    if degradation.kind == AREA:
        return area_degrade(hr, scale)
    return imresize(hr, 1.0 / scale)


# --- the same degradations as ffmpeg filters (the psnr job degrades video in its decoder) ---------


def gaussian_taps(sigma: float, scale: int) -> list[int]:
    """gaussian_kernel1d as integers of sum about TAP_ONE; for even scales two zeros appended, which
    moves the kernel one pixel so swscale's point sampler (sample r // 2) keeps blurred sample
    (r - 1) // 2, the sample gaussian_degrade keeps."""
    ints = [int(v) for v in np.round(gaussian_kernel1d(sigma) * TAP_ONE)]
    return ints + [0, 0] if scale % 2 == 0 else ints


def _convolution(mode: str, sigmas: list[float], scale: int) -> str:
    parts = []
    for plane, sigma in enumerate(sigmas):
        taps = gaussian_taps(sigma, scale)
        parts.append(f"{plane}m='{' '.join(map(str, taps))}':{plane}rdiv=1/{sum(taps)}:{plane}mode={mode}")
    return "convolution=" + ":".join(parts)


def build_degrade_filter(degradation: Degradation, hr_size: tuple[int, int], scale: int, pix_fmt: str) -> str:
    """The ffmpeg filters that turn the (mod-cropped) HR frames into LR, ending in `pix_fmt`."""
    hr_w, hr_h = hr_size
    lr_w, lr_h = hr_w // scale, hr_h // scale
    sited = "in_chroma_loc=center:out_chroma_loc=center"
    if degradation.kind == BICUBIC:
        chain = f"scale={lr_w}:{lr_h}:flags=bicubic+accurate_rnd+bitexact:param0=0:param1=0.5:{sited}"
    elif degradation.kind == AREA:
        chain = f"scale={lr_w}:{lr_h}:flags=area+accurate_rnd+bitexact:{sited}"
    else:
        assert degradation.sigma is not None
        sigma = degradation.sigma
        geometry = FrameGeometry(hr_w, hr_h, pix_fmt)
        sx, sy = geometry.chroma_shift if geometry.has_chroma else (0, 0)
        planes = 3 if geometry.has_chroma else 1
        rows = _convolution("row", [sigma] + [sigma / (1 << sx)] * (planes - 1), scale)
        cols = _convolution("column", [sigma] + [sigma / (1 << sy)] * (planes - 1), scale)
        chain = f"{rows},{cols},scale={lr_w}:{lr_h}:flags=neighbor+bitexact:{sited}"
    return f"{chain},format={pix_fmt}"
