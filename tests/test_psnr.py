"""`espcn-video psnr`: argv builders as whole lists, golden cross-checks against ffmpeg's psnr and
ssim filters, the SR report end to end (JSON, CSV, PNG), the degradations, and the error paths."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result

from espcn_video.cli import main
from espcn_video.errors import UsageError
from espcn_video.ffmpeg.psnr_args import build_degrade_decode_args, build_vmaf_args, hr_size_for
from espcn_video.ffmpeg.y4m import Y4MHeader
from espcn_video.frames.upscaler import FrameUpscaler
from espcn_video.quality.degrade import (
    area_degrade,
    build_degrade_filter,
    gaussian_degrade,
    imresize,
    parse_degradation,
)
from espcn_video.quality.video_metrics import psnr_from_mse
from espcn_video.settings import InputSpec, RawInput
from tests.conftest import decode_y4m, one_error_line, parse_y4m_bytes, run_cli

pytestmark = pytest.mark.timeout(240)

SITED = "in_chroma_loc=center:out_chroma_loc=center"
HEAD = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error"]
TAIL = ["-fps_mode", "passthrough", "-strict", "-1", "-f", "yuv4mpegpipe", "pipe:1"]
RAW = ["-f", "rawvideo", "-pix_fmt", "yuv420p10le", "-video_size", "1920x1080", "-framerate", "50/1", "-i", "a.yuv"]


def psnr(*args: str) -> Result:
    return CliRunner().invoke(main, ["psnr", *args], catch_exceptions=False)


# -- argv builders ----------------------------------------------------------------------------


def lr_filter(spec: str, size: tuple[int, int], scale: int, pix_fmt: str) -> str:
    return build_degrade_filter(parse_degradation(spec), hr_size_for(size, scale), scale, pix_fmt)


def test_bicubic_decode_args() -> None:
    args = build_degrade_decode_args(
        "ffmpeg",
        InputSpec("a.y4m"),
        size=(64, 48),
        pix_fmt="yuv420p",
        scale=2,
        degrade_filter=lr_filter("bicubic", (64, 48), 2, "yuv420p"),
    )
    assert args == [
        *HEAD,
        "-i",
        "a.y4m",
        "-map",
        "0:V:0",
        "-vf",
        f"format=yuv420p,scale=32:24:flags=bicubic+accurate_rnd+bitexact:param0=0:param1=0.5:{SITED},format=yuv420p",
        *TAIL,
    ]


def test_gaussian_decode_args_crop_and_frames() -> None:
    """50x35 at x2: both decodes keep the top-left 50x34; even scale: taps shifted by two zeros."""
    args = build_degrade_decode_args(
        "ffmpeg",
        InputSpec("a.mp4"),
        size=(50, 35),
        pix_fmt="yuv420p10le",
        scale=2,
        degrade_filter=lr_filter("gaussian:1", (50, 35), 2, "yuv420p10le"),
        frames=5,
    )
    luma, chroma = "0m='18 221 991 1635 991 221 18 0 0':0rdiv=1/4095", "m='1 436 3222 436 1 0 0'"
    conv = [
        f"convolution={luma}:0mode={mode}:1{chroma}:1rdiv=1/4096:1mode={mode}:2{chroma}:2rdiv=1/4096:2mode={mode}"
        for mode in ("row", "column")
    ]
    assert args == [
        *HEAD,
        "-i",
        "a.mp4",
        "-map",
        "0:V:0",
        "-vf",
        f"crop=50:34:0:0:exact=1,format=yuv420p10le,{conv[0]},{conv[1]},"
        f"scale=25:17:flags=neighbor+bitexact:{SITED},format=yuv420p10le",
        "-fps_mode",
        "passthrough",
        "-frames:v",
        "5",
        "-strict",
        "-1",
        "-f",
        "yuv4mpegpipe",
        "pipe:1",
    ]


def test_area_and_reference_decode_args_for_raw_yuv() -> None:
    raw = InputSpec("a.yuv", RawInput(1920, 1080, "yuv420p10le", Fraction(50)))
    area = build_degrade_decode_args(
        "ffmpeg",
        raw,
        size=(1920, 1080),
        pix_fmt="yuv420p10le",
        scale=3,
        degrade_filter=lr_filter("area", (1920, 1080), 3, "yuv420p10le"),
    )
    assert area == [
        *HEAD,
        *RAW,
        "-map",
        "0:V:0",
        "-vf",
        f"format=yuv420p10le,scale=640:360:flags=area+accurate_rnd+bitexact:{SITED},format=yuv420p10le",
        *TAIL,
    ]
    ref = build_degrade_decode_args(
        "ffmpeg", raw, size=(1920, 1080), pix_fmt="yuv420p10le", scale=4, degrade_filter=None, frames=3
    )
    assert ref == [
        *HEAD,
        *RAW,
        "-map",
        "0:V:0",
        "-vf",
        "format=yuv420p10le",
        "-fps_mode",
        "passthrough",
        "-frames:v",
        "3",
        "-strict",
        "-1",
        "-f",
        "yuv4mpegpipe",
        "pipe:1",
    ]


def test_vmaf_args() -> None:
    args = build_vmaf_args(
        "ffmpeg", InputSpec("a b.mp4"), "crop=48:32:0:0:exact=1,format=yuv420p", "/tmp/x:y/vmaf.json", 2, 7
    )
    assert args == [
        *HEAD,
        "-f",
        "yuv4mpegpipe",
        "-i",
        "pipe:0",
        "-i",
        "a b.mp4",
        "-filter_complex",
        "[0:v]settb=1,setpts=N[dist];[1:v]crop=48:32:0:0:exact=1,format=yuv420p,trim=end_frame=7,"
        "settb=1,setpts=N[ref];[dist][ref]libvmaf=log_fmt=json:log_path=/tmp/x\\\\:y/vmaf.json"
        ":n_threads=2:shortest=1",
        "-f",
        "null",
        "-",
    ]


@pytest.mark.parametrize(
    "text,message",
    [
        ("sinc", "start with bicubic, bicubic-noaa, area, bilinear, lanczos or gaussian"),
        ("gaussian:x", "SIGMA must be a number"),
        ("gaussian:0", "SIGMA must be in"),
        ("gaussian:9", "at most 49 taps"),
        ("gaussian:7.667", r"SIGMA must be in \(0, 7\.666\]"),
        ("", "start with bicubic"),
    ],
)
def test_bad_degradations(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_degradation(text)


def test_the_largest_gaussian_sigma_is_the_one_the_message_names() -> None:
    """The message said 7.67, which it refused: the limit is 23/3."""
    assert parse_degradation("gaussian:7.666").sigma == 7.666


# -- golden cross-checks against ffmpeg ------------------------------------------------------


def _ffmpeg_filters(
    ffmpeg: str, dist: Path, ref: Path, tmp: Path
) -> tuple[list[float], list[float], list[float], float]:
    """psnr_y per frame (full precision, from the metadata), psnr_y of the stats_file, SSIM Y, average."""
    meta, stats, ssim = tmp / "meta.txt", tmp / "psnr.log", tmp / "ssim.log"
    done = subprocess.run(
        [
            ffmpeg,
            "-nostdin",
            "-hide_banner",
            "-i",
            str(dist),
            "-i",
            str(ref),
            "-lavfi",
            f"[0:v][1:v]psnr=stats_file={stats},metadata=mode=print:file={meta};[0:v][1:v]ssim=stats_file={ssim}",
            "-f",
            "null",
            "-",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    average = float(re.search(r"PSNR y:([\d.]+)", done.stderr).group(1))  # type: ignore[union-attr]
    return (
        [float(v) for v in re.findall(r"lavfi\.psnr\.psnr\.y=([\d.]+)", meta.read_text())],
        [float(v) for v in re.findall(r"psnr_y:([\d.]+)", stats.read_text())],
        [float(v) for v in re.findall(r"Y:([\d.]+)", ssim.read_text())],
        average,
    )


def _pair(clips: Callable[..., Path], stem: str, pix_fmt: str) -> tuple[Path, Path]:
    src = "testsrc2=s=66x50:r=10:d=1"
    ref = clips(f"{stem}_ref.y4m", "-pix_fmt", pix_fmt, "-strict", "-1", src=src)
    dist = clips(f"{stem}_dist.y4m", "-vf", "noise=alls=12:allf=t", "-pix_fmt", pix_fmt, "-strict", "-1", src=src)
    return dist, ref


def _check_against_ffmpeg(report: dict, ffmpeg: str, dist: Path, ref: Path, tmp: Path) -> None:
    full, stats, ssim, average = _ffmpeg_filters(ffmpeg, dist, ref, tmp)
    method = report["clips"][0]["methods"]["dist"]
    ours = method["per_frame"]["psnr_y_db"]
    assert len(ours) == len(full) == len(stats) == len(ssim) == 10
    assert np.allclose(ours, full, atol=0.01) and np.allclose(ours, stats, atol=0.01)
    assert np.allclose(method["per_frame"]["ssim_y"], ssim, atol=0.001)
    assert method["y"]["psnr_of_mean_mse_db"] == pytest.approx(average, abs=0.01)  # ffmpeg's "average"


def test_dist_matches_ffmpeg_psnr_and_ssim_filters(ffmpeg: str, clips: Callable[..., Path], tmp_path: Path) -> None:
    dist, ref = _pair(clips, "eight", "yuv420p")
    done = run_cli("psnr", "--dist", str(dist), str(ref), "--json")  # a real child process, once
    assert done.returncode == 0, done.stderr.decode()
    report = json.loads(done.stdout)
    assert report["schema_version"] == 1 and report["command"] == "psnr" and report["mode"] == "compare"
    assert set(report) >= {"ffmpeg", "crop_border", "frames_limit", "methods", "clips", "overall"}
    clip = report["clips"][0]
    assert clip["bits"] == 8 and clip["peak"] == 255 and clip["frames"] == 10 and clip["size"] == [66, 50]
    assert set(clip["methods"]["dist"]) >= {"frames", "y", "u", "v", "ssim_y", "worst_frame", "per_frame"}
    assert set(clip["methods"]["dist"]["y"]) == {
        "mean_psnr_db",
        "psnr_of_mean_mse_db",
        "min_psnr_db",
        "max_psnr_db",
        "mean_mse",
        "identical_frames",
        "identical",
    }
    assert b"Per clip and method" in done.stderr  # the table goes to stderr, data to stdout
    _check_against_ffmpeg(report, ffmpeg, dist, ref, tmp_path)


def test_ten_bit_dist_matches_ffmpeg_with_peak_1023(ffmpeg: str, clips: Callable[..., Path], tmp_path: Path) -> None:
    dist, ref = _pair(clips, "ten", "yuv420p10le")
    result = psnr("--dist", str(dist), str(ref), "--json", "-q")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["clips"][0]["bits"] == 10 and report["clips"][0]["peak"] == 1023
    _check_against_ffmpeg(report, ffmpeg, dist, ref, tmp_path)


def test_identical_clips_have_null_psnr_and_vmaf_per_frame(clips: Callable[..., Path]) -> None:
    ref = clips("ident.y4m", "-pix_fmt", "yuv420p", src="testsrc2=s=64x64:r=10:d=0.5")
    result = psnr("--dist", str(ref), str(ref), "--vmaf", "--frames", "4", "--json", "-q")
    assert result.exit_code == 0, result.output
    method = json.loads(result.stdout)["clips"][0]["methods"]["dist"]
    assert method["frames"] == 4 and method["y"]["identical"] is True
    assert method["y"]["mean_psnr_db"] is None and method["per_frame"]["psnr_y_db"] == [None] * 4
    assert method["ssim_y"]["mean"] == 1.0
    assert len(method["per_frame"]["vmaf"]) == 4 and all(90.0 <= v <= 100.0 for v in method["per_frame"]["vmaf"])


# -- degradations and the SR report ----------------------------------------------------------


def _run_decode(cmd: list[str]) -> tuple[Y4MHeader, list[list[np.ndarray]]]:
    """Our decode argv exactly as built, its y4m parsed by the pipeline's reader."""
    return parse_y4m_bytes(subprocess.run(cmd, capture_output=True, check=True, timeout=60).stdout)


