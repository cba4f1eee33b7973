"""How SR papers make their inputs: Y of BT.601 studio range, mod-crop, MATLAB bicubic, Gaussian.

`imresize` is a numpy port of MATLAB's `imresize(..., 'bicubic')` (the same algorithm as BasicSR's
`basicsr/utils/matlab_functions.py`): Keys cubic with a = -0.5, kernel width 4, the kernel
stretched by 1/scale when shrinking (antialiasing), and out-of-range taps mirrored symmetrically.
Every published SR number (bicubic Set5 x3 = 30.39 dB, ...) was made with it, so a different
resampler would not be comparable. Each axis is one dense weight matrix, so a resize is two
matrix products.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

DEFAULT_GAUSSIAN_SIGMA = 1.6  # the usual "BD" blur of the SR literature (RDN, SRMD)


def rgb_to_y(rgb: np.ndarray) -> np.ndarray:
    """Y of BT.601 studio-range YCbCr, like MATLAB `rgb2ycbcr`, as float64 in [16, 235].

    Integer input is read as 8-bit (0..255) or 16-bit (0..65535) code values; float input as
    [0, 1] (BasicSR's convention). A 2-D array is gray: R = G = B. A 4th channel (alpha) is ignored.
    """
    arr = np.asarray(rgb)
    if arr.dtype == np.uint16:
        rgb01 = arr.astype(np.float64) / 65535.0
    elif np.issubdtype(arr.dtype, np.integer):
        rgb01 = arr.astype(np.float64) / 255.0
    else:
        rgb01 = arr.astype(np.float64)
    if rgb01.ndim == 2:
        return 16.0 + (65.481 + 128.553 + 24.966) * rgb01
    if rgb01.ndim != 3 or rgb01.shape[2] < 3:
        raise ValueError(f"expected HxW or HxWx3 RGB, got shape {arr.shape}")
    r, g, b = rgb01[..., 0], rgb01[..., 1], rgb01[..., 2]
    return 16.0 + 65.481 * r + 128.553 * g + 24.966 * b


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


@dataclass(frozen=True)
class Degradation:
    """How LR is made from HR: 'bicubic' (MATLAB antialiased) or 'gaussian' with sigma."""

    kind: str
    sigma: float | None = None

    def describe(self) -> str:
        if self.kind == "gaussian":
            return f"gaussian blur sigma {self.sigma:g} + decimation"
        return "MATLAB bicubic (antialiased)"

    def spec(self) -> str:
        return f"gaussian:{self.sigma:g}" if self.kind == "gaussian" else "bicubic"


def parse_degradation(spec: str) -> Degradation:
    """'bicubic' | 'gaussian' | 'gaussian:SIGMA' -> Degradation; ValueError otherwise."""
    text = spec.strip().lower()
    if text == "bicubic":
        return Degradation("bicubic")
    kind, _, sigma_text = text.partition(":")
    if kind != "gaussian":
        raise ValueError(f"unknown degradation {spec!r}; use 'bicubic' or 'gaussian[:SIGMA]'")
    try:
        sigma = float(sigma_text) if sigma_text else DEFAULT_GAUSSIAN_SIGMA
    except ValueError:
        raise ValueError(f"bad Gaussian sigma in {spec!r}") from None
    if not math.isfinite(sigma) or sigma <= 0:
        raise ValueError(f"Gaussian sigma must be a positive number, got {spec!r}")
    return Degradation("gaussian", sigma)


def degrade(hr: np.ndarray, scale: int, degradation: Degradation) -> np.ndarray:
    """LR of a mod-cropped HR plane by the chosen degradation."""
    if degradation.kind == "gaussian":
        assert degradation.sigma is not None
        return gaussian_degrade(hr, scale, degradation.sigma)
    return imresize(hr, 1.0 / scale)


# --- reading image files as Y planes -------------------------------------------------------

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})


class UnusableImage(Exception):
    """An image file that cannot be used; `reason` is the short text counted in the skip report."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def matlab_round(values: np.ndarray) -> np.ndarray:
    """Round half away from zero, as MATLAB's uint8() does (numpy rounds half to even)."""
    return np.sign(values) * np.floor(np.abs(values) + 0.5)


def _pixels_as_rgb_or_gray(im: Any) -> tuple[np.ndarray, str | None]:
    """(HxWx3 or HxW array in 8-bit code values, conversion note) for any PIL mode we accept."""
    mode = im.mode
    if mode in _SIXTEEN_BIT_MODES:
        # 16-bit PNGs open as I;16 or I: bring 0..65535 to the 8-bit range before Y.
        return np.asarray(im, dtype=np.float64) * (255.0 / 65535.0), "16-bit scaled to 8-bit"
    if mode in ("L", "1"):
        return np.asarray(im.convert("L"), dtype=np.float64), "grayscale" if mode == "L" else "bilevel"
    if mode in _ALPHA_MODES or (mode == "P" and "transparency" in im.info):
        gray = mode in ("LA", "La")
        # Alpha is dropped, not composited: the colour channels are the picture we learn from.
        arr = np.asarray(im.convert("RGBA"), dtype=np.float64)[..., :3]
        return (arr[..., 0] if gray else arr), "alpha dropped"
    if mode in ("RGB", "P", "CMYK", "YCbCr", "LAB", "HSV"):
        note = None if mode == "RGB" else f"{mode} converted to RGB"
        return np.asarray(im.convert("RGB"), dtype=np.float64), note
    raise UnusableImage(f"unsupported image mode {mode}")


def read_y_plane(path: str | os.PathLike[str]) -> tuple[np.ndarray, str | None]:
    """Y plane in [16, 235] rounded to 8-bit code values (MATLAB's uint8 rgb2ycbcr), and a note.

    Gray images are RGB gray (R = G = B); RGBA drops alpha; 16-bit is scaled to the 8-bit range.
    Raises UnusableImage for unreadable or corrupt files.
    """
    try:
        with Image.open(path) as im:
            im.load()  # decode now so truncated files fail here, not later
            pixels, note = _pixels_as_rgb_or_gray(im)
    except UnusableImage:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        raise UnusableImage("unreadable or corrupt") from None
    # rgb_to_y reads float as [0, 1]; these are 8-bit code values.
    return matlab_round(rgb_to_y(pixels / 255.0)), note


def list_images(folder: str | os.PathLike[str]) -> list[Path]:
    """Image files directly in `folder`, sorted by name (so splits are reproducible)."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
