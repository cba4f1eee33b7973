"""The public API: what `espcn_video` exports, that importing it stays light, and the README's
example run as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import espcn_video
from conftest import REPO, decode_y4m

README = REPO / "README.md"


def readme_example() -> str:
    section = README.read_text().split("\n## Python API\n", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README's Python API section has no python block"
    return match.group(1)


def test_every_public_name_resolves_and_import_stays_light() -> None:
    for name in espcn_video.__all__:
        assert getattr(espcn_video, name) is not None, name
    code = "import sys, espcn_video; print('torch' in sys.modules, 'openvino' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.split() == ["False", "False"]


def test_readme_example_runs_as_written(tmp_path: Path, ffmpeg: str) -> None:
    (tmp_path / "samples").symlink_to(REPO / "samples")
    done = subprocess.run(
        [sys.executable, "-c", readme_example()], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    frames = int(done.stdout.split()[0])
    assert frames == 132 and "frames checked in bbb_720p.mkv" in done.stdout
    header, decoded = decode_y4m(ffmpeg, tmp_path / "bbb_720p.mkv", "-frames:v", "2")
    assert (header.geometry.width, header.geometry.height) == (1280, 720) and len(decoded) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bbb_720p.mkv", "samples"]  # no temporaries left


def test_errors_are_one_family() -> None:
    for name in ("UsageError", "InputError", "OutputError", "PresetError", "FFmpegError", "FFmpegNotFound"):
        assert issubclass(getattr(espcn_video, name), espcn_video.EspcnVideoError)
