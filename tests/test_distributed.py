"""Chunked upscaling and batch on Dask: a 2-worker LocalCluster on 127.0.0.1 (frame-exact, retried,
resumable, nothing left behind), and real `dask scheduler` / `dask worker` daemons (--scheduler)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from espcn_video.jobs.chunk_plan import list_packets, plan_chunks
from espcn_video.model.net import ESPCN
from tests.conftest import FP32, REPO, audio_seconds, decode_y4m, default_sigint, run_cli

pytest.importorskip("distributed", reason="Dask distributed is not installed")
# signal, not thread: a timeout then fails only its test, and fixture teardowns still kill the daemons.
pytestmark = [pytest.mark.timeout(400, method="signal"), pytest.mark.slow]  # Dask clusters, real daemons


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory, ffmpeg: str) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("dist")
    made = {}
    specs = {
        # open GOP with B-frames, audio: the hard case for splitting without re-encoding
        "opengop.mp4": [
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=64x48:r=25:d=3",
            "-f",
            "lavfi",
            "-i",
            "sine=d=3",
            "-c:v",
            "libx264",
            "-x264-params",
            "keyint=20:min-keyint=20:open_gop=1:bframes=3:scenecut=0",
            "-c:a",
            "aac",
        ],
        # MPEG-TS: video starts at 1.4 s (+5 s offset), and its seeks are byte-based
        "offset.ts": [
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=64x48:r=25:d=3",
            "-c:v",
            "libx264",
            "-x264-params",
            "keyint=25:bframes=2",
            "-output_ts_offset",
            "5",
            "-f",
            "mpegts",
        ],
        # variable frame rate: frames dropped irregularly, timestamps kept
        "vfr.mkv": [
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=64x48:r=25:d=3",
            "-vf",
            "select='not(eq(mod(n,4),1))*not(eq(mod(n,7),3))'",
            "-fps_mode",
            "vfr",
            "-c:v",
            "libx264",
            "-x264-params",
            "keyint=15:bframes=2",
        ],
    }
    for name, args in specs.items():
        path = folder / name
        subprocess.run([ffmpeg, "-nostdin", "-v", "error", *args, "-y", str(path)], check=True, timeout=60)
        made[name] = path
    return made


def _frames(ffmpeg: str, path: Path) -> list[list[np.ndarray]]:
    return decode_y4m(ffmpeg, path)[1]


def _same_frames(a: list[list[np.ndarray]], b: list[list[np.ndarray]]) -> bool:
    if len(a) != len(b):
        return False
    return all(np.array_equal(x, y) for fa, fb in zip(a, b, strict=True) for x, y in zip(fa, fb, strict=True))


def _run(src: Path, out: Path, preset: Path, *extra: str, env: dict[str, str] | None = None) -> dict:
    done = run_cli(
        "upscale",
        str(src),
        str(out),
        "--preset",
        str(preset),
        "--codec",
        "ffv1",
        "--json",
        "--backend",
        "torch",
        "--precision",
        "fp32",
        *extra,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(done.stdout)


@pytest.mark.parametrize("name", ["opengop.mp4", "offset.ts"])
def test_a_multi_frame_preset_chunked_equals_unchunked(
    sources: dict[str, Path], ffmpeg: str, tmp_path: Path, name: str
) -> None:
    """A motion-compensated preset reads each frame's neighbours: a chunk's first and last frame
    get theirs from beside the chunk (decoded as the chunk is), so the joins do not show."""
    torch.manual_seed(11)
    preset = tmp_path / "mc-x2.pt"
    torch.save(ESPCN(2, frames=3).state_dict(), preset)
    whole, chunked = tmp_path / "whole.mkv", tmp_path / "chunked.mkv"
    plain = _run(sources[name], whole, preset)
    summary = _run(sources[name], chunked, preset, "--chunks", "3", "--local-workers", "2")
    assert summary["chunks"] == 3 and summary["frames"] == plain["frames"] == 75
    a, b = _frames(ffmpeg, whole), _frames(ffmpeg, chunked)
    assert len(a) == 75 and _same_frames(a, b)


@pytest.mark.parametrize("name", ["opengop.mp4", "offset.ts", "vfr.mkv"])
def test_chunked_equals_unchunked_frame_for_frame(
    sources: dict[str, Path], ffmpeg: str, tmp_path: Path, random_preset: Callable[[int], Path], name: str
) -> None:
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


def test_chunked_mp4_keeps_the_source_track_time_scale(
    sources: dict[str, Path], ffmpeg: str, tmp_path: Path, random_preset: Callable[[int], Path]
) -> None:
    """The joined MP4's video time base is the source's (1/12800), as an unchunked run writes it,
    not the finer one the muxer picks for the joined parts."""
    src = sources["opengop.mp4"]
    out = tmp_path / "chunked.mp4"
    summary = _run(src, out, random_preset(2), "--chunks", "2", "--local-workers", "2")
    src_tb, src_pts, _ = list_packets(ffmpeg, str(src))
    out_tb, out_pts, _ = list_packets(ffmpeg, str(out))
    assert src_tb == Fraction(1, 12800) and out_tb == src_tb
    assert sorted(out_pts) == sorted(src_pts) and summary["frames"] == len(src_pts)
    # from Matroska (1/1000): the muxer doubles it to 16000 for an unchunked run; the join too
    # (it picked 64000 from the parts), and the video is the default track in both
    mkv = sources["vfr.mkv"]
    whole, joined = tmp_path / "whole.mp4", tmp_path / "joined.mp4"
    _run(mkv, whole, random_preset(2))
    _run(mkv, joined, random_preset(2), "--chunks", "2", "--local-workers", "2")
    assert list_packets(ffmpeg, str(whole))[0] == list_packets(ffmpeg, str(joined))[0] == Fraction(1, 16000)
    for path in (whole, joined):
        text = subprocess.run([ffmpeg, "-hide_banner", "-i", str(path)], capture_output=True, timeout=60).stderr
        assert b"16k tbn (default)" in text


@pytest.mark.parametrize("suffix", [".avi", ".y4m"])
def test_chunked_fixed_rate_container_gets_the_frame_rate(
    sources: dict[str, Path], ffmpeg: str, tmp_path: Path, random_preset: Callable[[int], Path], suffix: str
) -> None:
    """The joined parts' time base became AVI's rate (600 fps of filler frames): the join now
    gives y4m and AVI one tick a frame, as an unchunked run does."""
    src = sources["opengop.mp4"]
    out = tmp_path / f"chunked{suffix}"
    extra = ("--codec", "rawvideo") if suffix == ".y4m" else ()
    summary = _run(src, out, random_preset(2), "--chunks", "2", "--local-workers", "2", *extra)
    tb, pts, _ = list_packets(ffmpeg, str(out))
    assert summary["chunks"] == 2 and summary["frames"] == len(pts) == 75
    assert tb == Fraction(1, 25) and pts == list(range(75))


@pytest.fixture(scope="module")
def twelve_seconds(tmp_path_factory: pytest.TempPathFactory, ffmpeg: str) -> Path:
    """The issue's clip, smaller: 12 s at 25 fps, keyframes every 2 s, 3 B-frames, AAC audio."""
    path = tmp_path_factory.mktemp("twelve") / "in.mp4"
    subprocess.run(
        [
            ffmpeg,
            "-nostdin",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=48x32:rate=25:duration=12",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:duration=12",
            "-c:a",
            "aac",
            "-shortest",
            "-c:v",
            "libx264",
            "-g",
            "50",
            "-bf",
            "3",
            "-pix_fmt",
            "yuv420p",
            "-vf",
            "setparams=color_primaries=bt709:color_trc=bt709:colorspace=bt709",
            "-y",
            str(path),
        ],
        check=True,
        timeout=120,
    )
    return path