def _lr_and_ref(ffmpeg: str, clip: Path, scale: int, degradation: str) -> tuple[list, list]:
    kwargs = dict(size=(66, 50), pix_fmt="yuv420p", scale=scale, frames=2)
    lr = build_degrade_decode_args(
        ffmpeg, InputSpec(str(clip)), **kwargs, degrade_filter=lr_filter(degradation, (66, 50), scale, "yuv420p")
    )
    ref = build_degrade_decode_args(ffmpeg, InputSpec(str(clip)), degrade_filter=None, **kwargs)
    return _run_decode(lr)[1], _run_decode(ref)[1]


@pytest.mark.parametrize(
    "scale,degradation",
    [(3, "bicubic"), (4, "bicubic"), (2, "gaussian"), (3, "gaussian:1.2"), (2, "area"), (3, "area")],
)
def test_degradation_matches_the_training_code_away_from_borders(
    ffmpeg: str, clips: Callable[..., Path], scale: int, degradation: str
) -> None:
    """ffmpeg's LR equals the numpy degradation of training and eval (quality/degrade.py) to within rounding."""
    clip = clips("smooth.y4m", "-pix_fmt", "yuv420p", src="testsrc2=s=66x50:r=10:d=1")
    lr, ref = _lr_and_ref(ffmpeg, clip, scale, degradation)
    for lr_frame, ref_frame in zip(lr, ref, strict=True):
        hr = ref_frame[0].astype(np.float64)
        assert hr.shape == (50 - 50 % scale, 66 - 66 % scale)
        if degradation == "bicubic":
            want = imresize(hr, 1 / scale)
        elif degradation == "area":
            want = area_degrade(hr, scale)
        else:
            want = gaussian_degrade(hr, scale, parse_degradation(degradation).sigma)
        inner = (slice(3, -3), slice(3, -3))
        assert np.abs(lr_frame[0].astype(np.float64) - np.clip(np.round(want), 0, 255))[inner].max() <= 1


