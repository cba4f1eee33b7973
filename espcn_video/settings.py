"""Frozen settings for the jobs; the CLI builds them, the jobs only read them."""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

from espcn_video.errors import UsageError

SUPPORTED_SCALES = (2, 3, 4)
BACKENDS = ("torch", "openvino", "onnxruntime")
PRECISIONS = ("fp32", "bf16", "fp16", "int8")


def check_scale(scale: int) -> int:
    """The one scale check below the CLI (whose --scale option only offers 2, 3 and 4)."""
    if scale not in SUPPORTED_SCALES:
        raise UsageError(f"unsupported scale {scale}: choose 2, 3 or 4")
    return scale


@dataclass(frozen=True)
class RawInput:
    """A headerless .yuv (how Xiph and UVG clips come): ffmpeg needs size, format and rate."""

    width: int
    height: int
    pix_fmt: str
    rate: Fraction


@dataclass(frozen=True)
class InputSpec:
    path: str  # "-" is stdin
    raw: RawInput | None = None
    sequence_rate: Fraction | None = None  # a numbered image sequence (frame_%04d.png): its frame rate

    @property
    def is_stdin(self) -> bool:
        return self.path == "-"


@dataclass(frozen=True)
class EncodeSettings:
    codec: str | None = None  # None: chosen from the output's extension
    crf: int | None = None
    preset: str | None = None
    format: str | None = None  # ffmpeg muxer name; required when the output is stdout
    extra_args: tuple[str, ...] = ()
    audio_codec: str = "copy"
    copy_streams: bool = True  # audio, subtitles, chapters and metadata from a file input


@dataclass(frozen=True)
class UpscaleSettings:
    input: InputSpec
    output: str  # "-" is stdout
    preset: str = "espcn-x2"  # a shipped preset name or a .pt path
    encode: EncodeSettings = field(default_factory=EncodeSettings)
    threads: int | None = None
    device: str = "cpu"
    backend: str = "auto"  # torch, openvino, onnxruntime; auto: fastest within the quality bound
    precision: str = "auto"  # fp32, bf16, fp16, int8
    overwrite: bool = False
    queue_size: int = 4
    strict_decode: bool = True  # a decoder that reports errors fails the run
    deinterlace: str = "auto"  # auto (when the source says interlaced), off, frame, field
    timings_path: str | None = None  # per-frame timings file, checked before the run
    max_memory_mb: float = 512.0  # the network's working memory per frame: larger frames run in strips
