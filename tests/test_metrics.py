"""PSNR / MSE / SSIM golden values and conventions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from espcn_video.quality.image_metrics import compute_mse, compute_psnr, compute_ssim


def test_mse_one_at_peak_255_is_48_1308_db() -> None:
    ref = np.zeros((8, 8))
    dist = np.ones((8, 8))
    assert compute_mse(ref, dist) == 1.0
    assert compute_psnr(ref, dist) == pytest.approx(48.1308, abs=1e-4)


def test_identical_images_are_infinite_psnr() -> None:
    img = np.arange(64, dtype=np.uint8).reshape(8, 8)
    assert compute_psnr(img, img.copy()) == math.inf


def test_psnr_uses_float64_not_uint8_wraparound() -> None:
    ref = np.full((4, 4), 10, dtype=np.uint8)
    dist = np.full((4, 4), 12, dtype=np.uint8)  # uint8 10 - 12 would wrap to 254
    assert compute_mse(ref, dist) == 4.0
    assert compute_mse(dist, ref) == 4.0


def test_crop_border_ignores_the_frame() -> None:
    ref = np.zeros((10, 10))
    dist = np.zeros((10, 10))
    dist[0, :] = 100.0  # only the top row differs
    assert compute_psnr(ref, dist, crop_border=1) == math.inf
    assert compute_mse(ref, dist) == pytest.approx(1000.0)


def test_peak_changes_the_scale() -> None:
    ref = np.zeros((4, 4))
    dist = np.full((4, 4), 0.01)
    assert compute_psnr(ref, dist, peak=1.0) == pytest.approx(40.0)


def test_shape_mismatch_and_over_crop_are_errors() -> None:
    with pytest.raises(ValueError, match="shape mismatch"):
        compute_psnr(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="nothing left"):
        compute_psnr(np.zeros((4, 4)), np.zeros((4, 4)), crop_border=2)


def _ssim_direct(ref: np.ndarray, dist: np.ndarray, peak: float = 255.0) -> float:
    """Wang et al. 2004 written out window by window (no separability): an independent check."""
    x = np.arange(11) - 5.0
    g = np.exp(-(x**2) / (2 * 1.5**2))
    window = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    values = []
    for i in range(ref.shape[0] - 10):
        for j in range(ref.shape[1] - 10):
            a, b = ref[i : i + 11, j : j + 11], dist[i : i + 11, j : j + 11]
            mu_a, mu_b = (window * a).sum(), (window * b).sum()
            var_a = (window * (a - mu_a) ** 2).sum()
            var_b = (window * (b - mu_b) ** 2).sum()
            cov = (window * (a - mu_a) * (b - mu_b)).sum()
            values.append(((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)))
    return float(np.mean(values))


def test_ssim_matches_direct_window_formula() -> None:
    rng = np.random.default_rng(0)
    ref = rng.uniform(0, 255, (20, 23))
    dist = np.clip(ref + rng.normal(0, 20, ref.shape), 0, 255)
    assert compute_ssim(ref, dist) == pytest.approx(_ssim_direct(ref, dist), abs=1e-10)
    assert compute_ssim(ref, dist, crop_border=2) == pytest.approx(
        _ssim_direct(ref[2:-2, 2:-2], dist[2:-2, 2:-2]), abs=1e-10
    )


def test_ssim_identical_is_one_and_symmetric() -> None:
    rng = np.random.default_rng(1)
    ref = rng.uniform(0, 255, (16, 16))
    dist = ref * 0.9 + 5
    assert compute_ssim(ref, ref) == pytest.approx(1.0)
    assert compute_ssim(ref, dist) == pytest.approx(compute_ssim(dist, ref))
    assert compute_ssim(ref, dist) < 1.0


def test_ssim_needs_one_full_window() -> None:
    with pytest.raises(ValueError, match="11x11"):
        compute_ssim(np.zeros((10, 30)), np.zeros((10, 30)))


def test_ssim_of_channels_is_their_mean() -> None:
    rng = np.random.default_rng(2)
    ref = rng.uniform(0, 255, (12, 12, 2))
    dist = ref + rng.normal(0, 10, ref.shape)
    per_plane = [compute_ssim(ref[..., c], dist[..., c]) for c in range(2)]
    assert compute_ssim(ref, dist) == pytest.approx(np.mean(per_plane))
