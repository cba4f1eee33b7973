"""`upscale` without --preset: the clean or the real-video preset, chosen by looking at the input.

Short ffmpeg runs decode the start of the input, and two later stretches of a longer one
(ffmpeg/look.py); quality/input_look.py measures and decides. The look never fails a job: whatever
stops it (a pipe, an unreadable start, a timeout) leaves the real preset, which is never below
bicubic on the robustness grid.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass

import numpy as np

from espcn_video.ffmpeg.args import build_input_args
from espcn_video.ffmpeg.locate import locate_ffmpeg
from espcn_video.ffmpeg.look import (
    LOOK_FRAMES,
    LOOK_LATER,
    LOOK_LATER_FRAMES,
    LOOK_LATER_MIN_S,
    LOOK_STEP,
    LOSSLESS_CODECS,
    MEZZANINE_CODECS,
    build_look_args,
    parse_frame_qps,
    parse_inter_qps,
)
from espcn_video.ffmpeg.probe import parse_probe_output
from espcn_video.model.presets import auto_pair, motion_preset
from espcn_video.quality.input_look import ALIAS_MAX, InputLook, PresetChoice, aliasing_index, choose_by_look
from espcn_video.settings import InputSpec

LOOK_TIMEOUT_S = 60.0
_OUT_SIZE = re.compile(r"Output #0.*?Video: rawvideo.*?, (\d+)x(\d+)", re.S)


@dataclass(frozen=True)
class AutoPreset:
    name: str
    reason: str  # one line: which preset and why
    look: InputLook | None = None


def _look_once(
    ffmpeg: str, source: InputSpec, frames: int, start_s: float | None, timeout_s: float
) -> tuple[str, list[float]]:
    """One look: ffmpeg's stderr and the aliasing index of each frame kept."""
    cmd = build_look_args(ffmpeg, build_input_args(source), frames, LOOK_STEP, start_s)
    done = subprocess.run(cmd, capture_output=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
    text = done.stderr.decode("utf-8", errors="replace")
    size = _OUT_SIZE.search(text)
    if size is None:
        return text, []
    w, h = int(size.group(1)), int(size.group(2))
    data = done.stdout[: len(done.stdout) // (w * h) * (w * h)]
    planes = np.frombuffer(data, np.uint8).reshape(-1, h, w)
    return text, [v for v in (aliasing_index(p) for p in planes) if v is not None]


def look_at(source: InputSpec, timeout_s: float = LOOK_TIMEOUT_S) -> InputLook:
    """Decode the start of `source` (and two later stretches of a longer one): its codec, its
    H.264 quantizers, the aliasing of sampled frames."""
    ffmpeg = locate_ffmpeg().path
    text, values = _look_once(ffmpeg, source, LOOK_FRAMES, None, timeout_s)
    probe = parse_probe_output(text)
    qps, inter = parse_frame_qps(text), parse_inter_qps(text)
    duration = probe.duration_s
    if duration is not None and duration >= LOOK_LATER_MIN_S:
        for fraction in LOOK_LATER:
            later, more = _look_once(ffmpeg, source, LOOK_LATER_FRAMES, duration * fraction, timeout_s)
            qps += parse_frame_qps(later)
            inter += parse_inter_qps(later)
            values += more
    codec = probe.video_codec
    lossless = codec in LOSSLESS_CODECS or codec in MEZZANINE_CODECS or (source.raw is not None)
    return InputLook(codec, tuple(qps), tuple(values), lossless, tuple(inter))


def choose_video_preset(source: InputSpec, clean: str, real: str, scale: int) -> AutoPreset:
    """`clean` or `real` (the presets of `scale`) for this input, with the reason in one line."""
    if ALIAS_MAX.get(scale) is None:  # nothing to look for at this scale
        return AutoPreset(real, f"{real} (auto: {choose_by_look(InputLook(None), scale).reason})")
    if source.is_stdin:
        return AutoPreset(real, f"{real} (auto: stdin cannot be looked at before the run)")
    try:
        look = look_at(source)
    except (OSError, subprocess.SubprocessError) as exc:
        return AutoPreset(real, f"{real} (auto: could not look at the input: {exc})")
    choice: PresetChoice = choose_by_look(look, scale)
    name = clean if choice.clean else real
    reason = choice.reason
    mc = motion_preset(scale) if real == auto_pair(scale)[1] else None
    if not choice.clean and mc is not None and lossy_video(look):
        # on P/B-coded LR the motion-compensated preset is at or above the one-frame one in
        # every held-out chain (docs/training.md): same choice, the frame's neighbours read too
        name, reason = mc, f"{reason}; lossy video, so the motion-compensated real preset"
    return AutoPreset(name, f"{name} (auto: {reason})", look)


def lossy_video(look: InputLook) -> bool:
    """A stream of a lossy video codec (what the motion-compensated preset was trained on): not a
    lossless or mezzanine codec, not a still-image codec."""
    return look.codec is not None and not look.lossless and look.codec not in STILL_IMAGE_CODECS


STILL_IMAGE_CODECS = frozenset({"png", "mjpeg", "jpegls", "jpeg2000", "webp", "bmp", "tiff", "gif", "apng"})
