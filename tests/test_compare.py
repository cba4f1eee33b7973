"""`compare`: every view checked pixel by pixel against the upscales it is made of (ffv1, lossless)."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from conftest import FP32, audio_seconds, decode_y4m, one_error_line, parse_y4m_bytes, run_cli, upscale_json
from espcn_video.ffmpeg.compose import ComposeSpec, build_compose_filter, find_font
from espcn_video.ffmpeg.probe import probe_file
from espcn_video.frames.upscaler import FrameUpscaler

LABEL_ROWS = 32  # labels sit in the top rows of each block; pixels are compared below them


@pytest.fixture(scope="module")
def hr_clip(clips: Callable[..., Path]) -> Path:
    return clips("cmp_hr.mkv", "-c:v", "ffv1", src="testsrc2=s=144x96:r=10:d=1")


@pytest.fixture(scope="module")
def lr_clip(clips: Callable[..., Path], hr_clip: Path, ffmpeg: str) -> Path:
    path = hr_clip.with_name("cmp_lr.mkv")
    if not path.exists():
        subprocess.run(
            [ffmpeg, "-v", "error", "-i", str(hr_clip), "-f", "lavfi", "-i", "sine=d=1:sample_rate=48000"]
            + ["-vf", "scale=48:32:flags=bicubic", "-c:v", "ffv1", "-c:a", "flac", "-shortest", str(path)],
            check=True,
            timeout=60,
        )
    return path


def compare(src: Path, out: Path, preset: Path, *extra: str) -> dict:
    done = run_cli("compare", str(src), str(out), "--preset", str(preset), "--codec", "ffv1", "--json", *FP32, *extra)
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(done.stdout)


def y_frames(ffmpeg: str, path: Path) -> list[np.ndarray]:
    return [planes[0].astype(np.int32) for planes in decode_y4m(ffmpeg, path)[1]]


@pytest.fixture(scope="module")
def upscales(
    tmp_path_factory: pytest.TempPathFactory, ffmpeg: str, lr_clip: Path, random_preset: Callable[[int], Path]
) -> dict[str, list[np.ndarray]]:
    """The ESPCN output of a plain `upscale` and the bicubic baseline, Y of each frame."""
    out = tmp_path_factory.mktemp("cmp") / "espcn.mkv"
    upscale_json(lr_clip, out, random_preset(3), "--codec", "ffv1")
    header, frames = decode_y4m(ffmpeg, lr_clip)
    bicubic = FrameUpscaler(3)
    base = [bicubic.upscale(planes, header.geometry)[0].astype(np.int32) for planes in frames]
    return {"espcn": y_frames(ffmpeg, out), "bicubic": base}


def test_side_by_side_is_the_baseline_then_the_upscale_with_audio_and_timestamps(
    tmp_path: Path, ffmpeg: str, lr_clip: Path, random_preset: Callable[[int], Path], upscales: dict
) -> None:
    out = tmp_path / "sbs.mkv"
    doc = compare(lr_clip, out, random_preset(3))
    assert doc["frames"] == 10 and doc["output_size"] == [288, 96]
    assert doc["output_check"]["frames_in_file"] == 10 and doc["output_check"]["max_time_error_s"] == 0
    frames = y_frames(ffmpeg, out)
    assert len(frames) == 10 and frames[0].shape == (96, 288)
    for y, base, sr in zip(frames, upscales["bicubic"], upscales["espcn"], strict=True):
        assert np.array_equal(y[LABEL_ROWS:, :144], base[LABEL_ROWS:])
        assert np.array_equal(y[LABEL_ROWS:, 144:], sr[LABEL_ROWS:])
    assert not np.array_equal(upscales["bicubic"][0], upscales["espcn"][0])
    assert abs(audio_seconds(ffmpeg, out) - audio_seconds(ffmpeg, lr_clip)) < 0.05
    assert not list(tmp_path.glob("*.tmp*")) and not list(tmp_path.glob(".*"))


def test_diff_is_the_scaled_absolute_difference(
    tmp_path: Path, ffmpeg: str, lr_clip: Path, random_preset: Callable[[int], Path], upscales: dict
) -> None:
    out = tmp_path / "diff.mkv"
    doc = compare(lr_clip, out, random_preset(3), "--layout", "diff", "--gain", "8")
    assert doc["output_size"] == [144, 96]
    header, frames = decode_y4m(ffmpeg, out)
    for planes, base, sr in zip(frames, upscales["bicubic"], upscales["espcn"], strict=True):
        expected = np.clip(16 + np.abs(sr - base) * 8, 16, 235)
        assert np.array_equal(planes[0][LABEL_ROWS:].astype(np.int32), expected[LABEL_ROWS:])
        assert (planes[1] == 128).all() and (planes[2] == 128).all()


def line_at(y: np.ndarray) -> int:
    """The wipe's white line: the first of two full-height columns at 235 (white)."""
    return next(c for c in range(y.shape[1] - 1) if (y[:, c : c + 2] == 235).all())