def test_chunked_joins_are_frame_exact_for_2_to_5_chunks(
    twelve_seconds: Path, ffmpeg: str, tmp_path: Path, random_preset: Callable[[int], Path]
) -> None:
    """Chunk starts on keyframes (8.0 s with 3 chunks) once lost a frame; the join is now checked."""
    from espcn_video.ffmpeg.probe import probe_file
    from espcn_video.ffmpeg.timestamps import list_packets as packet_times

    whole = tmp_path / "whole.mkv"
    _run(twelve_seconds, whole, random_preset(2))
    reference = _frames(ffmpeg, whole)
    tb_in, pts_in, keys = packet_times(ffmpeg, str(twelve_seconds))
    assert len(reference) == 300
    for n in (2, 3, 4, 5):
        out = tmp_path / f"chunked{n}.mkv"
        summary = _run(twelve_seconds, out, random_preset(2), "--chunks", str(n), "--local-workers", "2")
        assert summary["frames"] == 300 and summary["chunks"] == n
        tb_out, pts_out, _ = packet_times(ffmpeg, str(out))
        assert len(pts_out) == 300
        assert all(abs(a * tb_out - b * tb_in) <= tb_out for a, b in zip(pts_out, pts_in, strict=True))
        assert _same_frames(reference, _frames(ffmpeg, out)), f"{n} chunks differ from the unchunked run"
        info = probe_file(ffmpeg, str(out))
        assert (info.color.space, info.color.primaries, info.color.transfer) == ("bt709", "bt709", "bt709")
        assert abs(audio_seconds(ffmpeg, out) - audio_seconds(ffmpeg, twelve_seconds)) < 0.05
    plan = plan_chunks("x", tb_in, pts_in, keys, 0.0, chunks=3)
    assert [c.start_pts * tb_in for c in plan.chunks] == [0, 4, 8]  # keyframe-aligned, 8.0 s included


