"""Which ffmpeg binary to run: ESPCN_VIDEO_FFMPEG, else PATH, else imageio-ffmpeg's static build.

imageio-ffmpeg ships ffmpeg without ffprobe, so nothing in this package needs ffprobe.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from espcn_video.errors import FFmpegNotFound

ENV_VAR = "ESPCN_VIDEO_FFMPEG"


@dataclass(frozen=True)
class FFmpegBinary:
    path: str
    source: str  # "env", "path" or "imageio-ffmpeg"
    version: str


def _version_of(path: str) -> str:
    try:
        out = subprocess.run(
            [path, "-hide_banner", "-version"],
            capture_output=True,
            text=True,
            timeout=20,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FFmpegNotFound(f"ffmpeg at {path} does not run: {exc}") from exc
    if out.returncode != 0 or not out.stdout.startswith("ffmpeg version"):
        raise FFmpegNotFound(f"{path} is not a working ffmpeg (exit {out.returncode})")
    return out.stdout.split()[2]


def _candidate() -> tuple[str, str]:
    override = os.environ.get(ENV_VAR)
    if override:
        resolved = shutil.which(override) or override
        if not Path(resolved).is_file():
            raise FFmpegNotFound(f"{ENV_VAR}={override} does not name an ffmpeg binary")
        return resolved, "env"
    on_path = shutil.which("ffmpeg")
    if on_path:
        return on_path, "path"
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe(), "imageio-ffmpeg"
    except Exception as exc:  # ImportError or its own "no binary" RuntimeError
        raise FFmpegNotFound(
            f"no ffmpeg found: none on PATH, {ENV_VAR} unset, imageio-ffmpeg unavailable ({exc})"
        ) from exc


@functools.lru_cache(maxsize=8)
def _locate_cached(key: tuple[str | None, str | None]) -> FFmpegBinary:
    path, source = _candidate()
    return FFmpegBinary(path=path, source=source, version=_version_of(path))


def locate_ffmpeg() -> FFmpegBinary:
    """The ffmpeg to use; cached per (env override, PATH) so tests can switch it."""
    return _locate_cached((os.environ.get(ENV_VAR), os.environ.get("PATH")))


@functools.lru_cache(maxsize=8)
def list_encoders(path: str) -> frozenset[str]:
    out = subprocess.run(
        [path, "-hide_banner", "-encoders"],
        capture_output=True,
        text=True,
        timeout=20,
        stdin=subprocess.DEVNULL,
    )
    names = set()
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and len(parts[0]) == 6 and parts[0][0] in "VAS":
            names.add(parts[1])
    return frozenset(names)


@functools.lru_cache(maxsize=4)
def has_libvmaf(ffmpeg: str) -> bool:
    """Whether this ffmpeg was built with libvmaf (the imageio-ffmpeg build is)."""
    out = subprocess.run(
        [ffmpeg, "-hide_banner", "-filters"], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL
    )
    return any(line.split()[1:2] == ["libvmaf"] for line in out.stdout.splitlines())


@functools.lru_cache(maxsize=32)
def output_format_known(path: str, suffix: str, fmt: str | None) -> bool:
    """Whether this ffmpeg has a muxer named `fmt`, or (without one) can choose a muxer for a
    file ending in `suffix`: one frame is muxed into a temporary folder, and only ffmpeg's
    "cannot choose"/"not known" answers count (any other complaint is the real run's to report)."""
    with tempfile.TemporaryDirectory(prefix="espcn-video-format-") as tmp:
        cmd = [path, "-nostdin", "-v", "error", "-f", "lavfi", "-i", "nullsrc=s=16x16:d=0.04", "-frames:v", "1"]
        cmd += (["-f", fmt] if fmt else []) + ["-y", str(Path(tmp) / f"probe{suffix}")]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return True
    said = done.stderr
    return not ("Unable to choose an output format" in said or "is not known" in said)
