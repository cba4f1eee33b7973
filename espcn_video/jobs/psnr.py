"""The `psnr` job: degrade reference clips in the decoder, super-resolve them through the same
pipeline as `upscale`, and score every frame against the reference as it arrives.

Degradations (ffmpeg filters in the low-resolution decode; the reference decode runs the same crop):
- crop: when W or H is not a multiple of the scale, both decodes keep the top-left
  (W - W mod r) x (H - H mod r) pixels (`crop=...:0:0:exact=1`: right and bottom columns go).
- bicubic: swscale `bicubic` with param0=0 (B) and param1=0.5 (C), i.e. Keys' cubic with a = -0.5,
  MATLAB's imresize kernel (swscale's default is C = 0.6). swscale stretches the kernel by the
  factor when shrinking, so it antialiases like imresize; away from the border the result equals
  imresize to within 1 code value (edges: swscale repeats the edge pixel, MATLAB mirrors).
- area: swscale `area`: for an integer factor the mean of each r x r block (to within rounding).
- gaussian[:SIGMA] (default 1.6): a separable Gaussian of radius ceil(3 sigma) (ffmpeg `convolution`
  row then column pass, taps rounded to 1/4096, borders mirrored by ffmpeg), then point sampling that
  keeps sample (r - 1) // 2 of each r x r block (the block centre for odd r, half a pixel up-left of
  it for even r, as the training code's gaussian_degrade). swscale's point sampler keeps sample
  r // 2, so for even r the taps are shifted one pixel to compensate.
Chroma: planes are resized plane to plane with the same kernel, chroma siting forced to centred on
both sides (the grid our upsampler assumes); for gaussian the chroma sigma is sigma divided by the
subsampling on each axis. Every LR frame is rounded to the clip's bit depth, as a decoded video is.
All filters use accurate_rnd+bitexact so results do not depend on the CPU's SIMD.

Methods: espcn (the preset, TorchEngine), bicubic (our Keys a = -0.5 upsampler on the PS grid),
lanczos (Lanczos-3 on the same grid, below), srcnn (a srcnn-xR preset on the bicubic-upscaled Y).
Chroma is our bicubic for every method, so U and V scores only differ with the degradation.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from espcn_video.errors import EspcnVideoError, InputError, NoVideoStream, PresetError, UsageError
from espcn_video.ffmpeg.args import build_decode_args
from espcn_video.ffmpeg.probe import probe_file
from espcn_video.ffmpeg.process import FFmpegProcess
from espcn_video.ffmpeg.psnr_args import build_degrade_decode_args, build_reference_filter, build_vmaf_args, hr_size_for
from espcn_video.ffmpeg.y4m import FrameGeometry, Y4MHeader, read_frame, read_header
from espcn_video.frames.baselines import LanczosEngine, SrcnnEngine
from espcn_video.frames.pipeline import run_pipeline
from espcn_video.frames.sinks import ReferenceSink, VmafLog, check_decoder, check_same_geometry
from espcn_video.frames.upscaler import FrameUpscaler
from espcn_video.jobs.inputs import check_input
from espcn_video.jobs.preset_choice import choose_video_preset
from espcn_video.jobs.psnr_lr import last_encoded, make_lr_clip, needs_lr_clip
from espcn_video.model.engines import TorchEngine, default_threads
from espcn_video.model.presets import (
    AUTO_PRESET,
    PresetInfo,
    auto_candidates,
    auto_pair,
    load_preset,
    presets_dir,
    resolve_preset,
)
from espcn_video.quality.degrade import Degradation, build_degrade_filter
from espcn_video.quality.video_metrics import VideoScorer, add_gains, pooled_summary
from espcn_video.settings import InputSpec


def probe_clip(ffmpeg: str, source: InputSpec) -> Y4MHeader:
    """The reference's decoded header (size, pixel format after our format filter, bit depth)."""
    with FFmpegProcess("probe decoder", build_decode_args(ffmpeg, source), stdout="pipe") as proc:
        try:
            header = read_header(proc.stdout, source.path)
        except EspcnVideoError:
            header = None
        if header is None:
            try:
                check_decoder(proc, source.path)
            except InputError:
                check_video_stream(ffmpeg, source)  # an audio file: said as upscale says it
                raise
            raise InputError(f"{source.path}: no video frames")
        proc.kill()
    return header