def test_plan_is_frame_exact_from_packets(sources: dict[str, Path], ffmpeg: str) -> None:
    tb, pts, keys = list_packets(ffmpeg, str(sources["opengop.mp4"]))
    assert [p * tb * 25 for p in keys] == [0, 20, 40, 60]
    plan = plan_chunks("x", tb, pts, keys, 0.0, chunks=4)
    assert [c.frames for c in plan.chunks] == [20, 20, 20, 15] and plan.total_frames == 75
    assert [c.start_pts for c in plan.chunks[1:]] == [c.end_pts for c in plan.chunks[:-1]]
    assert all(c.start_pts in keys for c in plan.chunks)  # keyframes were near: boundaries use them


def test_plan_has_as_many_chunks_as_asked_up_to_one_per_frame() -> None:
    """Boundaries once fell on the previous one (a keyframe preferred too far on, a gap in a
    variable-rate file, or more chunks asked than a step of one frame allows): chunks were
    dropped, or all crowded into the first frames with a step from the asked count."""
    tb = Fraction(1, 25)
    pts = list(range(30))
    keys = pts[::10]
    for asked in (4, 12, 29, 30):
        plan = plan_chunks("x", tb, pts, keys, 0.0, chunks=asked)
        assert len(plan.chunks) == asked and sum(c.frames for c in plan.chunks) == 30
        assert all(c.frames >= 1 for c in plan.chunks)
        assert [c.start_pts for c in plan.chunks[1:]] == [c.end_pts for c in plan.chunks[:-1]]
    assert [c.frames for c in plan_chunks("x", tb, pts, keys, 0.0, chunks=1000).chunks] == [1] * 30
    # variable rate: 5 frames, a 10 s pause, 5 frames; 4 chunks still make 4
    vfr = [0, 1, 2, 3, 4, 254, 255, 256, 257, 258]
    plan = plan_chunks("x", tb, vfr, [0, 254], 0.0, chunks=4)
    assert len(plan.chunks) == 4 and sum(c.frames for c in plan.chunks) == 10


@pytest.fixture(scope="module")
def short_gops(tmp_path_factory: pytest.TempPathFactory, ffmpeg: str) -> Path:
    """30 frames at 25 fps, a keyframe every 10 (3 GOPs), H.264 with B-frames."""
    path = tmp_path_factory.mktemp("gops") / "in.mp4"
    subprocess.run(
        [ffmpeg, "-nostdin", "-v", "error", "-f", "lavfi", "-i", "testsrc2=s=48x32:r=25:d=1.2"]
        + ["-c:v", "libx264", "-g", "10", "-pix_fmt", "yuv420p", "-y", str(path)],
        check=True,
        timeout=60,
    )
    return path


