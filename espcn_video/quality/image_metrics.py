"""Image quality metrics with explicit conventions (BasicSR `basicsr/metrics/psnr_ssim.py` style).

Every function takes `ref` (ground truth) and `dist` (the image judged) of one shape, in the
value range named by `peak` (255 for 8-bit-equivalent values), and `crop_border` pixels shaved
off each side before measuring (SR papers shave `scale`). All arithmetic is float64.
"""

from __future__ import annotations

import math

import numpy as np

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _prepare(ref: np.ndarray, dist: np.ndarray, crop_border: int) -> tuple[np.ndarray, np.ndarray]:
    ref64 = np.asarray(ref, dtype=np.float64)
    dist64 = np.asarray(dist, dtype=np.float64)
    if ref64.shape != dist64.shape:
        raise ValueError(f"shape mismatch: ref {ref64.shape} vs dist {dist64.shape}")
    if ref64.ndim not in (2, 3):
        raise ValueError(f"expected HxW or HxWxC arrays, got shape {ref64.shape}")
    if crop_border < 0:
        raise ValueError(f"crop_border must be >= 0, got {crop_border}")
    if crop_border:
        ref64 = ref64[crop_border:-crop_border, crop_border:-crop_border]
        dist64 = dist64[crop_border:-crop_border, crop_border:-crop_border]
    if ref64.size == 0:
        raise ValueError(f"nothing left to measure after cropping {crop_border} px")
    return ref64, dist64


def compute_mse(ref: np.ndarray, dist: np.ndarray, crop_border: int = 0) -> float:
    """Mean squared error over all pixels (and channels) after shaving `crop_border`."""
    ref64, dist64 = _prepare(ref, dist, crop_border)
    return float(np.mean((ref64 - dist64) ** 2))


def compute_psnr(ref: np.ndarray, dist: np.ndarray, peak: float = 255.0, crop_border: int = 0) -> float:
    """PSNR in dB = 10 log10(peak² / MSE); `math.inf` when the images are identical.

    MSE 1 at peak 255 is 48.1308 dB.
    """
    mse = compute_mse(ref, dist, crop_border)
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(peak * peak / mse)


def _gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    # Same taps as OpenCV's getGaussianKernel(11, 1.5), which BasicSR uses.
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    taps = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return taps / taps.sum()


def _filter_valid(img: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """Separable 2-D correlation keeping only the 'valid' region (no padding at all)."""
    size = len(taps)
    h, w = img.shape
    if h < size or w < size:
        raise ValueError(f"SSIM needs at least {size}x{size} pixels after cropping, got {w}x{h}")
    rows = np.zeros((h - size + 1, w), dtype=np.float64)
    for k, tap in enumerate(taps):
        rows += tap * img[k : k + h - size + 1, :]
    out = np.zeros((h - size + 1, w - size + 1), dtype=np.float64)
    for k, tap in enumerate(taps):
        out += tap * rows[:, k : k + w - size + 1]
    return out


def _ssim_plane(ref: np.ndarray, dist: np.ndarray, peak: float) -> float:
    c1 = (SSIM_K1 * peak) ** 2
    c2 = (SSIM_K2 * peak) ** 2
    taps = _gaussian_window()
    mu_x = _filter_valid(ref, taps)
    mu_y = _filter_valid(dist, taps)
    sigma_x2 = _filter_valid(ref * ref, taps) - mu_x * mu_x
    sigma_y2 = _filter_valid(dist * dist, taps) - mu_y * mu_y
    sigma_xy = _filter_valid(ref * dist, taps) - mu_x * mu_y
    numerator = (2.0 * mu_x * mu_y + c1) * (2.0 * sigma_xy + c2)
    denominator = (mu_x * mu_x + mu_y * mu_y + c1) * (sigma_x2 + sigma_y2 + c2)
    return float(np.mean(numerator / denominator))


def compute_ssim(ref: np.ndarray, dist: np.ndarray, peak: float = 255.0, crop_border: int = 0) -> float:
    """SSIM of Wang et al. 2004: 11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03.

    Mean of the SSIM map over the 'valid' region (window fully inside the cropped image), like
    BasicSR's `calculate_ssim` on Y; HxWxC input is the mean over channels.
    """
    ref64, dist64 = _prepare(ref, dist, crop_border)
    if ref64.ndim == 2:
        return _ssim_plane(ref64, dist64, peak)
    planes = [_ssim_plane(ref64[..., c], dist64[..., c], peak) for c in range(ref64.shape[2])]
    return float(np.mean(planes))
