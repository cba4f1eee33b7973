"""A minimal Matroska writer for the encoder's input pipe: raw frames that keep their timestamps.

y4m, the pipe format of the decoder side, has no timestamps: an encoder fed y4m re-times every
frame at a constant rate, so variable-frame-rate video became constant and audio drifted. ffmpeg
reads Matroska from a pipe, and a Matroska stream of V_UNCOMPRESSED frames is a few fixed
elements: an EBML header, a Segment of unknown size, Info (timestamps in microseconds), one video
track, then one Cluster per frame holding one SimpleBlock. NUT would also carry timestamps, but
it needs CRCs and a frame-code table; this is simpler and nothing here is guessed by the reader.

Colour tags are not written here: the encoder sets them on the frames with `setparams`, the one
way this ffmpeg honours for every input format.
"""

from __future__ import annotations

import struct
from typing import IO

import numpy as np

from espcn_video.errors import OutputError
from espcn_video.ffmpeg.probe import MasteringDisplay, Spherical
from espcn_video.ffmpeg.y4m import FrameGeometry

TIMESTAMP_SCALE_NS = 1000  # microsecond ticks: exact for every common source time base >= 2 us
UNKNOWN_SIZE = b"\x01\xff\xff\xff\xff\xff\xff\xff"

# libavcodec's raw fourccs (raw.c), by which the rawvideo decoder recognises the pixel format.
RAW_FOURCC: dict[str, bytes] = {
    "yuv420p": b"I420",
    "yuv422p": b"Y42B",
    "yuv444p": b"444P",
    "gray": b"Y800",
    "yuv420p10le": b"Y3\x0b\x0a",
    "yuv422p10le": b"Y3\x0a\x0a",
    "yuv444p10le": b"Y3\x00\x0a",
    "gray10le": b"Y1\x00\x0a",
    "yuv420p12le": b"Y3\x0b\x0c",
    "yuv422p12le": b"Y3\x0a\x0c",
    "yuv444p12le": b"Y3\x00\x0c",
    "gray12le": b"Y1\x00\x0c",
}


def _size(n: int) -> bytes:
    """EBML variable-size integer, 8 bytes: always valid and simplest."""
    return bytes([0x01]) + n.to_bytes(7, "big")


