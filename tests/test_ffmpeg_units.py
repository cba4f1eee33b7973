"""Pure pieces: argv builders as whole lists, probe parsing, y4m geometry, chroma resampling."""

from __future__ import annotations

import io
from fractions import Fraction

import numpy as np
import pytest

from espcn_video.errors import EspcnVideoError, StreamFormatError, TruncatedFrame
from espcn_video.ffmpeg import mkv
from espcn_video.ffmpeg.args import (
    RGB_TO_YUV_FILTER,
    Attachment,
    OutputVideo,
    audio_replacements,
    build_cover_extract_args,
    build_decode_args,
    build_deinterlace_filter,
    build_encode_args,
    build_hdr_args,
    build_timed_decode_args,
    carries_attachments,
    covers_to_attach,
    even_size_for,
    is_image_output,
    is_numbered,
    subtitle_codec_for,
)
from espcn_video.ffmpeg.probe import (
    ColorTags,
    CoverArt,
    FrameProps,
    MasteringDisplay,
    ProbeInfo,
    parse_first_frame,
    parse_probe_output,
)
from espcn_video.ffmpeg.timestamps import FrameTimes
from espcn_video.ffmpeg.y4m import FrameGeometry, Y4MHeader, parse_header, read_frame, read_header, write_frame
from espcn_video.frames.resample import upscale_planes_bicubic
from espcn_video.jobs.inputs import source_filters
from espcn_video.settings import EncodeSettings, InputSpec, RawInput

FORMATS = "format=yuv420p|yuv422p|yuv444p|gray|yuv420p10le|yuv422p10le|yuv444p10le|gray10le|yuv420p12le|yuv422p12le|yuv444p12le|gray12le"


def test_decode_args_file() -> None:
    assert build_decode_args("ff", InputSpec("in.mp4")) == [
        "ff",
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-i",
        "in.mp4",
        "-map",
        "0:V:0",
        "-vf",
        FORMATS,
        "-fps_mode",
        "passthrough",
        "-strict",
        "-1",
        "-f",
        "yuv4mpegpipe",
        "pipe:1",
    ]


def test_decode_args_raw_yuv() -> None:
    spec = InputSpec("clip.yuv", RawInput(1920, 1080, "yuv420p10le", Fraction(30000, 1001)))
    assert build_decode_args("ff", spec) == [
        "ff",
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "yuv420p10le",
        "-video_size",
        "1920x1080",
        "-framerate",
        "30000/1001",
        "-i",
        "clip.yuv",
        "-map",
        "0:V:0",
        "-vf",
        FORMATS,
        "-fps_mode",
        "passthrough",
        "-strict",
        "-1",
        "-f",
        "yuv4mpegpipe",
        "pipe:1",
    ]


def _probe(**kw: object) -> ProbeInfo:
    base = dict(
        duration_s=1.0,
        video_codec="h264",
        pix_fmt="yuv420p",
        width=64,
        height=48,
        fps=25.0,
        color=ColorTags("tv", "bt709", "bt709", "bt709"),
        audio_streams=1,
        subtitle_codecs=("subrip",),
        chapters=1,
    )
    base.update(kw)
    return ProbeInfo(**base)  # type: ignore[arg-type]


def test_encode_args_mp4_copies_streams_and_colour() -> None:
    args = build_encode_args(
        "ff", ".o.partial.mp4", EncodeSettings(), full_range=False, source=InputSpec("in.mkv"), probe=_probe()
    )
    assert args == [
        "ff",
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-f",
        "yuv4mpegpipe",
        "-i",
        "pipe:0",
        "-i",
        "in.mkv",
        "-map",
        "0:v:0",
        "-map",
        "1:a?",
        "-map_chapters",
        "1",
        "-map_metadata",
        "1",
        "-map_metadata:s:v:0",
        "1:s:V:0",
        "-c:a",
        "copy",
        "-map",
        "1:s",
        "-c:s",
        "mov_text",
        "-map_metadata:s:a:0",
        "1:s:a:0",
        "-map_metadata:s:s:0",
        "1:s:s:0",
        "-filter:v:0",
        "setparams=field_mode=prog:range=tv:color_primaries=bt709:color_trc=bt709:colorspace=bt709",
        "-c:v",
        "libx264",
        "-crf",
        "18",
        "-color_range",
        "tv",
        "-color_primaries",
        "bt709",
        "-color_trc",
        "bt709",
        "-colorspace",
        "bt709",
        "-fps_mode",
        "passthrough",
        "-strict",
        "-1",
        "-y",
        ".o.partial.mp4",
    ]


