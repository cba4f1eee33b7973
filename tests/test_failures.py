"""Every failure gets one clear line on stderr, the right exit code, no process left, no OUT."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import default_sigint, run_cli
from tests.conftest import one_error_line as _one_error_line

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def src(clips: Callable[..., Path]) -> Path:
    return clips("fail.mkv", "-c:v", "ffv1", "-pix_fmt", "yuv420p", src="testsrc2=s=48x32:r=10:d=2")


def test_missing_input(tmp_path: Path, random_preset: Callable[[int], Path]) -> None:
    done = run_cli("upscale", str(tmp_path / "nope.mp4"), str(tmp_path / "o.mp4"), "--preset", str(random_preset(2)))
    assert done.returncode == 1
    assert _one_error_line(done).endswith("nope.mp4: no such file")


def test_not_a_video(tmp_path: Path, random_preset: Callable[[int], Path]) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("hello, not a video\n")
    done = run_cli("upscale", str(bad), str(tmp_path / "o.mp4"), "--preset", str(random_preset(2)))
    assert done.returncode == 1
    assert "notes.txt: ffmpeg cannot read it (Invalid data found when processing input)" in _one_error_line(done)


def test_audio_only_file_has_no_video(
    tmp_path: Path, clips: Callable[..., Path], random_preset: Callable[[int], Path]
) -> None:
    audio = clips("tone.wav", src="sine=duration=0.5")
    done = run_cli("upscale", str(audio), str(tmp_path / "o.mp4"), "--preset", str(random_preset(2)))
    assert done.returncode == 1 and _one_error_line(done).endswith("tone.wav: no video stream")


def test_empty_file(tmp_path: Path, random_preset: Callable[[int], Path]) -> None:
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    done = run_cli("upscale", str(empty), str(tmp_path / "o.mp4"), "--preset", str(random_preset(2)))
    assert done.returncode == 1 and _one_error_line(done).endswith("empty.mp4: the file is empty")


def test_truncated_y4m(tmp_path: Path, clips: Callable[..., Path], random_preset: Callable[[int], Path]) -> None:
    whole = clips("whole.y4m", "-pix_fmt", "yuv420p").read_bytes()
    cut = tmp_path / "cut.y4m"
    cut.write_bytes(whole[: len(whole) - 1000])
    done = run_cli("upscale", str(cut), str(tmp_path / "o.y4m"), "--preset", str(random_preset(2)))
    assert done.returncode == 1
    assert "cut.y4m: truncated y4m: 9 whole frames and 1310 bytes of a partial one" in _one_error_line(done)
    assert not (tmp_path / "o.y4m").exists()


def test_raw_yuv_not_whole_frames(tmp_path: Path, random_preset: Callable[[int], Path]) -> None:
    raw = tmp_path / "clip.yuv"
    raw.write_bytes(b"\x80" * (48 * 32 * 3 // 2 * 2 + 100))
    done = run_cli(
        "upscale", str(raw), str(tmp_path / "o.y4m"), "--input-size", "48x32", "--preset", str(random_preset(2))
    )
    assert done.returncode == 1
    assert (
        "clip.yuv: 4708 bytes is not a whole number of 48x32 yuv420p frames (2304 bytes each; "
        "2 frames and 100 bytes left over)"
    ) in _one_error_line(done)


def test_raw_yuv_needs_a_size(tmp_path: Path) -> None:
    raw = tmp_path / "clip.yuv"
    raw.write_bytes(b"\x80" * 100)
    done = run_cli("upscale", str(raw), str(tmp_path / "o.y4m"))
    assert done.returncode == 2 and "raw .yuv needs --input-size WxH" in _one_error_line(done)


def test_unknown_preset(src: Path, tmp_path: Path) -> None:
    done = run_cli("upscale", str(src), str(tmp_path / "o.mkv"), "--preset", "espcn-x9")
    assert done.returncode == 1
    line = _one_error_line(done)
    assert "espcn-x9" in line and "available" in line


def test_unsupported_scale(src: Path, tmp_path: Path) -> None:
    done = run_cli("upscale", str(src), str(tmp_path / "o.mkv"), "--scale", "5")
    assert done.returncode == 2 and "'5' is not one of '2', '3', '4'" in done.stderr.decode()


def test_existing_output_and_output_equal_input(
    src: Path, tmp_path: Path, random_preset: Callable[[int], Path]
) -> None:
    out = tmp_path / "exists.mkv"
    out.write_bytes(b"keep me")
    done = run_cli("upscale", str(src), str(out), "--preset", str(random_preset(2)))
    assert done.returncode == 1 and "already exists (use -y/--overwrite to replace it)" in _one_error_line(done)
    assert out.read_bytes() == b"keep me"
    done = run_cli("upscale", str(src), str(src), "--preset", str(random_preset(2)), "-y")
    assert done.returncode == 1 and "output is the input file" in _one_error_line(done)


@pytest.mark.parametrize(
    ("name", "extra", "said"),
    [
        ("o.xyz", (), "o.xyz: ffmpeg cannot tell a format from .xyz; use a known extension"),
        ("o", (), "ffmpeg cannot tell a format from a name without an extension"),
        ("o.mkv", ("--format", "nosuchmuxer"), "--format nosuchmuxer: this ffmpeg has no such output format"),
        ("o.gif", (), "o.gif: animated GIF is not written"),
        ("o.mkv", ("--chunks", "2", "--format", "nosuchmuxer"), "--format nosuchmuxer: this ffmpeg has no such"),
    ],
)
def test_an_output_format_ffmpeg_cannot_write_fails_before_any_frame(
    src: Path, tmp_path: Path, random_preset: Callable[[int], Path], name: str, extra: tuple[str, ...], said: str
) -> None:
    """It failed at the encoder once its first packet was out (frame 49 of 50), after the work."""
    done = run_cli("upscale", str(src), str(tmp_path / name), "--preset", str(random_preset(2)), "--json", *extra)
    assert done.returncode == 2 and said in _one_error_line(done)
    assert done.stdout == b"" and list(tmp_path.iterdir()) == []


def test_encoder_rejects_option(src: Path, tmp_path: Path, random_preset: Callable[[int], Path]) -> None:
    out = tmp_path / "o.mp4"
    done = run_cli("upscale", str(src), str(out), "--preset", str(random_preset(2)), "--encoder-preset", "warp-speed")
    assert done.returncode == 1
    line = _one_error_line(done)
    assert line.startswith("espcn-video: error: ffmpeg encoder failed (exit ") and "warp-speed" in line
    assert list(tmp_path.iterdir()) == []


def test_no_ffmpeg_at_all(src: Path, tmp_path: Path, random_preset: Callable[[int], Path]) -> None:
    done = run_cli(
        "upscale",
        str(src),
        str(tmp_path / "o.mkv"),
        "--preset",
        str(random_preset(2)),
        env={"ESPCN_VIDEO_FFMPEG": str(tmp_path / "no-ffmpeg-here")},
    )
    assert done.returncode == 1
    assert "does not name an ffmpeg binary" in _one_error_line(done)


@pytest.mark.parametrize(
    "mode,expected",
    [
        # the fake's frames outrun the real decoder's timestamps: the reader stops at frame 1 or 2
        (
            "decoder-dies",
            "ffmpeg decoder failed (exit 1): [h264 @ 0x1] Invalid NAL unit size (corrupt input) "
            "(reader stage at frame ",
        ),
        (
            "decoder-partial",
            "decoder output: frame 1 is truncated (1149 of 2304 bytes): "
            "the stream is corrupt or ended mid-frame (reader stage at frame 1)",
        ),
        ("stderr-flood", "ffmpeg decoder failed (exit 1):"),
        (
            "encoder-no-space",
            "ffmpeg encoder failed (exit 1): [out#0/mp4] Error writing trailer: No space left on device",
        ),
    ],
)
def test_fake_ffmpeg_faults(
    src: Path,
    tmp_path: Path,
    random_preset: Callable[[int], Path],
    fake_ffmpeg: Callable[[str], dict[str, str]],
    mode: str,
    expected: str,
) -> None:
    out = tmp_path / "o.mp4"
    done = run_cli("upscale", str(src), str(out), "--preset", str(random_preset(2)), env=fake_ffmpeg(mode), timeout=120)
    assert done.returncode == 1
    line = _one_error_line(done)
    assert expected in line
    if mode == "stderr-flood":
        assert "final error: decoding failed" in line and len(line) < 2000
    assert not out.exists() and [p.name for p in tmp_path.iterdir() if p.name != "ffmpeg"] == []


def _children(pid: int) -> set[int]:
    kids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.add(int(entry.name))
    return kids


def _start_and_wait_for_children(
    src: Path, out: Path, preset: Path, env: dict[str, str], *extra: str
) -> tuple[subprocess.Popen[bytes], set[int]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "espcn_video", "upscale", str(src), str(out), "--preset", str(preset), *extra],
        env={**os.environ, **env},
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        preexec_fn=default_sigint,
    )
    deadline = time.monotonic() + 60
    kids: set[int] = set()
    while time.monotonic() < deadline and len(kids) < 2:  # decoder and encoder are running
        kids = _children(proc.pid)
        time.sleep(0.1)
    assert len(kids) >= 2
    return proc, kids


def _gone(pid: int) -> bool:
    return not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]


@pytest.mark.parametrize("sig,code,word", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
def test_ctrl_c_and_sigterm_leave_no_process_and_no_output(
    src: Path,
    tmp_path: Path,
    random_preset: Callable[[int], Path],
    fake_ffmpeg: Callable[[str], dict[str, str]],
    sig: signal.Signals,
    code: int,
    word: str,
) -> None:
    out = tmp_path / "o.mp4"
    proc, kids = _start_and_wait_for_children(src, out, random_preset(2), fake_ffmpeg("decoder-slow"))
    time.sleep(1.0)
    t0 = time.monotonic()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert time.monotonic() - t0 < 1.0
    assert proc.returncode == code, err.decode()
    assert "Traceback" not in err.decode() and word in err.decode()
    assert all(_gone(kid) for kid in kids)
    assert [p.name for p in tmp_path.iterdir() if p.name != "ffmpeg"] == []


def test_sigkill_takes_the_children_along_and_the_next_run_sweeps_the_partial(
    src: Path,
    tmp_path: Path,
    random_preset: Callable[[int], Path],
    clips: Callable[..., Path],
    fake_ffmpeg: Callable[[str], dict[str, str]],
) -> None:
    out = tmp_path / "o.mkv"
    # Frames over the encoder pipe's 1 MB buffer reach the encoder one by one (tiny ones wait for
    # the buffer to fill, so the partial file would appear only at the end): 1280x720 out.
    long_src = clips("slow.mkv", "-c:v", "ffv1", "-pix_fmt", "yuv420p", src="testsrc2=s=640x360:r=10:d=3")
    proc, kids = _start_and_wait_for_children(
        long_src, out, random_preset(2), fake_ffmpeg("decoder-slow"), "--codec", "ffv1"
    )  # 30 frames, 0.3 s apart: 9 s
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not list(tmp_path.glob(".o.partial-*")):
        time.sleep(0.1)  # the encoder has written part of the file
    assert list(tmp_path.glob(".o.partial-*")), sorted(p.name for p in tmp_path.iterdir())
    proc.kill()
    proc.communicate(timeout=30)
    time.sleep(1.0)
    assert all(_gone(kid) for kid in kids)  # PR_SET_PDEATHSIG: no encoder writes on
    left = sorted(p.name for p in tmp_path.iterdir() if p.name != "ffmpeg")
    assert len(left) == 1 and left[0].startswith(".o.partial-"), left
    done = run_cli("upscale", str(src), str(out), "--preset", str(random_preset(2)), "--codec", "ffv1")
    assert done.returncode == 0, done.stderr.decode()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "ffmpeg") == ["o.mkv"]


def test_a_dead_runs_sequence_folder_is_swept_and_a_failed_sequence_leaves_nothing(
    src: Path, tmp_path: Path, random_preset: Callable[[int], Path]
) -> None:
    """A numbered sequence is written into a hidden folder beside it: the next run removes one left
    by a run that died, and a run that fails removes its own (no frame reaches a final name)."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(timeout=30)
    stale = tmp_path / f".f_03d.partial-{dead.pid}-abcdef"
    stale.mkdir()
    (stale / "f_001.png").write_bytes(b"half")
    out = tmp_path / "f_%03d.png"
    done = run_cli("upscale", str(src), str(out), "--preset", str(random_preset(2)))
    assert done.returncode == 0, done.stderr.decode()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert not stale.exists() and names[0] == "f_001.png" and all(n.startswith("f_") for n in names), names
    bad = run_cli(
        "upscale",
        str(src),
        str(tmp_path / "g_%03d.png"),
        "--preset",
        str(random_preset(2)),
        "--output-args",
        "-frames:v 2",
    )  # ends early: fewer images than frames
    assert bad.returncode == 1 and "images were written for" in bad.stderr.decode(), bad.stderr.decode()
    assert sorted(p.name for p in tmp_path.iterdir()) == names


