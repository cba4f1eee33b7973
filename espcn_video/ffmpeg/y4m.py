"""YUV4MPEG2 streams: header parsing and writing, FRAME markers, plane geometry.

The decoder writes y4m so that size, rate, chroma layout, bit depth and range travel
in-band: stdin input works without ffprobe, and every FRAME marker catches a desync.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import IO

import numpy as np

from espcn_video.errors import StreamFormatError, TruncatedFrame

MAX_HEADER_BYTES = 4096
FRAME_MARKER = b"FRAME"

# y4m colour-space token -> (pix_fmt, log2 chroma w, log2 chroma h, bits, has chroma)
_COLORSPACES: dict[str, tuple[str, int, int, int, bool]] = {
    "420jpeg": ("yuv420p", 1, 1, 8, True),
    "420mpeg2": ("yuv420p", 1, 1, 8, True),
    "420paldv": ("yuv420p", 1, 1, 8, True),
    "420": ("yuv420p", 1, 1, 8, True),
    "422": ("yuv422p", 1, 0, 8, True),
    "444": ("yuv444p", 0, 0, 8, True),
    "mono": ("gray", 0, 0, 8, False),
    "420p10": ("yuv420p10le", 1, 1, 10, True),
    "422p10": ("yuv422p10le", 1, 0, 10, True),
    "444p10": ("yuv444p10le", 0, 0, 10, True),
    "mono10": ("gray10le", 0, 0, 10, False),
    "420p12": ("yuv420p12le", 1, 1, 12, True),
    "422p12": ("yuv422p12le", 1, 0, 12, True),
    "444p12": ("yuv444p12le", 0, 0, 12, True),
    "mono12": ("gray12le", 0, 0, 12, False),
}
_PIX_FMT_TO_CS = {
    "yuv420p": "420jpeg",
    "yuv422p": "422",
    "yuv444p": "444",
    "gray": "mono",
    "yuv420p10le": "420p10",
    "yuv422p10le": "422p10",
    "yuv444p10le": "444p10",
    "gray10le": "mono10",
    "yuv420p12le": "420p12",
    "yuv422p12le": "422p12",
    "yuv444p12le": "444p12",
    "gray12le": "mono12",
}
# What the decoder may hand us; ffmpeg's format filter picks the closest to the source.
PIPE_PIX_FMTS: tuple[str, ...] = tuple(_PIX_FMT_TO_CS)


@dataclass(frozen=True)
class FrameGeometry:
    """Plane sizes of one planar frame; odd sizes round chroma up, as ffmpeg does."""

    width: int
    height: int
    pix_fmt: str

    def __post_init__(self) -> None:
        if self.pix_fmt not in _PIX_FMT_TO_CS:
            raise StreamFormatError(f"unsupported pixel format {self.pix_fmt}; supported: {', '.join(PIPE_PIX_FMTS)}")
        if self.width <= 0 or self.height <= 0:
            raise StreamFormatError(f"invalid frame size {self.width}x{self.height}")

    @property
    def _layout(self) -> tuple[str, int, int, int, bool]:
        return _COLORSPACES[_PIX_FMT_TO_CS[self.pix_fmt]]

    @property
    def bits(self) -> int:
        return self._layout[3]

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint8) if self.bits == 8 else np.dtype("<u2")

    @property
    def peak(self) -> int:
        return (1 << self.bits) - 1

    @property
    def has_chroma(self) -> bool:
        return self._layout[4]

    @property
    def chroma_shift(self) -> tuple[int, int]:
        return self._layout[1], self._layout[2]

    @property
    def plane_shapes(self) -> list[tuple[int, int]]:
        """(height, width) of each plane: Y, then U and V when there is chroma."""
        shapes = [(self.height, self.width)]
        if self.has_chroma:
            sx, sy = self.chroma_shift
            cw = -(-self.width >> sx)
            ch = -(-self.height >> sy)
            shapes += [(ch, cw), (ch, cw)]
        return shapes

    @property
    def frame_bytes(self) -> int:
        return sum(h * w for h, w in self.plane_shapes) * self.dtype.itemsize

    def scaled(self, scale: int) -> FrameGeometry:
        return replace(self, width=self.width * scale, height=self.height * scale)


@dataclass(frozen=True)
class Y4MHeader:
    geometry: FrameGeometry
    rate: Fraction
    sar: Fraction | None = None  # None: unknown (A0:0)
    interlace: str = "p"
    full_range: bool = False
    colorspace_token: str = field(default="", compare=False)  # as read: C420mpeg2 says left-sited chroma

    def encode(self) -> bytes:
        """The header line we write to the encoder (always progressive, chroma centred)."""
        g = self.geometry
        sar = f"{self.sar.numerator}:{self.sar.denominator}" if self.sar else "0:0"
        parts = [
            "YUV4MPEG2",
            f"W{g.width}",
            f"H{g.height}",
            f"F{self.rate.numerator}:{self.rate.denominator}",
            "Ip",
            f"A{sar}",
            f"C{_PIX_FMT_TO_CS[g.pix_fmt]}",
        ]
        if self.full_range:
            parts.append("XCOLORRANGE=FULL")
        return (" ".join(parts) + "\n").encode("ascii")


def parse_header(line: bytes, source: str = "stream") -> Y4MHeader:
    tokens = line.decode("ascii", errors="replace").split()
    if not tokens or tokens[0] != "YUV4MPEG2":
        raise StreamFormatError(f"{source}: not a YUV4MPEG2 stream")
    width = height = 0
    rate = Fraction(25)
    sar: Fraction | None = None
    interlace = "p"
    colorspace = "420jpeg"
    full_range = False
    try:
        for tok in tokens[1:]:
            key, val = tok[0], tok[1:]
            if key == "W":
                width = int(val)
            elif key == "H":
                height = int(val)
            elif key == "F":
                num, den = val.split(":")
                rate = Fraction(int(num), int(den))
            elif key == "A":
                num, den = val.split(":")
                sar = Fraction(int(num), int(den)) if int(num) and int(den) else None
            elif key == "I":
                interlace = val
            elif key == "C":
                colorspace = val
            elif tok == "XCOLORRANGE=FULL":
                full_range = True
    except (ValueError, ZeroDivisionError) as exc:
        raise StreamFormatError(f"{source}: bad y4m header {line[:120]!r}: {exc}") from exc
    if colorspace not in _COLORSPACES:
        raise StreamFormatError(f"{source}: unsupported y4m colour space C{colorspace}")
    geometry = FrameGeometry(width, height, _COLORSPACES[colorspace][0])
    return Y4MHeader(geometry, rate, sar, interlace, full_range, colorspace)


def _read_line(stream: IO[bytes], source: str, what: str) -> bytes:
    """One '\\n'-terminated line, bounded; b'' at a clean end of stream."""
    line = stream.readline(MAX_HEADER_BYTES)
    if not line:
        return b""
    if not line.endswith(b"\n"):
        if len(line) >= MAX_HEADER_BYTES:
            raise StreamFormatError(f"{source}: {what} line longer than {MAX_HEADER_BYTES} bytes")
        raise StreamFormatError(f"{source}: stream ended inside a {what} line")
    return line[:-1]


def read_header(stream: IO[bytes], source: str = "stream") -> Y4MHeader | None:
    """The stream header, or None when the stream is empty (the decoder produced nothing)."""
    line = _read_line(stream, source, "header")
    if not line:
        return None
    return parse_header(line, source)


def read_frame(
    stream: IO[bytes], geometry: FrameGeometry, index: int, source: str = "stream"
) -> list[np.ndarray] | None:
    """The planes of the next frame, or None at a clean end (0 bytes at a frame boundary)."""
    marker = _read_line(stream, source, "FRAME")
    if not marker:
        return None
    if not marker.startswith(FRAME_MARKER):
        raise StreamFormatError(f"{source}: frame {index}: expected FRAME marker, got {marker[:20]!r}")
    want = geometry.frame_bytes
    data = bytearray(want)  # writable, so the planes can go to torch without a copy
    view, got = memoryview(data), 0
    while got < want:
        # Popen's pipes and BytesIO are buffered readers; typeshed's IO[bytes] omits readinto
        n = stream.readinto(view[got:])  # type: ignore[attr-defined]
        if not n:
            raise TruncatedFrame(source, index, got, want)
        got += n
    return split_planes(data, geometry)


def split_planes(data: bytes | bytearray | memoryview, geometry: FrameGeometry) -> list[np.ndarray]:
    flat = np.frombuffer(data, dtype=geometry.dtype)
    planes, offset = [], 0
    for h, w in geometry.plane_shapes:
        planes.append(flat[offset : offset + h * w].reshape(h, w))
        offset += h * w
    return planes


def write_frame(stream: IO[bytes], planes: list[np.ndarray]) -> None:
    stream.write(FRAME_MARKER + b"\n")
    for plane in planes:
        stream.write(np.ascontiguousarray(plane).data.cast("B"))


def decode_all(cmd: list[str], what: str = "decoder") -> tuple[Y4MHeader | None, list[list[np.ndarray]]]:
    """Every frame a y4m decode command writes (its header None when it wrote none); ffmpeg's
    failure is raised once its output is read (FFmpegProcess.check)."""
    from espcn_video.ffmpeg.process import FFmpegProcess

    frames: list[list[np.ndarray]] = []
    with FFmpegProcess(what, cmd, stdout="pipe") as dec:
        header = read_header(dec.stdout, f"{what} output")
        while header is not None and (planes := read_frame(dec.stdout, header.geometry, len(frames), f"{what} output")):
            frames.append(planes)
        dec.check(timeout_s=30.0)
    return header, frames