def test_sr_report_on_a_folder_writes_json_csv_and_png(
    ffmpeg: str, clips: Callable[..., Path], random_preset: Callable[[int], Path], tmp_path: Path
) -> None:
    folder = tmp_path / "refs"
    folder.mkdir()
    for name, src in (("a.y4m", "testsrc2=s=48x32:r=10:d=0.5"), ("b_odd.y4m", "testsrc=s=51x35:r=10:d=0.5")):
        (folder / name).write_bytes(clips(name, "-pix_fmt", "yuv420p", src=src).read_bytes())
    (folder / "notes.txt").write_text("not a clip")
    csv_path, png_path = tmp_path / "frames.csv", tmp_path / "curves.png"
    result = psnr(
        str(folder),
        "--preset",
        str(random_preset(2)),
        "--frames",
        "4",
        "--json",
        "--csv",
        str(csv_path),
        "--plot",
        str(png_path),
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["mode"] == "sr" and report["scale"] == 2 and report["methods"] == ["espcn", "bicubic", "lanczos"]
    assert report["degradation"]["spec"] == "bicubic" and report["frames_limit"] == 4
    a, b = report["clips"]
    assert (a["name"], a["size"], a["cropped"]) == ("a", [48, 32], False)
    assert (b["name"], b["size"], b["source_size"], b["lr_size"], b["cropped"]) == (
        "b_odd",
        [50, 34],
        [51, 35],
        [25, 17],
        True,
    )
    for clip in (a, b):
        assert clip["frames"] == 4
        for method in report["methods"]:
            assert len(clip["methods"][method]["per_frame"]["psnr_y_db"]) == 4
        assert clip["methods"]["bicubic"]["gain_over_bicubic_db"]["mean_psnr_db"] == 0.0
    assert set(report["overall"]["espcn"]) >= {"clips", "frames", "y", "ssim_y", "worst_frame", "gain_over_bicubic_db"}
    assert report["overall"]["espcn"]["frames"] == 8
    rows = csv_path.read_text().splitlines()
    assert rows[0] == "clip,method,frame,psnr_y_db,psnr_u_db,psnr_v_db,ssim_y" and len(rows) == 1 + 2 * 3 * 4
    assert rows[1].startswith("a,espcn,0,")
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Y-PSNR (dB), mean of per-frame PSNR: x2" in result.stderr and "average (clips)" in result.stderr
    # The bicubic column is exactly our upsampler on ffmpeg's LR frames, scored against the crop.
    lr_cmd = build_degrade_decode_args(
        ffmpeg,
        InputSpec(str(folder / "b_odd.y4m")),
        size=(51, 35),
        pix_fmt="yuv420p",
        scale=2,
        degrade_filter=lr_filter("bicubic", (51, 35), 2, "yuv420p"),
        frames=4,
    )
    header, lr = _run_decode(lr_cmd)
    _, ref = decode_y4m(ffmpeg, folder / "b_odd.y4m", "-vf", "crop=50:34:0:0:exact=1", "-frames:v", "4")
    up = FrameUpscaler(2, None)
    want = [
        psnr_from_mse(float(np.mean((up.upscale(f, header.geometry)[0].astype(float) - r[0]) ** 2)), 255)
        for f, r in zip(lr, ref, strict=True)
    ]
    assert np.allclose(b["methods"]["bicubic"]["per_frame"]["psnr_y_db"], want, atol=1e-3)


# -- errors: one line, the file and the numbers, exit 1 or 2, no traceback --------------------


def test_a_numbered_png_sequence_is_a_reference_clip(
    ffmpeg: str, random_preset: Callable[[int], Path], tmp_path: Path
) -> None:
    """REF as frame_%04d.png (REDS, Vid4): the same per-frame numbers as the y4m ffmpeg makes from
    those PNGs (RGB to Y'CbCr by BT.601 studio range, the SR papers' Y), 3 frames at --input-rate."""
    frames = tmp_path / "seq"
    frames.mkdir()
    subprocess.run(
        [ffmpeg, "-v", "error", "-f", "lavfi", "-i", "testsrc2=s=48x32:r=10:d=0.3", str(frames / "f_%04d.png")],
        check=True,
        timeout=60,
    )
    y4m = tmp_path / "seq.y4m"
    subprocess.run(
        [ffmpeg, "-v", "error", "-i", str(frames / "f_%04d.png"), "-pix_fmt", "yuv444p", str(y4m)],
        check=True,
        timeout=60,
    )
    preset = str(random_preset(2))
    seq = psnr(str(frames / "f_%04d.png"), "--preset", preset, "--input-rate", "10", "--json")
    assert seq.exit_code == 0, seq.output
    ref = psnr(str(y4m), "--preset", preset, "--json")
    a, b = json.loads(seq.stdout)["clips"][0], json.loads(ref.stdout)["clips"][0]
    assert a["frames"] == b["frames"] == 3 and a["size"] == [48, 32]
    for method in ("espcn", "bicubic"):
        assert a["methods"][method]["per_frame"]["psnr_y_db"] == b["methods"][method]["per_frame"]["psnr_y_db"]
    missing = psnr(str(tmp_path / "none_%04d.png"), "--preset", preset)
    _fails(
        missing,
        1,
        f"{tmp_path / 'none_%04d.png'}: no image of this numbered sequence (numbers 0 to 4, where ffmpeg starts one)",
    )


def _fails(result: Result, code: int, message: str) -> None:
    assert result.exit_code == code, result.output
    assert result.stderr == f"espcn-video: error: {message}\n"
    assert "Traceback" not in result.output


def test_sizes_differ(clips: Callable[..., Path]) -> None:
    small, big = (
        clips("s48.y4m", "-pix_fmt", "yuv420p"),
        clips("s64.y4m", "-pix_fmt", "yuv420p", src="testsrc2=s=64x48:r=10:d=1"),
    )
    _fails(psnr("--dist", str(big), str(small)), 1, f"sizes differ: {big} is 64x48, {small} is 48x32")


def test_bit_depths_differ(clips: Callable[..., Path]) -> None:
    eight, ten = clips("d8.y4m", "-pix_fmt", "yuv420p"), clips("d10.y4m", "-pix_fmt", "yuv420p10le", "-strict", "-1")
    _fails(
        psnr("--dist", str(ten), str(eight)),
        1,
        f"bit depths differ: {ten} is 10-bit (yuv420p10le), {eight} is 8-bit (yuv420p)",
    )


@pytest.mark.parametrize("dist_seconds,dist_frames", [("0.8", 8), ("1.2", 12)])
def test_frame_counts_differ(clips: Callable[..., Path], dist_seconds: str, dist_frames: int) -> None:
    ref = clips("n10.y4m", "-pix_fmt", "yuv420p")
    dist = clips(f"n{dist_frames}.y4m", "-pix_fmt", "yuv420p", src=f"testsrc2=s=48x32:r=10:d={dist_seconds}")
    _fails(
        psnr("--dist", str(dist), str(ref)), 1, f"frame counts differ: {dist} has {dist_frames} frames, {ref} has 10"
    )


def test_unreadable_clip(clips: Callable[..., Path], tmp_path: Path) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"this is not a video" * 50)
    result = psnr("--dist", str(bad), str(clips("n10.y4m", "-pix_fmt", "yuv420p")))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.startswith(f"espcn-video: error: {bad}: ffmpeg cannot read it: ")


