"""Multi-frame (motion-compensated) presets: the warp, the network, the pipeline's neighbours."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import decode_y4m, upscale_json
from espcn_video.frames.motion import MotionAligner
from espcn_video.model.engines import StripEngine, TorchEngine
from espcn_video.model.net import ESPCN
from espcn_video.model.presets import load_preset


def _pattern(shape: tuple[int, int], dy: float, dx: float, peak: int) -> np.ndarray:
    """A smooth textured plane, sampled `dy`, `dx` pixels further on."""
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    y, x = y + dy, x + dx
    v = 0.5 + 0.2 * np.sin(y / 4.0) * np.cos(x / 5.0) + 0.15 * np.sin((x + y) / 7.0)
    return np.rint(v * peak).astype(np.uint8 if peak == 255 else np.uint16)


@pytest.mark.parametrize("peak", [255, 1023])
def test_warp_lines_a_moved_neighbour_up_with_the_frame(peak: int) -> None:
    frame = _pattern((72, 96), 0.0, 0.0, peak)
    before = _pattern((72, 96), -1.5, 2.25, peak)  # the scene 1.5 px lower and 2.25 px to the left
    after = _pattern((72, 96), 1.5, -2.25, peak)
    stack = MotionAligner().stack(before, frame, after, peak)
    assert stack.shape == (3, 72, 96) and stack.dtype == frame.dtype
    inner = (slice(1, 3), slice(8, -8), slice(8, -8))
    moved = np.abs(np.stack([before, after]).astype(np.float64) - frame)[:, 8:-8, 8:-8].mean()
    left = np.abs(stack[inner].astype(np.float64) - frame[8:-8, 8:-8]).mean()
    assert moved > 0.05 * peak  # the neighbours as read are far off
    assert left < 0.01 * peak  # warped, they are the frame again, to within a code value or so
    np.testing.assert_array_equal(stack[1], frame)


def test_a_missing_or_other_sized_neighbour_is_the_frame_itself() -> None:
    frame = _pattern((40, 48), 0.0, 0.0, 255)
    stack = MotionAligner().stack(None, frame, _pattern((20, 24), 0, 0, 255))
    for k in range(3):
        np.testing.assert_array_equal(stack[k], frame)


def test_a_neighbour_across_a_scene_cut_is_the_frame_itself() -> None:
    """Another scene is no neighbour: the frame stands in for it; a moved, noisy neighbour stays."""
    frame = _pattern((72, 96), 0.0, 0.0, 255)
    other = np.rint(np.random.default_rng(0).uniform(0, 255, frame.shape)).astype(np.uint8)
    noisy = np.clip(_pattern((72, 96), 1.0, -1.0, 255) + np.random.default_rng(1).normal(0, 6, frame.shape), 0, 255)
    stack = MotionAligner().stack(other, frame, np.rint(noisy).astype(np.uint8))
    np.testing.assert_array_equal(stack[0], frame)
    assert not np.array_equal(stack[2], frame)
    assert np.abs(stack[2].astype(float) - frame).mean() < 10


def test_without_opencv_a_multi_frame_preset_is_refused_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from espcn_video.errors import UsageError

    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 -> ImportError
    with pytest.raises(UsageError, match=r"needs OpenCV .*pip install 'espcn-video\[motion\]'"):
        MotionAligner()


def test_a_three_frame_network_loads_from_its_shapes(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = ESPCN(3, frames=3)
    assert model.conv1.in_channels == 3 and model.conv3.out_channels == 9
    path = tmp_path / "mc-x3.pt"
    torch.save(model.state_dict(), path)
    loaded, info = load_preset(path)
    assert info.scale == 3 and getattr(loaded, "frames", 1) == 3
    # only conv1 grows: 25·64 MACs per LR pixel per extra frame
    assert ESPCN.macs_per_lr_pixel(3, frames=3) - ESPCN.macs_per_lr_pixel(3) == 2 * 25 * 64
    assert info.macs_per_hr_pixel == pytest.approx(ESPCN.macs_per_lr_pixel(3, frames=3) / 9)
    x = torch.rand(1, 3, 10, 12)
    assert torch.equal(loaded(x), model(x))


def test_strips_of_a_stack_equal_the_whole_stack() -> None:
    torch.manual_seed(1)
    engine = TorchEngine(ESPCN(2, frames=3).eval())
    stack = np.stack([_pattern((96, 40), float(k), 0.0, 255) for k in range(3)])
    whole = engine.upscale_luma(stack, 255)
    strips = StripEngine(engine, memory_mb=0.05)
    assert strips.rows_for(stack) is not None  # really cut into strips
    np.testing.assert_array_equal(strips.upscale_luma(stack, 255), whole)


@pytest.fixture(scope="module")
def three_frame_preset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(7)
    path = tmp_path_factory.mktemp("mc") / "mc-x2.pt"
    torch.save(ESPCN(2, frames=3).state_dict(), path)
    return path


def test_upscale_gives_each_frame_its_warped_neighbours(
    clips, ffmpeg: str, tmp_path: Path, three_frame_preset: Path
) -> None:
    """The written Y of every frame is the network on (previous warped, frame, next warped); the
    first frame stands in for its missing previous one, the last for its next."""
    src = clips("mc-src.mkv", "-c:v", "ffv1", src="testsrc2=s=48x32:r=10:d=0.6")
    out = tmp_path / "mc.mkv"
    result = upscale_json(src, out, three_frame_preset, "--codec", "ffv1")
    assert result["frames"] == 6
    _, lr = decode_y4m(ffmpeg, src)
    _, hr = decode_y4m(ffmpeg, out)
    assert len(hr) == len(lr) == 6
    model, _ = load_preset(three_frame_preset)
    engine, aligner = TorchEngine(model), MotionAligner()
    ys = [planes[0] for planes in lr]
    for k, y in enumerate(ys):
        before = ys[k - 1] if k > 0 else None
        after = ys[k + 1] if k + 1 < len(ys) else None
        want = engine.upscale_luma(aligner.stack(before, y, after), 255)
        np.testing.assert_array_equal(hr[k][0], want, err_msg=f"frame {k}")
    # and the neighbours matter: frame 2 made without them is another picture
    alone = engine.upscale_luma(aligner.stack(None, ys[2], None), 255)
    assert np.abs(alone.astype(int) - hr[2][0]).max() > 0


def test_auto_precision_says_why_a_multi_frame_preset_runs_without_int8(three_frame_preset: Path) -> None:
    from espcn_video.model.backends import create_engine
    from espcn_video.model.engines import cpu_has_int8_dot

    if not cpu_has_int8_dot():
        pytest.skip("the int8 note is only given where int8 would be fast")
    model, _ = load_preset(three_frame_preset)
    notes: list[str] = []
    engine = create_engine(model, notes=notes)
    assert getattr(engine, "precision", "fp32") != "int8"
    assert notes == [
        "auto: a multi-frame preset has no int8 twin (quantize takes single-frame presets), so int8 is left out"
    ]


@pytest.mark.parametrize(
    "args",
    [
        ("export", "--preset", "{p}", "{tmp}/x.onnx"),
        ("quantize", "--preset", "{p}"),
        # --data: the refusal comes before the data is read, with or without ../shared/data
        ("train", "--scale", "2", "--init", "{p}", "--steps", "1", "--data", "{tmp}", "--out", "{tmp}/t.pt"),
    ],
)
def test_what_takes_one_frame_refuses_a_multi_frame_preset_in_one_line(
    three_frame_preset: Path, tmp_path: Path, args: tuple[str, ...]
) -> None:
    from conftest import run_cli

    done = run_cli(*(a.format(p=three_frame_preset, tmp=tmp_path) for a in args))
    err = done.stderr.decode().strip()
    assert done.returncode == 2 and len(err.splitlines()) == 1, err
    assert "reads 3 frames" in err and "Traceback" not in err
    assert not (tmp_path / "x.onnx").exists() and not (tmp_path / "t.pt").exists()