def test_copy_args_keep_each_streams_tags_attachments_and_fit_the_audio_to_the_container() -> None:
    """Each audio, subtitle and attachment stream's tags are mapped one by one (the video's own
    mapping turns ffmpeg's default per-stream copy off); attachments go to Matroska only; audio a
    container refuses as it is gets an encoder of its own, the rest is copied."""
    probe = _probe(audio_streams=2, audio_codecs=("flac", "aac"), attachments=1)

    def copy_args(output: str, **kw: object) -> list[str]:
        args = build_encode_args("ff", output, EncodeSettings(**kw), source=InputSpec("in.mkv"), probe=probe)  # type: ignore[arg-type]
        return args[args.index("in.mkv") + 1 : args.index("-filter:v:0")]

    mkv = copy_args(".o.mkv")
    assert mkv[mkv.index("-c:a") : mkv.index("-c:a") + 2] == ["-c:a", "copy"] and "-c:a:0" not in mkv
    assert mkv[-10:] == [
        "-map", "1:t?",
        "-map_metadata:s:a:0", "1:s:a:0", "-map_metadata:s:a:1", "1:s:a:1",
        "-map_metadata:s:s:0", "1:s:s:0", "-map_metadata:s:t:0", "1:s:t:0",
    ]  # fmt: skip
    mov = copy_args(".o.mov")
    assert "1:t?" not in mov and "-map_metadata:s:t:0" not in mov
    assert mov[mov.index("-c:a") : mov.index("-c:a") + 4] == ["-c:a", "copy", "-c:a:0", "alac"]
    webm = copy_args(".o.webm")
    assert webm[webm.index("-c:a") : webm.index("-c:a") + 6] == [
        "-c:a",
        "copy",
        "-c:a:0",
        "libopus",
        "-c:a:1",
        "libopus",
    ]
    chosen = copy_args(".o.webm", audio_codec="libvorbis")  # the user's codec is theirs
    assert chosen[chosen.index("-c:a") : chosen.index("-c:a") + 3] == ["-c:a", "libvorbis", "-map"]
    assert audio_replacements("x.mp4", None, ("flac", "opus", "pcm_s16le", "aac")) == {}
    assert audio_replacements("-", "ipod", ("mp3", "aac")) == {0: ("mp3", "aac")}
    assert carries_attachments("-", "matroska") and not carries_attachments("x.webm", None)
    assert audio_replacements("x.avi", None, ("aac", "flac", "ac3")) == {0: ("aac", "pcm_s16le")}


def test_matroska_gets_the_covers_as_attachments_after_the_sources_own() -> None:
    probe = _probe(attachments=1, covers=(CoverArt(1, "mjpeg"), CoverArt(2, "h264")))
    assert covers_to_attach("x.mkv", None, probe) == [(1, ".jpg", "cover.jpg", "image/jpeg")]  # h264: no file
    assert covers_to_attach("x.mp4", None, probe) == []  # MP4 keeps them as pictures
    cover = Attachment("/tmp/.x.partial-1-abcdef.cover0.jpg", "cover.jpg", "image/jpeg")
    args = build_encode_args("ff", "x.mkv", EncodeSettings(), source=InputSpec("in.mkv"), probe=probe, attach=[cover])
    at = args.index("-attach")
    assert args[at : at + 6] == [
        "-attach", cover.path, "-metadata:s:t:1", "mimetype=image/jpeg", "-metadata:s:t:1", "filename=cover.jpg",
    ]  # fmt: skip
    assert build_cover_extract_args("ff", "in.mkv", 1, "c.jpg")[-10:] == [
        "-map", "0:v:1", "-c", "copy", "-frames:v", "1", "-f", "image2", "-update", "1", "-y", "c.jpg",
    ][-10:]  # fmt: skip
    assert parse_probe_output(
        "  Stream #0:0: Video: h264 (High), yuv420p(progressive), 96x64, 25 fps, 25 tbr, 1k tbn\n"
        "  Stream #0:1: Video: mjpeg (Baseline), yuvj444p(pc), 64x64, 90k tbr, 90k tbn (attached pic)\n"
        "    Metadata:\n"
        "      filename        : front.jpg\n"
        "      mimetype        : image/jpeg\n"
    ).cover_names == ("front.jpg",)


