"""End to end through the CLI: real ffmpeg processes, small lossless lavfi clips."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from espcn_video.frames.resample import upscale_planes_bicubic
from espcn_video.model.engines import TorchEngine
from espcn_video.model.presets import load_preset
from tests.conftest import audio_seconds, decode_y4m, parse_y4m_bytes, run_cli, upscale_json

pytestmark = pytest.mark.timeout(240)


_upscale = upscale_json  # the fp32 reference engine: golden comparisons must not depend on this CPU


def test_output_is_exactly_espcn_y_and_bicubic_chroma(
    ffmpeg: str, clips: Callable[..., Path], random_preset: Callable[[int], Path], tmp_path: Path
) -> None:
    """Byte equality: pipeline output == the model and the resampler applied frame by frame."""
    src = clips("odd.y4m", "-pix_fmt", "yuv420p", src="testsrc=s=33x17:r=10:d=0.5")
    out = tmp_path / "odd_x3.y4m"
    summary = _upscale(src, out, random_preset(3))
    assert summary["schema_version"] == 1
    assert summary["frames"] == 5 and summary["lr_size"] == [33, 17] and summary["hr_size"] == [99, 51]
    _, lr_frames = decode_y4m(ffmpeg, src)
    header, hr_frames = decode_y4m(ffmpeg, out)
    assert (header.geometry.width, header.geometry.height) == (99, 51)
    assert len(hr_frames) == len(lr_frames) == 5
    model, _ = load_preset(str(random_preset(3)))
    engine = TorchEngine(model)
    for lr, hr in zip(lr_frames, hr_frames, strict=True):
        assert np.array_equal(hr[0], engine.upscale_luma(lr[0], 255))
        chroma = upscale_planes_bicubic(lr[1:], 3, [(26, 50), (26, 50)], 255)
        assert np.array_equal(hr[1], chroma[0]) and np.array_equal(hr[2], chroma[1])


@pytest.mark.parametrize("pix_fmt,header_cs", [("yuv422p", "422"), ("yuv444p", "444"), ("gray", "mono")])
def test_chroma_layouts_are_kept(
    ffmpeg: str,
    clips: Callable[..., Path],
    random_preset: Callable[[int], Path],
    tmp_path: Path,
    pix_fmt: str,
    header_cs: str,
) -> None:
    src = clips(f"{pix_fmt}.mkv", "-pix_fmt", pix_fmt, "-c:v", "ffv1")
    out = tmp_path / "out.y4m"
    _upscale(src, out, random_preset(2))
    first_line = out.read_bytes().split(b"\n", 1)[0].decode()
    assert "W96 H64" in first_line and f"C{header_cs}" in first_line.replace("C420jpeg", "C420")
    assert len(decode_y4m(ffmpeg, out)[1]) == 10


def test_ten_bit_in_ten_bit_out(
    ffmpeg: str, clips: Callable[..., Path], random_preset: Callable[[int], Path], tmp_path: Path
) -> None:
    src = clips("ten.y4m", "-pix_fmt", "yuv420p10le", "-strict", "-1")
    out = tmp_path / "ten.mkv"
    summary = _upscale(src, out, random_preset(2), "--codec", "ffv1")
    assert summary["pix_fmt"] == "yuv420p10le"
    header, frames = decode_y4m(ffmpeg, out, "-pix_fmt", "yuv420p10le")
    assert header.geometry.pix_fmt == "yuv420p10le" and len(frames) == 10
    assert frames[0][0].dtype == np.dtype("<u2") and (frames[0][0] % 4 != 0).any()  # not 8-bit shifted
    _, lr = decode_y4m(ffmpeg, src)
    model, _ = load_preset(str(random_preset(2)))
    assert np.array_equal(frames[3][0], TorchEngine(model).upscale_luma(lr[3][0], 1023))


def test_full_range_is_kept(
    ffmpeg: str, clips: Callable[..., Path], random_preset: Callable[[int], Path], tmp_path: Path
) -> None:
    src = clips("full.mkv", "-pix_fmt", "yuvj420p", "-c:v", "ffv1", "-color_range", "pc")
    out = tmp_path / "full.mkv"
    summary = _upscale(src, out, random_preset(2), "--codec", "ffv1")
    assert summary["full_range"] is True
    header, _ = decode_y4m(ffmpeg, out)
    assert header.full_range
    import subprocess

    text = subprocess.run([ffmpeg, "-hide_banner", "-i", str(out)], capture_output=True, text=True).stderr
    assert "(pc," in text


def test_audio_kept_in_sync_and_colour_tags_carried(
    ffmpeg: str, clips: Callable[..., Path], random_preset: Callable[[int], Path], tmp_path: Path
) -> None:
    src = clips(
        "av.mkv",
        "-c:v",
        "ffv1",
        "-pix_fmt",
        "yuv420p",
        "-color_primaries",
        "bt709",
        "-color_trc",
        "bt709",
        "-colorspace",
        "bt709",
        "-c:a",
        "flac",
        audio=True,
    )
    out = tmp_path / "av.mp4"
    summary = _upscale(src, out, random_preset(2), "--encoder-preset", "ultrafast")
    assert summary["frames"] == 10
    video_s = summary["frames"] / 10
    assert abs(audio_seconds(ffmpeg, out) - audio_seconds(ffmpeg, src)) < 1 / 48000 * 1024 + 1e-6
    assert abs(audio_seconds(ffmpeg, out) - video_s) <= 0.1  # within one frame at 10 fps
    import subprocess

    text = subprocess.run([ffmpeg, "-hide_banner", "-i", str(out)], capture_output=True, text=True).stderr
    assert "Audio: flac" in text and "bt709" in text and "96x64" in text


def test_stdin_to_stdout(ffmpeg: str, clips: Callable[..., Path], random_preset: Callable[[int], Path]) -> None:
    src = clips("pipe.y4m", "-pix_fmt", "yuv420p")
    done = run_cli(
        "upscale", "-", "-", "--preset", str(random_preset(2)), "--format", "yuv4mpegpipe", stdin=src.read_bytes()
    )
    assert done.returncode == 0, done.stderr.decode()
    header, frames = parse_y4m_bytes(done.stdout)
    assert (header.geometry.width, header.geometry.height, len(frames)) == (96, 64, 10)


def test_raw_yuv_input_and_timings_file(
    ffmpeg: str, clips: Callable[..., Path], random_preset: Callable[[int], Path], tmp_path: Path
) -> None:
    src = clips("raw.yuv", "-pix_fmt", "yuv420p", "-f", "rawvideo")
    out = tmp_path / "raw.y4m"
    timings = tmp_path / "t.csv"
    summary = _upscale(
        src, out, random_preset(4), "--input-size", "48x32", "--input-rate", "10", "--timings", str(timings)
    )
    assert summary["hr_size"] == [192, 128] and summary["frames"] == 10
    rows = timings.read_text().splitlines()
    assert rows[0] == "index,read_ms,model_ms,write_ms" and len(rows) == 11
    assert set(summary["stages"]) == {"read", "model", "write"}


def test_temp_file_is_cleaned_and_output_published(
    clips: Callable[..., Path], random_preset: Callable[[int], Path], tmp_path: Path
) -> None:
    src = clips("plain.y4m", "-pix_fmt", "yuv420p")
    out = tmp_path / "o.mkv"
    _upscale(src, out, random_preset(2), "--codec", "ffv1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.mkv"]


@pytest.mark.parametrize("suffix,sub_codec", [(".mkv", "subrip"), (".mp4", "mov_text")])
def test_subtitles_and_chapters_are_kept(
    ffmpeg: str, random_preset: Callable[[int], Path], tmp_path: Path, suffix: str, sub_codec: str
) -> None:
    import subprocess

    from espcn_video.ffmpeg.probe import probe_file

    srt = tmp_path / "s.srt"
    srt.write_text("1\n00:00:00,000 --> 00:00:00,500\nhello\n\n2\n00:00:00,500 --> 00:00:01,000\nworld\n")
    meta = tmp_path / "chapters.txt"
    meta.write_text(
        ";FFMETADATA1\ntitle=demo\n[CHAPTER]\nTIMEBASE=1/1000\nSTART=0\nEND=500\ntitle=one\n"
        "[CHAPTER]\nTIMEBASE=1/1000\nSTART=500\nEND=1000\ntitle=two\n"
    )
    src = tmp_path / "subs.mkv"
    subprocess.run(
        [
            ffmpeg,
            "-nostdin",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=48x32:r=10:d=1",
            "-i",
            str(srt),
            "-i",
            str(meta),
            "-map",
            "0",
            "-map",
            "1",
            "-map_metadata",
            "2",
            "-map_chapters",
            "2",
            "-c:v",
            "ffv1",
            "-c:s",
            "srt",
            str(src),
        ],
        check=True,
        timeout=60,
    )
    out = tmp_path / f"out{suffix}"
    _upscale(src, out, random_preset(2), "--encoder-preset", "ultrafast")
    info = probe_file(ffmpeg, str(out))
    assert info.subtitle_codecs == (sub_codec,) and info.chapters == 2


def _video_track(ffmpeg: str, path: Path) -> str:
    """ffmpeg's description of the first video stream and its tags: `Stream #0:0(lang): Video ...`."""
    import subprocess

    text = subprocess.run([ffmpeg, "-hide_banner", "-i", str(path)], capture_output=True, timeout=60).stderr.decode()
    block = text[text.index("Video:") - 40 :]
    return block[: block.find("Stream #0:1") if "Stream #0:1" in block else len(block)]


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_the_video_tracks_tags_are_the_sources(
    ffmpeg: str, random_preset: Callable[[int], Path], tmp_path: Path, suffix: str
) -> None:
    """Language and title of the source's video track survive; an untagged source does not come out
    tagged "eng" (the Matroska pipe's default language)."""
    import subprocess

    tagged, plain = tmp_path / "tagged.mkv", tmp_path / "plain.mkv"
    base = [ffmpeg, "-nostdin", "-v", "error", "-f", "lavfi", "-i", "testsrc2=s=48x32:r=10:d=0.5", "-c:v", "ffv1"]
    tags = ["-metadata:s:v:0", "language=jpn", "-metadata:s:v:0", "title=camera A"]
    subprocess.run([*base, *tags, str(tagged)], check=True, timeout=60)
    subprocess.run([*base, "-metadata:s:v:0", "language=und", str(plain)], check=True, timeout=60)
    for src, language, title in ((tagged, "(jpn)", "camera A"), (plain, "", None)):  # und: "(und)" or nothing
        out = tmp_path / f"{src.stem}-out{suffix}"
        _upscale(src, out, random_preset(2), "--encoder-preset", "ultrafast")
        track = _video_track(ffmpeg, out)
        assert language in track and "(eng)" not in track, track
        assert title is None or title in track, track


def test_default_engine_stays_close_to_the_fp32_reference(
    ffmpeg: str, clips: Callable[..., Path], tmp_path: Path
) -> None:
    """The fast default (bf16 or int8 where the CPU has it) through the real pipeline, the default x3 preset."""
    src = clips("natural.y4m", "-pix_fmt", "yuv420p", src="testsrc2=s=96x64:r=10:d=0.3")
    out = tmp_path / "fast.y4m"
    done = run_cli("upscale", str(src), str(out), "--scale", "3", "--json")
    assert done.returncode == 0, done.stderr.decode()
    summary = json.loads(done.stdout)
    _, lr = decode_y4m(ffmpeg, src)
    _, hr = decode_y4m(ffmpeg, out)
    assert summary["preset"] == "espcn-x3-real"  # upscale's default: the real-video preset
    model, _ = load_preset(summary["preset"])
    reference = TorchEngine(model).upscale_luma(lr[0][0], 255).astype(np.float64)
    mse = float(np.mean((hr[0][0].astype(np.float64) - reference) ** 2))
    assert len(hr) == 3 and summary["method"]
    assert mse < 1.0, (summary["method"], mse)  # PSNR against fp32 above 48 dB