@pytest.mark.parametrize("wipe", ["0.5", "sweep"])
def test_split_shows_the_baseline_left_of_the_wipe_and_espcn_right_of_it(
    tmp_path: Path, ffmpeg: str, lr_clip: Path, random_preset: Callable[[int], Path], upscales: dict, wipe: str
) -> None:
    out = tmp_path / "split.mkv"
    doc = compare(lr_clip, out, random_preset(3), "--layout", "split", "--wipe", wipe)
    assert doc["output_size"] == [144, 96] and doc["frames"] == 10
    frames = y_frames(ffmpeg, out)
    positions = []
    for y, base, sr in zip(frames, upscales["bicubic"], upscales["espcn"], strict=True):
        rows = slice(LABEL_ROWS, None)
        p = line_at(y[rows])
        positions.append(p)
        assert np.array_equal(y[rows, :p], base[rows, :p])
        assert (y[rows, p : p + 2] == 235).all()  # the white line
        assert np.array_equal(y[rows, p + 2 :], sr[rows, p + 2 :])
    if wipe == "0.5":
        assert set(positions) == {72}
    else:  # 2*trunc(36*(1 - cos(2 pi t / 8 s))) at t = 0, 0.1, ... 0.9 s
        assert positions == [2 * math.trunc(36 * (1 - math.cos(2 * math.pi * n / 80))) for n in range(10)]


def test_ref_puts_both_error_maps_beneath(
    tmp_path: Path,
    ffmpeg: str,
    lr_clip: Path,
    hr_clip: Path,
    random_preset: Callable[[int], Path],
    upscales: dict,
) -> None:
    out = tmp_path / "ref.mkv"
    doc = compare(lr_clip, out, random_preset(3), "--ref", str(hr_clip))
    assert doc["output_size"] == [288, 192] and doc["frames"] == 10
    refs = y_frames(ffmpeg, hr_clip)
    frames = y_frames(ffmpeg, out)
    for y, ref, base, sr in zip(frames, refs, upscales["bicubic"], upscales["espcn"], strict=True):
        rows = slice(96 + LABEL_ROWS, None)
        assert np.array_equal(y[rows, :144], np.clip(16 + np.abs(ref - base) * 4, 16, 235)[LABEL_ROWS:])
        assert np.array_equal(y[rows, 144:], np.clip(16 + np.abs(ref - sr) * 4, 16, 235)[LABEL_ROWS:])
        assert np.array_equal(y[LABEL_ROWS:96, 144:], sr[LABEL_ROWS:])


