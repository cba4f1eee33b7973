"""Progress where no terminal is: --progress key=value blocks (like ffmpeg's -progress) and the
plain lines a log gets, parsed from real runs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from espcn_video.cli.progress import ProgressWriter, format_out_time
from tests.conftest import run_cli

pytestmark = pytest.mark.timeout(240)

KEYS = ["frame", "total_frames", "fps", "out_time_us", "out_time", "speed", "elapsed_s", "eta_s", "progress"]


@pytest.fixture
def slow_src(clips: Callable[..., Path]) -> Path:
    # 5 frames at 10 fps; the fake decoder hands them over 0.3 s apart, so the run lasts ~1.5 s
    return clips("progress.mkv", "-c:v", "ffv1", "-pix_fmt", "yuv420p", src="testsrc2=s=48x32:r=10:d=0.5")


def parse_blocks(text: str) -> list[dict[str, str]]:
    blocks, current = [], {}
    for line in text.splitlines():
        if "=" not in line or line.startswith("espcn-video"):
            continue
        key, _, value = line.partition("=")
        current[key] = value
        if key == "progress":
            blocks.append(current)
            current = {}
    return blocks


def test_out_time_is_ffmpegs_format() -> None:
    assert format_out_time(0) == "00:00:00.000000"
    assert format_out_time(3723.5) == "01:02:03.500000"


def test_writer_keeps_its_period_and_always_ends() -> None:
    import io

    now = [0.0]
    out = io.StringIO()
    writer = ProgressWriter(out, "upscale", keyvalue=True, period_s=0.5, clock=lambda: now[0])
    writer.start(total_frames=10)
    for frame in range(1, 11):
        now[0] += 0.2
        writer.update(frame, frame / 10)
    writer.finish()
    writer.finish()  # once only
    blocks = parse_blocks(out.getvalue())
    assert [b["frame"] for b in blocks] == ["3", "6", "9", "10"]  # each 0.6 s (0.5 s period, 0.2 s steps), then the end
    assert [b["progress"] for b in blocks] == ["continue"] * 3 + ["end"]
    assert blocks[-1]["out_time"] == "00:00:01.000000" and blocks[-1]["speed"] == "0.50x"
    assert blocks[0]["eta_s"] == "1.4" and blocks[-1]["total_frames"] == "10"


def test_progress_to_stderr_parses_into_rising_frames_ending_in_end(
    slow_src: Path, tmp_path: Path, random_preset: Callable[[int], Path], fake_ffmpeg: Callable[[str], dict[str, str]]
) -> None:
    done = run_cli(
        "upscale", str(slow_src), str(tmp_path / "o.mkv"), "--preset", str(random_preset(2)),
        "--progress", "-", "--stats-period", "0.1", "-q", env=fake_ffmpeg("decoder-slow"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    blocks = parse_blocks(done.stderr.decode())
    assert len(blocks) >= 3 and all(list(b) == KEYS for b in blocks)
    frames = [int(b["frame"]) for b in blocks]
    assert frames == sorted(frames) and frames[0] < 5 and frames[-1] == 5
    assert [b["progress"] for b in blocks[:-1]] == ["continue"] * (len(blocks) - 1) and blocks[-1]["progress"] == "end"
    assert blocks[-1]["out_time"] == "00:00:00.400000" and blocks[-1]["total_frames"] == "5"
    assert "espcn-video: upscale: frame" not in done.stderr.decode()  # no plain lines beside the stream


def test_progress_file_and_plain_lines_in_a_log(
    slow_src: Path, tmp_path: Path, random_preset: Callable[[int], Path], fake_ffmpeg: Callable[[str], dict[str, str]]
) -> None:
    progress = tmp_path / "progress.txt"
    done = run_cli(
        "upscale", str(slow_src), str(tmp_path / "a.mkv"), "--preset", str(random_preset(2)),
        "--progress", str(progress), "--stats-period", "0.1", env=fake_ffmpeg("decoder-slow"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    blocks = parse_blocks(progress.read_text())
    assert len(blocks) >= 3 and blocks[-1]["progress"] == "end" and blocks[-1]["frame"] == "5"
    # stderr is a pipe here, as under a job runner: without --progress it gets plain lines while it runs
    done = run_cli(
        "upscale", str(slow_src), str(tmp_path / "b.mkv"), "--preset", str(random_preset(2)),
        "--stats-period", "0.1", env=fake_ffmpeg("decoder-slow"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    lines = [ln for ln in done.stderr.decode().splitlines() if ln.startswith("espcn-video: upscale: frame ")]
    assert len(lines) >= 3
    counts = [int(ln.split("frame ")[1].split("/")[0].split(",")[0]) for ln in lines]
    assert counts == sorted(counts) and "fps" in lines[0] and "speed" in lines[-1]
    quiet = run_cli(
        "upscale", str(slow_src), str(tmp_path / "c.mkv"), "--preset", str(random_preset(2)), "-q",
        "--stats-period", "0.1", env=fake_ffmpeg("decoder-slow"),
    )  # fmt: skip
    assert quiet.returncode == 0 and b"espcn-video: upscale: frame" not in quiet.stderr


def test_progress_refusals_are_one_line(slow_src: Path, tmp_path: Path, random_preset: Callable[[int], Path]) -> None:
    done = run_cli("upscale", str(slow_src), str(tmp_path / "o.mkv"), "--progress", str(tmp_path / "no" / "p.txt"))
    assert done.returncode == 2 and b"--progress" in done.stderr and b"cannot write it" in done.stderr
    done = run_cli("upscale", str(slow_src), str(tmp_path / "o.mkv"), "--timings", "t.csv", "--chunks", "2")
    assert done.returncode == 2 and b"--timings cannot be used with --chunks" in done.stderr


def test_psnr_progress_counts_frames_over_every_clip_and_method(
    clips: Callable[..., Path], tmp_path: Path, random_preset: Callable[[int], Path]
) -> None:
    ref = clips("progress_ref.y4m", "-pix_fmt", "yuv420p", src="testsrc2=s=48x32:r=10:d=1")
    progress = tmp_path / "psnr.progress"
    done = run_cli(
        "psnr", str(ref), "--scale", "2", "--preset", str(random_preset(2)), "--methods", "bicubic,espcn",
        "--frames", "8", "--progress", str(progress), "--stats-period", "0.05", "-q",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    blocks = parse_blocks(progress.read_text())
    frames = [int(b["frame"]) for b in blocks]
    assert frames == sorted(frames) and frames[-1] == 16  # 8 frames x 2 methods
    assert blocks[-1]["progress"] == "end" and blocks[-1]["total_frames"] == "16"
    assert blocks[-1]["out_time"] == "N/A"


@pytest.fixture
def slow_ten(clips: Callable[..., Path]) -> Path:
    # 10 frames, every one a keyframe; through decoder-slow each chunk or file takes about 0.3 s a frame
    return clips("progress10.mkv", "-c:v", "ffv1", "-pix_fmt", "yuv420p", src="testsrc2=s=48x32:r=10:d=1")


def assert_counts_frames_while_tasks_run(blocks: list[dict[str, str]], total: int, task_sizes: set[int]) -> None:
    """Rising to the total and ending in `end`; and some count no task boundary explains, so
    the running tasks reported their own frames, not only the driver when a task ended."""
    frames = [int(b["frame"]) for b in blocks]
    assert all(list(b) == KEYS for b in blocks)
    assert frames == sorted(frames) and frames[-1] == total
    assert blocks[-1]["progress"] == "end" and all(b["progress"] == "continue" for b in blocks[:-1])
    assert blocks[-1]["total_frames"] == str(total) and blocks[0]["total_frames"] == str(total)
    boundaries = {0, total} | task_sizes
    assert set(frames) - boundaries, frames


@pytest.mark.slow
def test_chunked_progress_counts_every_frame_of_the_running_chunks(
    slow_ten: Path, tmp_path: Path, random_preset: Callable[[int], Path], fake_ffmpeg: Callable[[str], dict[str, str]]
) -> None:
    progress = tmp_path / "chunks.progress"
    done = run_cli(
        "upscale", str(slow_ten), str(tmp_path / "o.mkv"), "--preset", str(random_preset(2)), "--codec", "ffv1",
        "--chunks", "2", "--local-workers", "2", "--progress", str(progress), "--stats-period", "0.1", "-q",
        env=fake_ffmpeg("decoder-slow"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    assert_counts_frames_while_tasks_run(parse_blocks(progress.read_text()), 10, {5})
    assert parse_blocks(progress.read_text())[-1]["out_time"] == "N/A"  # chunks run side by side: no one position


@pytest.mark.slow
def test_batch_progress_counts_frames_over_every_file_and_a_log_gets_lines(
    slow_ten: Path, tmp_path: Path, random_preset: Callable[[int], Path], fake_ffmpeg: Callable[[str], dict[str, str]]
) -> None:
    import shutil

    second = tmp_path / "second.mkv"
    shutil.copy(slow_ten, second)
    out = tmp_path / "out"
    out.mkdir()
    progress = tmp_path / "batch.progress"
    done = run_cli(
        "batch", str(slow_ten), str(second), "--out-dir", str(out), "--preset", str(random_preset(2)),
        "--progress", str(progress), "--stats-period", "0.1", env=fake_ffmpeg("decoder-slow"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    assert_counts_frames_while_tasks_run(parse_blocks(progress.read_text()), 20, {10})
    assert sorted(p.name for p in out.iterdir()) == ["progress10_sr.mkv", "second_sr.mkv"]
    # no --progress, stderr a log (not a terminal): plain lines
    log = run_cli(
        "batch", str(slow_ten), "--out-dir", str(out), "--preset", str(random_preset(2)), "-y",
        "--stats-period", "0.2", env=fake_ffmpeg("decoder-slow"),
    )  # fmt: skip
    assert log.returncode == 0, log.stderr.decode()
    assert b"espcn-video: batch: frame " in log.stderr
