"""The wheel a stranger installs: `pip wheel .` carries the presets, and the installed package runs
an upscale from outside the checkout (no presets/ folder beside it, no ESPCN_VIDEO_PRESETS)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]


def test_wheel_carries_the_presets_and_runs_outside_the_checkout(tmp_path: Path, ffmpeg: str) -> None:
    wheels, site, work = tmp_path / "wheels", tmp_path / "site", tmp_path / "work"
    work.mkdir()
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", str(REPO), "--no-deps", "-w", str(wheels)], check=True, timeout=240)
    (wheel,) = wheels.glob("espcn_video-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for scale in (2, 3, 4):
        assert f"espcn_video/presets/espcn-x{scale}.pt" in names and f"espcn_video/presets/espcn-x{scale}.json" in names
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True, timeout=120)
    clip = work / "in.mkv"
    subprocess.run([ffmpeg, "-v", "error", "-f", "lavfi", "-i", "testsrc2=s=64x48:r=10:d=0.5", "-c:v", "ffv1",
                    "-pix_fmt", "yuv420p", str(clip)], check=True, timeout=60)  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "ESPCN_VIDEO_PRESETS"}
    env["PYTHONPATH"] = str(site)  # ahead of the editable checkout in site-packages
    code = "import espcn_video.model.presets as p; print(p.presets_dir())"
    where = subprocess.run([sys.executable, "-c", code], env=env, cwd=work, capture_output=True, text=True, timeout=60)
    assert where.stdout.strip() == str(site / "espcn_video" / "presets"), where.stderr
    done = subprocess.run(
        [sys.executable, "-m", "espcn_video", "upscale", str(clip), "out.mkv", "--scale", "3", "--json", "-q"],
        env=env, cwd=work, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    # upscale chose between the two presets the wheel carries by a look at the clip
    assert summary["preset"] in ("espcn-x3", "espcn-x3-real") and summary["frames"] == 5
    assert summary["preset_choice"].startswith(f"{summary['preset']} (auto: ")