def test_raw_size_not_a_whole_number_of_frames(tmp_path: Path) -> None:
    raw = tmp_path / "clip.yuv"
    raw.write_bytes(bytes(2304 * 3 + 100))
    _fails(
        psnr(str(raw), "--input-size", "48x32", "--methods", "bicubic"),
        1,
        f"{raw}: 7012 bytes is not a whole number of 48x32 yuv420p frames "
        "(2304 bytes each; 3 frames and 100 bytes left over)",
    )


def test_unknown_method_is_a_usage_error(clips: Callable[..., Path]) -> None:
    _fails(
        psnr(str(clips("n10.y4m", "-pix_fmt", "yuv420p")), "--methods", "espcn,edsr"),
        2,
        "unknown method 'edsr' in --methods; choose from espcn, bicubic, lanczos, srcnn",
    )


def test_srcnn_without_a_preset(clips: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ESPCN_VIDEO_PRESETS", str(tmp_path))
    _fails(
        psnr(str(clips("n10.y4m", "-pix_fmt", "yuv420p")), "--methods", "srcnn", "--scale", "3"),
        1,
        f"no srcnn-x3 preset in {tmp_path}: the srcnn method needs one (espcn-video train --arch srcnn --scale 3)",
    )


def test_dist_takes_one_reference(clips: Callable[..., Path]) -> None:
    ref = str(clips("n10.y4m", "-pix_fmt", "yuv420p"))
    _fails(psnr("--dist", ref, ref, ref), 2, "--dist compares one DIST with one REF; got 2 REF arguments")


def test_raw_yuv_format_from_uvg_names_and_flags() -> None:
    from espcn_video.cli.psnr_cmd import build_clip_spec

    uvg = build_clip_spec("Beauty_1920x1080_120fps_420_10bit_YUV.yuv", None, None, None)
    assert uvg.raw == RawInput(1920, 1080, "yuv420p10le", Fraction(120))
    assert build_clip_spec("ShakeNDry_1920x1080_120fps_420_8bit_YUV.yuv", None, None, None).raw == RawInput(
        1920, 1080, "yuv420p", Fraction(120)
    )
    assert build_clip_spec("x.yuv", "352x288", "yuv420p", "30000/1001").raw == RawInput(
        352, 288, "yuv420p", Fraction(30000, 1001)
    )
    assert build_clip_spec("foreman_cif.y4m", None, None, None).raw is None
    with pytest.raises(UsageError, match="raw .yuv needs --input-size WxH"):
        build_clip_spec("clip.yuv", None, None, None)


# -- outputs and option values refused in one line, before any scoring -------------------------


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("--crops", "{clip}"), 1, "--crops {clip}: is a file; give a folder (made if it is not there)"),
        (("--crops", "{tmp}/no/crops"), 1, "--crops {tmp}/no/crops: folder {tmp}/no does not exist"),
        (("--plot", "{tmp}/x.txt"), 2, "--plot {tmp}/x.txt: a plot is written as .png, .pdf, .svg or .jpg, not .txt"),
        (("--methods", ""), 2, "--methods is empty; choose from espcn, bicubic, lanczos, srcnn"),
        (("--csv", "-", "--json"), 2, "--csv - and --json both write to stdout: give --csv a file name"),
    ],
)
def test_refused_before_any_work(
    clips: Callable[..., Path], tmp_path: Path, args: tuple[str, ...], code: int, message: str
) -> None:
    """--crops FILE and --plot x.txt were tracebacks (the second after the whole run); --methods ''
    ran the default methods."""
    clip = clips("s48.y4m", "-pix_fmt", "yuv420p")
    fill = {"clip": str(clip), "tmp": str(tmp_path)}
    done = run_cli("psnr", str(clip), "--scale", "2", *(a.format(**fill) for a in args))
    assert done.returncode == code
    assert one_error_line(done) == f"espcn-video: error: {message.format(**fill)}"