def element(element_id: int, payload: bytes) -> bytes:
    return element_id.to_bytes((element_id.bit_length() + 7) // 8, "big") + _size(len(payload)) + payload


def uint(element_id: int, value: int) -> bytes:
    return element(element_id, value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


def string(element_id: int, value: str) -> bytes:
    return element(element_id, value.encode("ascii"))


def double(element_id: int, value: float) -> bytes:
    return element(element_id, struct.pack(">d", value))


def build_hdr_colour(mastering: MasteringDisplay | None, content_light: tuple[int, int] | None) -> bytes:
    """A Colour element with HDR10 static metadata: ffmpeg turns it into stream side data, which
    reaches the encoder and the output container's own HDR fields (mkv Colour, mp4 mdcv/clli)."""
    parts = []
    if content_light is not None:
        parts += [uint(0x55BC, content_light[0]), uint(0x55BD, content_light[1])]
    if mastering is not None:
        m = mastering
        parts.append(
            element(
                0x55D0,
                b"".join(
                    [
                        double(0x55D1, m.red[0]),
                        double(0x55D2, m.red[1]),
                        double(0x55D3, m.green[0]),
                        double(0x55D4, m.green[1]),
                        double(0x55D5, m.blue[0]),
                        double(0x55D6, m.blue[1]),
                        double(0x55D7, m.white[0]),
                        double(0x55D8, m.white[1]),
                        double(0x55D9, m.max_luminance),
                        double(0x55DA, m.min_luminance),
                    ]
                ),
            )
        )
    return element(0x55B0, b"".join(parts)) if parts else b""


# Matroska ProjectionType of the projections whose ProjectionPrivate holds nothing but zeros and
# a cubemap's padding (a whole equirectangular frame; a cubemap of layout 0): the others (tiled,
# fisheye...) are not rebuilt from ffmpeg's printout.
PROJECTION_TYPES = {"equirectangular": 1, "cubemap": 2}


def build_projection(spherical: Spherical | None, scale: int = 1) -> bytes:
    """A Projection element for a 360-degree video upscaled `scale` times (a cubemap's padding is
    in pixels): ffmpeg turns it into stream side data, which the output container gets (Matroska
    Projection, MP4 sv3d); b"" where it cannot be written."""
    if spherical is None or spherical.projection not in PROJECTION_TYPES:
        return b""
    kind = PROJECTION_TYPES[spherical.projection]
    private = bytes(20) if kind == 1 else bytes(8) + (spherical.padding * scale).to_bytes(4, "big")
    parts = [uint(0x7671, kind), element(0x7672, private)]
    parts += [double(0x7673, spherical.yaw), double(0x7674, spherical.pitch), double(0x7675, spherical.roll)]
    return element(0x7670, b"".join(parts))


def build_stream_header(
    geometry: FrameGeometry,
    *,
    sar: tuple[int, int] | None = None,
    frame_duration_ns: int | None = None,
    video_elements: bytes = b"",
) -> bytes:
    """EBML header, Segment start (unknown size), Info and the one video track. `video_elements`:
    elements of the track's Video (build_hdr_colour, build_projection)."""
    ebml = element(
        0x1A45DFA3,
        b"".join(
            [
                uint(0x4286, 1),
                uint(0x42F7, 1),
                uint(0x42F2, 4),
                uint(0x42F3, 8),
                string(0x4282, "matroska"),
                uint(0x4287, 4),
                uint(0x4285, 2),
            ]
        ),
    )
    info = element(
        0x1549A966, uint(0x2AD7B1, TIMESTAMP_SCALE_NS) + string(0x4D80, "espcn-video") + string(0x5741, "espcn-video")
    )
    video = [
        uint(0x9A, 2),
        uint(0xB0, geometry.width),
        uint(0xBA, geometry.height),
        element(0x2EB524, RAW_FOURCC[geometry.pix_fmt]),
    ]
    if video_elements:
        video.append(video_elements)
    if sar and sar[0] > 0 and sar[1] > 0 and sar != (1, 1):
        # DisplayWidth/Height in pixels carry the aspect ratio; ffmpeg derives the SAR from them.
        video += [uint(0x54B0, geometry.width * sar[0]), uint(0x54BA, geometry.height * sar[1])]
    entry = [uint(0xD7, 1), uint(0x73C5, 1), uint(0x83, 1), uint(0x9C, 0), string(0x86, "V_UNCOMPRESSED")]
    if frame_duration_ns:
        entry.append(uint(0x23E383, frame_duration_ns))
    entry.append(element(0xE0, b"".join(video)))
    tracks = element(0x1654AE6B, element(0xAE, b"".join(entry)))
    return ebml + b"\x18\x53\x80\x67" + UNKNOWN_SIZE + info + tracks


# ffmpeg's Matroska demuxer refuses any element over 256 MB (matroskadec.c), a frame's block included.
MAX_FRAME_BYTES = 0x10000000 - 64


def check_frame_fits(geometry: FrameGeometry) -> None:
    """A frame too large for one Matroska block gets a clear error before the encoder starts."""
    if geometry.frame_bytes > MAX_FRAME_BYTES:
        raise OutputError(
            f"the upscaled frame is {geometry.width}x{geometry.height} {geometry.pix_fmt} "
            f"({geometry.frame_bytes / 2**20:.0f} MB); ffmpeg reads at most 256 MB a frame from the "
            "timestamped pipe: use a smaller --scale or crop the input"
        )


def write_frame(stream: IO[bytes], planes: list[np.ndarray], pts_us: int) -> None:
    """One Cluster (timestamp pts_us) with one key SimpleBlock; the planes are written in place."""
    if pts_us < 0:
        raise ValueError(f"negative timestamp {pts_us} us")
    data = [np.ascontiguousarray(p).data.cast("B") for p in planes]
    payload_bytes = sum(d.nbytes for d in data)
    block_head = b"\x81" + struct.pack(">hB", 0, 0x80)  # track 1, relative time 0, keyframe
    simple_block_size = len(block_head) + payload_bytes
    timestamp = uint(0xE7, pts_us)
    cluster_size = len(timestamp) + 1 + 8 + simple_block_size
    stream.write(
        b"\x1f\x43\xb6\x75" + _size(cluster_size) + timestamp + b"\xa3" + _size(simple_block_size) + block_head
    )
    for d in data:
        stream.write(d)