@pytest.mark.parametrize(
    ("chunks", "extra", "made"),
    [
        ("12", (), 12),  # chunks of 2 and 3 frames: an H.264 part of 2 has no B-frames
        ("1000", (), 30),  # more than frames: one frame each, and said
        ("4", ("--encoder-preset", "ultrafast"), 4),  # parts of 7 and 8 frames, none with B-frames
    ],
)
def test_chunked_h264_parts_of_a_few_frames_join_frame_exact(
    short_gops: Path,
    ffmpeg: str,
    tmp_path: Path,
    random_preset: Callable[[int], Path],
    chunks: str,
    extra: tuple[str, ...],
    made: int,
) -> None:
    """An H.264 part of under 8 frames without B-frames has no start time for ffmpeg, and the
    concat demuxer then took 0 for it: the part landed late by its own start time, and the run
    failed ('frame 73 is at 4.000000 s in the written file but 2.920000 s in the input'). The
    listing now gives each part's measured start (inpoint)."""
    out = tmp_path / "out.mkv"
    done = run_cli(
        "upscale",
        str(short_gops),
        str(out),
        "--preset",
        str(random_preset(2)),
        "--chunks",
        chunks,
        "--local-workers",
        "1",
        "--json",
        *FP32,
        *extra,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr.decode()
    summary = json.loads(done.stdout)
    assert summary["chunks"] == made and summary["frames"] == 30
    assert not (tmp_path / "out.mkv.parts").exists()
    tb_in, pts_in, _ = list_packets(ffmpeg, str(short_gops))
    tb_out, pts_out, _ = list_packets(ffmpeg, str(out))
    assert sorted(p * tb_out for p in pts_out) == sorted(p * tb_in for p in pts_in)  # 30 frames, 40 ms apart
    capped = [n for n in summary["notes"] if n.startswith("--chunks 1000:")]
    assert capped == (
        [f"--chunks 1000: {short_gops} has only 30 frames, so it ran as 30 chunks of one frame each"]
        if chunks == "1000"
        else []
    )


@pytest.fixture
def fake(tmp_path: Path, ffmpeg: str) -> Callable[[str], dict[str, str]]:
    wrapper = tmp_path / "ffmpeg"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{REPO / "tests" / "fake_ffmpeg.py"}" "$@"\n')
    wrapper.chmod(0o755)
    marker = tmp_path / "once"

    def env(mode: str) -> dict[str, str]:
        marker.write_text("x")
        return {
            "ESPCN_VIDEO_FFMPEG": str(wrapper),
            "FAKE_REAL_FFMPEG": ffmpeg,
            "FAKE_MODE": mode,
            "FAKE_ONCE": str(marker),
        }

    return env


@pytest.mark.parametrize("mode", ["fail-once", "kill-worker-once"])
def test_failed_chunk_is_retried_and_dead_worker_rescheduled(
    sources: dict[str, Path],
    ffmpeg: str,
    tmp_path: Path,
    random_preset: Callable[[int], Path],
    fake: Callable[[str], dict[str, str]],
    mode: str,
) -> None:
    out = tmp_path / "out.mkv"
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    marker = uuid.uuid4().hex
    env = {**fake(mode), "TMPDIR": str(scratch), "ESPCN_TEST_MARK": marker}
    done = run_cli(
        "upscale",
        str(sources["opengop.mp4"]),
        str(out),
        "--preset",
        str(random_preset(2)),
        "--codec",
        "ffv1",
        "--json",
        *FP32,
        "--chunks",
        "3",
        env=env,
        timeout=300,
    )
    err = done.stderr.decode()
    # the retried error is not logged by the worker (it printed 'Compute Failed ... Traceback')
    assert done.returncode == 0 and "Traceback" not in err and "Compute Failed" not in err, err
    summary = json.loads(done.stdout)
    assert summary["frames"] == 75 and not Path(env["FAKE_ONCE"]).exists()  # the fault did happen
    assert len(_frames(ffmpeg, out)) == 75
    # The CLI returned, so its stderr pipe reached EOF: no worker, resource tracker or ffmpeg kept it.
    assert _wait_for_no_processes_marked(marker) == []
    assert list(scratch.iterdir()) == []  # Dask's scratch space went with the cluster


def test_resume_runs_only_missing_chunks(
    sources: dict[str, Path],
    ffmpeg: str,
    tmp_path: Path,
    random_preset: Callable[[int], Path],
    fake: Callable[[str], dict[str, str]],
) -> None:
    src = sources["opengop.mp4"]
    out = tmp_path / "out.mkv"
    parts = tmp_path / "out.mkv.parts"
    fp32 = FP32
    done = run_cli(
        "upscale",
        str(src),
        str(out),
        "--preset",
        str(random_preset(2)),
        "--codec",
        "ffv1",
        "--chunks",
        "3",
        *fp32,
        env=fake("fail-last-chunk"),
        timeout=300,
    )
    assert done.returncode == 1 and "injected failure of the last chunk" in done.stderr.decode()
    assert not out.exists()
    manifest = json.loads((parts / "manifest.json").read_text())
    assert sorted(manifest["done"]) == ["0", "1"]
    again = run_cli(
        "upscale", str(src), str(out), "--preset", str(random_preset(2)), "--codec", "ffv1", "--chunks", "3", *fp32
    )
    assert again.returncode == 1 and "add --resume to finish it" in again.stderr.decode()
    other = run_cli(
        "upscale",
        str(src),
        str(out),
        "--preset",
        str(random_preset(2)),
        "--codec",
        "ffv1",
        "--chunks",
        "3",
        "--resume",
        "--backend",
        "torch",
        "--precision",
        "bf16",
    )
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


def test_ctrl_c_stops_the_cluster_and_keeps_finished_parts(
    sources: dict[str, Path],
    tmp_path: Path,
    random_preset: Callable[[int], Path],
    fake: Callable[[str], dict[str, str]],
) -> None:
    import os
    import signal
    import time

    out = tmp_path / "out.mkv"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "espcn_video",
            "upscale",
            str(sources["opengop.mp4"]),
            str(out),
            "--preset",
            str(random_preset(2)),
            "--codec",
            "ffv1",
            "--chunks",
            "3",
        ],
        env={**os.environ, **fake("decoder-slow")},
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        preexec_fn=default_sigint,
    )
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


def _processes_marked(marker: str) -> list[int]:
    """Processes whose environment holds ESPCN_TEST_MARK=marker: everything a test's CLI started."""
    needle = f"ESPCN_TEST_MARK={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                    if state != "Z":  # a zombie is exited, waiting for its parent to read it
                        found.append(int(entry.name))
            except OSError:
                continue
    return found