@pytest.mark.parametrize(
    ("output", "codecs", "want"),
    [
        ("x.mkv", ("subrip", "hdmv_pgs_subtitle"), "copy"),
        ("x.mkv", ("mov_text",), "srt"),
        ("x.mp4", ("subrip", "ass"), "mov_text"),
        ("x.mp4", ("dvd_subtitle",), "copy"),
        ("x.mp4", ("hdmv_pgs_subtitle",), None),  # MP4 has no PGS
        ("x.webm", ("ass",), "webvtt"),
        ("x.ts", ("dvb_subtitle",), "copy"),
        ("x.ts", ("subrip",), None),  # it would be an opaque data stream
        ("x.avi", ("subrip",), None),
        ("x.nut", ("ass",), None),
    ],
)
def test_subtitles_go_only_where_the_container_has_a_place_for_them(
    output: str, codecs: tuple[str, ...], want: str | None
) -> None:
    assert subtitle_codec_for(output, None, codecs) == want
    args = build_encode_args(
        "ff", output, EncodeSettings(), source=InputSpec("in.mkv"), probe=_probe(subtitle_codecs=codecs)
    )
    assert ("1:s" in args) == (want is not None) and ("-map_metadata:s:s:0" in args) == (want is not None)


def test_encode_args_y4m_has_no_audio_and_full_range() -> None:
    args = build_encode_args(
        "ff", "o.y4m", EncodeSettings(), full_range=True, source=InputSpec("in.mp4"), probe=_probe(color=ColorTags())
    )
    assert args == [
        "ff",
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-f",
        "yuv4mpegpipe",
        "-i",
        "pipe:0",
        "-map",
        "0:v:0",
        "-map_metadata:s:v:0",
        "-1",
        "-filter:v:0",
        "setparams=field_mode=prog:range=pc",
        "-c:v",
        "rawvideo",
        "-color_range",
        "pc",
        "-fps_mode",
        "passthrough",
        "-strict",
        "-1",
        "-f",
        "yuv4mpegpipe",
        "-y",
        "o.y4m",
    ]


def test_encode_args_stdout_mp4_user_codec_and_extras() -> None:
    settings = EncodeSettings(codec="libx265", crf=22, preset="fast", format="mp4", extra_args=("-tag:v", "hvc1"))
    args = build_encode_args("ff", "-", settings, full_range=False, source=InputSpec("-"), probe=None)
    assert args == [
        "ff",
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-f",
        "yuv4mpegpipe",
        "-i",
        "pipe:0",
        "-map",
        "0:v:0",
        "-map_metadata:s:v:0",
        "-1",
        "-filter:v:0",
        "setparams=field_mode=prog:range=tv",
        "-c:v",
        "libx265",
        "-crf",
        "22",
        "-preset",
        "fast",
        "-color_range",
        "tv",
        "-fps_mode",
        "passthrough",
        "-strict",
        "-1",
        "-tag:v",
        "hvc1",
        "-f",
        "mp4",
        "-movflags",
        "frag_keyframe+empty_moov",
        "-y",
        "pipe:1",
    ]


PROBE_TEXT = """Input #0, matroska,webm, from 'x.mkv':
  Duration: 00:01:02.50, start: 0.000000, bitrate: 1589 kb/s
  Chapters:
    Chapter #0:0: start 0.000000, end 30.000000
    Chapter #0:1: start 30.000000, end 62.500000
  Stream #0:0(eng): Video: hevc (Main 10), yuv420p10le(tv, bt2020nc/bt2020/smpte2084, progressive), 3840x2160 [SAR 1:1 DAR 16:9], 23.98 fps, 23.98 tbr, 1k tbn (default)
  Stream #0:1(eng): Audio: opus, 48000 Hz, stereo, fltp (default)
  Stream #0:2(eng): Subtitle: subrip (srt)
At least one output file must be specified
"""


def test_parse_probe_output() -> None:
    info = parse_probe_output(PROBE_TEXT)
    assert info == ProbeInfo(
        62.5,
        "hevc",
        "yuv420p10le",
        3840,
        2160,
        23.98,
        ColorTags("tv", "bt2020nc", "bt2020", "smpte2084"),
        1,
        ("subrip",),
        2,
        field_order="progressive",
        time_base=Fraction(1, 1000),
        audio_codecs=("opus",),
    )
    assert info.interlaced is None
    assert info.estimated_frames() == 1499


def test_parse_probe_yuvj_is_full_range() -> None:
    text = "  Stream #0:0: Video: h264 (High), yuvj420p(pc, progressive), 1920x1080, 25 fps, 50 tbr, 1200k tbn\n"
    info = parse_probe_output(text)
    assert (info.pix_fmt, info.color.range, info.width, info.height) == ("yuvj420p", "pc", 1920, 1080)


