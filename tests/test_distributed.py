"""Chunked upscaling on a 2-worker LocalCluster on 127.0.0.1: frame-exact, retried, resumable."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from espcn_video.chunking import list_packets, plan_chunks
from tests.conftest import REPO, audio_seconds, decode_y4m, run_cli

pytest.importorskip("distributed", reason="Dask distributed is not installed")
pytestmark = pytest.mark.timeout(400)


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory, ffmpeg: str) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("dist")
    made = {}
    specs = {
        # open GOP with B-frames, audio: the hard case for splitting without re-encoding
        "opengop.mp4": ["-f", "lavfi", "-i", "testsrc2=s=64x48:r=25:d=3", "-f", "lavfi", "-i", "sine=d=3",
                        "-c:v", "libx264", "-x264-params", "keyint=20:min-keyint=20:open_gop=1:bframes=3:scenecut=0",
                        "-c:a", "aac"],
        # MPEG-TS: video starts at 1.4 s (+5 s offset), and its seeks are byte-based
        "offset.ts": ["-f", "lavfi", "-i", "testsrc2=s=64x48:r=25:d=3", "-c:v", "libx264",
                      "-x264-params", "keyint=25:bframes=2", "-output_ts_offset", "5", "-f", "mpegts"],
        # variable frame rate: frames dropped irregularly, timestamps kept
        "vfr.mkv": ["-f", "lavfi", "-i", "testsrc2=s=64x48:r=25:d=3",
                    "-vf", "select='not(eq(mod(n,4),1))*not(eq(mod(n,7),3))'", "-fps_mode", "vfr",
                    "-c:v", "libx264", "-x264-params", "keyint=15:bframes=2"],
    }
    for name, args in specs.items():
        path = folder / name
        subprocess.run([ffmpeg, "-nostdin", "-v", "error", *args, "-y", str(path)], check=True, timeout=60)
        made[name] = path
    return made


def _frames(ffmpeg: str, path: Path) -> list[list[np.ndarray]]:
    return decode_y4m(ffmpeg, path)[1]


def _same_frames(a: list[list[np.ndarray]], b: list[list[np.ndarray]]) -> bool:
    return len(a) == len(b) and all(all(np.array_equal(x, y) for x, y in zip(fa, fb)) for fa, fb in zip(a, b))


def _run(src: Path, out: Path, preset: Path, *extra: str, env: dict[str, str] | None = None) -> dict:
    done = run_cli("upscale", str(src), str(out), "--preset", str(preset), "--codec", "ffv1", "--json",
                   "--backend", "torch", "--precision", "fp32", *extra, env=env, timeout=300)
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(done.stdout)


@pytest.mark.parametrize("name", ["opengop.mp4", "offset.ts", "vfr.mkv"])
def test_chunked_equals_unchunked_frame_for_frame(sources: dict[str, Path], ffmpeg: str, tmp_path: Path,
                                                  random_preset: Callable[[int], Path], name: str) -> None:
    src = sources[name]
    whole = tmp_path / "whole.mkv"
    chunked = tmp_path / "chunked.mkv"
    plain = _run(src, whole, random_preset(2))
    summary = _run(src, chunked, random_preset(2), "--chunks", "3", "--local-workers", "2")
    assert summary["chunks"] == 3 and summary["workers"] == 2 and summary["frames"] == plain["frames"]
    a, b = _frames(ffmpeg, whole), _frames(ffmpeg, chunked)
    assert len(a) == plain["frames"] and _same_frames(a, b)
    assert not (tmp_path / "chunked.mkv.parts").exists()
    if name == "opengop.mp4":
        assert abs(audio_seconds(ffmpeg, chunked) - audio_seconds(ffmpeg, src)) < 0.05
        assert len(a) == 75


def test_plan_is_frame_exact_from_packets(sources: dict[str, Path], ffmpeg: str) -> None:
    tb, pts, keys = list_packets(ffmpeg, str(sources["opengop.mp4"]))
    assert [p * tb * 25 for p in keys] == [0, 20, 40, 60]
    plan = plan_chunks("x", tb, pts, keys, 0.0, chunks=4)
    assert [c.frames for c in plan.chunks] == [20, 20, 20, 15] and plan.total_frames == 75
    assert [c.start_pts for c in plan.chunks[1:]] == [c.end_pts for c in plan.chunks[:-1]]
    assert all(c.start_pts in keys for c in plan.chunks)  # keyframes were near: boundaries use them


@pytest.fixture
def fake(tmp_path: Path, ffmpeg: str) -> Callable[[str], dict[str, str]]:
    wrapper = tmp_path / "ffmpeg"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{REPO / "tests" / "fake_ffmpeg.py"}" "$@"\n')
    wrapper.chmod(0o755)
    marker = tmp_path / "once"

    def env(mode: str) -> dict[str, str]:
        marker.write_text("x")
        return {"ESPCN_VIDEO_FFMPEG": str(wrapper), "FAKE_REAL_FFMPEG": ffmpeg, "FAKE_MODE": mode,
                "FAKE_ONCE": str(marker)}

    return env


@pytest.mark.parametrize("mode", ["fail-once", "kill-worker-once"])
def test_failed_chunk_is_retried_and_dead_worker_rescheduled(sources: dict[str, Path], ffmpeg: str,
                                                             tmp_path: Path, random_preset: Callable[[int], Path],
                                                             fake: Callable[[str], dict[str, str]], mode: str) -> None:
    out = tmp_path / "out.mkv"
    env = fake(mode)
    summary = _run(sources["opengop.mp4"], out, random_preset(2), "--chunks", "3", env=env)
    assert summary["frames"] == 75 and not Path(env["FAKE_ONCE"]).exists()  # the fault did happen
    assert len(_frames(ffmpeg, out)) == 75


def test_resume_runs_only_missing_chunks(sources: dict[str, Path], ffmpeg: str, tmp_path: Path,
                                         random_preset: Callable[[int], Path],
                                         fake: Callable[[str], dict[str, str]]) -> None:
    src = sources["opengop.mp4"]
    out = tmp_path / "out.mkv"
    parts = tmp_path / "out.mkv.parts"
    fp32 = ("--backend", "torch", "--precision", "fp32")
    done = run_cli("upscale", str(src), str(out), "--preset", str(random_preset(2)), "--codec", "ffv1",
                   "--chunks", "3", *fp32, env=fake("fail-last-chunk"), timeout=300)
    assert done.returncode == 1 and "injected failure of the last chunk" in done.stderr.decode()
    assert not out.exists()
    manifest = json.loads((parts / "manifest.json").read_text())
    assert sorted(manifest["done"]) == ["0", "1"]
    again = run_cli("upscale", str(src), str(out), "--preset", str(random_preset(2)), "--codec", "ffv1",
                    "--chunks", "3", *fp32)
    assert again.returncode == 1 and "add --resume to finish it" in again.stderr.decode()
    other = run_cli("upscale", str(src), str(out), "--preset", str(random_preset(2)), "--codec", "ffv1",
                    "--chunks", "3", "--resume", "--backend", "torch", "--precision", "bf16")
    assert other.returncode == 1 and "the earlier run used another input or settings" in other.stderr.decode()
    summary = _run(src, out, random_preset(2), "--chunks", "3", "--resume")
    assert summary["chunks_run"] == [2] and summary["chunks_reused"] == [0, 1]
    whole = tmp_path / "whole.mkv"
    _run(src, whole, random_preset(2))
    assert _same_frames(_frames(ffmpeg, whole), _frames(ffmpeg, out))


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_ctrl_c_stops_the_cluster_and_keeps_finished_parts(sources: dict[str, Path], tmp_path: Path,
                                                           random_preset: Callable[[int], Path],
                                                           fake: Callable[[str], dict[str, str]]) -> None:
    import os
    import signal
    import time
    out = tmp_path / "out.mkv"
    proc = subprocess.Popen([sys.executable, "-m", "espcn_video", "upscale", str(sources["opengop.mp4"]), str(out),
                             "--preset", str(random_preset(2)), "--codec", "ffv1", "--chunks", "3"],
                            env={**os.environ, **fake("decoder-slow")}, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 90
    parts = str(tmp_path / "out.mkv.parts")
    while time.monotonic() < deadline and not _processes_mentioning(parts):
        time.sleep(0.2)  # a worker is inside a chunk once a part's encoder runs
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    t0 = time.monotonic()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in err.decode() and time.monotonic() - t0 < 10
    time.sleep(2.0)  # the killed workers' decoders exit at their next write
    assert _processes_mentioning(parts) == [] and _processes_mentioning(str(sources["opengop.mp4"])) == []
    assert not out.exists() and (tmp_path / "out.mkv.parts" / "plan.json").exists()
