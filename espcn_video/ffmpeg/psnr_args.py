"""Pure argv builders for the psnr job: decode a reference cropped (and degraded by the filter
that quality/degrade.py builds), and run VMAF against it."""

from __future__ import annotations

from espcn_video.ffmpeg.args import COMMON, build_decode_args
from espcn_video.settings import InputSpec


def hr_size_for(size: tuple[int, int], scale: int) -> tuple[int, int]:
    return size[0] - size[0] % scale, size[1] - size[1] % scale


def build_reference_filter(size: tuple[int, int], scale: int, pix_fmt: str) -> str:
    hr_w, hr_h = hr_size_for(size, scale)
    crop = [f"crop={hr_w}:{hr_h}:0:0:exact=1"] if (hr_w, hr_h) != size else []
    return ",".join([*crop, f"format={pix_fmt}"])


def build_degrade_decode_args(
    ffmpeg: str,
    source: InputSpec,
    *,
    size: tuple[int, int],
    pix_fmt: str,
    scale: int,
    degrade_filter: str | None,
    frames: int | None = None,
) -> list[str]:
    """The decode of `upscale` with our filter chain: the reference (degrade_filter None) or its LR.

    `size` and `pix_fmt` are the decoded reference's (see probe_clip); both decodes crop the same,
    then `degrade_filter` (quality.degrade.build_degrade_filter) makes the LR.
    """
    chain = build_reference_filter(size, scale, pix_fmt)
    if degrade_filter is not None:
        chain += "," + degrade_filter
    args = build_decode_args(ffmpeg, source)
    args[args.index("-vf") + 1] = chain
    if frames is not None:
        at = args.index("-strict")
        args[at:at] = ["-frames:v", str(frames)]
    return args


def y4m_stdin_args(ffmpeg: str) -> list[str]:
    """An ffmpeg reading y4m frames on stdin (we write them)."""
    return [ffmpeg, *COMMON, "-f", "yuv4mpegpipe", "-i", "pipe:0"]


def build_lr_encode_args(ffmpeg: str, encoder: str, crf: int, pix_fmt: str, out: str) -> list[str]:
    """The LR clip of a degradation chain through a real encoder (libx264/libx265 at a CRF, their
    default preset and GOP) into a Matroska file."""
    quiet = ["-x265-params", "log-level=error"] if encoder == "libx265" else []
    codec = ["-c:v", encoder, "-crf", str(crf), *quiet, "-pix_fmt", pix_fmt]
    return [*y4m_stdin_args(ffmpeg), *codec, "-f", "matroska", "-y", out]


def _escape_filter_value(value: str) -> str:
    """Two levels of ffmpeg filtergraph escaping: the option value, then the graph."""
    for ch in "\\':":
        value = value.replace(ch, "\\" + ch)
    for ch in "\\'[],;":
        value = value.replace(ch, "\\" + ch)
    return value


def build_vmaf_args(
    ffmpeg: str, source: InputSpec, ref_chain: str, log_path: str, threads: int, frames: int | None
) -> list[str]:
    """libvmaf on y4m from stdin (the SR frames) against the reference decoded a third time.

    Both inputs are renumbered (pts = frame number, time base 1 s) so libvmaf's frame sync pairs
    frame n with frame n whatever the source timestamps.
    """
    decode = build_decode_args(ffmpeg, source)
    ref_input = decode[len(COMMON) + 1 : decode.index("-map")]
    trim = f",trim=end_frame={frames}" if frames is not None else ""
    graph = (
        f"[0:v]settb=1,setpts=N[dist];[1:v]{ref_chain}{trim},settb=1,setpts=N[ref];"
        f"[dist][ref]libvmaf=log_fmt=json:log_path={_escape_filter_value(log_path)}"
        f":n_threads={threads}:shortest=1"
    )
    return [
        *y4m_stdin_args(ffmpeg),
        *ref_input,
        "-filter_complex",
        graph,
        "-f",
        "null",
        "-",
    ]
