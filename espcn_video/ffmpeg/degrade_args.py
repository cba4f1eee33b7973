"""Pure argv builders for the psnr job: degrade a reference in its decode, decode it cropped, run VMAF.

The exact definitions of each degradation are in espcn_video/jobs/psnr.py's docstring.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from espcn_video.settings import InputSpec
from espcn_video.errors import UsageError
from espcn_video.ffmpeg.args import COMMON, build_decode_args
from espcn_video.ffmpeg.y4m import FrameGeometry

DEFAULT_SIGMA = 1.6
TAP_ONE = 4096  # Gaussian taps are integers of this sum (ffmpeg's convolution filter takes integers)
MAX_TAPS = 49  # ffmpeg's convolution filter, row/column mode

@dataclass(frozen=True)
class VideoDegradation:
    kind: str  # "bicubic", "gaussian" or "area"
    sigma: float | None = None

    def spec(self) -> str:
        return f"gaussian:{self.sigma:g}" if self.kind == "gaussian" else self.kind

    def describe(self) -> str:
        if self.kind == "gaussian":
            return f"Gaussian blur sigma {self.sigma:g} + point sampling (kept sample (r-1)//2)"
        if self.kind == "area":
            return "area average (swscale area: r x r block mean)"
        return "bicubic a=-0.5, antialiased (swscale bicubic param0=0 param1=0.5 = MATLAB imresize)"


def parse_video_degradation(text: str) -> VideoDegradation:
    kind, _, arg = text.strip().lower().partition(":")
    if kind in ("bicubic", "area") and not arg:
        return VideoDegradation(kind)
    if kind != "gaussian":
        raise UsageError(f"--degrade {text!r}: choose bicubic, area or gaussian[:SIGMA]")
    try:
        sigma = float(arg) if arg else DEFAULT_SIGMA
    except ValueError:
        raise UsageError(f"--degrade {text!r}: SIGMA must be a number") from None
    radius_max = (MAX_TAPS - 3) // 2
    if not math.isfinite(sigma) or not 0 < sigma <= radius_max / 3:
        raise UsageError(f"--degrade {text!r}: SIGMA must be in (0, {radius_max / 3:.2f}] "
                         f"(ffmpeg's convolution filter takes at most {MAX_TAPS} taps)")
    return VideoDegradation("gaussian", sigma)


def gaussian_taps(sigma: float, scale: int) -> list[int]:
    """Integer taps of radius ceil(3 sigma); for even scales two zeros appended, which moves the
    kernel one pixel so swscale's point sampler (sample r // 2) keeps blurred sample (r - 1) // 2."""
    radius = math.ceil(3.0 * sigma)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    taps = np.exp(-(x * x) / (2.0 * sigma * sigma))
    ints = [int(v) for v in np.round(taps / taps.sum() * TAP_ONE)]
    return ints + [0, 0] if scale % 2 == 0 else ints


def _convolution(mode: str, sigmas: list[float], scale: int) -> str:
    parts = []
    for plane, sigma in enumerate(sigmas):
        taps = gaussian_taps(sigma, scale)
        parts.append(f"{plane}m='{' '.join(map(str, taps))}':{plane}rdiv=1/{sum(taps)}:{plane}mode={mode}")
    return "convolution=" + ":".join(parts)


def build_degrade_filter(degradation: VideoDegradation, lr_size: tuple[int, int], scale: int,
                         chroma_shift: tuple[int, int] | None) -> str:
    """The filters that turn the (cropped) reference into the low-resolution clip."""
    lr_w, lr_h = lr_size
    sited = "in_chroma_loc=center:out_chroma_loc=center"
    if degradation.kind == "bicubic":
        return f"scale={lr_w}:{lr_h}:flags=bicubic+accurate_rnd+bitexact:param0=0:param1=0.5:{sited}"
    if degradation.kind == "area":
        return f"scale={lr_w}:{lr_h}:flags=area+accurate_rnd+bitexact:{sited}"
    assert degradation.sigma is not None
    sigma = degradation.sigma
    sx, sy = chroma_shift if chroma_shift is not None else (0, 0)
    planes = 3 if chroma_shift is not None else 1
    rows = _convolution("row", [sigma] + [sigma / (1 << sx)] * (planes - 1), scale)
    cols = _convolution("column", [sigma] + [sigma / (1 << sy)] * (planes - 1), scale)
    return f"{rows},{cols},scale={lr_w}:{lr_h}:flags=neighbor+bitexact:{sited}"


def hr_size_for(size: tuple[int, int], scale: int) -> tuple[int, int]:
    return size[0] - size[0] % scale, size[1] - size[1] % scale


def build_reference_filter(size: tuple[int, int], scale: int, pix_fmt: str) -> str:
    hr_w, hr_h = hr_size_for(size, scale)
    crop = [f"crop={hr_w}:{hr_h}:0:0:exact=1"] if (hr_w, hr_h) != size else []
    return ",".join([*crop, f"format={pix_fmt}"])


def build_degrade_decode_args(ffmpeg: str, source: InputSpec, *, size: tuple[int, int], pix_fmt: str,
                              scale: int, degradation: VideoDegradation | None,
                              frames: int | None = None) -> list[str]:
    """The decode of `upscale` with our filter chain: the reference (degradation None) or its LR.

    `size` and `pix_fmt` are the decoded reference's (see probe_clip); both decodes crop the same.
    """
    chain = build_reference_filter(size, scale, pix_fmt)
    if degradation is not None:
        hr_w, hr_h = hr_size_for(size, scale)
        geometry = FrameGeometry(hr_w, hr_h, pix_fmt)
        shift = geometry.chroma_shift if geometry.has_chroma else None
        chain += "," + build_degrade_filter(degradation, (hr_w // scale, hr_h // scale), scale, shift)
        chain += f",format={pix_fmt}"
    args = build_decode_args(ffmpeg, source)
    args[args.index("-vf") + 1] = chain
    if frames is not None:
        at = args.index("-strict")
        args[at:at] = ["-frames:v", str(frames)]
    return args


def _escape_filter_value(value: str) -> str:
    """Two levels of ffmpeg filtergraph escaping: the option value, then the graph."""
    for ch in "\\':":
        value = value.replace(ch, "\\" + ch)
    for ch in "\\'[],;":
        value = value.replace(ch, "\\" + ch)
    return value


def build_vmaf_args(ffmpeg: str, source: InputSpec, ref_chain: str, log_path: str, threads: int,
                    frames: int | None) -> list[str]:
    """libvmaf on y4m from stdin (the SR frames) against the reference decoded a third time.

    Both inputs are renumbered (pts = frame number, time base 1 s) so libvmaf's frame sync pairs
    frame n with frame n whatever the source timestamps.
    """
    decode = build_decode_args(ffmpeg, source)
    ref_input = decode[len(COMMON) + 1:decode.index("-map")]
    trim = f",trim=end_frame={frames}" if frames is not None else ""
    graph = (f"[0:v]settb=1,setpts=N[dist];[1:v]{ref_chain}{trim},settb=1,setpts=N[ref];"
             f"[dist][ref]libvmaf=log_fmt=json:log_path={_escape_filter_value(log_path)}"
             f":n_threads={threads}:shortest=1")
    return [ffmpeg, *COMMON, "-f", "yuv4mpegpipe", "-i", "pipe:0", *ref_input,
            "-filter_complex", graph, "-f", "null", "-"]


# -- methods --------------------------------------------------------------------------------