def test_csv_to_stdout_and_clips_of_one_name_told_apart(clips: Callable[..., Path], tmp_path: Path) -> None:
    """`--csv -` wrote a file named '-'; two REFs named alike gave rows that could not be told apart."""
    clip = clips("s48.y4m", "-pix_fmt", "yuv420p")
    other = tmp_path / "other"
    other.mkdir()
    twin = other / clip.name
    twin.write_bytes(clip.read_bytes())
    done = run_cli(
        "psnr", str(clip), str(twin), "--scale", "2", "--methods", "bicubic", "--csv", "-", "-q", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr.decode()
    lines = done.stdout.decode().splitlines()
    assert lines[0] == "clip,method,frame,psnr_y_db,psnr_u_db,psnr_v_db,ssim_y"
    assert {line.split(",")[0] for line in lines[1:]} == {str(clip), str(twin)}
    assert len(lines) == 1 + 2 * 10 and not (tmp_path / "-").exists()


@pytest.mark.parametrize("args", [("-", "--scale", "2"), ("--dist", "-", "{clip}")])
def test_stdin_is_refused_in_one_line(clips: Callable[..., Path], args: tuple[str, ...]) -> None:
    """It was ffmpeg's 'Invalid data found when processing input' for a y4m on stdin."""
    clip = clips("s48.y4m", "-pix_fmt", "yuv420p")
    done = run_cli("psnr", *(a.format(clip=clip) for a in args), stdin=clip.read_bytes())
    assert done.returncode == 2
    assert one_error_line(done) == "espcn-video: error: psnr reads its clips from files, not from stdin (-)"
