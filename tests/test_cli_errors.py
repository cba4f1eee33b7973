"""Bad arguments to export, train, eval, psnr, bench and compare: one clear line and a non-zero exit,
before any work, never a traceback."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import one_error_line as _one_error_line
from tests.conftest import run_cli

pytestmark = pytest.mark.timeout(240)


def _usage_error(done: subprocess.CompletedProcess[bytes]) -> str:
    """click's own refusal of an option's value (exit 2): its 'Error: ...' line."""
    err = done.stderr.decode()
    assert done.returncode == 2 and "Traceback" not in err, err
    return next(ln for ln in err.splitlines() if ln.startswith("Error: "))


@pytest.fixture
def audio(clips: Callable[..., Path]) -> Path:
    return clips("tone.m4a", "-c:a", "aac", src="sine=duration=0.5")


@pytest.fixture
def video(clips: Callable[..., Path]) -> Path:
    return clips("base.mp4", "-pix_fmt", "yuv420p")


@pytest.fixture
def images(tmp_path: Path, ffmpeg: str) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(2):
        subprocess.run(
            [ffmpeg, "-nostdin", "-v", "error", "-f", "lavfi", "-i", f"testsrc2=s=96x96:d=0.1,hue=h={40 * i}",
             "-frames:v", "1", str(folder / f"i{i}.png")],
            check=True,
            timeout=60,
        )  # fmt: skip
    return folder


# -- an output that is a folder ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["victim", "victim2.onnx"])
@pytest.mark.parametrize("overwrite", [(), ("-y",)])
def test_export_out_is_a_folder(tmp_path: Path, name: str, overwrite: tuple[str, ...]) -> None:
    """It was a 34-line traceback (IsADirectoryError from the rename) with -y, and 'already exists
    (use -y/--overwrite to replace it)', which -y then did not, without."""
    folder = tmp_path / name
    folder.mkdir()
    (folder / "keep.txt").write_text("keep")
    done = run_cli("export", "--preset", "espcn-x2", str(folder), *overwrite)
    assert done.returncode == 1
    assert _one_error_line(done) == f"espcn-video: error: OUT {folder}: is a folder; give a file name"
    assert sorted(p.name for p in tmp_path.iterdir()) == [name] and (folder / "keep.txt").read_text() == "keep"


