"""Nothing lost, nothing changed: each test reads the published file back and compares it with the input.

Frame counts and timestamps come from the files' own packets (framecrc of a stream copy), colour
tags and HDR side data from ffmpeg's probe of the output and from showinfo on its first decoded
frame, audio duration from decoding the audio.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from espcn_video.ffmpeg.probe import ProbeInfo, probe_file
from espcn_video.ffmpeg.timestamps import list_packets
from espcn_video.frames.resample import CHROMA_LOCATIONS, chroma_centres, upscale_planes_bicubic
from tests.conftest import REPO, audio_seconds, run_cli, upscale_fp32, upscale_json

pytestmark = pytest.mark.timeout(300)


def _make(ffmpeg: str, path: Path, *args: str) -> Path:
    subprocess.run([ffmpeg, "-nostdin", "-v", "error", *args, "-y", str(path)], check=True, timeout=120)
    return path


def _upscale(src: Path | str, out: Path, preset: Path, *extra: str, ok: bool = True) -> dict:
    if ok:
        return upscale_json(src, out, preset, *extra)
    done = upscale_fp32(src, out, preset, *extra)
    return {"returncode": done.returncode, "stderr": done.stderr.decode()}


def _times(ffmpeg: str, path: Path) -> tuple[Fraction, list[Fraction]]:
    tb, pts, _ = list_packets(ffmpeg, str(path))
    return tb, [p * tb for p in pts]


def _probe(ffmpeg: str, path: Path) -> ProbeInfo:
    return probe_file(ffmpeg, str(path), first_frame=True)


def _assert_same_times(ffmpeg: str, src: Path, out: Path) -> None:
    """Every frame of OUT at its input time, within one tick of OUT's time base."""
    _, want = _times(ffmpeg, src)
    tb, got = _times(ffmpeg, out)
    assert len(got) == len(want)
    assert max(abs(g - w) for g, w in zip(got, want, strict=True)) <= tb


@pytest.fixture(scope="module")
def vfr(tmp_path_factory: pytest.TempPathFactory, ffmpeg: str) -> Path:
    """100 frames over 7.92 s at irregular intervals, with 8 s of audio (the issue's case)."""
    return _make(
        ffmpeg,
        tmp_path_factory.mktemp("vfr") / "vfr.mkv",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=s=48x32:r=25:d=8",
        "-f",
        "lavfi",
        "-i",
        "sine=d=8",
        "-vf",
        "select='lt(n,51)+gte(n,54)*lte(n,198)*not(mod(198-n,3))'",
        "-fps_mode",
        "vfr",
        "-c:v",
        "libx264",
        "-c:a",
        "aac",
    )


@pytest.mark.parametrize("ext", ["mkv", "mp4"])
def test_variable_frame_rate_keeps_every_timestamp_and_audio(
    vfr: Path, ffmpeg: str, tmp_path: Path, random_preset: Callable[[int], Path], ext: str
) -> None:
    out = tmp_path / f"out.{ext}"
    summary = _upscale(vfr, out, random_preset(2))
    tb_in, t_in = _times(ffmpeg, vfr)
    assert len(t_in) == 100 and t_in[-1] == Fraction(792, 100)
    _assert_same_times(ffmpeg, vfr, out)
    assert summary["frames"] == 100 and summary["output_check"]["frames_in_file"] == 100
    assert summary["output_check"]["max_time_error_s"] <= 0.001
    assert abs(audio_seconds(ffmpeg, out) - audio_seconds(ffmpeg, vfr)) < 0.05


def _tagged(ffmpeg: str, folder: Path, name: str, setparams: str, pix_fmt: str = "yuv420p") -> Path:
    return _make(
        ffmpeg,
        folder / name,
        "-f",
        "lavfi",
        "-i",
        "testsrc2=s=48x32:r=10:d=0.5",
        "-vf",
        f"setparams={setparams},format={pix_fmt}",
        "-c:v",
        "ffv1",
    )


@pytest.mark.parametrize(
    "name,setparams,triple",
    [
        ("bt709", "color_primaries=bt709:color_trc=bt709:colorspace=bt709", ("bt709", "bt709", "bt709")),
        (
            "bt601",
            "color_primaries=smpte170m:color_trc=smpte170m:colorspace=smpte170m",
            ("smpte170m", "smpte170m", "smpte170m"),
        ),
        ("pq", "color_primaries=bt2020:color_trc=smpte2084:colorspace=bt2020nc", ("bt2020nc", "bt2020", "smpte2084")),
        (
            "hlg",
            "color_primaries=bt2020:color_trc=arib-std-b67:colorspace=bt2020nc",
            ("bt2020nc", "bt2020", "arib-std-b67"),
        ),
    ],
)
@pytest.mark.parametrize("ext,codec", [("mkv", "ffv1"), ("mp4", "libx264")])
def test_colour_triple_survives(
    ffmpeg: str,
    tmp_path: Path,
    random_preset: Callable[[int], Path],
    name: str,
    setparams: str,
    triple: tuple[str, str, str],
    ext: str,
    codec: str,
) -> None:
    pix_fmt = "yuv420p10le" if name in ("pq", "hlg") else "yuv420p"
    src = _tagged(ffmpeg, tmp_path, f"{name}.mkv", setparams + ":range=tv", pix_fmt)
    out = tmp_path / f"out.{ext}"
    _upscale(src, out, random_preset(2), "--codec", codec)
    info = _probe(ffmpeg, out)
    assert (info.color.space, info.color.primaries, info.color.transfer) == triple
    assert info.color.range == "tv" and info.pix_fmt == pix_fmt
    assert len(_times(ffmpeg, out)[1]) == 5


def test_full_range_tag_survives_into_mp4(ffmpeg: str, tmp_path: Path, random_preset: Callable[[int], Path]) -> None:
    src = _make(
        ffmpeg,
        tmp_path / "full.mkv",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=s=48x32:r=10:d=0.5",
        "-vf",
        "setparams=color_primaries=bt709:color_trc=bt709:colorspace=bt709",
        "-pix_fmt",
        "yuvj420p",
        "-color_range",
        "pc",
        "-c:v",
        "ffv1",
    )
    out = tmp_path / "out.mp4"
    summary = _upscale(src, out, random_preset(2))
    info = _probe(ffmpeg, out)
    assert summary["full_range"] is True and info.color.range == "pc" and info.color.space == "bt709"


def _pq_hevc(ffmpeg: str, path: Path, x265_params: str) -> Path:
    """Half a second of 10-bit BT.2020 PQ HEVC from x265 with these parameters (HDR metadata)."""
    return _make(
        ffmpeg,
        path,
        "-f",
        "lavfi",
        "-i",
        "testsrc2=s=64x48:r=10:d=0.5",
        "-vf",
        "setparams=color_primaries=bt2020:color_trc=smpte2084:colorspace=bt2020nc,format=yuv420p10le",
        "-c:v",
        "libx265",
        "-x265-params",
        f"{x265_params}:log-level=error",
    )