@pytest.mark.parametrize(
    ("ref_src", "message"),
    [
        ("testsrc2=s=96x64:r=10:d=1", "sizes differ"),
        ("testsrc2=s=144x96:r=10:d=0.5", "ends after 5 frames, the input goes on"),
        ("testsrc2=s=144x96:r=10:d=2", "frame counts differ: the input has 10 frames"),
    ],
)
def test_a_reference_that_does_not_fit_is_refused_and_nothing_is_written(
    tmp_path: Path,
    clips: Callable[..., Path],
    lr_clip: Path,
    random_preset: Callable[[int], Path],
    ref_src: str,
    message: str,
) -> None:
    ref = clips(f"ref_{ref_src.split('=')[1].replace(':', '_')}_{ref_src[-5:]}.mkv", "-c:v", "ffv1", src=ref_src)
    out = tmp_path / "out.mkv"
    done = run_cli("compare", str(lr_clip), str(out), "--preset", str(random_preset(3)), "--ref", str(ref), *FP32)
    err = done.stderr.decode()
    assert done.returncode == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert message in err.replace(str(lr_clip.parent) + "/", "")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--layout", "diff", "--ref", "REF"], "diff has none"),
        (["--layout", "split", "--wipe", "1.5"], "--wipe 1.5: a fraction"),
        (["--layout", "split", "--wipe", "left"], "--wipe left: a fraction"),
        (["--wipe", "0.3"], "--wipe applies to --layout split, not side-by-side"),
        (["--layout", "diff", "--wipe", "sweep"], "--wipe applies to --layout split, not diff"),
    ],
)
def test_bad_options_get_one_line(
    tmp_path: Path, lr_clip: Path, hr_clip: Path, random_preset: Callable[[int], Path], args: list[str], message: str
) -> None:
    args = [str(hr_clip) if a == "REF" else a for a in args]
    done = run_cli("compare", str(lr_clip), str(tmp_path / "o.mkv"), "--preset", str(random_preset(3)), *args)
    err = done.stderr.decode()
    assert done.returncode == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o.mkv").exists()


def test_a_bad_wipe_is_refused_before_any_look_at_the_input(tmp_path: Path) -> None:
    """--wipe is checked with the options: before the input is opened (or looked at for a preset)."""
    done = run_cli(
        "compare", str(tmp_path / "missing.mkv"), str(tmp_path / "o.mkv"), "--layout", "split", "--wipe", "1.5"
    )
    assert done.returncode == 2
    assert "--wipe 1.5: a fraction of the width from 0 to 1, or 'sweep'" in one_error_line(done)


@pytest.mark.parametrize(
    ("pix_fmt", "with_ref"),
    [
        ("yuv420p10le", False),
        ("yuv420p10le", True),
        ("yuv422p", False),
        ("yuv444p12le", False),
        ("gray", False),
        ("gray10le", False),
    ],
)
def test_split_keeps_the_pixel_format_and_depth_of_the_source(
    tmp_path: Path,
    ffmpeg: str,
    clips: Callable[..., Path],
    random_preset: Callable[[int], Path],
    pix_fmt: str,
    with_ref: bool,
) -> None:
    """The wipe is put together at the source's depth and chroma layout, no alpha plane: each side
    is the side-by-side view's baseline and ESPCN exactly, in every plane, the line white."""
    src = clips(f"cmp_lr_{pix_fmt}.y4m", "-pix_fmt", pix_fmt, "-strict", "-1")
    extra = []
    if with_ref:
        ref = clips(f"cmp_hr_{pix_fmt}.y4m", "-pix_fmt", pix_fmt, "-strict", "-1", src="testsrc2=s=96x64:r=10:d=1")
        extra = ["--ref", str(ref)]
    sbs, split = tmp_path / "sbs.mkv", tmp_path / "split.mkv"
    compare(src, sbs, random_preset(2), *extra)
    doc = compare(src, split, random_preset(2), "--layout", "split", *extra)
    assert doc["output_size"] == [96, 128 if with_ref else 64]
    assert probe_file(ffmpeg, str(split)).pix_fmt == probe_file(ffmpeg, str(sbs)).pix_fmt == pix_fmt
    header, frames = decode_y4m(ffmpeg, split)
    _, sbs_frames = decode_y4m(ffmpeg, sbs)
    geometry = header.geometry
    assert geometry.pix_fmt == pix_fmt and len(frames) == len(sbs_frames) == 10
    shift = geometry.bits - 8
    white = [235 << shift, 128 << shift, 128 << shift]  # video white, neutral chroma
    for planes, whole in zip(frames, sbs_frames, strict=True):
        assert len(planes) == (3 if geometry.has_chroma else 1)
        for i, (got, both) in enumerate(zip(planes, whole, strict=True)):
            sx, sy = geometry.chroma_shift if i else (0, 0)
            w, h, p, line = 96 >> sx, 64 >> sy, 48 >> sx, 2 >> sx
            for row in range(2 if with_ref else 1):
                rows = slice(row * h + (LABEL_ROWS >> sy), (row + 1) * h)
                assert np.array_equal(got[rows, :p], both[rows, :p])
                assert (got[rows, p : p + line] == white[i]).all()
                assert np.array_equal(got[rows, p + line :], both[rows, w + p + line : 2 * w])


