"""Still images as SR papers read them: the Y of BT.601 studio range, rounded to 8-bit code values.

Gray images are RGB gray (R = G = B); RGBA drops alpha; 16-bit is scaled to the 8-bit range;
files that cannot be used raise UnusableImage with a short reason (counted in skip reports).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


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
