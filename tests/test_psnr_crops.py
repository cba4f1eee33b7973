"""psnr --worst N --crops DIR: the worst frames of the judged method, as pictures."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from espcn_video.jobs.psnr_crops import CROP_PX, GAP_PX, LABEL_PX, ZOOM, worst_frames, worst_window
from tests.conftest import run_cli

pytestmark = pytest.mark.timeout(240)


def test_worst_frames_skip_identical_ones() -> None:
    assert worst_frames([30.0, None, 25.5, 28.0, 25.0], 2) == [4, 2]
    assert worst_frames([None, None], 3) == []


def test_worst_window_finds_the_planted_error() -> None:
    err = np.zeros((200, 300))
    err[120:130, 210:215] = 5.0
    y, x = worst_window(err, 96)
    assert y <= 120 and y + 96 >= 130 and x <= 210 and x + 96 >= 215
    assert worst_window(np.ones((40, 50)), 96) == (0, 0)  # a frame smaller than the window: all of it


def test_crops_of_the_worst_frames(
    clips: Callable[..., Path], tmp_path: Path, random_preset: Callable[[int], Path]
) -> None:
    ref = clips("crops.y4m", "-pix_fmt", "yuv420p", src="testsrc2=s=120x90:r=10:d=0.6")
    out = tmp_path / "crops"
    done = run_cli(
        "psnr", str(ref), "--scale", "2", "--preset", str(random_preset(2)), "--methods", "espcn,bicubic",
        "--crops", str(out), "--worst", "2", "--json", "-q",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    clip = json.loads(done.stdout)["clips"][0]
    series = clip["methods"]["espcn"]["per_frame"]["psnr_y_db"]
    worst = sorted(range(len(series)), key=lambda i: series[i])[:2]
    assert [Path(p).name.split("_")[1] for p in clip["crops"]] == [f"frame{i:05d}" for i in worst]
    assert sorted(p.name for p in out.iterdir()) == sorted(Path(p).name for p in clip["crops"])
    w, h = clip["size"]
    with Image.open(clip["crops"][0]) as image:
        crop_w, crop_h = min(CROP_PX, w) * ZOOM, min(CROP_PX, h) * ZOOM
        assert image.size == (3 * crop_w + 2 * GAP_PX, crop_h + LABEL_PX) and image.mode == "L"
        # the reference panel is the reference: its pixels are not blank
        assert np.asarray(image)[LABEL_PX:, :crop_w].std() > 5


def test_crops_refusals(clips: Callable[..., Path], tmp_path: Path) -> None:
    ref = clips("crops.y4m", "-pix_fmt", "yuv420p", src="testsrc2=s=120x90:r=10:d=0.6")
    done = run_cli("psnr", str(ref), "--worst", "2")
    assert done.returncode == 2 and b"--worst N says how many frames --crops DIR shows" in done.stderr
    done = run_cli("psnr", str(ref), "--dist", str(ref), "--crops", str(tmp_path / "c"))
    assert done.returncode == 2 and b"does not apply to --dist" in done.stderr
    done = run_cli("psnr", str(ref), "--dist", str(ref), "--progress", "-")
    assert done.returncode == 2 and b"--progress counts the frames of SR runs" in done.stderr