def test_output_that_appears_during_the_run_is_not_replaced(
    src: Path, tmp_path: Path, random_preset: Callable[[int], Path], fake_ffmpeg: Callable[[str], dict[str, str]]
) -> None:
    out = tmp_path / "o.mkv"
    proc, _ = _start_and_wait_for_children(src, out, random_preset(2), fake_ffmpeg("decoder-slow"))
    out.write_text("another run's result")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert "o.mkv: appeared while this run was working; not replaced" in err.decode()
    assert out.read_text() == "another run's result"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "ffmpeg") == ["o.mkv"]


def test_runs_without_posix_only_modules(src: Path, tmp_path: Path, random_preset: Callable[[int], Path]) -> None:
    """Windows has no fcntl or resource: the package must import and upscale without them."""
    out = tmp_path / "o.mkv"
    code = (
        "import sys; sys.modules['fcntl'] = None; sys.modules['resource'] = None; "
        "from espcn_video.cli import main; main()"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "upscale",
            str(src),
            str(out),
            "--preset",
            str(random_preset(2)),
            "--codec",
            "ffv1",
            "--json",
        ],
        capture_output=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr.decode()
    import json

    summary = json.loads(done.stdout)
    assert summary["frames"] == 20 and summary["peak_memory"]["python_mb"] is None