@pytest.mark.parametrize("ext", ["mkv", "mp4"])
def test_hdr10_metadata_survives_through_x265(
    ffmpeg: str, tmp_path: Path, random_preset: Callable[[int], Path], ext: str
) -> None:
    src = _pq_hevc(
        ffmpeg,
        tmp_path / "hdr.mkv",
        "master-display=G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,1):max-cll=1000,400",
    )
    out = tmp_path / f"out.{ext}"
    _upscale(src, out, random_preset(2), "--codec", "libx265")
    info = _probe(ffmpeg, out)
    assert info.video_codec == "hevc" and info.pix_fmt == "yuv420p10le"
    assert (info.color.space, info.color.primaries, info.color.transfer) == ("bt2020nc", "bt2020", "smpte2084")
    assert info.frame is not None and info.frame.content_light == (1000, 400)
    m = info.frame.mastering  # in the HEVC bitstream (SEI), read back from a decoded frame
    assert m is not None and m.red == (0.68, 0.32) and m.green == (0.265, 0.69) and m.blue == (0.15, 0.06)
    assert m.white == (0.3127, 0.329) and (m.min_luminance, m.max_luminance) == (0.0001, 1000.0)
    text = subprocess.run([ffmpeg, "-hide_banner", "-i", str(out)], capture_output=True, timeout=60).stderr.decode()
    assert "Mastering display metadata" in text and "MaxCLL=1000, MaxFALL=400" in text  # in the container too


HDR10PLUS_SCENE = {
    "JSONInfo": {"HDR10plusProfile": "B", "Version": "1.0"},
    "SceneInfo": [
        {
            "BezierCurveData": {
                "Anchors": [102, 205, 307, 410, 512, 614, 717, 819, 922],
                "KneePointX": 0,
                "KneePointY": 0,
            },
            "LuminanceParameters": {
                "AverageRGB": 1000,
                "LuminanceDistributions": {
                    "DistributionIndex": [1, 5, 10, 25, 50, 75, 90, 95, 99],
                    "DistributionValues": [10, 20, 30, 40, 50, 60, 70, 80, 90],
                },
                "MaxScl": [3000, 3000, 3000],
            },
            "NumberOfWindows": 1,
            "TargetedSystemDisplayMaximumLuminance": 400,
            "SceneFrameIndex": 0,
            "SceneId": 0,
            "SequenceFrameIndex": 0,
        }
    ],
    "SceneInfoSummary": {"SceneFirstFrameIndex": [0], "SceneFrameNumbers": [5]},
    "ToolInfo": {"Tool": "test", "Version": "1"},
}


def test_hdr10plus_dynamic_metadata_is_said_to_be_dropped(
    ffmpeg: str, tmp_path: Path, random_preset: Callable[[int], Path]
) -> None:
    """x265 writes SMPTE 2094-40 per frame; the raw pipe cannot carry it, so the run says so,
    and the static HDR10 metadata still reaches OUT."""
    scene = tmp_path / "hdr10plus.json"
    scene.write_text(json.dumps(HDR10PLUS_SCENE))
    src = _pq_hevc(ffmpeg, tmp_path / "hdr10plus.mkv", f"dhdr10-info={scene}:max-cll=1000,400")
    assert (_probe(ffmpeg, src).frame or pytest.fail("no frame")).hdr10plus
    out = tmp_path / "out.mkv"
    summary = _upscale(src, out, random_preset(2), "--codec", "libx265")
    assert any("HDR10+ dynamic metadata (SMPTE ST 2094-40, per frame) is not carried" in n for n in summary["notes"])
    info = _probe(ffmpeg, out)
    assert info.frame is not None and not info.frame.hdr10plus and info.frame.content_light == (1000, 400)


def test_display_rotation_is_applied_and_said(
    ffmpeg: str, tmp_path: Path, random_preset: Callable[[int], Path]
) -> None:
    """A phone clip stored 160x96 with a quarter-turn display matrix: OUT is the upright picture,
    upscaled (192x320), with no rotation tag left to turn it again."""
    plain = _make(
        ffmpeg, tmp_path / "plain.mp4", "-f", "lavfi", "-i", "testsrc2=s=160x96:r=10:d=0.5", "-c:v", "libx264"
    )
    src = _make(ffmpeg, tmp_path / "rotated.mp4", "-display_rotation", "90", "-i", str(plain), "-c", "copy")
    assert _probe(ffmpeg, src).rotation == 90
    out = tmp_path / "out.mp4"
    summary = _upscale(src, out, REPO / "presets" / "espcn-x2.pt")
    assert "display rotation (90 degrees) is applied" in " ".join(summary["notes"])
    info = _probe(ffmpeg, out)
    assert (info.width, info.height, info.rotation) == (192, 320, 0.0)
    upright = _make(ffmpeg, tmp_path / "upright.y4m", "-i", str(src), "-frames:v", "1", "-vf", "scale=192:320")
    got = _make(ffmpeg, tmp_path / "got.y4m", "-i", str(out), "-frames:v", "1")
    # the same picture, not a squeezed or unturned one: Y within a few codes of a bicubic upscale
    diff = np.abs(_y4m_luma(upright).astype(int) - _y4m_luma(got).astype(int)).mean()
    assert diff < 6, diff


def _y4m_luma(path: Path) -> np.ndarray:
    data = path.read_bytes()
    header, rest = data.split(b"\n", 1)
    fields = {t[:1]: t[1:] for t in header.split()}
    w, h = int(fields[b"W"]), int(fields[b"H"])
    frame = rest.split(b"\n", 1)[1]
    return np.frombuffer(frame[: w * h], np.uint8).reshape(h, w)