@pytest.mark.parametrize(
    "desc,rgb,alpha",
    [
        ("ffv1, bgr0(pc, gbr/unknown/unknown, progressive), 97x65", True, False),
        ("png (png  / 0x20676E70), rgb24(pc, gbr/unknown/unknown, progressive), 40x30", True, False),
        ("gif, bgra, 96x64 [SAR 64:64 DAR 3:2]", True, True),
        ("prores (4444), yuva444p10le(tv, bt709, progressive), 64x48", False, True),
        ("h264 (High), yuv420p(tv, bt709, progressive), 64x48", False, False),
    ],
)
def test_rgb_sources_arrive_as_full_range_bt709(desc: str, rgb: bool, alpha: bool) -> None:
    """What the decoders hand over from an RGB source: full-range BT.709 Y'CbCr by a stated filter
    (never swscale's untagged default, never a 'gbr' tag an encoder refuses); primaries and
    transfer stay the source's."""
    info = parse_probe_output(f"  Stream #0:0: Video: {desc}, 25 fps, 25 tbr, 1k tbn\n")
    assert (info.is_rgb, info.has_alpha) == (rgb, alpha)
    if rgb:
        assert info.decoded_color == ColorTags("pc", "bt709", None, None)
    else:
        assert info.decoded_color == info.best_color
    filters = source_filters(info, "flagged")  # what every decoder of IN runs, before the format list
    assert filters == ([RGB_TO_YUV_FILTER] if rgb else []) + build_deinterlace_filter("flagged")
    assert RGB_TO_YUV_FILTER == "scale=out_color_matrix=bt709:out_range=full"


@pytest.mark.parametrize(
    "w,h,fmt,shapes,nbytes",
    [
        (33, 17, "yuv420p", [(17, 33), (9, 17), (9, 17)], 33 * 17 + 2 * 9 * 17),
        (33, 17, "yuv422p", [(17, 33), (17, 17), (17, 17)], 33 * 17 + 2 * 17 * 17),
        (8, 4, "gray", [(4, 8)], 32),
        (8, 4, "yuv420p10le", [(4, 8), (2, 4), (2, 4)], 2 * (32 + 16)),
    ],
)
def test_geometry(w: int, h: int, fmt: str, shapes: list[tuple[int, int]], nbytes: int) -> None:
    g = FrameGeometry(w, h, fmt)
    assert g.plane_shapes == shapes and g.frame_bytes == nbytes


def test_y4m_round_trip_and_truncation() -> None:
    header = Y4MHeader(FrameGeometry(5, 3, "yuv420p10le"), Fraction(30000, 1001), Fraction(1, 1), full_range=True)
    assert header.encode() == b"YUV4MPEG2 W5 H3 F30000:1001 Ip A1:1 C420p10 XCOLORRANGE=FULL\n"
    planes = [np.arange(15, dtype="<u2").reshape(3, 5) * 60, np.full((2, 3), 512, "<u2"), np.full((2, 3), 100, "<u2")]
    buf = io.BytesIO()
    buf.write(header.encode())
    write_frame(buf, planes)
    data = buf.getvalue()
    stream = io.BytesIO(data)
    parsed = read_header(stream)
    assert parsed == header
    got = read_frame(stream, parsed.geometry, 0)
    assert got is not None and all(np.array_equal(a, b) for a, b in zip(got, planes, strict=True))
    assert read_frame(stream, parsed.geometry, 1) is None
    short = io.BytesIO(data[:-3])
    read_header(short)
    with pytest.raises(TruncatedFrame, match="frame 0 is truncated \\(51 of 54 bytes\\)"):
        read_frame(short, parsed.geometry, 0)


