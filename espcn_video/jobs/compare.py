"""The `compare` job: one video that shows the baseline and ESPCN at the same size.

It is an upscale run (the same decode, checks, timestamps, colour and audio, and the same check
of the written file before it is published) whose frames are [baseline | ESPCN] stacked, and
whose encoder cuts the chosen view from them with ffmpeg's filters (ffmpeg/compose.py). With a
reference clip, the error maps |reference - baseline| and |reference - ESPCN| go beneath.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from espcn_video.errors import UsageError
from espcn_video.ffmpeg.args import build_decode_args, even_size_for
from espcn_video.ffmpeg.compose import LAYOUTS, ComposeSpec, build_compose_filter, find_font
from espcn_video.ffmpeg.probe import ProbeInfo
from espcn_video.ffmpeg.y4m import Y4MHeader
from espcn_video.frames.baselines import LanczosEngine
from espcn_video.frames.compare import CompareUpscaler, ReferenceFrames, block_geometry
from espcn_video.frames.pipeline import Counters, RunResult
from espcn_video.frames.upscaler import FrameUpscaler
from espcn_video.jobs.inputs import check_input
from espcn_video.jobs.upscale import UpscaleOutcome, UpscalePlan, plan_upscale, run_plan
from espcn_video.settings import InputSpec, UpscaleSettings

BASELINES = ("bicubic", "lanczos")
_BASELINE_LABELS = {"bicubic": "bicubic", "lanczos": "Lanczos-3"}


@dataclass(frozen=True)
class CompareOutcome:
    run: UpscaleOutcome
    view_size: tuple[int, int]  # the written video's width and height


@dataclass(frozen=True)
class CompareSettings:
    layout: str = "side-by-side"
    baseline: str = "bicubic"
    reference: InputSpec | None = None
    wipe: float | None = 0.5  # the baseline's share of the width in `split`; None: a moving wipe
    gain: float = 4.0


def check_compare(settings: UpscaleSettings, compare: CompareSettings) -> None:
    if compare.layout not in LAYOUTS:
        raise UsageError(f"--layout {compare.layout}: choose {', '.join(LAYOUTS)}")
    if compare.baseline not in BASELINES:
        raise UsageError(f"--baseline {compare.baseline}: choose {', '.join(BASELINES)}")
    if compare.wipe is not None and not 0.0 <= compare.wipe <= 1.0:
        raise UsageError(f"--wipe {compare.wipe}: a fraction of the width from 0 to 1, or 'sweep'")
    if compare.reference is None:
        return
    if compare.layout == "diff":
        raise UsageError("--ref shows error maps beneath side-by-side or split views; diff has none")
    ref = compare.reference
    if ref.is_stdin:
        raise UsageError("--ref cannot be stdin")
    check_input(ref)
    if settings.output != "-" and Path(settings.output).resolve() == Path(ref.path).resolve():
        raise UsageError(f"{settings.output}: OUT is the reference clip; choose another name")


def label_of(preset_name: str, scale: int) -> str:
    """'ESPCN ×3 (espcn-x3)'; a file's stem, in characters drawtext prints as they are."""
    name = re.sub(r"[^A-Za-z0-9._+-]", "_", Path(preset_name).stem if "/" in preset_name else preset_name)
    return f"ESPCN ×{scale} ({name})"


def block_crop_note(plan: UpscalePlan, lr: Y4MHeader) -> str | None:
    """The crop of an odd upscaled size that the stacked views need whatever the encoder; None when
    there is none, or when the encoder's own even-size crop (said by run_plan) is the same one."""
    hr = lr.geometry.scaled(plan.preset.scale)
    block = block_geometry(hr)
    codec_crops = hr.has_chroma and even_size_for(plan.codec, hr.width, hr.height, hr.chroma_shift) is not None
    if (block.width, block.height) == (hr.width, hr.height) or codec_crops:
        return None
    crop = f"cropped {hr.width}x{hr.height} to {block.width}x{block.height}"
    return f"{crop}: compare's views stack at even sizes for {hr.pix_fmt}"


def compare_video(
    settings: UpscaleSettings,
    compare: CompareSettings,
    *,
    on_start: Callable[[Y4MHeader, ProbeInfo | None], None] | None = None,
    on_progress: Callable[[Counters], None] | None = None,
) -> CompareOutcome:
    """Write the comparison video as settings.output; checked and published as an upscale is."""
    check_compare(settings, compare)
    plan = plan_upscale(settings)
    scale = plan.preset.scale
    espcn = plan.upscaler
    assert isinstance(espcn, FrameUpscaler)
    baseline = FrameUpscaler(scale, LanczosEngine(scale) if compare.baseline == "lanczos" else None)
    font = find_font()
    if font is None:
        plan.notes.append("labels left out: no DejaVuSans.ttf found (matplotlib's)")
    ref = compare.reference
    opened = ReferenceFrames(build_decode_args(plan.ffmpeg.path, ref), ref.path) if ref is not None else None
    with opened or contextlib.nullcontext():
        upscaler = CompareUpscaler(espcn, baseline, opened)
        upscaler.chroma_location = espcn.chroma_location
        plan.upscaler = upscaler

        specs: list[ComposeSpec] = []

        def compose(lr: Y4MHeader) -> str:
            if note := block_crop_note(plan, lr):
                plan.notes.append(note)
            block = block_geometry(lr.geometry.scaled(scale))
            specs.append(
                ComposeSpec(
                    layout=compare.layout,
                    block_w=block.width,
                    block_h=block.height,
                    baseline_label=_BASELINE_LABELS[compare.baseline],
                    espcn_label=label_of(plan.preset.name, scale),
                    with_reference=opened is not None,
                    wipe=compare.wipe,
                    gain=compare.gain,
                    bits=lr.geometry.bits,
                    full_range=lr.full_range,
                    font=font,
                )
            )
            return build_compose_filter(specs[-1])

        def started(header: Y4MHeader, probe: ProbeInfo | None) -> None:
            if opened is not None:
                opened.check_fits(header.geometry.scaled(scale), settings.input.path)
            if on_start is not None:
                on_start(header, probe)

        def reference_ends_too(result: RunResult) -> None:
            if opened is not None:
                opened.finish(result.frames_read)

        plan.compose = compose
        plan.before_publish = reference_ends_too
        outcome = run_plan(plan, on_start=started, on_progress=on_progress)
        return CompareOutcome(outcome, specs[-1].output_size)