def check_video_stream(ffmpeg: str, source: InputSpec) -> None:
    """A file ffmpeg opens that has no video stream (an audio file) is said as upscale says it,
    probe_file's "no video stream", not as ffmpeg's refusal of `-map 0:V:0`. Anything else that
    keeps ffmpeg from reading the file is left to the decoder's own message."""
    if source.is_stdin or source.raw is not None or source.sequence_rate is not None:
        return
    try:
        probe_file(ffmpeg, source.path)
    except NoVideoStream:
        raise
    except EspcnVideoError:
        return


# -- the job ---------------------------------------------------------------------------------

METHODS = ("espcn", "bicubic", "lanczos", "srcnn")
OnRun = Callable[[str, str], None]  # (clip, method), or (clip, LR_RUN) before a chain's LR clip is made
LR_RUN = "making the LR clip"
OnFrames = Callable[[int], None]  # frames scored so far in the current (clip, method) run


@dataclass(frozen=True)
class PsnrSettings:
    clips: tuple[InputSpec, ...]
    scale: int
    preset: str | None = None
    degradation: Degradation = Degradation("bicubic")
    methods: tuple[str, ...] = ("espcn", "bicubic", "lanczos")
    frames: int | None = None
    crop_border: int = 0
    vmaf: bool = False
    threads: int | None = None
    crops_dir: Path | None = None  # --crops: PNG crops of the worst frames go here
    worst: int = 3  # --worst: how many frames per clip


def build_upscalers(settings: PsnrSettings) -> tuple[dict[str, FrameUpscaler], PresetInfo | None]:
    """One FrameUpscaler per method, loaded once for every clip."""
    scale, upscalers, info = settings.scale, {}, None
    for name in settings.methods:
        if name == "bicubic":
            upscalers[name] = FrameUpscaler(scale, None)
        elif name == "lanczos":
            upscalers[name] = FrameUpscaler(scale, LanczosEngine(scale))
        elif name == "espcn" and settings.preset == AUTO_PRESET:
            # both candidates loaded once; each clip gets the one its LR clip's look chooses
            for candidate in auto_candidates(scale):
                model, info = resolve_preset(candidate, scale=scale)
                engine = TorchEngine(model, threads=settings.threads)
                upscalers[f"{AUTO_PRESET}:{candidate}"] = FrameUpscaler(scale, engine)
            upscalers[name] = upscalers[f"{AUTO_PRESET}:{auto_pair(scale)[0]}"]
        elif name == "espcn":
            model, info = resolve_preset(settings.preset, scale=scale)
            upscalers[name] = FrameUpscaler(scale, TorchEngine(model, threads=settings.threads))
        elif name == "srcnn":
            path = presets_dir() / f"srcnn-x{scale}.pt"
            if not path.is_file():
                raise PresetError(
                    f"no srcnn-x{scale} preset in {presets_dir()}: the srcnn method needs one "
                    f"(espcn-video train --arch srcnn --scale {scale})"
                )
            model, _ = load_preset(str(path))
            upscalers[name] = FrameUpscaler(scale, SrcnnEngine(model, scale))
        else:
            raise UsageError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    return upscalers, info


def _method_summary(scorer: VideoScorer, vmaf: list[float] | None, fps: float | None) -> dict[str, Any]:
    summary = scorer.summary()
    summary["per_frame"] = scorer.per_frame()
    if fps is not None:
        summary["fps"] = round(fps, 2)
    if vmaf is not None:
        summary["vmaf"] = {"mean": round(float(np.mean(vmaf)), 4), "min": round(min(vmaf), 4)}
        summary["per_frame"]["vmaf"] = [round(v, 4) for v in vmaf]
    return summary