def test_y4m_desync_is_caught() -> None:
    stream = io.BytesIO(b"YUV4MPEG2 W2 H2 F25:1 Cmono\nFRAMX\n1234")
    header = read_header(stream)
    assert header is not None
    with pytest.raises(StreamFormatError, match="expected FRAME marker"):
        read_frame(stream, header.geometry, 0)
    with pytest.raises(StreamFormatError, match="unsupported y4m colour space C411"):
        parse_header(b"YUV4MPEG2 W2 H2 F25:1 C411")


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_chroma_constant_stays_exact(scale: int) -> None:
    plane = np.full((5, 7), 77, np.uint8)
    out = upscale_planes_bicubic([plane, plane], scale, [(5 * scale, 7 * scale)] * 2, 255)
    assert all(o.shape == (5 * scale, 7 * scale) and (o == 77).all() for o in out)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_chroma_linear_ramp_is_exact_on_the_ps_grid(scale: int) -> None:
    """Inside the border, bicubic reproduces a ramp at the PS sample positions (k+0.5)/r-0.5."""
    w = 16
    ramp = np.tile(np.arange(w, dtype=np.float64) * 8 + 40, (4, 1))
    plane = ramp.astype("<u2")
    out = upscale_planes_bicubic([plane], scale, [(4 * scale, w * scale)], 1023)[0]
    k = np.arange(w * scale)
    expected = ((k + 0.5) / scale - 0.5) * 8 + 40
    inner = slice(2 * scale, (w - 2) * scale)
    assert np.array_equal(out[0, inner], np.round(expected[inner]).astype("<u2"))


def test_odd_chroma_is_cropped_to_output_geometry() -> None:
    lr = FrameGeometry(33, 17, "yuv420p")
    hr = lr.scaled(3)
    assert hr.plane_shapes[1] == (26, 50)
    out = upscale_planes_bicubic([np.zeros((9, 17), np.uint8)] * 2, 3, hr.plane_shapes[1:], 255)
    assert [o.shape for o in out] == [(26, 50), (26, 50)]


# -- timestamps, the Matroska pipe, HDR, siting: the pure pieces of "nothing lost" --------------


def test_timed_decode_args_split_frames_and_timestamps() -> None:
    args = build_timed_decode_args("ff", ["-i", "in.mkv"], build_deinterlace_filter("frame"), (640, 360))
    assert args == [
        "ff",
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-i",
        "in.mkv",
        "-filter_complex",
        "[0:V:0]bwdif=mode=send_frame:parity=auto:deint=all,split=2[pick][times];[pick]scale=640:360,"
        + FORMATS
        + "[frames]",
        "-map",
        "[frames]",
        "-fps_mode",
        "passthrough",
        "-strict",
        "-1",
        "-f",
        "yuv4mpegpipe",
        "pipe:1",
        "-map",
        "[times]",
        "-noautoscale",
        "-c:v",
        "rawvideo",
        "-fps_mode",
        "passthrough",
        "-enc_time_base",
        "filter",
        "-flush_packets",
        "1",
        "-f",
        "framecrc",
        "pipe:2",
    ]
    assert build_deinterlace_filter(None) == [] and build_deinterlace_filter("off") == []
    assert build_deinterlace_filter("field") == ["bwdif=mode=send_field:parity=auto:deint=all"]
    assert build_deinterlace_filter("flagged") == ["bwdif=mode=send_frame:parity=auto:deint=interlaced"]


HDR = MasteringDisplay((0.68, 0.32), (0.265, 0.69), (0.15, 0.06), (0.3127, 0.329), 0.0001, 1000.0)


def test_timed_encode_args_keep_times_colour_siting_hdr_and_crop() -> None:
    video = OutputVideo(
        color=ColorTags("tv", "bt2020nc", "bt2020", "smpte2084"),
        chroma_location="left",
        mastering=HDR,
        content_light=(1000, 400),
        time_base=Fraction(1, 90000),
        crop=(962, 542),
        source_start_s=1.4,
    )
    args = build_encode_args(
        "ff",
        ".o.partial.mkv",
        EncodeSettings(codec="libx265"),
        source=InputSpec("in.ts"),
        probe=_probe(),
        video=video,
        timed=True,
    )
    assert args == [
        "ff",
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-copyts",
        "-f",
        "matroska",
        "-i",
        "pipe:0",
        "-itsoffset",
        "-1.400000",
        "-i",
        "in.ts",
        "-map",
        "0:v:0",
        "-map",
        "1:a?",
        "-map_chapters",
        "1",
        "-map_metadata",
        "1",
        "-map_metadata:s:v:0",
        "1:s:V:0",
        "-c:a",
        "copy",
        "-map",
        "1:s",
        "-c:s",
        "copy",
        "-map_metadata:s:a:0",
        "1:s:a:0",
        "-map_metadata:s:s:0",
        "1:s:s:0",
        "-filter:v:0",
        "setparams=field_mode=prog:range=tv:color_primaries=bt2020:color_trc=smpte2084:colorspace=bt2020nc:"
        "chroma_location=left,crop=962:542:0:0",
        "-c:v",
        "libx265",
        "-color_range",
        "tv",
        "-color_primaries",
        "bt2020",
        "-color_trc",
        "smpte2084",
        "-colorspace",
        "bt2020nc",
        "-x265-params",
        "master-display=G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,1):max-cll=1000,400",
        "-enc_time_base",
        "1/90000",
        "-fps_mode",
        "passthrough",
        "-strict",
        "-1",
        "-y",
        ".o.partial.mkv",
    ]
    assert build_hdr_args("libsvtav1", video) == [
        "-svtav1-params",
        "mastering-display=G(0.2650,0.6900)B(0.1500,0.0600)R(0.6800,0.3200)"
        "WP(0.3127,0.3290)L(1000.0000,0.0001):content-light=1000,400",
    ]
    assert build_hdr_args("libx264", video) == []