@pytest.mark.parametrize("pix_fmt", ["yuv420p", "yuv422p10le", "yuv444p12le", "gray12le"])
def test_the_wipe_is_exact_over_every_code_value(ffmpeg: str, pix_fmt: str) -> None:
    """The wipe's graph on its own, fed code values from 0 to the format's maximum (outside the video
    range too): left of the line the left block, right of it the right block, bit for bit."""
    w, h, top = 96, 64, 1 << (12 if "12" in pix_fmt else 10 if "10" in pix_fmt else 8)
    planes = ":".join(
        f"{name}=mod(X*{a}+Y*{b}+N*7\\,{top})" for name, a, b in (("lum", 37, 101), ("cb", 11, 3), ("cr", 5, 29))
    )
    src = f"nullsrc=s={2 * w}x{h}:r=10:d=0.3,format={pix_fmt},geq={planes}"

    def run(graph: str) -> tuple:
        cmd = [
            ffmpeg,
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            src,
            "-vf",
            graph,
            "-strict",
            "-1",
            "-f",
            "yuv4mpegpipe",
            "-",
        ]
        done = subprocess.run(cmd, capture_output=True, timeout=60)
        assert done.returncode == 0, done.stderr.decode()
        return parse_y4m_bytes(done.stdout)

    header, stacked = run("null")
    bits = header.geometry.bits
    out_header, wiped = run(build_compose_filter(ComposeSpec("split", w, h, "b", "e", wipe=0.5, bits=bits)))
    assert out_header.geometry.pix_fmt == pix_fmt and len(wiped) == len(stacked) == 3
    assert max(int(p.max()) for p in stacked[0]) == top - 1 and min(int(p.min()) for p in stacked[0]) == 0
    for got, both in zip(wiped, stacked, strict=True):
        for i, (plane, whole) in enumerate(zip(got, both, strict=True)):
            sx = header.geometry.chroma_shift[0] if i else 0
            bw, p, line = w >> sx, (w // 2) >> sx, 2 >> sx
            assert np.array_equal(plane[:, :p], whole[:, :p])
            assert (plane[:, p : p + line] == (235 if i == 0 else 128) << (bits - 8)).all()
            assert np.array_equal(plane[:, p + line :], whole[:, bw + p + line :])


def test_odd_upscaled_sizes_are_cropped_and_said(
    tmp_path: Path, clips: Callable[..., Path], random_preset: Callable[[int], Path]
) -> None:
    """47x31 x3 is 141x93: the blocks stack at 140x92, and the note says so as upscale's does."""
    src = clips("cmp_lr_47x31.y4m", "-vf", "scale=47:31", "-pix_fmt", "yuv420p")
    expected = "cropped 141x93 to 140x92: libx264 needs even sizes for yuv420p"
    assert expected in upscale_json(src, tmp_path / "u.mp4", random_preset(3))["notes"]
    doc = compare(src, tmp_path / "c.mp4", random_preset(3), "--codec", "libx264")
    assert doc["output_size"] == [280, 92]
    assert [n for n in doc["notes"] if n.startswith("cropped")] == [expected]
    doc = compare(src, tmp_path / "c.mkv", random_preset(3))  # FFV1 takes odd sizes; the stacking does not
    assert doc["output_size"] == [280, 92]
    assert [n for n in doc["notes"] if n.startswith("cropped")] == [
        "cropped 141x93 to 140x92: compare's views stack at even sizes for yuv420p"
    ]


def test_deinterlace_means_what_it_means_for_upscale(
    tmp_path: Path, clips: Callable[..., Path], random_preset: Callable[[int], Path]
) -> None:
    """The stdin note names --deinterlace, and compare takes it: field doubles the rate as upscale's does."""
    src = clips("cmp_tff.y4m", "-vf", "setfield=tff")
    done = run_cli(
        "compare",
        "-",
        str(tmp_path / "a.mkv"),
        "--preset",
        str(random_preset(2)),
        "--codec",
        "ffv1",
        "--json",
        *FP32,
        stdin=src.read_bytes(),
    )
    assert done.returncode == 0, done.stderr.decode()
    notes = json.loads(done.stdout)["notes"]
    assert "stdin: frames flagged interlaced are deinterlaced with bwdif (--deinterlace off keeps them woven)" in notes
    doc = compare(src, tmp_path / "b.mkv", random_preset(2), "--deinterlace", "field")
    assert doc["frames"] == 20 and doc["output_check"]["frames_in_file"] == 20
    assert (
        "deinterlaced with bwdif, every frame, one frame per field (double rate): --deinterlace field" in doc["notes"]
    )
    doc = compare(src, tmp_path / "c.mkv", random_preset(2), "--deinterlace", "off")
    assert doc["frames"] == 10 and "kept woven (--deinterlace off)" in " ".join(doc["notes"])


def test_labels_survive_any_font_path(tmp_path: Path, ffmpeg: str) -> None:
    """drawtext options are escaped for both parsers: a font under a path with : ' [ ] , ; still loads."""
    font = find_font()
    assert font is not None, "matplotlib's DejaVuSans.ttf is a dependency's file"
    odd = tmp_path / "a:b's [x],y;z"
    odd.mkdir()
    shutil.copy(font, odd / "DejaVuSans.ttf")
    spec = ComposeSpec("split", 64, 48, "bi:cubic's", "ESPCN ×3 [x],;", font=str(odd / "DejaVuSans.ttf"))
    graph = build_compose_filter(spec)
    done = subprocess.run(
        [ffmpeg, "-v", "error", "-f", "lavfi", "-i", "testsrc2=s=128x48:d=0.2", "-vf", graph, "-f", "null", "-"],
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr.decode()


def test_raw_yuv_input_takes_the_raw_options(tmp_path: Path, ffmpeg: str, random_preset: Callable[[int], Path]) -> None:
    raw = tmp_path / "in.yuv"
    subprocess.run(
        [ffmpeg, "-v", "error", "-f", "lavfi", "-i", "testsrc2=s=64x48:r=10:d=0.5", "-f", "rawvideo", str(raw)],
        check=True,
        timeout=60,
    )
    doc = compare(raw, tmp_path / "o.mkv", random_preset(2), "--input-size", "64x48")
    assert doc["frames"] == 5 and doc["output_size"] == [256, 96]
    done = run_cli("compare", str(raw), str(tmp_path / "p.mkv"), "--preset", str(random_preset(2)))
    assert done.returncode == 2 and b"raw .yuv needs --input-size" in done.stderr