def _ramp(shape: tuple[int, int], positions: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """A plane whose value is a linear function of each sample's luma-grid position."""
    ys, xs = positions
    return 40.0 + 3.0 * xs[None, :] + 2.0 * ys[:, None] + np.zeros(shape)


@pytest.mark.parametrize("location", CHROMA_LOCATIONS)
@pytest.mark.parametrize("shift", [(1, 1), (1, 0)])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_chroma_siting_ramp_has_zero_shift(location: str, shift: tuple[int, int], scale: int) -> None:
    """Keys' cubic reproduces a ramp: sited right, the upsampled ramp sits exactly on the output's
    chroma sample positions (same siting), away from the replicated edges."""
    sx, sy = shift
    fx, fy = 1 << sx, 1 << sy
    ch, cw = 12, 16
    frac_x = {"left": 0.0, "topleft": 0.0, "bottomleft": 0.0}.get(location, 0.5)
    frac_y = {"topleft": 0.0, "top": 0.0, "bottomleft": 1.0, "bottom": 1.0}.get(location, 0.5)
    off_x, off_y = frac_x * (fx - 1), frac_y * (fy - 1)  # sample 0's position on its luma grid

    def positions(n_h: int, n_w: int, luma_scale: int) -> tuple[np.ndarray, np.ndarray]:
        # Output sample j on the HR luma grid is at fx*j + off; in LR luma units (PS grid)
        # that is (fx*j + off + 0.5) / r - 0.5.
        xs = (fx * np.arange(n_w) + off_x + 0.5) / luma_scale - 0.5
        ys = (fy * np.arange(n_h) + off_y + 0.5) / luma_scale - 0.5
        return ys, xs

    lr = _ramp((ch, cw), positions(ch, cw, 1)).round().astype(np.float64)
    lr_u16 = np.clip(lr * 16, 0, 65535).astype("<u2")  # 12-bit headroom: rounding stays below 1/16
    up = (
        upscale_planes_bicubic([lr_u16], scale, [(ch * scale, cw * scale)], 65535, chroma_centres(location, shift))[
            0
        ].astype(np.float64)
        / 16
    )
    want = _ramp((ch * scale, cw * scale), positions(ch * scale, cw * scale, scale))
    want = want - _ramp((1, 1), positions(1, 1, 1))[0, 0] + lr[0, 0]  # the same affine map
    m = 3 * scale  # edges replicate: judge the interior
    assert np.abs(up[m:-m, m:-m] - want[m:-m, m:-m]).max() < 0.05
    if location != "center" and shift == (1, 1):  # and the centred grid would be visibly off
        wrong = upscale_planes_bicubic([lr_u16], scale, [(ch * scale, cw * scale)], 65535)[0] / 16
        assert np.abs(wrong[m:-m, m:-m] - want[m:-m, m:-m]).max() > 0.2


def test_left_sited_source_keeps_its_siting(ffmpeg: str, tmp_path: Path, random_preset: Callable[[int], Path]) -> None:
    src = _make(
        ffmpeg,
        tmp_path / "left.mp4",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=s=48x32:r=10:d=0.5",
        "-pix_fmt",
        "yuv420p",
        "-c:v",
        "libx264",
    )
    assert _probe(ffmpeg, src).frame.chroma_location == "left"  # type: ignore[union-attr]
    out = tmp_path / "out.mkv"
    _upscale(src, out, random_preset(2), "--codec", "ffv1")
    assert _probe(ffmpeg, out).frame.chroma_location == "left"  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def interlaced(tmp_path_factory: pytest.TempPathFactory, ffmpeg: str) -> Path:
    return _make(
        ffmpeg,
        tmp_path_factory.mktemp("il") / "tff.mkv",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=s=48x32:r=50:d=0.8",
        "-vf",
        "tinterlace=mode=interleave_top,setfield=tff",
        "-c:v",
        "libx264",
        "-flags",
        "+ildct+ilme",
    )


@pytest.mark.parametrize(
    "mode,frames,order", [("auto", 20, "progressive"), ("field", 40, "progressive"), ("off", 20, "top")]
)
def test_interlaced_is_never_silently_woven(
    interlaced: Path,
    ffmpeg: str,
    tmp_path: Path,
    random_preset: Callable[[int], Path],
    mode: str,
    frames: int,
    order: str,
) -> None:
    assert _probe(ffmpeg, interlaced).interlaced == "tff"
    out = tmp_path / "out.mkv"
    summary = _upscale(interlaced, out, random_preset(2), "--deinterlace", mode)
    info = _probe(ffmpeg, out)
    assert summary["frames"] == frames and len(_times(ffmpeg, out)[1]) == frames
    assert (info.field_order or "").startswith(order)
    note = " ".join(summary["notes"])
    assert ("deinterlaced with bwdif" in note) if mode != "off" else ("kept woven" in note)
    if mode == "auto":
        _assert_same_times(ffmpeg, interlaced, out)


def test_woven_fields_kept_in_mp4_are_coded_and_tagged_interlaced(
    interlaced: Path, ffmpeg: str, tmp_path: Path, random_preset: Callable[[int], Path]
) -> None:
    """MP4 holds no field-order tag: x264's bitstream says it, and without interlaced coding it
    said progressive while the summary said the fields were kept."""
    out = tmp_path / "out.mp4"
    summary = _upscale(interlaced, out, random_preset(2), "--deinterlace", "off")
    assert "kept woven" in " ".join(summary["notes"])
    assert (_probe(ffmpeg, out).field_order or "").startswith("top")


def test_ten_bit_422_keeps_depth_layout_and_times(
    ffmpeg: str, tmp_path: Path, random_preset: Callable[[int], Path]
) -> None:
    src = _make(
        ffmpeg,
        tmp_path / "p10.mkv",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=s=48x32:r=24000/1001:d=0.5",
        "-pix_fmt",
        "yuv422p10le",
        "-c:v",
        "ffv1",
    )
    out = tmp_path / "out.mkv"
    summary = _upscale(src, out, random_preset(2), "--codec", "ffv1")
    info = _probe(ffmpeg, out)
    assert summary["pix_fmt"] == "yuv422p10le" and info.pix_fmt == "yuv422p10le"
    assert (info.width, info.height) == (96, 64)
    _assert_same_times(ffmpeg, src, out)


def _stream_tags(ffmpeg: str, path: Path) -> list[tuple[str, str | None, dict[str, str]]]:
    """(kind, language, tags) of each stream, as `ffmpeg -i` prints them."""
    import re

    err = subprocess.run([ffmpeg, "-hide_banner", "-i", str(path)], capture_output=True, text=True).stderr
    streams: list[tuple[str, str | None, dict[str, str]]] = []
    for line in err.splitlines():
        if m := re.match(r"^\s*Stream #0:\d+(?:\[[^\]]*\])?(?:\(([^)]*)\))?: (\w+):", line):
            streams.append((m.group(2), m.group(1), {}))
        elif streams and (t := re.match(r"^\s{6}(\w+)\s*: (.*)$", line)):
            streams[-1][2][t.group(1)] = t.group(2)
    return streams


@pytest.fixture
def multi_track(ffmpeg: str, tmp_path: Path) -> Path:
    """Two audio tracks (English with a title, French), German subtitles and a font attachment."""
    srt = tmp_path / "s.srt"
    srt.write_text("1\n00:00:00,100 --> 00:00:00,900\nhello\n")
    font = tmp_path / "font.ttf"
    font.write_bytes(bytes(range(256)) * 8)
    return _make(
        ffmpeg,
        tmp_path / "multi.mkv",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=s=48x32:r=10:d=1",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:d=1",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=880:d=1",
        "-i",
        str(srt),
        "-map",
        "0",
        "-map",
        "1",
        "-map",
        "2",
        "-map",
        "3",
        "-c:v",
        "libx264",
        "-c:a",
        "aac",
        "-c:s",
        "srt",
        *("-metadata:s:a:0", "language=eng", "-metadata:s:a:0", "title=Commentary"),
        *("-metadata:s:a:1", "language=fra", "-metadata:s:s:0", "language=ger"),
        *("-attach", str(font), "-metadata:s:t", "mimetype=application/x-truetype-font"),
    )


def test_two_audio_tracks_subtitles_their_languages_and_attachments_are_kept(
    ffmpeg: str, tmp_path: Path, random_preset: Callable[[int], Path], multi_track: Path
) -> None:
    """Every stream of the source arrives with its tags: each audio and subtitle stream's
    language and title, and the attached font (with its filename and mimetype) in Matroska."""
    out = tmp_path / "out.mkv"
    summary = _upscale(multi_track, out, random_preset(2))
    info = _probe(ffmpeg, out)
    assert summary["frames"] == 10 and info.audio_streams == 2 and info.subtitle_codecs == ("subrip",)
    assert info.attachments == 1 and not any("attached" in n for n in summary["notes"])
    for track in (0, 1):
        assert abs(audio_seconds(ffmpeg, out, track) - 1.0) < 0.05
    _assert_same_times(ffmpeg, multi_track, out)
    streams = _stream_tags(ffmpeg, out)
    assert [(kind, lang) for kind, lang, _ in streams] == [
        ("Video", None),
        ("Audio", "eng"),
        ("Audio", "fra"),
        ("Subtitle", "ger"),
        ("Attachment", None),
    ]
    assert streams[1][2]["title"] == "Commentary" and "title" not in streams[2][2]
    assert streams[4][2]["filename"] == "font.ttf" and streams[4][2]["mimetype"] == "application/x-truetype-font"
    attached = tmp_path / "font_back.ttf"  # the attachment's bytes, as they went in
    subprocess.run(
        [ffmpeg, "-v", "error", "-dump_attachment:t:0", str(attached), "-i", str(out)], capture_output=True, timeout=60
    )
    assert attached.read_bytes() == (tmp_path / "font.ttf").read_bytes()


@pytest.mark.parametrize(
    ("suffix", "audio", "want"),
    [(".mp4", "aac", ("aac", "aac")), (".mov", "flac", ("alac", "aac")), (".webm", "aac", ("opus", "opus"))],
)
def test_a_container_gets_the_audio_it_can_carry_and_the_languages(
    ffmpeg: str,
    tmp_path: Path,
    random_preset: Callable[[int], Path],
    multi_track: Path,
    suffix: str,
    audio: str,
    want: tuple[str, str],
) -> None:
    """The first audio track in a codec the container refuses as it is (flac in MOV, AAC in WebM)
    is encoded to one it takes, and the summary says so; the languages stay; the attachment,
    which only Matroska carries, is named as not kept."""
    src = tmp_path / f"src{suffix}.mkv"
    subprocess.run(
        [ffmpeg, "-v", "error", "-i", str(multi_track), "-map", "0", "-c", "copy", "-c:a:0", audio, str(src)],
        check=True,
        timeout=60,
    )
    out = tmp_path / f"out{suffix}"
    summary = _upscale(src, out, random_preset(2))
    notes = summary["notes"]
    assert "1 attached file(s) (fonts, cover art) not kept: only Matroska (.mkv) carries them" in notes
    replaced = [n for n in notes if n.startswith("audio stream")]
    if audio == "flac":
        assert replaced == [f"audio stream 0 (flac) encoded with alac: {suffix} cannot carry flac as it is"]
    elif suffix == ".webm":
        assert replaced == [
            f"audio stream {i} (aac) encoded with libopus: .webm cannot carry aac as it is" for i in (0, 1)
        ]
    else:
        assert replaced == []
    streams = _stream_tags(ffmpeg, out)
    audio_streams = [s for s in streams if s[0] == "Audio"]
    assert [lang for _, lang, _ in audio_streams] == ["eng", "fra"]
    assert [s[0] for s in streams].count("Attachment") == 0
    err = subprocess.run([ffmpeg, "-hide_banner", "-i", str(out)], capture_output=True, text=True).stderr
    codecs = [line.split("Audio: ")[1].split()[0].rstrip(",") for line in err.splitlines() if "Audio: " in line]
    assert tuple(codecs) == want
    assert summary["frames"] == 10


@pytest.mark.parametrize(("suffix", "audio"), [(".avi", "pcm_s16le"), (".ts", "aac")])
def test_a_container_without_a_place_for_text_subtitles_drops_them_with_a_note(
    ffmpeg: str, tmp_path: Path, random_preset: Callable[[int], Path], multi_track: Path, suffix: str, audio: str
) -> None:
    """SRT into AVI failed at the muxer's header, and into MPEG-TS became an opaque data stream:
    both now leave the subtitles out and say so. AVI gets PCM for AAC (AAC's start before zero
    made its muxer move the video by a frame, which the timestamp check refused)."""
    out = tmp_path / f"out{suffix}"
    summary = _upscale(multi_track, out, random_preset(2))
    assert summary["frames"] == 10
    assert "1 subtitle stream(s) (subrip) not kept: " + suffix + " has no place for them (.mkv has)" in summary["notes"]
    err = subprocess.run([ffmpeg, "-hide_banner", "-i", str(out)], capture_output=True, text=True).stderr
    kinds = [line.split(": ")[1] for line in err.splitlines() if line.strip().startswith("Stream #0:")]
    assert kinds == ["Video", "Audio", "Audio"], err
    assert all(f"Audio: {audio}" in line for line in err.splitlines() if "Audio:" in line)
    if suffix == ".avi":  # (MPEG-TS starts its clock at 1.4 s; the run's own check compared the frames)
        _assert_same_times(ffmpeg, multi_track, out)


def _cover_bytes(ffmpeg: str, path: Path, stream: int, out: Path) -> bytes:
    """The bytes of video stream `stream` (an attached picture), copied out as they are."""
    subprocess.run(
        [ffmpeg, "-v", "error", "-i", str(path), "-map", f"0:v:{stream}", "-c", "copy", "-frames:v", "1"]
        + ["-f", "image2", "-update", "1", "-y", str(out)],
        check=True,
        timeout=60,
    )
    return out.read_bytes()


def test_a_cover_image_is_never_taken_for_the_video_and_is_kept_in_mp4_and_matroska(
    ffmpeg: str, tmp_path: Path, random_preset: Callable[[int], Path]
) -> None:
    """An MP4 with cover art (a PNG attached picture) upscales its video, not the cover. MP4 keeps
    the cover as an attached picture, Matroska as an attachment (ffmpeg alone would write it as a
    one-frame video track), both byte for byte; QuickTime .mov names it as not kept."""
    cover = tmp_path / "cover.png"
    subprocess.run(
        [ffmpeg, "-v", "error", "-f", "lavfi", "-i", "color=red:s=20x20", "-frames:v", "1", str(cover)],
        check=True,
        timeout=60,
    )
    src = _make(
        ffmpeg,
        tmp_path / "song.mp4",
        *("-f", "lavfi", "-i", "testsrc2=s=48x32:r=10:d=1", "-i", str(cover), "-f", "lavfi", "-i", "sine=d=1"),
        *("-map", "0", "-map", "1", "-map", "2", "-c:v:0", "libx264", "-c:v:1", "png"),
        *("-disposition:v:1", "attached_pic", "-c:a", "aac"),
    )
    assert _probe(ffmpeg, src).cover_streams == (1,)
    original = _cover_bytes(ffmpeg, src, 1, tmp_path / "original.png")
    for suffix in (".mp4", ".mkv"):
        out = tmp_path / f"out{suffix}"
        summary = _upscale(src, out, random_preset(2))
        info = _probe(ffmpeg, out)
        assert summary["frames"] == 10 and (info.width, info.height) == (96, 64) and info.audio_streams == 1
        assert info.cover_streams == (1,) and not any("cover" in n for n in summary["notes"])
        assert _cover_bytes(ffmpeg, out, 1, tmp_path / f"back{suffix}.png") == original
        _assert_same_times(ffmpeg, src, out)
    streams = _stream_tags(ffmpeg, tmp_path / "out.mkv")
    assert streams[-1][2]["filename"] == "cover.png" and streams[-1][2]["mimetype"] == "image/png"
    assert not list(tmp_path.glob(".*partial*"))  # the cover's temporary file is gone
    mov = tmp_path / "out.mov"
    summary = _upscale(src, mov, random_preset(2))
    assert any(n.startswith("1 cover image(s) (attached pictures) not kept") for n in summary["notes"])
    err = subprocess.run([ffmpeg, "-hide_banner", "-i", str(mov)], capture_output=True, text=True).stderr
    assert summary["frames"] == 10 and sum("Video:" in line for line in err.splitlines()) == 1


def test_odd_size_is_cropped_for_x264_and_said(
    ffmpeg: str, tmp_path: Path, random_preset: Callable[[int], Path]
) -> None:
    src = _make(
        ffmpeg,
        tmp_path / "odd.mkv",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=s=64x48:r=10:d=0.3",
        "-vf",
        "scale=21:13",
        "-pix_fmt",
        "yuv420p",
        "-c:v",
        "ffv1",
    )
    out = tmp_path / "out.mp4"
    summary = _upscale(src, out, random_preset(3))
    info = _probe(ffmpeg, out)
    assert (info.width, info.height) == (62, 38) and summary["frames"] == 3
    assert "cropped 63x39 to 62x38: libx264 needs even sizes for yuv420p" in summary["notes"]
    lossless = tmp_path / "out.mkv"  # FFV1 takes odd sizes: nothing cropped
    _upscale(src, lossless, random_preset(3), "--codec", "ffv1")
    assert (_probe(ffmpeg, lossless).width, _probe(ffmpeg, lossless).height) == (63, 39)


@pytest.mark.parametrize("codec,name", [("ffv1", "rgb.mkv"), ("png", "rgb.mov"), ("gif", "rgb.gif")])
def test_rgb_source_is_converted_tagged_and_keeps_its_colour(
    ffmpeg: str, tmp_path: Path, codec: str, name: str
) -> None:
    """RGB input (FFV1 bgr0, PNG in MOV, GIF) used to fail at the encoder on its 'gbr' tag. It is
    now converted to full-range BT.709 Y'CbCr 4:4:4, tagged so, and said; decoded back to RGB by
    its tags, a flat colour comes out as it went in (within the encoder's rounding)."""
    colour = (192, 48, 96)
    src = _make(
        ffmpeg,
        tmp_path / name,
        *("-f", "lavfi", "-i", "color=c=0xC03060:s=40x30:r=10:d=0.3"),
        *("-vf", "format=rgb24", "-c:v", codec),
    )
    out = tmp_path / "out.mp4"
    summary = _upscale(src, out, REPO / "presets" / "espcn-x2.pt")
    info = _probe(ffmpeg, out)
    assert summary["frames"] == 3 and len(_times(ffmpeg, out)[1]) == 3 and (info.width, info.height) == (80, 60)
    assert (info.color.space, info.color.range, info.pix_fmt) == ("bt709", "pc", "yuvj444p")
    assert any(n.startswith("RGB source (") and "BT.709 matrix at full range" in n for n in summary["notes"])
    if codec == "gif":  # GIF's palette dithers the flat colour; its alpha plane is said to be dropped
        assert any("alpha channel (bgra) is not kept" in n for n in summary["notes"])
        return
    rgb = subprocess.run(
        [ffmpeg, "-nostdin", "-v", "error", "-i", str(out), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    inner = np.frombuffer(rgb, np.uint8).reshape(3, 60, 80, 3)[:, 8:-8, 8:-8].reshape(-1, 3).astype(int)
    assert np.abs(inner - np.array(colour)).max() <= 3, (inner.min(0), inner.max(0))


def _rgb_of(ffmpeg: str, path: Path, width: int, height: int) -> np.ndarray:
    """A picture decoded to 8-bit RGB by ffmpeg, by its own tags and format conventions."""
    raw = subprocess.run(
        [ffmpeg, "-nostdin", "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, height, width, 3)


@pytest.fixture(scope="module")
def flat_bt709(tmp_path_factory: pytest.TempPathFactory, ffmpeg: str) -> Path:
    """3 frames of one colour, (192, 48, 96) in RGB, as studio-range BT.709 Y'CbCr 4:2:0, tagged so."""
    return _make(
        ffmpeg,
        tmp_path_factory.mktemp("flat") / "flat709.mkv",
        *("-f", "lavfi", "-i", "color=c=0xC03060:s=40x30:r=10:d=0.3"),
        "-vf",
        "format=rgb24,scale=out_color_matrix=bt709:out_range=tv,format=yuv420p,setparams=colorspace=bt709:range=tv",
        *("-c:v", "ffv1"),
    )


@pytest.mark.parametrize("ext", ["png", "jpg", "tif", "bmp", "dpx", "webp"])
def test_a_numbered_image_sequence_keeps_every_frame_and_the_colour(
    ffmpeg: str, tmp_path: Path, flat_bt709: Path, ext: str
) -> None:
    """OUT named frame_%02d.EXT is one image per frame, numbered from 1, at the upscaled size, and
    the colour survives the Y'CbCr -> RGB step (made by the frames' matrix and range, then each
    format's own convention: JPEG full-range BT.601, WebP 4:2:0)."""
    out = tmp_path / "seq" / f"frame_%02d.{ext}"
    out.parent.mkdir()
    summary = _upscale(flat_bt709, out, REPO / "presets" / "espcn-x2.pt")
    names = sorted(p.name for p in out.parent.iterdir())
    assert names == [f"frame_{n:02d}.{ext}" for n in (1, 2, 3)]  # no temporary folder left either
    assert summary["frames"] == 3 and summary["output_check"] == {"frames_in_file": 3, "frames_read": 3, "images": True}
    for name in names:
        pixels = _rgb_of(ffmpeg, out.parent / name, 80, 60)[0, 8:-8, 8:-8].reshape(-1, 3).astype(int)
        assert np.abs(pixels - np.array((192, 48, 96))).max() <= 4, (name, pixels.min(0), pixels.max(0))


def test_one_image_in_one_image_out_and_a_video_needs_a_numbered_name(
    ffmpeg: str, tmp_path: Path, flat_bt709: Path, random_preset: Callable[[int], Path]
) -> None:
    photo = _make(ffmpeg, tmp_path / "photo.png", "-f", "lavfi", "-i", "testsrc2=s=48x32", "-frames:v", "1")
    still = tmp_path / "big.png"
    summary = _upscale(photo, still, random_preset(3))
    assert summary["frames"] == 1 and (_probe(ffmpeg, still).width, _probe(ffmpeg, still).height) == (144, 96)
    done = _upscale(flat_bt709, tmp_path / "one.jpg", random_preset(2), ok=False)
    assert done["returncode"] == 2, done["stderr"]
    assert (
        "IN has about 3 frames and OUT names one image; give a numbered name for a sequence, e.g. one_%04d.jpg"
        in (done["stderr"])
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.png", "photo.png"]


def test_a_sequence_is_not_replaced_without_y_and_older_frames_are_said(
    ffmpeg: str, tmp_path: Path, flat_bt709: Path, random_preset: Callable[[int], Path]
) -> None:
    out = tmp_path / "f_%03d.png"
    (tmp_path / "f_001.png").write_bytes(b"mine")
    done = _upscale(flat_bt709, out, random_preset(2), ok=False)
    assert done["returncode"] == 1 and "f_001.png already exists (use -y/--overwrite" in done["stderr"]
    assert (tmp_path / "f_001.png").read_bytes() == b"mine"
    (tmp_path / "f_004.png").write_bytes(b"older")
    summary = _upscale(flat_bt709, out, random_preset(2), "-y")
    assert _probe(ffmpeg, tmp_path / "f_001.png").width == 80
    assert any("1 older file(s) of the pattern follow the 3 written" in n for n in summary["notes"])
    assert (tmp_path / "f_004.png").read_bytes() == b"older"  # never deleted


def test_a_numbered_image_sequence_is_read_at_its_rate(
    ffmpeg: str, tmp_path: Path, random_preset: Callable[[int], Path]
) -> None:
    _make(ffmpeg, tmp_path / "in_%04d.png", "-f", "lavfi", "-i", "testsrc2=s=48x32:r=25", "-frames:v", "4")
    out = tmp_path / "out.mkv"
    summary = _upscale(str(tmp_path / "in_%04d.png"), out, random_preset(2), "--input-rate", "10")
    assert summary["frames"] == 4
    _, times = _times(ffmpeg, out)
    assert times == [Fraction(n, 10) for n in range(4)]
    done = _upscale(str(tmp_path / "none_%04d.png"), tmp_path / "o.mkv", random_preset(2), ok=False)
    assert done["returncode"] == 1 and "none_%04d.png: no image of this numbered sequence" in done["stderr"]


def test_encoder_reason_reaches_the_user(ffmpeg: str, tmp_path: Path, random_preset: Callable[[int], Path]) -> None:
    src = _make(ffmpeg, tmp_path / "s.mkv", "-f", "lavfi", "-i", "testsrc2=s=48x32:r=10:d=0.3", "-c:v", "ffv1")
    done = _upscale(src, tmp_path / "o.mp4", random_preset(2), "--output-args", "-vf scale=97:65", ok=False)
    assert done["returncode"] == 1 and "width not divisible by 2 (97x65)" in done["stderr"]


def test_zero_frames_is_an_error_and_one_frame_works(
    ffmpeg: str, tmp_path: Path, random_preset: Callable[[int], Path]
) -> None:
    one = _make(ffmpeg, tmp_path / "one.y4m", "-f", "lavfi", "-i", "testsrc2=s=48x32:r=10:d=0.1", "-pix_fmt", "yuv420p")
    empty = tmp_path / "zero.y4m"
    empty.write_bytes(one.read_bytes().split(b"\n", 1)[0] + b"\n")  # the header and no frame
    done = _upscale(empty, tmp_path / "z.mp4", random_preset(2), ok=False)
    assert done["returncode"] == 1 and "no video frames (0 frames decoded)" in done["stderr"]
    assert list(tmp_path.glob("*z.*")) == []
    out = tmp_path / "one.mkv"
    assert _upscale(one, out, random_preset(2))["frames"] == 1 and len(_times(ffmpeg, out)[1]) == 1


@pytest.mark.parametrize("container", ["matroska", "mp4"])
def test_stdin_keeps_its_audio_and_subtitles(
    ffmpeg: str, tmp_path: Path, random_preset: Callable[[int], Path], container: str
) -> None:
    """A pipe is read once: its bytes are spooled beside OUT and its other streams muxed in after."""
    srt = tmp_path / "s.srt"
    srt.write_text("1\n00:00:00,100 --> 00:00:00,400\nhello\n")
    ext = "mkv" if container == "matroska" else "mp4"
    extra = ["-movflags", "frag_keyframe+empty_moov"] if container == "mp4" else []
    src = _make(
        ffmpeg,
        tmp_path / f"a.{ext}",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=s=48x32:r=10:d=0.5",
        "-f",
        "lavfi",
        "-i",
        "sine=d=0.5",
        "-i",
        str(srt),
        "-map",
        "0",
        "-map",
        "1",
        "-map",
        "2",
        "-c:v",
        "libx264",
        "-c:a",
        "aac",
        "-c:s",
        "srt" if ext == "mkv" else "mov_text",
        *extra,
    )
    out = tmp_path / "o.mkv"
    done = run_cli(
        "upscale",
        "-",
        str(out),
        "--preset",
        str(random_preset(2)),
        "--json",
        "--backend",
        "torch",
        "--precision",
        "fp32",
        stdin=src.read_bytes(),
    )
    assert done.returncode == 0, done.stderr.decode()
    summary = json.loads(done.stdout)
    assert any("stdin: 1 audio and 1 subtitle stream(s) kept" in n for n in summary["notes"])
    info = _probe(ffmpeg, out)
    assert info.audio_streams == 1 and len(info.subtitle_codecs) == 1 and summary["frames"] == 5
    assert abs(audio_seconds(ffmpeg, out) - audio_seconds(ffmpeg, src)) < 0.05
    _assert_same_times(ffmpeg, src, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([src.name, "o.mkv", "s.srt"])  # no spool left
    to_stdout = run_cli(
        "upscale",
        "-",
        "-",
        "--preset",
        str(random_preset(2)),
        "--format",
        "nut",
        "--backend",
        "torch",
        "--precision",
        "fp32",
        stdin=src.read_bytes(),
    )
    assert (
        to_stdout.returncode == 0 and "stdin to stdout: only the video of the pipe is read" in to_stdout.stderr.decode()
    )


def test_bad_timings_path_fails_before_the_run(
    ffmpeg: str, tmp_path: Path, random_preset: Callable[[int], Path]
) -> None:
    src = _make(ffmpeg, tmp_path / "s.mkv", "-f", "lavfi", "-i", "testsrc2=s=48x32:r=10:d=0.3", "-c:v", "ffv1")
    out = tmp_path / "o.mkv"
    done = _upscale(src, out, random_preset(2), "--timings", "/nonexistent/t.csv", ok=False)
    assert done["returncode"] == 1 and "Traceback" not in done["stderr"]
    assert "--timings /nonexistent/t.csv: folder /nonexistent does not exist" in done["stderr"]
    assert not out.exists()
    done = _upscale(src, out, random_preset(2), "--timings", str(tmp_path / "t.txt"), ok=False)
    assert done["returncode"] == 2 and "use a .csv or .json file name" in done["stderr"]


def test_timestamps_survive_log_lines_written_around_them(ffmpeg: str, tmp_path: Path) -> None:
    """ffmpeg writes a log line in parts; a framecrc line landed between them lost a timestamp in
    about 1 decode in 12 of a cut file (its 'File ended prematurely' comes with the last frames)."""
    from espcn_video.ffmpeg.args import build_timed_decode_args
    from espcn_video.ffmpeg.process import FFmpegProcess
    from espcn_video.ffmpeg.timestamps import FrameTimes
    from espcn_video.ffmpeg.y4m import read_frame, read_header

    whole = _make(
        ffmpeg,
        tmp_path / "whole.mkv",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=s=96x64:r=25:d=4",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
    ).read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(whole[: len(whole) // 2])
    for _ in range(60):
        times = FrameTimes()
        with FFmpegProcess(
            "decoder", build_timed_decode_args(ffmpeg, ["-i", str(cut)]), stdout="pipe", stderr_router=times
        ) as dec:
            header = read_header(dec.stdout)
            assert header is not None
            frames = 0
            while read_frame(dec.stdout, header.geometry, frames) is not None:
                frames += 1
            dec.wait(30)
            tail = dec.stderr_tail()
        assert "File ended prematurely" in tail
        assert frames > 30 and times.seconds(frames - 1, lambda: False) == Fraction(frames - 1, 25)


def _decoded_md5s(ffmpeg: str, path: Path, stream: str) -> list[str]:
    """Each decoded frame's MD5 of one stream (the packets are rewrapped between MPEG-TS's Annex B
    and MP4/Matroska's length prefixes, so their bytes differ even when copied)."""
    text = subprocess.run(
        [ffmpeg, "-v", "error", "-i", str(path), "-map", stream, "-f", "framemd5", "-"],
        capture_output=True,
        timeout=60,
        check=True,
    ).stdout.decode()
    return [ln.split(",")[-1].strip() for ln in text.splitlines() if not ln.startswith("#")]


def _first_time(ffmpeg: str, path: Path, stream: str) -> float:
    text = subprocess.run(
        [ffmpeg, "-v", "error", "-copyts", "-i", str(path), "-map", stream, "-c", "copy", "-f", "framecrc", "-"],
        capture_output=True,
        timeout=60,
        check=True,
    ).stdout.decode()
    tb = next(ln.split(":")[-1].strip() for ln in text.splitlines() if ln.startswith("#tb"))
    pts = min(int(ln.split(",")[2]) for ln in text.splitlines() if not ln.startswith("#"))
    return float(pts * Fraction(tb))


@pytest.mark.parametrize(("ext", "kept"), [("mkv", True), ("mp4", True), ("avi", False)])
def test_a_second_video_stream_is_copied_as_it_is_or_said_dropped(
    ffmpeg: str, tmp_path: Path, random_preset: Callable[[int], Path], ext: str, kept: bool
) -> None:
    """Another angle or a preview track: not upscaled, copied byte for byte where the container
    takes it, after the upscaled video (still the first, default stream); else said dropped. A
    data stream is said dropped."""
    src = _make(
        ffmpeg,
        tmp_path / "two.ts",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=s=96x64:r=10:d=1",
        "-f",
        "lavfi",
        "-i",
        "smptebars=s=64x48:r=10:d=1",
        "-f",
        "data",
        "-i",
        str(_make(ffmpeg, tmp_path / "blob.bin", "-f", "lavfi", "-i", "sine=d=0.1", "-f", "s16le")),
        *("-map", "0", "-map", "1", "-map", "2", "-c:v", "libx264", "-c:d", "copy"),
    )
    info = _probe(ffmpeg, src)
    assert [(v.stream, v.codec, v.size) for v in info.other_videos] == [(1, "h264", (64, 48))]
    assert info.data_codecs == ("bin_data",)
    out = tmp_path / f"out.{ext}"
    summary = _upscale(src, out, random_preset(2))
    notes = " ".join(summary["notes"])
    assert "1 data stream(s) (bin_data) not kept" in notes
    got = _probe(ffmpeg, out)
    assert (got.width, got.height) == (192, 128) and summary["frames"] == 10
    if kept:
        assert "video stream 1 (h264 64x48) copied as it is: only the first video stream is upscaled" in notes
        assert [(v.stream, v.codec, v.size) for v in got.other_videos] == [(1, "h264", (64, 48))]
        want = _decoded_md5s(ffmpeg, src, "0:v:1")
        assert len(want) == 10 and _decoded_md5s(ffmpeg, out, "0:v:1") == want
        # it stays in step with the upscaled video: the same start relative to it as in IN
        lag = [_first_time(ffmpeg, f, "0:v:1") - _first_time(ffmpeg, f, "0:v:0") for f in (src, out)]
        assert abs(lag[0] - lag[1]) <= 0.001, lag
    else:
        assert "video stream 1 (h264 64x48) not kept: .avi cannot carry it as it is (.mkv can)" in notes
        assert got.other_videos == ()


@pytest.mark.parametrize(("ext", "kept"), [("mkv", True), ("mp4", False)])
def test_a_stereo_layout_is_kept_in_matroska_and_said_lost_elsewhere(
    ffmpeg: str, tmp_path: Path, random_preset: Callable[[int], Path], ext: str, kept: bool
) -> None:
    """A side-by-side 3D clip: Matroska OUT keeps its StereoMode (the stereo_mode tag goes with the
    tags), MP4 OUT cannot be given it from the raw frames, and the summary says so."""
    src = _make(
        ffmpeg,
        tmp_path / "sbs.mkv",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=s=96x64:r=10:d=0.5",
        "-c:v",
        "libx264",
        "-metadata:s:v",
        "stereo_mode=left_right",
    )
    assert _probe(ffmpeg, src).stereo3d == "side by side"
    out = tmp_path / f"out.{ext}"
    notes = " ".join(_upscale(src, out, random_preset(2))["notes"])
    said = "stereo 3D (side by side) metadata is not carried" in notes
    assert said != kept
    assert (_probe(ffmpeg, out).stereo3d == "side by side") == kept


def _vr_clip(ffmpeg: str, path: Path, spherical: Any) -> Path:
    """A 360-degree H.264 clip (96x64): written through the same Matroska pipe writer as the
    encoder's input, with a Projection element, and encoded by ffmpeg."""
    from espcn_video.ffmpeg import mkv
    from espcn_video.ffmpeg.y4m import FrameGeometry

    head = mkv.build_stream_header(FrameGeometry(96, 64, "yuv420p"), video_elements=mkv.build_projection(spherical))
    cmd = [ffmpeg, "-v", "error", "-f", "matroska", "-i", "pipe:0", "-c:v", "libx264", "-strict", "-1", "-y", str(path)]
    with subprocess.Popen(cmd, stdin=subprocess.PIPE) as proc:
        assert proc.stdin is not None
        proc.stdin.write(head)
        yy, xx = np.mgrid[0:64, 0:96]
        for n in range(5):
            luma = ((xx * 2 + yy + 9 * n) % 200 + 16).astype(np.uint8)
            mkv.write_frame(
                proc.stdin, [luma, np.full((32, 48), 128, np.uint8), np.full((32, 48), 96, np.uint8)], n * 40_000
            )
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0
    return path


@pytest.fixture(scope="module")
def equirect(tmp_path_factory: pytest.TempPathFactory, ffmpeg: str) -> Path:
    """Equirectangular, yaw 90."""
    from espcn_video.ffmpeg.probe import Spherical

    return _vr_clip(ffmpeg, tmp_path_factory.mktemp("vr") / "vr.mkv", Spherical("equirectangular", yaw=90.0))


def test_a_cubemap_keeps_its_pose_and_its_padding_scaled(
    ffmpeg: str, tmp_path: Path, random_preset: Callable[[int], Path]
) -> None:
    """A cubemap's padding is in pixels: 2 in the source is 4 in OUT at x2."""
    from espcn_video.ffmpeg.probe import Spherical

    src = _vr_clip(ffmpeg, tmp_path / "cube.mkv", Spherical("cubemap", pitch=10.0, padding=2))
    assert _probe(ffmpeg, src).spherical == Spherical("cubemap", 0.0, 10.0, 0.0, 2)
    for name in ("out.mkv", "out.mp4"):
        _upscale(src, tmp_path / name, random_preset(2))
        assert _probe(ffmpeg, tmp_path / name).spherical == Spherical("cubemap", 0.0, 10.0, 0.0, 4)


@pytest.mark.parametrize(
    ("name", "extra", "kept"), [("out.mkv", (), True), ("out.mp4", (), True), ("out.ts", (), False)]
)
def test_a_360_degree_projection_reaches_matroska_and_mp4_and_is_said_lost_elsewhere(
    equirect: Path,
    ffmpeg: str,
    tmp_path: Path,
    random_preset: Callable[[int], Path],
    name: str,
    extra: tuple,
    kept: bool,
) -> None:
    from espcn_video.ffmpeg.probe import Spherical

    assert _probe(ffmpeg, equirect).spherical == Spherical("equirectangular", 90.0, 0.0, 0.0)
    out = tmp_path / name
    notes = " ".join(_upscale(equirect, out, random_preset(2), *extra)["notes"])
    said = "360-degree (equirectangular) metadata is not carried" in notes
    got = _probe(ffmpeg, out)
    assert (got.width, got.height) == (192, 128) and said != kept
    if not kept:
        assert got.spherical is None
    elif name.endswith(".mkv"):
        assert got.spherical == Spherical("equirectangular", 90.0, 0.0, 0.0)
    else:  # ffmpeg reads MP4's projection but not its pose: the prhd box holds yaw 90 (16.16)
        assert got.spherical == Spherical("equirectangular")
        data = out.read_bytes()
        at = data.index(b"prhd")
        assert int.from_bytes(data[at + 8 : at + 12], "big", signed=True) == 90 << 16


# --- frame rates that are not whole numbers, fixed-rate containers, offsets, y4m on stdin ---

NTSC = Fraction(30000, 1001)


def _first_pts_by_stream(ffmpeg: str, path: Path) -> dict[int, Fraction]:
    """Each stream's first packet time (seconds, -copyts: as the file stores it)."""
    text = subprocess.run(
        [ffmpeg, "-nostdin", "-v", "error", "-copyts", "-i", str(path)]
        + ["-map", "0", "-c", "copy", "-f", "framecrc", "-"],
        capture_output=True,
        check=True,
        timeout=120,
    ).stdout.decode()
    tbs: dict[int, Fraction] = {}
    first: dict[int, Fraction] = {}
    for line in text.splitlines():
        if line.startswith("#tb "):
            index, tb = line[4:].split(": ")
            tbs[int(index)] = Fraction(tb)
        elif line and not line.startswith("#"):
            fields = [f.strip() for f in line.split(",")]
            stream, pts = int(fields[0]), int(fields[2])
            first[stream] = min(first.get(stream, pts * tbs[stream]), pts * tbs[stream])
    return first


def _y4m_rate(path: Path) -> Fraction:
    header = path.read_bytes()[:200].split(b"\n")[0].decode()
    token = next(t for t in header.split() if t.startswith("F"))
    return Fraction(token[1:].replace(":", "/"))


@pytest.fixture(scope="module")
def ntsc_sources(tmp_path_factory: pytest.TempPathFactory, ffmpeg: str) -> dict[str, Path]:
    """12 frames at 30000/1001 as y4m (F30000:1001), raw .yuv and AVI: each one's time base is
    1001/30000, which `ffmpeg -i` prints as "29.97 tbn"."""
    folder = tmp_path_factory.mktemp("ntsc")
    lavfi = ("-f", "lavfi", "-i", "testsrc2=s=48x32:r=30000/1001:d=0.4", "-pix_fmt", "yuv420p")
    return {
        "y4m": _make(ffmpeg, folder / "ntsc.y4m", *lavfi),
        "yuv": _make(ffmpeg, folder / "ntsc.yuv", *lavfi, "-f", "rawvideo"),
        "avi": _make(ffmpeg, folder / "ntsc.avi", *lavfi, "-c:v", "ffv1"),
    }


@pytest.mark.parametrize("kind", ["y4m", "yuv", "avi"])
def test_a_source_at_30000_1001_keeps_its_times(
    ntsc_sources: dict[str, Path], ffmpeg: str, tmp_path: Path, random_preset: Callable[[int], Path], kind: str
) -> None:
    """The time base was read from "29.97 tbn" as 1/97: every such source was refused."""
    out = tmp_path / "out.mkv"
    raw = ("--input-size", "48x32", "--input-rate", "30000/1001") if kind == "yuv" else ()
    summary = _upscale(ntsc_sources[kind], out, random_preset(2), *raw)
    tb, got = _times(ffmpeg, out)
    assert summary["frames"] == len(got) == 12
    assert max(abs(t - got[0] - n / NTSC) for n, t in enumerate(got)) <= tb


@pytest.mark.parametrize("suffix", [".y4m", ".avi"])
@pytest.mark.parametrize(("source", "rate"), [("mp4", Fraction(25)), ("y4m", NTSC)])
def test_a_fixed_rate_container_is_given_the_frame_rate(
    ntsc_sources: dict[str, Path],
    ffmpeg: str,
    tmp_path: Path,
    random_preset: Callable[[int], Path],
    suffix: str,
    source: str,
    rate: Fraction,
) -> None:
    """y4m and AVI store one rate, which ffmpeg takes from the time base: an MP4's 1/12800 made a
    12800 fps y4m and a 600 fps AVI of mostly empty frames."""
    src = ntsc_sources["y4m"]
    if source == "mp4":
        src = _make(ffmpeg, tmp_path / "in.mp4", "-f", "lavfi", "-i", "testsrc2=s=48x32:r=25:d=0.4", "-c:v", "libx264")
    out = tmp_path / f"out{suffix}"
    summary = _upscale(src, out, random_preset(2))
    tb, pts, _ = list_packets(ffmpeg, str(out))
    assert summary["frames"] == len(pts) == (10 if source == "mp4" else 12)
    assert tb == 1 / rate and pts == list(range(len(pts)))
    if suffix == ".y4m":
        assert _y4m_rate(out) == rate


def test_variable_frame_rate_into_y4m_is_refused(
    vfr: Path, tmp_path: Path, random_preset: Callable[[int], Path]
) -> None:
    out = tmp_path / "out.y4m"
    done = _upscale(vfr, out, random_preset(2), ok=False)
    assert done["returncode"] == 1
    assert "such as AVI or y4m, cannot keep these timestamps" in done["stderr"]
    assert "Traceback" not in done["stderr"]
    assert not out.exists() and not [p for p in tmp_path.iterdir() if "partial" in p.name]


@pytest.mark.parametrize("ext", ["mkv", "mp4"])
def test_mpeg_ts_keeps_the_video_offset_from_the_audio(
    ffmpeg: str, tmp_path: Path, random_preset: Callable[[int], Path], ext: str
) -> None:
    """Audio from 1.4 s, video from 1.9 s: ffmpeg moved the video alone to 0 (it reads only the
    video), 0.5 s ahead of its sound."""
    mkv = _make(
        ffmpeg,
        tmp_path / "avoff.mkv",
        *("-f", "lavfi", "-i", "testsrc2=s=48x32:r=25:d=1", "-f", "lavfi", "-i", "sine=d=1.5"),
        *("-filter_complex", "[0:v]setpts=PTS+0.5/TB[v]", "-map", "[v]", "-map", "1:a"),
        *("-c:v", "libx264", "-c:a", "aac"),
    )
    ts = _make(ffmpeg, tmp_path / "avoff.ts", "-i", str(mkv), "-c", "copy")
    first_in = _first_pts_by_stream(ffmpeg, ts)
    offset_in = first_in[0] - first_in[1]
    assert abs(offset_in - Fraction(1, 2)) < Fraction(1, 25)
    out = tmp_path / f"out.{ext}"
    _upscale(ts, out, random_preset(2))
    first_out = _first_pts_by_stream(ffmpeg, out)
    assert abs((first_out[0] - first_out[1]) - offset_in) <= Fraction(1, 1000)


def test_y4m_on_stdin_into_a_file(ffmpeg: str, tmp_path: Path, random_preset: Callable[[int], Path]) -> None:
    """The look at stdin's first bytes (is it y4m?) took them from the pipe the decoder inherited."""
    y4m = _make(ffmpeg, tmp_path / "in.y4m", "-f", "lavfi", "-i", "testsrc2=s=48x32:r=30000/1001:d=0.4")
    out = tmp_path / "out.mkv"
    done = run_cli("upscale", "-", str(out), "--preset", str(random_preset(2)), "--json", stdin=y4m.read_bytes())
    assert done.returncode == 0, done.stderr.decode()
    tb, got = _times(ffmpeg, out)
    assert json.loads(done.stdout)["frames"] == len(got) == 12
    assert max(abs(t - got[0] - n / NTSC) for n, t in enumerate(got)) <= tb


def test_ffv1_keeps_a_picture_of_a_few_pixels(
    ffmpeg: str, tmp_path: Path, random_preset: Callable[[int], Path]
) -> None:
    """FFV1 keeps odd sizes, down to 1x1 x3; its automatic slice count refused a 3x3 picture."""
    src = _make(
        ffmpeg,
        tmp_path / "one.mkv",
        *("-f", "lavfi", "-i", "testsrc2=s=2x2:r=10:d=0.5,crop=1:1:0:0:exact=1"),
        *("-pix_fmt", "yuv420p", "-c:v", "ffv1", "-slices", "1"),
    )
    out = tmp_path / "out.mkv"
    summary = _upscale(src, out, random_preset(3), "--codec", "ffv1")
    info = _probe(ffmpeg, out)
    assert (info.width, info.height) == (3, 3) and summary["frames"] == len(_times(ffmpeg, out)[1]) == 5
