"""`upscale` without --preset: the clean or the real preset, chosen from a first look at IN.

The LR clips are made as users' files are: a 960x540 lavfi picture downscaled by ffmpeg with
(bicubic) or without (neighbor) antialiasing, kept lossless (FFV1) or through x264 at a CRF.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from espcn_video.ffmpeg.look import parse_frame_qps, parse_inter_qps
from espcn_video.jobs.preset_choice import choose_video_preset, look_at
from espcn_video.quality.input_look import ALIAS_MAX, InputLook, aliasing_index, choose_by_look
from espcn_video.settings import InputSpec
from tests.conftest import run_cli

pytestmark = pytest.mark.timeout(240)
X3_MAX = ALIAS_MAX[3]

HR = "mandelbrot=s=960x540:r=25"  # detailed and natural-looking enough to show aliasing


def lr_clip(clips: Callable[..., Path], name: str, flags: str, *codec: str) -> Path:
    vf = f"scale=320:180:flags={flags},format=yuv420p"
    return clips(name, "-t", "0.6", "-vf", vf, *codec, src=HR)


@pytest.fixture(scope="module")
def lr(clips: Callable[..., Path]) -> dict[str, Path]:
    return {
        "aa": lr_clip(clips, "aa.mkv", "bicubic", "-c:v", "ffv1"),
        "noaa": lr_clip(clips, "noaa.mkv", "neighbor", "-c:v", "ffv1"),
        "aa-crf16": lr_clip(clips, "aa16.mp4", "bicubic", "-c:v", "libx264", "-crf", "16"),
        "aa-crf28": lr_clip(clips, "aa28.mp4", "bicubic", "-c:v", "libx264", "-crf", "28"),
        "aa-crf23": lr_clip(clips, "aa23.mp4", "bicubic", "-c:v", "libx264", "-crf", "23"),
        "aa-crf23-intra": lr_clip(clips, "aa23i.mp4", "bicubic", "-c:v", "libx264", "-crf", "23", "-g", "1"),
    }


def test_the_look_reads_the_codec_the_quantizers_and_the_aliasing(lr: dict[str, Path]) -> None:
    aa, noaa, crf28 = (look_at(InputSpec(str(lr[k]))) for k in ("aa", "noaa", "aa-crf28"))
    assert (aa.codec, aa.lossless, aa.qps) == ("ffv1", True, ())
    assert len(aa.aliasing) == 2  # 15 frames, one in 12 kept
    assert crf28.codec == "h264" and not crf28.lossless and set(crf28.qps) == {28} and len(crf28.qps) == 15
    assert set(crf28.inter_qps) == {28} and 10 <= len(crf28.inter_qps) < 15  # the P and B frames'
    assert look_at(InputSpec(str(lr["aa-crf23-intra"]))).inter_qps == ()
    assert aa.median_aliasing is not None and noaa.median_aliasing is not None
    assert aa.median_aliasing < X3_MAX < noaa.median_aliasing - 0.3


@pytest.mark.parametrize(
    "key,preset,why",
    [
        ("aa", "espcn-x3", "ffv1 (lossless)"),
        ("aa-crf16", "espcn-x3", "H.264 P/B-frame QP 16.0 <= 24"),
        ("aa-crf28", "espcn-x3-real", "H.264 P/B-frame QP 28.0 > 24 (compressed LR)"),
        # as a stream's P and B frames the clean preset is ahead at CRF 23, as I frames behind
        ("aa-crf23", "espcn-x3", "H.264 P/B-frame QP 23.0 <= 24"),
        ("aa-crf23-intra", "espcn-x3-real", "H.264 QP 23.0 > 20 (compressed LR)"),
        ("noaa", "espcn-x3-real", "(sharp or aliased LR)"),
    ],
)
def test_upscale_chooses_by_the_input(lr: dict[str, Path], tmp_path: Path, key: str, preset: str, why: str) -> None:
    out = tmp_path / "out.mkv"
    done = run_cli("upscale", str(lr[key]), str(out), "--scale", "3", "--encoder-preset", "ultrafast", "--json")
    assert done.returncode == 0, done.stderr.decode()
    summary = json.loads(done.stdout)
    assert summary["preset"] == preset and summary["frames"] == 15
    assert summary["preset_choice"].startswith(f"{preset} (auto: aliasing index ") and why in summary["preset_choice"]


def test_the_choice_is_said_on_stderr_and_a_named_preset_is_not_second_guessed(
    lr: dict[str, Path], tmp_path: Path
) -> None:
    done = run_cli("upscale", str(lr["aa"]), str(tmp_path / "a.mkv"), "--scale", "3", "--encoder-preset", "ultrafast")
    assert done.returncode == 0, done.stderr.decode()
    assert "preset: espcn-x3 (auto: aliasing index" in done.stderr.decode()
    named = ("upscale", str(lr["aa"]), str(tmp_path / "b.mkv"), "--preset", "espcn-x3-real", "--json")
    done = run_cli(*named, "--encoder-preset", "ultrafast")
    assert done.returncode == 0, done.stderr.decode()
    summary = json.loads(done.stdout)
    assert summary["preset"] == "espcn-x3-real" and summary["preset_choice"] is None


def test_stdin_and_an_unreadable_input_get_the_real_preset(lr: dict[str, Path], tmp_path: Path) -> None:
    piped = choose_video_preset(InputSpec("-"), "espcn-x3", "espcn-x3-real", 3)
    assert piped.name == "espcn-x3-real" and "stdin" in piped.reason
    junk = tmp_path / "junk.mkv"
    junk.write_bytes(b"not a video" * 100)
    unreadable = choose_video_preset(InputSpec(str(junk)), "espcn-x3", "espcn-x3-real", 3)
    assert unreadable.name == "espcn-x3-real" and "no frame to measure" in unreadable.reason
    done = run_cli(
        "upscale", "-", str(tmp_path / "s.mkv"), "--scale", "3", "--json", "--encoder-preset", "ultrafast",
        stdin=lr["aa"].read_bytes(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    summary = json.loads(done.stdout)
    assert summary["preset"] == "espcn-x3-real" and "stdin" in summary["preset_choice"]


def test_the_rule() -> None:
    clean = (X3_MAX - 0.1,)
    assert choose_by_look(InputLook("ffv1", (), clean, lossless=True), 3).clean
    assert choose_by_look(InputLook("h264", (18, 20, 22), clean), 3).clean
    assert not choose_by_look(InputLook("h264", (21, 22, 23), clean), 3).clean
    assert not choose_by_look(InputLook("hevc", (), clean), 3).clean  # no quantizer read: not known to be light
    # a stream with P and B frames is judged by theirs, against QP_MAX_INTER (24)
    assert choose_by_look(InputLook("h264", (21, 23, 24), clean, inter_qps=(23, 24)), 3).clean
    assert not choose_by_look(InputLook("h264", (18, 25, 25), clean, inter_qps=(25, 25)), 3).clean
    assert not choose_by_look(InputLook("h264", (18, 20), (X3_MAX + 0.01,), inter_qps=(20,)), 3).clean
    assert not choose_by_look(InputLook("ffv1", (), (X3_MAX + 0.01,), lossless=True), 3).clean
    assert not choose_by_look(InputLook("ffv1", (), (), lossless=True), 3).clean
    # x2: the clean preset's gain on the held-out images did not pay for its risk (calibrate_auto.py)
    x2 = choose_by_look(InputLook("ffv1", (), (-2.0,), lossless=True), 2)
    assert not x2.clean and "x2" in x2.reason


def test_aliasing_index_of_a_flat_or_tiny_plane_is_none() -> None:
    assert aliasing_index(np.full((64, 64), 128, np.uint8)) is None
    assert aliasing_index(np.zeros((16, 300), np.uint8)) is None
    rng = np.random.default_rng(0)
    white = aliasing_index(rng.integers(0, 256, (128, 128)).astype(np.uint8))
    assert white is not None and abs(white) < 0.1  # white noise: the same power in every band


def test_qp_lines_are_read_for_h264_only() -> None:
    text = (
        "side data - Video encoding parameters: type 1; qp=24; delta_qp[1][0]=-2; 920 blocks;\n"
        "side data - Video encoding parameters: type 0; qp=140; 0 blocks;\n"
        "side data - Video encoding parameters: type 1; qp=26; 920 blocks;\n"
    )
    assert parse_frame_qps(text) == [24, 26]


def test_the_quantizers_of_p_and_b_frames_are_told_apart() -> None:
    text = (
        "[Parsed_showinfo_0 @ 0x1] n:   0 pts:      0 pts_time:0 fmt:yuv420p s:64x48 i:P iskey:1 type:I checksum:1\n"
        "[Parsed_showinfo_0 @ 0x1]   side data - Video encoding parameters: type 1; qp=21; 920 blocks;\n"
        "[Parsed_showinfo_0 @ 0x1] n:   1 pts:    512 pts_time:0.04 fmt:yuv420p s:64x48 i:P iskey:0 type:B checksum:2\n"
        "[Parsed_showinfo_0 @ 0x1]   side data - Video encoding parameters: type 1; qp=25; 920 blocks;\n"
        "[Parsed_showinfo_0 @ 0x1] n:   2 pts:   1024 pts_time:0.08 fmt:yuv420p s:64x48 i:P iskey:0 type:P checksum:3\n"
        "[Parsed_showinfo_0 @ 0x1]   side data - Video encoding parameters: type 1; qp=23; 920 blocks;\n"
    )
    assert parse_frame_qps(text) == [21, 25, 23] and parse_inter_qps(text) == [25, 23]


def test_psnr_auto_runs_each_clip_with_the_preset_upscale_would_choose(clips: Callable[..., Path]) -> None:
    ref = clips("ref.y4m", "-t", "0.4", "-pix_fmt", "yuv420p", src=HR)
    base = ("psnr", str(ref), "--scale", "3", "--preset", "auto", "--methods", "espcn,bicubic", "--json", "-q")
    for degrade, preset in (("bicubic", "espcn-x3"), ("bicubic-noaa", "espcn-x3-real")):
        done = run_cli(*base, "--degrade", degrade)
        assert done.returncode == 0, done.stderr.decode()
        report = json.loads(done.stdout)
        assert report["preset"] == {"name": "auto", "candidates": ["espcn-x3", "espcn-x3-real"]}
        assert report["methods"] == ["espcn", "bicubic"]
        (clip,) = report["clips"]
        assert clip["preset"] == preset and clip["preset_choice"].startswith(preset)
        assert clip["frames"] == 10


def test_a_longer_input_is_also_looked_at_later(clips: Callable[..., Path]) -> None:
    """An intro is not the programme: from 20 s on, two later stretches are measured too."""
    vf = "scale=160:90:flags=bicubic,format=yuv420p"
    long = clips("long.mp4", "-t", "24", "-vf", vf, "-c:v", "libx264", "-crf", "16", src="mandelbrot=s=480x270:r=25")
    look = look_at(InputSpec(str(long)))
    assert len(look.aliasing) == 12 + 6 + 6  # the start, then 6 frames at 8 s and 6 at 16 s
    assert set(look.qps) == {16} and len(look.qps) > 3 * 6 * 12


@pytest.mark.slow
def test_batch_chooses_for_each_file(lr: dict[str, Path], tmp_path: Path) -> None:
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    out.mkdir()
    for key in ("aa", "noaa"):
        (folder / f"{key}.mkv").write_bytes(lr[key].read_bytes())
    done = run_cli("batch", str(folder), "--out-dir", str(out), "--scale", "3", "--json", timeout=200)
    assert done.returncode == 0, done.stderr.decode()
    results = {Path(r["input"]).name: r for r in json.loads(done.stdout)["results"]}
    assert results["aa.mkv"]["preset"] == "espcn-x3" and results["noaa.mkv"]["preset"] == "espcn-x3-real"
    assert all(r["status"] == "done" and r["frames"] == 15 for r in results.values())


def test_a_missing_input_is_refused_before_any_look(tmp_path: Path) -> None:
    done = run_cli("upscale", str(tmp_path / "nope.mp4"), str(tmp_path / "o.mp4"), "--scale", "3")
    err = done.stderr.decode()
    assert done.returncode == 1 and err.strip() == f"espcn-video: error: {tmp_path / 'nope.mp4'}: no such file"
    assert not (tmp_path / "o.mp4").exists()


def test_auto_runs_the_motion_compensated_preset_on_lossy_video_only(
    lr: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where a motion-compensated real preset (espcn-xR-real-mc) is shipped for auto (its metadata
    says auto_on_lossy_video), auto runs it on a lossy video stream in place of the one-frame real
    preset; lossless LR that the look finds aliased keeps the real preset, clean LR the clean one."""
    import shutil

    import torch

    from espcn_video.model.net import ESPCN
    from espcn_video.model.presets import PRESETS_ENV, auto_candidates, presets_dir

    folder = tmp_path / "presets"
    folder.mkdir()
    for name in ("espcn-x3", "espcn-x3-real"):
        for suffix in (".pt", ".json"):
            shutil.copy(presets_dir() / f"{name}{suffix}", folder / f"{name}{suffix}")
    monkeypatch.setenv(PRESETS_ENV, str(folder))
    assert auto_candidates(3) == ("espcn-x3", "espcn-x3-real")
    assert choose_video_preset(InputSpec(str(lr["aa-crf28"])), "espcn-x3", "espcn-x3-real", 3).name == "espcn-x3-real"
    torch.save(ESPCN(3, frames=3).state_dict(), folder / "espcn-x3-real-mc.pt")
    assert auto_candidates(3) == ("espcn-x3", "espcn-x3-real")  # shipped, but not for auto
    (folder / "espcn-x3-real-mc.json").write_text('{"name": "espcn-x3-real-mc", "auto_on_lossy_video": true}')
    assert auto_candidates(3) == ("espcn-x3", "espcn-x3-real", "espcn-x3-real-mc")
    lossy = choose_video_preset(InputSpec(str(lr["aa-crf28"])), "espcn-x3", "espcn-x3-real", 3)
    assert lossy.name == "espcn-x3-real-mc"
    assert lossy.reason.endswith("QP 28.0 > 24 (compressed LR); lossy video, so the motion-compensated real preset)")
    assert choose_video_preset(InputSpec(str(lr["noaa"])), "espcn-x3", "espcn-x3-real", 3).name == "espcn-x3-real"
    assert choose_video_preset(InputSpec(str(lr["aa"])), "espcn-x3", "espcn-x3-real", 3).name == "espcn-x3"