def lr_decode_args(
    ffmpeg: str,
    clip: InputSpec,
    size: tuple[int, int],
    pix_fmt: str,
    settings: PsnrSettings,
    lr_clip: InputSpec | None,
) -> list[str]:
    """The LR decode: the reference through the degrade filter, or the LR clip made beforehand
    (jobs/psnr_lr.py) for chains the decoder cannot make."""
    r = settings.scale
    hr_w, hr_h = hr_size_for(size, r)
    if lr_clip is None:
        lr_filter = build_degrade_filter(settings.degradation, (hr_w, hr_h), r, pix_fmt)
        return build_degrade_decode_args(
            ffmpeg, clip, size=size, pix_fmt=pix_fmt, scale=r, degrade_filter=lr_filter, frames=settings.frames
        )
    lr_size = (hr_w // r, hr_h // r)
    return build_degrade_decode_args(
        ffmpeg, lr_clip, size=lr_size, pix_fmt=pix_fmt, scale=1, degrade_filter=None, frames=settings.frames
    )


def score_method(
    ffmpeg: str,
    clip: InputSpec,
    header: Y4MHeader,
    settings: PsnrSettings,
    method: str,
    upscaler: FrameUpscaler,
    on_frames: OnFrames | None = None,
    lr_clip: InputSpec | None = None,
) -> tuple[VideoScorer, dict[str, Any]]:
    """One run of the shared pipeline: LR decode -> method -> ReferenceSink scoring every frame."""
    g, r = header.geometry, settings.scale
    size = (g.width, g.height)
    hr_w, hr_h = hr_size_for(size, r)
    scorer = VideoScorer(FrameGeometry(hr_w, hr_h, g.pix_fmt), settings.crop_border)
    ref_cmd = build_degrade_decode_args(
        ffmpeg, clip, size=size, pix_fmt=g.pix_fmt, scale=r, degrade_filter=None, frames=settings.frames
    )
    lr_cmd = lr_decode_args(ffmpeg, clip, size, g.pix_fmt, settings, lr_clip)
    sinks: list[ReferenceSink] = []
    with ExitStack() as stack:
        log = stack.enter_context(VmafLog()) if settings.vmaf else None
        vmaf_cmd = (
            None
            if log is None
            else build_vmaf_args(
                ffmpeg,
                clip,
                build_reference_filter(size, r, g.pix_fmt),
                str(log),
                settings.threads or default_threads(),
                settings.frames,
            )
        )

        def make_sink(lr: Y4MHeader, hr: Y4MHeader) -> ReferenceSink:
            sinks.append(
                ReferenceSink(
                    ref_cmd,
                    hr.geometry,
                    scorer,
                    ref_name=clip.path,
                    dist_name=f"the {method} output",
                    vmaf_cmd=vmaf_cmd,
                    vmaf_log=log,
                    header=hr,
                )
            )
            return sinks[-1]

        progress = None if on_frames is None else (lambda counters: on_frames(counters.frames_written))
        result = run_pipeline(lr_cmd, make_sink, upscaler, on_progress=progress)
    if on_frames is not None:
        on_frames(result.frames_written)  # the loop's last look may predate the last frame
    return scorer, _method_summary(scorer, sinks[0].vmaf_scores, result.fps)


def evaluate_clip(
    ffmpeg: str,
    clip: InputSpec,
    settings: PsnrSettings,
    upscalers: dict[str, FrameUpscaler],
    on_run: OnRun | None = None,
    on_frames: OnFrames | None = None,
    lr_folder: Path | None = None,
) -> tuple[dict[str, Any], dict[str, VideoScorer], InputSpec | None]:
    """Every method on one clip; (report, scorers, the LR clip made in `lr_folder` or None)."""
    check_input(clip)
    header = probe_clip(ffmpeg, clip)
    g, r = header.geometry, settings.scale
    hr_w, hr_h = hr_size_for((g.width, g.height), r)
    if hr_w == 0 or hr_h == 0:
        raise InputError(f"{clip.path}: {g.width}x{g.height} is smaller than the scale x{r}")
    try:
        VideoScorer(FrameGeometry(hr_w, hr_h, g.pix_fmt), settings.crop_border)
    except ValueError as exc:
        raise UsageError(f"--crop-border {settings.crop_border}: {clip.path}: {exc}") from None
    lr_clip = None
    auto = settings.preset == AUTO_PRESET and "espcn" in upscalers
    if needs_lr_clip(settings.degradation) or auto:  # auto looks at the LR as the file a user has
        if lr_folder is None:
            raise UsageError(f"--degrade {settings.degradation.spec()}: needs a folder for the LR clip")
        if on_run is not None:
            on_run(clip.path, LR_RUN)
        lr_clip = make_lr_clip(ffmpeg, clip, header, settings.degradation, r, settings.frames, lr_folder)
    choice = None
    if auto:
        assert lr_clip is not None and lr_folder is not None
        encoded = last_encoded(lr_folder)
        looked = InputSpec(str(encoded)) if encoded is not None else lr_clip
        choice = choose_video_preset(looked, *auto_pair(r), r)
        upscalers = {**upscalers, "espcn": upscalers[f"{AUTO_PRESET}:{choice.name}"]}
    methods, scorers = {}, {}
    for name, upscaler in upscalers.items():
        if name.startswith(f"{AUTO_PRESET}:"):
            continue
        if on_run is not None:
            on_run(clip.path, name)
        scorers[name], methods[name] = score_method(ffmpeg, clip, header, settings, name, upscaler, on_frames, lr_clip)
    add_gains(methods)
    doc = {
        "name": Path(clip.path).stem,
        "path": clip.path,
        "size": [hr_w, hr_h],
        "source_size": [g.width, g.height],
        "cropped": (hr_w, hr_h) != (g.width, g.height),
        "lr_size": [hr_w // r, hr_h // r],
        "pix_fmt": g.pix_fmt,
        "bits": g.bits,
        "peak": g.peak,
        "frames": next(iter(methods.values()))["frames"],
        "methods": methods,
    }
    if choice is not None:
        doc.update(preset=choice.name, preset_choice=choice.reason)
    return doc, scorers, lr_clip


def evaluate_clips(
    ffmpeg: str, settings: PsnrSettings, on_run: OnRun | None = None, on_frames: OnFrames | None = None
) -> dict[str, Any]:
    """Every clip x every method; per-clip and pooled summaries with gains over bicubic."""
    upscalers, preset = build_upscalers(settings)
    clips: list[dict[str, Any]] = []
    by_method: dict[str, dict[str, Any]] = {name: {} for name in upscalers if not name.startswith(f"{AUTO_PRESET}:")}
    for clip in settings.clips:
        with tempfile.TemporaryDirectory(prefix="espcn-video-lr-") as lr_folder:
            doc, scorers, lr_clip = evaluate_clip(ffmpeg, clip, settings, upscalers, on_run, on_frames, Path(lr_folder))
            if settings.crops_dir is not None:
                from espcn_video.jobs.psnr_crops import write_crops

                used = {k: v for k, v in upscalers.items() if not k.startswith(f"{AUTO_PRESET}:")}
                if "preset" in doc:  # --preset auto: the network this clip ran
                    used["espcn"] = upscalers[f"{AUTO_PRESET}:{doc['preset']}"]
                doc["crops"] = write_crops(
                    ffmpeg, clip, doc, used, settings, settings.worst, settings.crops_dir, lr_clip
                )
        clips.append(doc)
        for name, scorer in scorers.items():
            by_method[name][clip.path] = scorer
    overall = {name: pooled_summary(scorers) for name, scorers in by_method.items()}
    add_gains(overall)
    return {
        "mode": "sr",
        "scale": settings.scale,
        "degradation": {"spec": settings.degradation.spec(), "description": settings.degradation.describe()},
        "crop_border": settings.crop_border,
        "frames_limit": settings.frames,
        "methods": list(by_method),
        "preset": (
            {"name": AUTO_PRESET, "candidates": list(auto_pair(settings.scale))}
            if settings.preset == AUTO_PRESET and "espcn" in by_method
            else None
            if preset is None
            else {"name": preset.name, "path": str(preset.path)}
        ),
        "clips": clips,
        "overall": overall,
    }


def compare_clips(
    ffmpeg: str,
    dist: InputSpec,
    ref: InputSpec,
    *,
    frames: int | None = None,
    crop_border: int = 0,
    vmaf: bool = False,
    threads: int | None = None,
) -> dict[str, Any]:
    """DIST against REF frame by frame, as ffmpeg's psnr and ssim filters do: no degradation, no SR."""
    for spec in (dist, ref):
        check_input(spec)
    dist_header, ref_header = probe_clip(ffmpeg, dist), probe_clip(ffmpeg, ref)
    check_same_geometry(dist_header.geometry, ref_header.geometry, dist.path, ref.path)
    g = ref_header.geometry
    try:
        scorer = VideoScorer(g, crop_border)
    except ValueError as exc:
        raise UsageError(f"--crop-border {crop_border}: {exc}") from None

    def cmd(spec: InputSpec) -> list[str]:
        return build_degrade_decode_args(
            ffmpeg, spec, size=(g.width, g.height), pix_fmt=g.pix_fmt, scale=1, degrade_filter=None, frames=frames
        )

    with ExitStack() as stack:
        log = stack.enter_context(VmafLog()) if vmaf else None
        vmaf_cmd = (
            None
            if log is None
            else build_vmaf_args(ffmpeg, ref, f"format={g.pix_fmt}", str(log), threads or default_threads(), frames)
        )
        dec = stack.enter_context(FFmpegProcess("decoder", cmd(dist), stdout="pipe"))
        if read_header(dec.stdout, dist.path) is None:
            raise InputError(f"{dist.path}: no video frames")
        sink = stack.enter_context(
            ReferenceSink(cmd(ref), g, scorer, ref_name=ref.path, dist_name=dist.path, vmaf_cmd=vmaf_cmd, vmaf_log=log)
        )
        index = 0
        while (planes := read_frame(dec.stdout, g, index, dist.path)) is not None:
            sink.write(index, planes)
            index += 1
        check_decoder(dec, dist.path)
        sink.finish()
    methods = {"dist": _method_summary(scorer, sink.vmaf_scores, None)}
    clip = {
        "name": Path(ref.path).stem,
        "path": ref.path,
        "dist": dist.path,
        "size": [g.width, g.height],
        "pix_fmt": g.pix_fmt,
        "bits": g.bits,
        "peak": g.peak,
        "frames": len(scorer.frames),
        "methods": methods,
    }
    return {
        "mode": "compare",
        "crop_border": crop_border,
        "frames_limit": frames,
        "methods": ["dist"],
        "clips": [clip],
        "overall": {"dist": pooled_summary({ref.path: scorer})},
    }


def frame_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per clip, method and frame: what --csv writes. A clip is named by its name, or by
    its path where two clips of the report share a name (a.y4m and other/a.y4m)."""
    rows = []
    names = [clip["name"] for clip in report["clips"]]
    for clip in report["clips"]:
        label = clip["name"] if names.count(clip["name"]) == 1 else clip.get("path", clip["name"])
        for method, summary in clip["methods"].items():
            series = summary["per_frame"]
            for i in range(summary["frames"]):
                rows.append(
                    {
                        "clip": label,
                        "method": method,
                        "frame": i,
                        **{key: values[i] for key, values in series.items()},
                    }
                )
    return rows
