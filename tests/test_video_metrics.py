"""Video metrics: golden PSNR values, ffmpeg's SSIM, aggregates, identical frames, crop border."""

from __future__ import annotations

import re
import subprocess

import numpy as np
import pytest

from espcn_video.ffmpeg.y4m import FrameGeometry
from espcn_video.frames.baselines import LanczosEngine, lanczos_phase_taps
from espcn_video.quality.degrade import gaussian_taps
from espcn_video.quality.video_metrics import (
    VideoScorer,
    add_gains,
    plane_mse,
    pooled_summary,
    psnr_from_mse,
    ssim_ffmpeg,
    summarize_plane,
)

pytestmark = pytest.mark.timeout(120)


def test_psnr_golden_values() -> None:
    assert psnr_from_mse(1.0, 255) == pytest.approx(48.1308036, abs=1e-6)
    assert psnr_from_mse(1.0, 1023) == pytest.approx(60.1975127, abs=1e-6)  # 10-bit peak
    assert psnr_from_mse(0.0, 255) is None


def test_plane_mse_is_exact_for_uint8_and_uint16() -> None:
    ref = np.zeros((4, 4), np.uint8)
    dist = ref.copy()
    dist[0, 0] = 255  # uint8 subtraction would wrap; ours must not
    assert plane_mse(ref, dist) == 255.0 * 255.0 / 16
    ref16 = np.full((2, 2), 1023, np.uint16)
    assert plane_mse(ref16, ref16 - 2) == 4.0


def test_mean_of_per_frame_psnr_and_psnr_of_mean_mse_differ() -> None:
    s = summarize_plane([1.0, 100.0], 255)
    assert s["mean_psnr_db"] == pytest.approx(38.1308, abs=1e-4)  # (48.1308 + 28.1308) / 2
    assert s["psnr_of_mean_mse_db"] == pytest.approx(31.0979, abs=1e-4)  # ffmpeg's "average": MSE 50.5
    assert s["min_psnr_db"] == pytest.approx(28.1308, abs=1e-4) and s["identical"] is False


def test_identical_frames_are_named_not_infinite() -> None:
    some = summarize_plane([0.0, 1.0], 255)
    assert some["mean_psnr_db"] is None and some["identical_frames"] == 1 and some["identical"] is False
    assert some["psnr_of_mean_mse_db"] == pytest.approx(51.1411, abs=1e-4)  # MSE 0.5
    every = summarize_plane([0.0, 0.0], 255)
    assert every["psnr_of_mean_mse_db"] is None and every["identical"] is True


def test_scorer_summary_worst_frame_and_crop_border() -> None:
    geometry = FrameGeometry(16, 16, "yuv420p")
    scorer = VideoScorer(geometry, crop_border=2)
    ref = [np.full(s, 100, np.uint8) for s in geometry.plane_shapes]
    for delta in (1, 3, 2):
        dist = [p.copy() for p in ref]
        dist[0][2:-2, 2:-2] += delta
        dist[0][0, :] = 0  # inside the shaved border: must not count
        dist[1][0, 0] = 0  # chroma shaves 2 >> 1 = 1 pixel
        scorer.add(ref, dist)
    summary = scorer.summary()
    assert summary["frames"] == 3
    assert summary["y"]["mean_psnr_db"] == pytest.approx(
        np.mean([psnr_from_mse(d * d, 255) for d in (1, 3, 2)]), abs=1e-4
    )
    assert summary["u"]["identical"] is True and summary["u"]["psnr_of_mean_mse_db"] is None
    assert summary["worst_frame"]["index"] == 1
    assert summary["worst_frame"]["psnr_y_db"] == pytest.approx(psnr_from_mse(9.0, 255), abs=1e-4)
    assert scorer.per_frame()["psnr_y_db"][0] == pytest.approx(48.1308, abs=1e-4)
    with pytest.raises(ValueError, match="leaves nothing"):
        VideoScorer(geometry, crop_border=8)


def test_ssim_identical_is_one_and_tiny_planes_have_none() -> None:
    rng = np.random.default_rng(0)
    plane = rng.integers(0, 256, (32, 48), dtype=np.uint8)
    assert ssim_ffmpeg(plane, plane, 255) == pytest.approx(1.0)
    assert ssim_ffmpeg(plane[:7, :7], plane[:7, :7], 255) is None