def test_export_openvino_bin_is_a_folder(tmp_path: Path) -> None:
    (tmp_path / "m.bin").mkdir()
    done = run_cli("export", "--preset", "espcn-x2", "--format", "openvino", str(tmp_path / "m.xml"), "-y")
    assert done.returncode == 1
    assert _one_error_line(done).endswith(
        f"{tmp_path / 'm.bin'}: is a folder, where --format openvino writes OUT's .bin; choose another OUT"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.bin"]


def test_train_out_is_a_folder(tmp_path: Path, images: Path) -> None:
    """It trained, then failed with IsADirectoryError when the weights were written."""
    out = tmp_path / "victim"
    out.mkdir()
    done = run_cli("train", "--data", str(images), "--out", str(out), "--steps", "1", "--no-eval", "--device", "cpu")
    assert done.returncode == 1
    assert _one_error_line(done) == f"espcn-video: error: --out {out}: is a folder; give a file name"
    assert done.stdout == b"" and list(out.iterdir()) == []
    (tmp_path / "m.json").mkdir()
    done = run_cli("train", "--data", str(images), "--out", str(tmp_path / "m.pt"), "--steps", "1", "--no-eval")
    assert done.returncode == 1
    assert _one_error_line(done).endswith(
        f"{tmp_path / 'm.json'}: is a folder, where train writes --out's .json; choose another --out"
    )
    assert not (tmp_path / "m.pt").exists()


# -- eval given an image file -----------------------------------------------------------------


def test_eval_given_an_image_file(images: Path) -> None:
    image = images / "i0.png"
    done = run_cli("eval", str(image))
    assert done.returncode == 1
    assert _one_error_line(done) == f"espcn-video: error: evaluation folder {image}: is a file; give a folder of images"
    done = run_cli("eval", str(images / "nothere"))
    assert done.returncode == 1
    assert _one_error_line(done).endswith(f"evaluation folder {images / 'nothere'} does not exist")


def test_eval_checks_every_folder_before_any_work(images: Path) -> None:
    """The first folder is not evaluated (a table on stderr) before the second is found to be a file."""
    done = run_cli("eval", str(images), str(images / "i1.png"))
    assert done.returncode == 1
    assert _one_error_line(done).endswith(f"evaluation folder {images / 'i1.png'}: is a file; give a folder of images")
    assert done.stdout == b""


# -- psnr and bench on a file with no video stream ----------------------------------------------


def test_psnr_audio_only_has_no_video_stream(audio: Path, video: Path) -> None:
    """It said ffmpeg's "Failed to set value '0:V:0' for option 'map'"."""
    done = run_cli("psnr", str(audio), "--methods", "bicubic")
    assert done.returncode == 1 and _one_error_line(done) == f"espcn-video: error: {audio}: no video stream"
    done = run_cli("psnr", "--dist", str(audio), str(video))
    assert done.returncode == 1 and _one_error_line(done) == f"espcn-video: error: {audio}: no video stream"


def test_bench_audio_only_has_no_video_stream(audio: Path) -> None:
    done = run_cli("bench", str(audio), "--frames", "1")
    assert done.returncode == 1 and _one_error_line(done) == f"espcn-video: error: {audio}: no video stream"


@pytest.mark.parametrize(
    ("setup", "said"),
    [
        ("missing", "no such file"),
        ("folder", "is a folder, not a video file"),
        ("empty", "the file is empty"),
        ("text", "ffmpeg cannot read it ("),
    ],
)
def test_bench_clip_refusals_name_the_file(tmp_path: Path, setup: str, said: str) -> None:
    clip = tmp_path / "clip.mp4"
    if setup == "folder":
        clip.mkdir()
    elif setup == "empty":
        clip.write_bytes(b"")
    elif setup == "text":
        clip.write_text("not a video\n" * 20)
    done = run_cli("bench", str(clip), "--frames", "1")
    assert done.returncode == 1 and _one_error_line(done).startswith(f"espcn-video: error: {clip}: {said}")


# -- an unknown --device ----------------------------------------------------------------------


@pytest.mark.parametrize("command", [("bench", "--frames", "1"), ("train", "--steps", "1")])
def test_unknown_device_is_a_usage_error(command: tuple[str, ...]) -> None:
    """bench said 'backend openvino has no int8 on tpu'."""
    done = run_cli(*command, "--device", "tpu")
    line = _usage_error(done)
    assert line == "Error: Invalid value for '--device': unknown device 'tpu'; choose auto, cpu, cuda or cuda:N"


def test_upscale_unknown_device(video: Path, tmp_path: Path, random_preset: Callable[[int], Path]) -> None:
    """The same click type on upscale (the engine's check, model/backends.py, stays below it)."""
    out = tmp_path / "o.mkv"
    done = run_cli("upscale", str(video), str(out), "--preset", str(random_preset(2)), "--device", "tpu")
    line = _usage_error(done)
    assert line == "Error: Invalid value for '--device': unknown device 'tpu'; choose auto, cpu, cuda or cuda:N"
    assert not out.exists()


def test_device_names_torch_takes() -> None:
    from espcn_video.cli.common import DEVICE
    from espcn_video.errors import UsageError
    from espcn_video.model.backends import check_device

    for name in ("auto", "cpu", "cuda", "cuda:1"):
        assert DEVICE.convert(name, None, None) == name
        check_device(name)
    for name in ("tpu", "cuda:", "cpu0", "mps"):
        with pytest.raises(UsageError, match=f"unknown device '{name}'"):
            check_device(name)


# -- raw .yuv options on a file that says its own format --------------------------------------


@pytest.mark.parametrize(
    ("extra", "options"),
    [
        (("--input-size", "10x10"), "--input-size describes"),
        (("--input-size", "10x10", "--input-rate", "5"), "--input-size and --input-rate describe"),
        (("--input-pix-fmt", "gray"), "--input-pix-fmt describes"),
    ],
)
def test_psnr_refuses_raw_options_on_a_container(video: Path, extra: tuple[str, ...], options: str) -> None:
    """`--input-size 10x10` read the .mp4 as raw yuv420p ('... is not a whole number of 10x10 yuv420p frames')."""
    it = "it" if options.endswith("describes") else "them"
    want = (
        f"espcn-video: error: {video}: {options} raw .yuv input, and a .mp4 file carries its own size, "
        f"pixel format and rate; leave {it} out"
    )
    done = run_cli("psnr", str(video), "--methods", "bicubic", *extra)
    assert done.returncode == 2 and _one_error_line(done) == want
    done = run_cli("psnr", "--dist", str(video), str(video), *extra)
    assert done.returncode == 2 and _one_error_line(done) == want


@pytest.mark.parametrize("command", ["compare", "upscale"])
def test_compare_and_upscale_refuse_raw_options_on_a_container(
    video: Path, tmp_path: Path, random_preset: Callable[[int], Path], command: str
) -> None:
    out = tmp_path / "c.mkv"
    done = run_cli(command, str(video), str(out), "--preset", str(random_preset(2)), "--input-size", "10x10")
    assert done.returncode == 2
    assert _one_error_line(done) == (
        f"espcn-video: error: {video}: --input-size describes raw .yuv input, and a .mp4 file carries its own "
        "size, pixel format and rate; leave it out"
    )
    assert not out.exists()


def test_check_raw_options() -> None:
    from espcn_video.cli.common import check_raw_options
    from espcn_video.errors import UsageError

    check_raw_options("clip.yuv", "10x10", "gray", "5")
    check_raw_options("-", "10x10", None, None)  # raw on stdin
    check_raw_options("clip.raw", "10x10", None, None)  # a name that says nothing: --input-size makes it raw
    check_raw_options("frames/f_%04d.png", None, None, "24")  # a numbered image sequence takes a rate
    check_raw_options("clip.mp4", None, None, None)
    with pytest.raises(UsageError, match=r"f_%04d.png: --input-size describes"):
        check_raw_options("frames/f_%04d.png", "10x10", None, "24")
    with pytest.raises(UsageError, match=r"a .y4m file carries"):
        check_raw_options("clip.Y4M", None, None, "25")


def test_psnr_folder_reads_its_y4m_as_is_and_its_yuv_as_raw(tmp_path: Path, ffmpeg: str) -> None:
    """In a folder the raw options describe its .yuv files; a .y4m beside them says its own format."""
    folder = tmp_path / "clips"
    folder.mkdir()
    for name, fmt in (("a.y4m", "yuv4mpegpipe"), ("b.yuv", "rawvideo")):
        subprocess.run(
            [ffmpeg, "-nostdin", "-v", "error", "-f", "lavfi", "-i", "testsrc2=s=48x32:r=10:d=0.2",
             "-pix_fmt", "yuv420p", "-f", fmt, str(folder / name)],
            check=True,
            timeout=60,
        )  # fmt: skip
    done = run_cli("psnr", str(folder), "--input-size", "48x32", "--methods", "bicubic", "--json", "-q")
    assert done.returncode == 0, done.stderr.decode()
    import json

    clips = json.loads(done.stdout)["clips"]
    assert [(c["name"], c["size"], c["frames"]) for c in clips] == [("a", [48, 32], 2), ("b", [48, 32], 2)]


def test_export_to_dash_is_refused(tmp_path: Path) -> None:
    """`export ... -` wrote a file named '-' in the current folder."""
    done = run_cli("export", "--preset", "espcn-x2", "-", cwd=tmp_path)
    assert done.returncode == 2
    assert _one_error_line(done) == (
        "espcn-video: error: export writes a model file: give OUT a name (stdout is not a file; - is not a name)"
    )
    assert not (tmp_path / "-").exists()