def test_even_sizes_only_where_the_encoder_needs_them() -> None:
    assert even_size_for("libx264", 963, 543, (1, 1)) == (962, 542)
    assert even_size_for("libx264", 963, 543, (1, 0)) == (962, 543)  # 4:2:2: width only
    assert even_size_for("libx264", 963, 543, (0, 0)) is None
    assert even_size_for("h264_nvenc", 9, 9, (1, 1)) == (8, 8)
    assert even_size_for("ffv1", 963, 543, (1, 1)) is None and even_size_for("libvpx-vp9", 9, 9, (1, 1)) is None


def test_frame_times_route_framecrc_lines_and_take_off_the_start() -> None:
    times = FrameTimes(offset_us=1_400_000)
    assert times.route("#tb 0: 1/90000") and times.route("#software: Lavf63.1.102")
    assert times.route("0,     126000,     126000,     3600,      424, 0x2b8d15f2")
    assert not times.route("[h264 @ 0x1] error while decoding MB 3 4")
    assert times.seconds(0, lambda: False) == 0
    # a log line written in parts, with our line landed between its prefix and its message
    assert not times.route(
        "[in#0/matroska,webm @ 0x55c1b22397c0] 0,     129600,     129600,     3600,      424, 0x2b8d15f2"
    )
    assert times.seconds(1, lambda: False) == Fraction(1, 25)
    times.close()
    with pytest.raises(EspcnVideoError, match="no timestamp for frame 2"):
        times.seconds(2, lambda: False)


SHOWINFO = """Input #0, matroska,webm, from 'hdr.mkv':
  Duration: 00:00:01.00, start: 0.000000, bitrate: 57 kb/s
  Stream #0:0: Video: hevc (Main 10), yuv420p10le(tv, bt2020nc/bt2020/smpte2084, top first), 64x48 [SAR 1:1 DAR 4:3], 25 fps, 25 tbr, 90k tbn
[Parsed_showinfo_0 @ 0x7f] n:   0 pts:      0 pts_time:0       duration:     40 duration_time:0.04    fmt:yuv420p10le cl:topleft sar:1/1 s:64x48 i:T iskey:1 type:I checksum:12749164
[Parsed_showinfo_0 @ 0x7f]   side data - Mastering display metadata: has_primaries:1 has_luminance:1 r(0.6800,0.3200) g(0.2650,0.6900) b(0.1500 0.0600) wp(0.3127, 0.3290) min_luminance=0.000100, max_luminance=1000.000000
[Parsed_showinfo_0 @ 0x7f]   side data - Content light level metadata: MaxCLL=1000, MaxFALL=400
[Parsed_showinfo_0 @ 0x7f] color_range:tv color_space:bt2020nc color_primaries:bt2020 color_trc:smpte2084
"""


def test_first_frame_probe_reads_siting_fields_and_hdr() -> None:
    info = parse_probe_output(SHOWINFO)
    frame = parse_first_frame(SHOWINFO)
    assert info.field_order == "top first" and info.time_base == Fraction(1, 90000)
    assert info.color == ColorTags("tv", "bt2020nc", "bt2020", "smpte2084")
    assert frame == FrameProps(
        "topleft", "tff", HDR, (1000, 400), ColorTags("tv", "bt2020nc", "bt2020", "smpte2084"), (64, 48), "yuv420p10le"
    )