def _wait_for_no_processes_marked(marker: str, timeout_s: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while (left := _processes_marked(marker)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def _kill_marked(marker: str) -> None:
    for pid in _processes_marked(marker):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture(scope="module")
def small_clips(tmp_path_factory: pytest.TempPathFactory, ffmpeg: str) -> Path:
    """A folder of three 1 s clips (plus a file and a subfolder that batch must not take)."""
    folder = tmp_path_factory.mktemp("batch_in")
    for name, size in (("a.mp4", "48x32"), ("b.mkv", "32x24"), ("c.mov", "40x30")):
        subprocess.run(
            [
                ffmpeg,
                "-nostdin",
                "-v",
                "error",
                "-f",
                "lavfi",
                "-i",
                f"testsrc2=s={size}:r=10:d=1",
                "-c:v",
                "libx264",
                "-y",
                str(folder / name),
            ],
            check=True,
            timeout=60,
        )
    (folder / "notes.txt").write_text("not a video\n")
    (folder / "sub").mkdir()
    subprocess.run(
        [
            ffmpeg,
            "-nostdin",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=32x24:r=10:d=1",
            "-c:v",
            "libx264",
            "-y",
            str(folder / "sub" / "d.mp4"),
        ],
        check=True,
        timeout=60,
    )
    return folder


def _batch(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> tuple[subprocess.CompletedProcess[bytes], dict]:
    done = run_cli("batch", *args, "--codec", "ffv1", "--json", env=env, cwd=cwd, timeout=300)
    return done, (json.loads(done.stdout) if done.stdout.strip() else {})


def _video_packets(ffmpeg: str, path: Path) -> int:
    out = subprocess.run(
        [ffmpeg, "-nostdin", "-v", "error", "-i", str(path), "-map", "0:v:0", "-c", "copy", "-f", "framecrc", "-"],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    return sum(1 for line in out.splitlines() if line.strip() and not line.startswith(b"#"))


def test_batch_takes_a_folder_and_skips_complete_outputs(
    small_clips: Path, ffmpeg: str, tmp_path: Path, random_preset: Callable[[int], Path]
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    # a: a complete earlier output (same frame count); b: one cut short by a crash; c: none yet
    subprocess.run(
        [
            ffmpeg,
            "-nostdin",
            "-v",
            "error",
            "-i",
            str(small_clips / "a.mp4"),
            "-c:v",
            "ffv1",
            "-y",
            str(out / "a_sr.mkv"),
        ],
        check=True,
        timeout=60,
    )
    subprocess.run(
        [
            ffmpeg,
            "-nostdin",
            "-v",
            "error",
            "-i",
            str(small_clips / "b.mkv"),
            "-frames:v",
            "4",
            "-c:v",
            "ffv1",
            "-y",
            str(out / "b_sr.mkv"),
        ],
        check=True,
        timeout=60,
    )
    preset = ("--preset", str(random_preset(2)))
    done, doc = _batch(str(small_clips), "--out-dir", str(out), *preset)
    assert done.returncode == 0, done.stderr.decode()
    results = doc["results"]
    assert [Path(r["input"]).name for r in results] == ["a.mp4", "b.mkv", "c.mov"]  # sorted; no txt, no sub/
    assert [r["status"] for r in results] == ["skipped", "done", "done"]
    assert (doc["done"], doc["skipped"], doc["failed"]) == (2, 1, 0)
    assert results[0]["frames"] == 10 and _video_packets(ffmpeg, out / "b_sr.mkv") == 10
    assert decode_y4m(ffmpeg, out / "c_sr.mkv")[0].geometry.width == 80
    again = run_cli("batch", str(small_clips), "--out-dir", str(out), *preset, "--codec", "ffv1", timeout=300)
    err = again.stderr.decode()
    lines = err.splitlines()  # no cluster is started: nothing to do
    assert again.returncode == 0 and sum(ln.startswith("skipped (already done) ") for ln in lines) == 3, err
    assert lines[-1] == "0 upscaled, 3 skipped (already done)"
    forced, doc = _batch(str(small_clips / "a.mp4"), "--out-dir", str(out), *preset, "-y")
    assert forced.returncode == 0 and [r["status"] for r in doc["results"]] == ["done"]
    assert decode_y4m(ffmpeg, out / "a_sr.mkv")[0].geometry.width == 96  # now really upscaled


def test_batch_reports_every_file_when_a_worker_dies(
    small_clips: Path, tmp_path: Path, random_preset: Callable[[int], Path], fake: Callable[[str], dict[str, str]]
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    marker = uuid.uuid4().hex
    # b's decoder kills its worker every time; with no deaths allowed Dask gives up on it at once
    env = {
        **fake("kill-worker-on"),
        "FAKE_MATCH": "b.mkv",
        "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0",
        "TMPDIR": str(scratch),
        "ESPCN_TEST_MARK": marker,
    }
    done, doc = _batch(str(small_clips), "--out-dir", str(out), "--preset", str(random_preset(2)), env=env)
    err = done.stderr.decode()
    assert done.returncode == 1, err
    assert [(Path(r["input"]).name, r["status"]) for r in doc["results"]] == [
        ("a.mp4", "done"),
        ("b.mkv", "failed"),
        ("c.mov", "done"),
    ]
    assert "KilledWorker" in doc["results"][1]["error"] and doc["failed"] == 1
    assert err.strip().splitlines()[-1].startswith("espcn-video: error: 1 of 3 files failed")
    assert (out / "a_sr.mkv").exists() and (out / "c_sr.mkv").exists() and not (out / "b_sr.mkv").exists()
    assert _wait_for_no_processes_marked(marker) == [] and list(scratch.iterdir()) == []


def _clip_copy(src: Path, dst: Path) -> Path:
    dst.write_bytes(src.read_bytes())
    return dst


def test_batch_refuses_an_output_that_is_an_input_before_any_work(
    small_clips: Path, ffmpeg: str, tmp_path: Path, random_preset: Callable[[int], Path]
) -> None:
    """--out-dir the input folder with --suffix .mkv: an input .mkv would be its own output. A
    named one was reported 'skipped (already done)', and a folder's were dropped without a line."""
    folder = tmp_path / "bin"
    folder.mkdir()
    _clip_copy(small_clips / "a.mp4", folder / "base.mp4")
    odd = _clip_copy(small_clips / "b.mkv", folder / "odd.mkv")
    before = odd.read_bytes()
    preset = ("--preset", str(random_preset(2)), "--codec", "ffv1")
    for args in ([str(folder)], [str(odd)]):
        done = run_cli("batch", *args, "--out-dir", str(folder), "--suffix", ".mkv", *preset, timeout=300)
        err = done.stderr.decode()
        assert done.returncode == 1 and err.count("\n") == 1, err
        assert err.startswith(f"espcn-video: error: {odd}: output is the input file (--out-dir {folder} ")
        assert err.rstrip().endswith("choose another --out-dir or --suffix"), err
    assert odd.read_bytes() == before and sorted(p.name for p in folder.iterdir()) == ["base.mp4", "odd.mkv"]
    # named, an earlier output is an input too: a.mp4 would overwrite it
    earlier = _clip_copy(small_clips / "a.mp4", folder / "base_sr.mkv")
    done = run_cli("batch", str(folder / "base.mp4"), str(earlier), "--out-dir", str(folder), *preset)
    err = done.stderr.decode()
    assert done.returncode == 1 and err.count("\n") == 1, err
    assert f"base.mp4: its output {earlier} is another input of this batch" in err
    # from a folder, an earlier output of one of its files is not an input: that file's line says it
    again = tmp_path / "again"
    again.mkdir()
    _clip_copy(small_clips / "a.mp4", again / "a.mp4")
    subprocess.run(
        [ffmpeg, "-nostdin", "-v", "error", "-i", str(again / "a.mp4"), "-c:v", "ffv1", str(again / "a.mkv")],
        check=True,
        timeout=60,
    )
    done = run_cli("batch", str(again), "--out-dir", str(again), "--suffix", ".mkv", *preset, timeout=300)
    lines = done.stderr.decode().splitlines()
    assert done.returncode == 0 and lines == [
        f"skipped (already done) {again / 'a.mp4'} -> {again / 'a.mkv'}: 10 frames",
        "0 upscaled, 1 skipped (already done)",
    ], lines


def test_batch_reports_a_bad_input_once_without_worker_tracebacks(
    small_clips: Path, tmp_path: Path, random_preset: Callable[[int], Path]
) -> None:
    """An empty file failed its task, which Dask ran three times (two retries), each time with a
    'distributed.worker - ERROR - Compute Failed ... Traceback' block on stderr."""
    folder = tmp_path / "bin"
    folder.mkdir()
    _clip_copy(small_clips / "a.mp4", folder / "a.mp4")
    (folder / "empty.mp4").write_bytes(b"")
    out = tmp_path / "out"
    out.mkdir()
    done = run_cli(
        "batch", str(folder), "--out-dir", str(out), "--preset", str(random_preset(2)), "--codec", "ffv1", timeout=300
    )
    err = done.stderr.decode()
    assert done.returncode == 1, err
    assert "Traceback" not in err and "distributed.worker" not in err, err
    empty = folder / "empty.mp4"
    assert [ln for ln in err.splitlines() if ln.startswith("failed ")] == [f"failed {empty}: the file is empty"]
    assert err.splitlines()[-1] == f"espcn-video: error: 1 of 2 files failed (first: {empty}: the file is empty)", err
    assert (out / "a_sr.mkv").exists() and not (out / "empty_sr.mkv").exists()


def test_batch_runs_a_file_again_after_a_crash_not_after_its_own_error(
    small_clips: Path,
    ffmpeg: str,
    tmp_path: Path,
    random_preset: Callable[[int], Path],
    fake: Callable[[str], dict[str, str]],
) -> None:
    """A crash (an encoder that aborts now and then) is worth another try, and gets it, quietly;
    an input error is the file's result (the test above)."""
    out = tmp_path / "out"
    out.mkdir()
    env = fake("encoder-crash-once")
    done = run_cli(
        "batch",
        str(small_clips / "a.mp4"),
        "--out-dir",
        str(out),
        "--preset",
        str(random_preset(2)),
        "--codec",
        "ffv1",
        "--local-workers",
        "1",
        env=env,
        timeout=300,
    )
    err = done.stderr.decode()
    assert done.returncode == 0 and not Path(env["FAKE_ONCE"]).exists(), err  # it did crash, once
    assert "Traceback" not in err and "Compute Failed" not in err, err
    assert err.splitlines()[-1] == "1 upscaled, 0 skipped (already done)", err
    assert _video_packets(ffmpeg, out / "a_sr.mkv") == 10


# The daemon asks for SIGKILL when pytest dies (PR_SET_PDEATHSIG survives exec), so even a run killed
# from outside leaks no daemon; done in the new process, not in preexec_fn, which is unsafe with threads.
_DIE_WITH_PARENT = (
    "import ctypes, os, sys; ctypes.CDLL(None).prctl(1, 9); os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
)


class Daemons:
    """`dask scheduler` and `dask worker` processes for one test; all killed and reaped at the end."""

    def __init__(self, root: Path, marker: str) -> None:
        self.root = root
        self.marker = marker
        self.procs: list[subprocess.Popen[bytes]] = []
        self.scheduler_file = root / "scheduler.json"

    def _start(self, module: str, args: list[str], cwd: Path, env: dict[str, str]) -> None:
        log = open(cwd / f"{module}.log", "wb")  # noqa: SIM115 - kept open for the daemon's life
        self.procs.append(
            subprocess.Popen(
                [sys.executable, "-c", _DIE_WITH_PARENT, "-m", f"distributed.cli.{module}", *args],
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # the scheduler's scratch folder goes under the test's folder, not /tmp/dask-scratch-space
                env={**os.environ, "ESPCN_TEST_MARK": self.marker, "DASK_TEMPORARY_DIRECTORY": str(self.root), **env},
            )
        )
        log.close()

    def start_scheduler(self) -> str:
        self._start(
            "dask_scheduler",
            ["--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file", str(self.scheduler_file)],
            self.root,
            {},
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.scheduler_file.exists():
                try:
                    return str(json.loads(self.scheduler_file.read_text())["address"])
                except (ValueError, KeyError):
                    pass  # written but not yet complete
            assert self.procs[0].poll() is None, (self.root / "dask_scheduler.log").read_text()
            time.sleep(0.2)
        raise AssertionError("the dask scheduler did not start within 60 s")

    def start_worker(self, name: str, env: dict[str, str] | None = None) -> Path:
        cwd = self.root / name
        cwd.mkdir()
        self._start(
            "dask_worker",
            [
                "--scheduler-file",
                str(self.scheduler_file),
                "--nworkers",
                "1",
                "--nthreads",
                "1",
                "--host",
                "127.0.0.1",
                "--no-dashboard",
                "--local-directory",
                str(cwd),
                "--death-timeout",
                "60",
                "--name",
                name,
            ],
            cwd,
            env or {},
        )
        return cwd

    def worker_addresses(self, n: int) -> list[str]:
        """Wait until n workers are connected; their addresses."""
        from distributed import Client

        with Client(scheduler_file=str(self.scheduler_file), timeout="30s") as client:
            client.wait_for_workers(n, timeout=90)
            return sorted(client.nthreads())

    def stop(self) -> None:
        for proc in reversed(self.procs):  # workers first, then the scheduler
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        # the nannies' worker processes and their ffmpeg children carry the marker too
        deadline = time.monotonic() + 10
        while _processes_marked(self.marker) and time.monotonic() < deadline:
            _kill_marked(self.marker)
            time.sleep(0.2)


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Daemons]:
    root = tmp_path / "dask"
    root.mkdir()
    marker = uuid.uuid4().hex
    d = Daemons(root, marker)
    try:
        yield d
    finally:
        d.stop()
    assert _processes_marked(marker) == []


def test_scheduler_daemons_run_chunks_and_batch(
    daemons: Daemons,
    sources: dict[str, Path],
    small_clips: Path,
    ffmpeg: str,
    tmp_path: Path,
    random_preset: Callable[[int], Path],
) -> None:
    address = daemons.start_scheduler()
    daemons.start_worker("w1")
    daemons.start_worker("w2")  # each in its own folder: only absolute paths resolve on them
    assert len(daemons.worker_addresses(2)) == 2
    src = sources["opengop.mp4"]
    whole, chunked = tmp_path / "whole.mkv", tmp_path / "chunked.mkv"
    plain = _run(src, whole, random_preset(2))
    summary = _run(src, chunked, random_preset(2), "--chunks", "3", "--scheduler", address)
    assert summary["chunks"] == 3 and summary["workers"] == 2 and summary["frames"] == plain["frames"] == 75
    assert _same_frames(_frames(ffmpeg, whole), _frames(ffmpeg, chunked))
    out = tmp_path / "out"
    out.mkdir()
    done, doc = _batch(
        str(small_clips / "a.mp4"),
        str(small_clips / "c.mov"),
        "--out-dir",
        str(out),
        "--preset",
        str(random_preset(2)),
        "--scheduler",
        address,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert [r["status"] for r in doc["results"]] == ["done", "done"]
    assert [_video_packets(ffmpeg, out / n) for n in ("a_sr.mkv", "c_sr.mkv")] == [10, 10]


def test_preflight_names_the_worker_and_what_it_lacks(
    daemons: Daemons, small_clips: Path, tmp_path: Path, random_preset: Callable[[int], Path]
) -> None:
    address = daemons.start_scheduler()
    # This worker runs in another folder (a relative input does not resolve there) and has no ffmpeg.
    daemons.start_worker("lacking", {"ESPCN_VIDEO_FFMPEG": str(tmp_path / "no-such-ffmpeg")})
    (worker,) = daemons.worker_addresses(1)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.mp4").write_bytes((small_clips / "a.mp4").read_bytes())
    (tmp_path / "out").mkdir()
    t0 = time.monotonic()
    done, _ = _batch(
        "in/a.mp4", "--out-dir", "out", "--preset", str(random_preset(2)), "--scheduler", address, cwd=tmp_path
    )
    err = done.stderr.decode().strip()
    assert done.returncode == 1 and time.monotonic() - t0 < 120, err
    assert len(err.splitlines()) == 1 and err.startswith("espcn-video: error: 1 of 1 Dask workers"), err
    assert f"{worker}: no input file in/a.mp4 (relative to the worker's folder {tmp_path / 'dask' / 'lacking'})" in err
    assert "; no output folder out (relative to" in err and "; no usable ffmpeg" in err and "no-such-ffmpeg" in err
    assert not (tmp_path / "out" / "a_sr.mkv").exists()


@pytest.fixture(scope="module")
def size_change(tmp_path_factory: pytest.TempPathFactory, ffmpeg: str) -> Path:
    """An MPEG-TS stream that changes size: 1 s at 96x64, then 9 s at 48x32 (10 fps, 100 frames),
    as an adaptive stream's recording does. A second chunk starts past its seek margin into the
    small part, so its decoder never sees a 96x64 frame."""
    folder = tmp_path_factory.mktemp("sizes")
    parts = []
    for i, (size, seconds, offset) in enumerate([("96x64", 1, 0), ("48x32", 9, 1)]):
        part = folder / f"part{i}.ts"
        subprocess.run(
            [ffmpeg, "-nostdin", "-v", "error", "-f", "lavfi", "-i", f"testsrc2=s={size}:r=10:d={seconds}"]
            + [
                "-c:v",
                "libx264",
                "-g",
                "10",
                "-bf",
                "0",
                "-pix_fmt",
                "yuv420p",
                "-output_ts_offset",
                str(offset),
                "-y",
                str(part),
            ],
            check=True,
            timeout=120,
        )
        parts.append(part.read_bytes())
    path = folder / "sizes.ts"
    path.write_bytes(b"".join(parts))
    return path


def test_a_source_that_changes_size_is_scaled_alike_chunked_or_not_and_said(
    size_change: Path, ffmpeg: str, tmp_path: Path, random_preset: Callable[[int], Path]
) -> None:
    """Every frame is brought to the first frame's size before SR, whichever chunk it lands in
    (a chunk that started in the small part was upscaled at 48x32 and stretched at the join),
    and the summary says where the size changed and to what."""
    whole, chunked = tmp_path / "whole.mkv", tmp_path / "chunked.mkv"
    plain = _run(size_change, whole, random_preset(2))
    summary = _run(size_change, chunked, random_preset(2), "--chunks", "2", "--local-workers", "2")
    change = [{"frame": 10, "time_s": 1.0, "width": 48, "height": 32, "pix_fmt": "yuv420p"}]
    assert plain["size_changes"] == change and summary["size_changes"] == change
    for doc in (plain, summary):
        assert any("changes frame size or format mid-stream: 96x64 yuv420p, then 48x32" in n for n in doc["notes"])
    a, b = _frames(ffmpeg, whole), _frames(ffmpeg, chunked)
    assert len(a) == 100 and all(f[0].shape == (128, 192) for f in a)
    assert _same_frames(a, b)
    # batch says it per file, as upscale does
    out = tmp_path / "batch"
    out.mkdir()
    done, doc = _batch(str(size_change), "--out-dir", str(out), "--preset", str(random_preset(2)))
    assert done.returncode == 0, done.stderr.decode()
    (rec,) = doc["results"]
    assert rec["size_changes"] == change and any("mid-stream: 96x64 yuv420p" in n for n in rec["notes"])
