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
    done = run_cli("upscale", str(slow_src), str(tmp_path / "o.mkv"), "--progress", "-", "--chunks", "2")
    assert done.returncode == 2 and b"--progress cannot be used with --chunks" in done.stderr


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