def test_matroska_pipe_header_is_what_ffmpeg_needs() -> None:
    head = mkv.build_stream_header(
        FrameGeometry(5, 3, "yuv420p10le"),
        sar=(4, 3),
        frame_duration_ns=40_000_000,
        video_elements=mkv.build_hdr_colour(HDR, (1000, 400)),
    )
    assert head.startswith(b"\x1a\x45\xdf\xa3") and b"V_UNCOMPRESSED" in head and b"Y3\x0b\x0a" in head
    assert b"\x18\x53\x80\x67" + mkv.UNKNOWN_SIZE in head  # a live Segment: no size, no seeking
    buf = io.BytesIO()
    mkv.write_frame(buf, [np.zeros((3, 5), "<u2"), np.ones((2, 3), "<u2"), np.ones((2, 3), "<u2")], 40_000)
    cluster = buf.getvalue()
    assert cluster.startswith(b"\x1f\x43\xb6\x75") and len(cluster) == 4 + 8 + (1 + 8 + 2) + 1 + 8 + 4 + 2 * 27
    with pytest.raises(ValueError, match="negative timestamp"):
        mkv.write_frame(buf, [np.zeros((1, 1), np.uint8)], -1)


def test_image_outputs_get_rgb_their_quality_and_one_file_per_frame() -> None:
    """A still goes through image2 with -update (one file, one frame), a numbered name without it;
    the frames become RGB by their own tags, marked RGB for the encoder's own conversion, and no
    -strict lets JPEG take studio-range Y'CbCr."""
    video = OutputVideo(image=True, color=ColorTags("tv", "bt709", None, None))
    still = build_encode_args("ffmpeg", ".big.partial-1-abcdef.jpg", EncodeSettings(), video=video, timed=True)
    assert still[-6:] == ["-f", "image2", "-update", "1", "-y", ".big.partial-1-abcdef.jpg"]
    assert still[still.index("-c:v") + 1 : still.index("-c:v") + 4] == ["mjpeg", "-q:v", "2"]
    assert still[still.index("-filter:v:0") + 1].endswith(
        ",format=rgb24|rgb48le|rgb48be,setparams=colorspace=gbr:range=pc"
    )
    assert "-strict" not in still and "-colorspace" not in still and "-crf" not in still
    numbered = build_encode_args("ffmpeg", "dir/f_%04d.png", EncodeSettings(), video=video, timed=True)
    assert numbered[-4:] == ["-f", "image2", "-y", "dir/f_%04d.png"] and numbered[numbered.index("-c:v") + 1] == "png"
    assert is_numbered("a/f_%04d.png") and is_numbered("f%d.tif") and not is_numbered("100%.png")
    assert is_image_output("x.TIFF", None) and not is_image_output("x.mkv", None) and not is_image_output("-", "image2")


def test_frame_times_see_the_source_change_size_and_chunks_join_the_changes() -> None:
    """The rawvideo branch's packet sizes mark a change of frame size; a change between chunks is
    a chunk whose first frame differs from the previous chunk's last."""
    from espcn_video.jobs.chunk_plan import Chunk, ChunkPlan
    from espcn_video.jobs.chunked import chunk_size_changes

    times = FrameTimes()
    times.route("#tb 0: 1/25")
    for n, size in enumerate([9216, 9216, 2304, 2304, 9216]):
        times.route(f"0,          {n},          {n},        1,     {size}, 0x1234abcd")
    assert (times.first_bytes, times.last_bytes) == (9216, 9216)
    assert times.size_changes == [(2, 9216, 2304), (4, 2304, 9216)]
    plan = ChunkPlan("x", "1/25", 0.0, 1, 30, [Chunk(0, 0, 10, 10), Chunk(1, 10, 20, 10), Chunk(2, 20, None, 10)])
    done = {
        "0": {"frame_bytes": [9216, 9216], "size_changes": []},
        "1": {"frame_bytes": [2304, 9216], "size_changes": [[3, 0.52]]},
        "2": {"frame_bytes": [9216, 9216], "size_changes": []},
    }
    assert chunk_size_changes(plan, {"done": done}) == [(10, 0.4), (13, 0.52)]
    done["0"] = {}  # a part from an older version says nothing: no change is made up
    assert chunk_size_changes(plan, {"done": done}) == [(13, 0.52)]