@pytest.mark.parametrize("pix_fmt,dtype,peak", [("gray", np.uint8, 255), ("gray10le", np.uint16, 1023)])
def test_ssim_equals_ffmpeg_ssim_filter(ffmpeg: str, pix_fmt: str, dtype: type, peak: int) -> None:
    """Odd sizes too: ffmpeg ignores the rows and columns past the last whole 4x4 block."""
    rng = np.random.default_rng(1)
    h, w = 37, 54
    smooth = np.kron(rng.integers(0, peak, (h // 3 + 1, w // 3 + 1)), np.ones((3, 3)))[:h, :w]
    ref = smooth.astype(dtype)
    dist = np.clip(smooth + rng.normal(0, peak / 25, (h, w)), 0, peak).round().astype(dtype)
    raw = ["-f", "rawvideo", "-pix_fmt", pix_fmt, "-video_size", f"{w}x{h}", "-i"]
    with _temp_files(ref, dist) as (ref_path, dist_path):
        done = subprocess.run(
            [ffmpeg, "-nostdin", "-hide_banner", *raw, dist_path, *raw, ref_path, "-lavfi", "ssim", "-f", "null", "-"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    expected = float(re.search(r"SSIM Y:([\d.]+)", done.stderr).group(1))  # type: ignore[union-attr]
    assert ssim_ffmpeg(ref, dist, peak) == pytest.approx(expected, abs=1e-5)


class _temp_files:
    def __init__(self, *arrays: np.ndarray) -> None:
        import tempfile

        self.folder = tempfile.TemporaryDirectory()
        self.arrays = arrays

    def __enter__(self) -> list[str]:
        paths = []
        for i, arr in enumerate(self.arrays):
            path = f"{self.folder.name}/{i}.raw"
            arr.astype(arr.dtype.newbyteorder("<")).tofile(path)
            paths.append(path)
        return paths

    def __exit__(self, *exc: object) -> None:
        self.folder.cleanup()


def test_pooled_summary_mixes_bit_depths_by_normalised_mse() -> None:
    eight = VideoScorer(FrameGeometry(8, 8, "gray"))
    ten = VideoScorer(FrameGeometry(8, 8, "gray10le"))
    eight.add([np.zeros((8, 8), np.uint8)], [np.ones((8, 8), np.uint8)])  # MSE 1 at peak 255
    ten.add([np.zeros((8, 8), np.uint16)], [np.full((8, 8), 4, np.uint16)])  # MSE 16 at peak 1023
    pooled = pooled_summary({"a.y4m": eight, "b.y4m": ten})
    nmse = (1 / 255**2 + 16 / 1023**2) / 2
    assert pooled["y"]["psnr_of_mean_mse_db"] == pytest.approx(-10 * np.log10(nmse), abs=1e-4)
    assert pooled["y"]["mean_psnr_db"] == pytest.approx((48.1308 + psnr_from_mse(16, 1023)) / 2, abs=1e-4)
    assert pooled["worst_frame"]["clip"] == "a.y4m" and pooled["frames"] == 2


def test_gain_over_bicubic() -> None:
    methods = {
        "espcn": {"y": {"mean_psnr_db": 32.5, "psnr_of_mean_mse_db": 32.0}},
        "bicubic": {"y": {"mean_psnr_db": 30.25, "psnr_of_mean_mse_db": None}},
    }
    add_gains(methods)
    assert methods["espcn"]["gain_over_bicubic_db"] == {"mean_psnr_db": 2.25, "psnr_of_mean_mse_db": None}
    assert methods["bicubic"]["gain_over_bicubic_db"]["mean_psnr_db"] == 0.0
    alone = {"espcn": {"y": {"mean_psnr_db": 1.0, "psnr_of_mean_mse_db": 1.0}}}
    add_gains(alone)
    assert alone["espcn"]["gain_over_bicubic_db"] is None


def test_gaussian_taps_and_lanczos_phases() -> None:
    odd, even = gaussian_taps(1.6, 3), gaussian_taps(1.6, 2)
    assert len(odd) == 11 and odd == odd[::-1] and abs(sum(odd) - 4096) <= 2
    assert even == odd + [0, 0]  # shifted one pixel for even scales (see build_degrade_filter)
    taps = lanczos_phase_taps(3)
    assert taps.shape == (3, 7) and np.allclose(taps.sum(axis=1), 1.0)
    assert np.allclose(taps[1], np.eye(7)[3])  # phase 1 of x3 sits on an LR pixel: identity
    flat = np.full((5, 7), 600, np.uint16)
    assert np.array_equal(LanczosEngine(2).upscale_luma(flat, 1023), np.full((10, 14), 600))