def test_ctrl_c_leaves_no_process_and_no_output(
    src: Path, tmp_path: Path, random_preset: Callable[[int], Path], fake_ffmpeg: Callable[[str], dict[str, str]]
) -> None:
    """A decoder that hangs mid-stream: Ctrl-C still returns at once."""
    out = tmp_path / "o.mp4"
    proc, kids = _start_and_wait_for_children(src, out, random_preset(2), fake_ffmpeg("decoder-hangs"))
    time.sleep(1.0)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert time.monotonic() - t0 < 2.0
    assert proc.returncode == 130, err.decode()
    assert "Traceback" not in err.decode() and "interrupted" in err.decode()
    time.sleep(0.2)
    assert all(_gone(kid) for kid in kids)
    assert [p.name for p in tmp_path.iterdir() if p.name != "ffmpeg"] == []


def test_file_cut_mid_way_is_an_error_unless_ignored(
    clips: Callable[..., Path], tmp_path: Path, random_preset: Callable[[int], Path]
) -> None:
    """ffmpeg exits 0 on a Matroska file cut in half; its error output makes it our failure."""
    whole = clips("long.mkv", "-c:v", "libx264", "-preset", "ultrafast", src="testsrc2=s=96x64:r=25:d=4").read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(whole[: len(whole) // 2])
    out = tmp_path / "o.mkv"
    done = run_cli("upscale", str(cut), str(out), "--preset", str(random_preset(2)))
    assert done.returncode == 1
    line = _one_error_line(done)
    assert "the input is corrupt or truncated: " in line and "File ended prematurely" in line
    assert not out.exists()
    done = run_cli("upscale", str(cut), str(out), "--preset", str(random_preset(2)), "--ignore-decode-errors")
    assert done.returncode == 0 and out.exists()


def test_help_and_version_start_without_torch() -> None:
    """Commands load when they run: `--help` lists them from the registry, whose one-line help
    must stay what each command says of itself; each command's own --help loads no engine either."""
    code = (
        "import sys, json; from espcn_video.cli import main\n"
        "from espcn_video.cli import COMMANDS\n"
        "for args in (['--help'], ['--version'], *([name, '--help'] for name in COMMANDS)):\n"
        "    try:\n"
        "        main(args)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(json.dumps(sorted(m for m in ('torch', 'openvino', 'onnxruntime', 'dask') if m in sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().splitlines()[-1] == "[]"
    assert re.search(r"\n  upscale +Super-resolve IN into OUT", done.stdout.decode())
    import click

    from espcn_video.cli import COMMANDS, main

    ctx = click.Context(main)
    for name, (_, _, short_help) in COMMANDS.items():
        command = main.get_command(ctx, name)
        assert command is not None and command.name == name
        assert command.get_short_help_str(limit=1000) == short_help


def test_verbose_logs_each_ffmpeg_command_and_a_failure_names_it(
    src: Path, tmp_path: Path, random_preset: Callable[[int], Path]
) -> None:
    done = run_cli(
        "-v", "upscale", str(src), str(tmp_path / "o.mkv"), "--preset", str(random_preset(2)), "--codec", "ffv1", "-q"
    )
    err = done.stderr.decode()
    assert done.returncode == 0, err
    for role in ("probe", "decoder", "encoder", "packet listing"):
        assert f"espcn-video: ffmpeg {role}: " in err
    assert "-filter_complex" in err and "espcn-video: ffmpeg encoder: exit 0" in err
    bad = run_cli(
        "-v",
        "upscale",
        str(src),
        str(tmp_path / "o.mp4"),
        "--preset",
        str(random_preset(2)),
        "--output-args",
        "-vf scale=97:65",
    )
    line = bad.stderr.decode().splitlines()[-1]
    assert bad.returncode == 1 and line.startswith("espcn-video: error: ffmpeg encoder failed")
    assert "width not divisible by 2" in line and "(command: " in line and "-f matroska -i pipe:0" in line
    quiet = run_cli(
        "upscale",
        str(src),
        str(tmp_path / "o2.mp4"),
        "--preset",
        str(random_preset(2)),
        "--output-args",
        "-vf scale=97:65",
    )
    assert "(command: " not in quiet.stderr.decode()