DOVI_PROBE = """Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'dv.mp4':
  Duration: 00:00:01.00, start: 0.000000, bitrate: 57 kb/s
  Stream #0:0[0x1](und): Video: hevc (Main 10) (dvh1 / 0x31687664), yuv420p10le(tv, progressive), 64x48, 25 fps, 25 tbr, 12800 tbn (default)
    Metadata:
      handler_name    : VideoHandler
    Side data:
      DOVI configuration record: version: 1.0, profile: 5, level: 6, rpu flag: 1, el flag: 0, bl flag: 1, compatibility id: 0, compression: 0
      Display Matrix: rotation of -90.00 degrees
  Stream #0:1[0x2](und): Audio: aac (LC) (mp4a / 0x6134706D), 48000 Hz, stereo, fltp, 2 kb/s
    Side data:
      Display Matrix: rotation of 180.00 degrees
[Parsed_showinfo_0 @ 0x7f] n:   0 pts:      0 pts_time:0       duration:    512 duration_time:0.04    fmt:yuv420p10le cl:left sar:1/1 s:48x64 i:P iskey:1 type:I checksum:12749164
[Parsed_showinfo_0 @ 0x7f]   side data - Dolby Vision RPU Data: 42 bytes
"""


def test_probe_reads_dolby_vision_and_rotation_and_refuses_profile_5() -> None:
    """Profile 5's base layer is IPT-PQ-c2: decoded as Y'CbCr it has the wrong colours, so the run
    is refused; the video's display matrix is read, another stream's is not."""
    from espcn_video.errors import InputError
    from espcn_video.jobs.inputs import check_probed, first_frame_size

    info = parse_probe_output(DOVI_PROBE)
    frame = parse_first_frame(DOVI_PROBE)
    assert info.dolby_vision_profile == 5 and info.rotation == -90.0 and frame.dolby_vision
    assert not frame.hdr10plus and frame.size == (48, 64)
    with pytest.raises(InputError, match="Dolby Vision profile 5 has no backward-compatible base layer"):
        check_probed("dv.mp4", info)
    # without a decoded frame, the stream's size turned by the matrix
    assert first_frame_size(info) == (48, 64)
    check_probed("dv.mp4", parse_probe_output(DOVI_PROBE.replace("profile: 5", "profile: 8")))
    from espcn_video.jobs.inputs import describe_input
    from espcn_video.settings import InputSpec, UpscaleSettings

    p8 = parse_probe_output(DOVI_PROBE.replace("profile: 5", "profile: 8"))
    notes = describe_input(UpscaleSettings(InputSpec("dv.mp4"), "out.mkv"), p8, None)
    assert "the source's Dolby Vision metadata (profile 8) is not carried" in " ".join(notes)
    assert "display rotation (-90 degrees) is applied" in " ".join(notes)


def test_probe_reads_captions_360_and_stereo_and_the_notes_say_them() -> None:
    """ffmpeg's own words: ', Closed Captions' on the stream line, the side data lines below it."""
    from espcn_video.jobs.inputs import describe_input
    from espcn_video.settings import InputSpec, UpscaleSettings

    text = (
        DOVI_PROBE.replace("DOVI configuration record", "X")
        .replace("64x48, 25 fps", "64x48, Closed Captions, 25 fps")
        .replace(
            "      Display Matrix: rotation of -90.00 degrees\n",
            "      Spherical Mapping: equirectangular (0.000000/0.000000/0.000000) \n"
            "      Stereo 3D: top and bottom, view: packed, primary eye: none\n",
            1,
        )
    )
    info = parse_probe_output(text)
    assert info.closed_captions and info.stereo3d == "top and bottom"
    assert info.spherical is not None and (info.spherical.projection, info.spherical.yaw) == ("equirectangular", 0.0)
    assert info.rotation == 0.0 and info.dolby_vision_profile is None
    notes = " ".join(describe_input(UpscaleSettings(InputSpec("vr.mp4"), "out.ts"), info, None))
    assert "closed captions (EIA-608/708 inside the video stream) are not carried" in notes
    assert "360-degree (equirectangular) and stereo 3D (top and bottom) metadata is not carried" in notes
    # Matroska gets the projection through the encoder's pipe, a chunked run's parts do not
    mkv = UpscaleSettings(InputSpec("vr.mp4"), "out.mkv")
    assert "the source's stereo 3D (top and bottom) metadata" in " ".join(describe_input(mkv, info, None))
    chunked = " ".join(describe_input(mkv, info, None, chunked=True))
    assert "360-degree (equirectangular) and stereo 3D (top and bottom) metadata is not carried" in chunked
    pose = parse_probe_output(
        text.replace("equirectangular (0.000000/0.000000/0.000000)", "cubemap (90.000000/-5.500000/0.000000) [pad 4]")
    )
    assert pose.spherical is not None and pose.spherical == type(pose.spherical)("cubemap", 90.0, -5.5, 0.0, 4)
    plain = parse_probe_output(DOVI_PROBE)
    assert not plain.closed_captions and plain.spherical is None and plain.stereo3d is None
