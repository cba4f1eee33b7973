"""Fixtures: small lossless clips made by ffmpeg's lavfi sources, seeded random presets, a CLI runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from espcn_video.ffmpeg.locate import locate_ffmpeg
from espcn_video.ffmpeg.y4m import Y4MHeader, read_frame, read_header
from espcn_video.model.net import ESPCN

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
CLI_TIMEOUT_S = 180


@pytest.fixture(scope="session")
def ffmpeg() -> str:
    return locate_ffmpeg().path


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory, ffmpeg: str) -> Callable[..., Path]:
    """make(name, *output_args, src='testsrc2=s=48x32:r=10:d=1', audio=False) -> path, cached."""
    folder = tmp_path_factory.mktemp("clips")

    def make(name: str, *out_args: str, src: str = "testsrc2=s=48x32:r=10:d=1", audio: bool = False) -> Path:
        path = folder / name
        if path.exists():
            return path
        cmd = [ffmpeg, "-nostdin", "-v", "error", "-f", "lavfi", "-i", src]
        if audio:
            cmd += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=1"]
        cmd += [*out_args, "-y", str(path)]
        subprocess.run(cmd, check=True, timeout=60)
        return path

    return make


@pytest.fixture(scope="session")
def random_preset(tmp_path_factory: pytest.TempPathFactory) -> Callable[[int], Path]:
    """A seeded random ESPCN state_dict per scale: fast and deterministic."""
    folder = tmp_path_factory.mktemp("presets")

    def make(scale: int) -> Path:
        path = folder / f"random-x{scale}.pt"
        if not path.exists():
            torch.manual_seed(1234 + scale)
            torch.save(ESPCN(scale).state_dict(), path)
        return path

    return make


@pytest.fixture
def fake_ffmpeg(tmp_path: Path, ffmpeg: str) -> Callable[[str], dict[str, str]]:
    """env(mode): the environment that makes the CLI run tests/fake_ffmpeg.py in that mode."""
    wrapper = tmp_path / "ffmpeg"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{REPO / "tests" / "fake_ffmpeg.py"}" "$@"\n')
    wrapper.chmod(0o755)

    def env(mode: str) -> dict[str, str]:
        return {"ESPCN_VIDEO_FFMPEG": str(wrapper), "FAKE_REAL_FFMPEG": ffmpeg, "FAKE_MODE": mode}

    return env


def default_sigint() -> None:
    """Popen's preexec_fn for a CLI that a test interrupts with SIGINT: Ctrl-C as at a terminal,
    whatever started the suite (a script's background job, `.ci/run &`, starts with SIGINT
    ignored, and every child inherits that)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_cli(
    *args: str,
    stdin: bytes | None = None,
    env: dict[str, str] | None = None,
    timeout: float = CLI_TIMEOUT_S,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """The CLI as a user runs it: a real child process, with a timeout so a hang fails."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "espcn_video", *args],
        input=stdin,
        capture_output=True,
        timeout=timeout,
        env=full_env,
        cwd=cwd,
        stdin=None if stdin is not None else subprocess.DEVNULL,
    )


def one_error_line(done: subprocess.CompletedProcess[bytes]) -> str:
    """The run's stderr is one `espcn-video: error: ...` line and no traceback; that line."""
    err = done.stderr.decode()
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("espcn-video: error: ")
    return lines[0]


FP32 = ("--backend", "torch", "--precision", "fp32")  # the reference engine: no dependence on this CPU's bf16/int8


def upscale_fp32(src: Path | str, out: Path, preset: Path, *extra: str) -> subprocess.CompletedProcess[bytes]:
    """`upscale SRC OUT --preset P --json` on the fp32 reference engine, as a user runs it."""
    return run_cli("upscale", str(src), str(out), "--preset", str(preset), "--json", *FP32, *extra)


def upscale_json(src: Path | str, out: Path, preset: Path, *extra: str) -> dict[str, Any]:
    """upscale_fp32 that must succeed; its JSON summary."""
    done = upscale_fp32(src, out, preset, *extra)
    assert done.returncode == 0, done.stderr.decode()
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def decode_y4m(ffmpeg: str, path: Path | str, *extra: str) -> tuple[Y4MHeader, list[list[np.ndarray]]]:
    """All frames of a video as planes, through ffmpeg -> y4m (the same reader the pipeline uses)."""
    cmd = [
        ffmpeg,
        "-nostdin",
        "-v",
        "error",
        "-i",
        str(path),
        "-map",
        "0:v:0",
        *extra,
        "-fps_mode",
        "passthrough",
        "-strict",
        "-1",
        "-f",
        "yuv4mpegpipe",
        "-",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    header = read_header(proc.stdout)
    assert header is not None
    frames = []
    while (planes := read_frame(proc.stdout, header.geometry, len(frames))) is not None:
        frames.append([p.copy() for p in planes])
    assert proc.wait(timeout=60) == 0
    return header, frames


def parse_y4m_bytes(data: bytes) -> tuple[Y4MHeader, list[list[np.ndarray]]]:
    import io

    stream = io.BytesIO(data)
    header = read_header(stream)
    assert header is not None
    frames = []
    while (planes := read_frame(stream, header.geometry, len(frames))) is not None:
        frames.append(planes)
    return header, frames


def audio_seconds(ffmpeg: str, path: Path, track: int = 0) -> float:
    """Seconds of decoded audio in audio stream `track` (48 kHz mono samples counted)."""
    raw = subprocess.run(
        [
            ffmpeg,
            "-nostdin",
            "-v",
            "error",
            "-i",
            str(path),
            "-map",
            f"0:a:{track}",
            "-ac",
            "1",
            "-ar",
            "48000",
            "-f",
            "s16le",
            "-",
        ],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    return len(raw) / 2 / 48000
