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

import functools
import json
import math
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from espcn_video.config import InputSpec
from espcn_video.errors import EspcnVideoError, FFmpegError, InputError, PresetError, UsageError, summarize_stderr
from espcn_video.ffmpeg.args import COMMON, build_decode_args
from espcn_video.ffmpeg.process import FFmpegProcess
from espcn_video.ffmpeg.y4m import FrameGeometry, Y4MHeader, read_frame, read_header, write_frame
from espcn_video.model.engines import TorchEngine, default_threads, from_unit_float, to_unit_float
from espcn_video.model.presets import PresetInfo, default_preset_name, load_preset, presets_dir
from espcn_video.pipeline import run_pipeline
from espcn_video.resample import upscale_unit_bicubic
from espcn_video.upscale import check_input
from espcn_video.upscaling import FrameUpscaler
from espcn_video.video_metrics import VideoScorer, add_gains, pooled_summary

DEFAULT_SIGMA = 1.6
TAP_ONE = 4096  # Gaussian taps are integers of this sum (ffmpeg's convolution filter takes integers)
MAX_TAPS = 49  # ffmpeg's convolution filter, row/column mode
LANCZOS_LOBES = 3


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

def lanczos(x: np.ndarray, lobes: int = LANCZOS_LOBES) -> np.ndarray:
    return np.where(np.abs(x) < lobes, np.sinc(x) * np.sinc(x / lobes), 0.0)


def lanczos_phase_taps(scale: int) -> np.ndarray:
    """(scale, 7) weights over offsets -3..+3 for output phase p at LR coordinate (p + 0.5)/r - 0.5."""
    offsets = np.arange(-LANCZOS_LOBES, LANCZOS_LOBES + 1, dtype=np.float64)
    taps = np.stack([lanczos((p + 0.5) / scale - 0.5 - offsets) for p in range(scale)])
    return taps / taps.sum(axis=1, keepdims=True)


class LanczosEngine:
    """Lanczos-3 upsampling of Y on the PS grid (the grid ESPCN and our bicubic use), edges repeated."""

    name = "lanczos3"

    def __init__(self, scale: int) -> None:
        self.scale = scale
        self.taps = torch.from_numpy(lanczos_phase_taps(scale)).to(torch.float32)

    @torch.inference_mode()
    def upscale_luma(self, y: np.ndarray, peak: int) -> np.ndarray:
        x, r, k = to_unit_float(y, peak), self.scale, self.taps.shape[1]
        n, _, h, w = x.shape
        pad = k // 2
        horiz = F.conv2d(F.pad(x, (pad, pad, 0, 0), mode="replicate"), self.taps.view(r, 1, 1, k))
        x = horiz.permute(0, 2, 3, 1).reshape(n, 1, h, w * r)
        vert = F.conv2d(F.pad(x, (0, 0, pad, pad), mode="replicate"), self.taps.view(r, 1, k, 1))
        return from_unit_float(vert.permute(0, 2, 1, 3).reshape(n, 1, h * r, w * r), peak, y.dtype)


class SrcnnEngine:
    """SRCNN runs at high resolution on the bicubic-upscaled Y (unrounded), as in its paper."""

    name = "srcnn"

    def __init__(self, model: torch.nn.Module, scale: int) -> None:
        self.model = model.eval()
        self.scale = scale

    @torch.inference_mode()
    def upscale_luma(self, y: np.ndarray, peak: int) -> np.ndarray:
        return from_unit_float(self.model(upscale_unit_bicubic(to_unit_float(y, peak), self.scale)), peak, y.dtype)


# -- the sink --------------------------------------------------------------------------------

def check_same_geometry(dist: FrameGeometry, ref: FrameGeometry, dist_name: str, ref_name: str) -> None:
    if (dist.width, dist.height) != (ref.width, ref.height):
        raise InputError(f"sizes differ: {dist_name} is {dist.width}x{dist.height}, "
                         f"{ref_name} is {ref.width}x{ref.height}")
    if dist.bits != ref.bits:
        raise InputError(f"bit depths differ: {dist_name} is {dist.bits}-bit ({dist.pix_fmt}), "
                         f"{ref_name} is {ref.bits}-bit ({ref.pix_fmt})")
    if dist.pix_fmt != ref.pix_fmt:
        raise InputError(f"pixel formats differ: {dist_name} is {dist.pix_fmt}, {ref_name} is {ref.pix_fmt}")


def check_decoder(proc: FFmpegProcess, name: str) -> None:
    """Exit 0 and nothing on stderr, else an error naming the file (ffmpeg exits 0 on a cut file)."""
    try:
        proc.check(timeout_s=60.0)
    except FFmpegError as exc:
        raise InputError(f"{name}: ffmpeg cannot read it: {summarize_stderr(exc.stderr_tail)}") from None
    if not proc.killed and (complaint := summarize_stderr(proc.stderr_tail())):
        raise InputError(f"{name}: corrupt or truncated: {complaint}")


class ReferenceSink:
    """A FrameSink that decodes the reference alongside and scores each frame it is given.

    Only the current reference frame is held, so memory stays flat however long the clip. With
    `vmaf_cmd` the frames also go to an ffmpeg libvmaf process (its JSON log is read at the end).
    """

    def __init__(self, ref_cmd: list[str], geometry: FrameGeometry, scorer: VideoScorer, *,
                 ref_name: str, dist_name: str, vmaf_cmd: list[str] | None = None,
                 vmaf_log: Path | None = None, header: Y4MHeader | None = None) -> None:
        self.ref = FFmpegProcess("reference decoder", ref_cmd, stdout="pipe")
        self.vmaf = FFmpegProcess("libvmaf", vmaf_cmd, stdin="pipe") if vmaf_cmd else None
        self.geometry, self.scorer, self.header = geometry, scorer, header
        self.ref_name, self.dist_name, self.vmaf_log = ref_name, dist_name, vmaf_log
        self.dist_frames = 0
        self.ref_done = False
        self.vmaf_scores: list[float] | None = None

    def __enter__(self) -> ReferenceSink:
        self.ref.__enter__()
        try:
            header = read_header(self.ref.stdout, self.ref_name)
            if header is None:
                check_decoder(self.ref, self.ref_name)
                raise InputError(f"{self.ref_name}: no video frames")
            check_same_geometry(self.geometry, header.geometry, self.dist_name, self.ref_name)
            if self.vmaf is not None:
                self.vmaf.__enter__()
                self._to_vmaf(lambda stream: stream.write((self.header or header).encode()))
        except BaseException as exc:
            # `with` calls __exit__ only after a successful __enter__: reap what was started here.
            self.__exit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is not None:
            self.kill()
        if self.vmaf is not None:
            self.vmaf.__exit__(exc_type, exc, tb)
        self.ref.kill()  # a reference left unread would block in its write; its count is known
        self.ref.__exit__(exc_type, exc, tb)

    def write(self, index: int, planes: list[np.ndarray]) -> None:
        self.dist_frames += 1
        try:
            ref = None if self.ref_done else read_frame(self.ref.stdout, self.geometry, index, self.ref_name)
        except EspcnVideoError:
            check_decoder(self.ref, self.ref_name)  # a cut stream is usually the decoder failing: say why
            raise
        if ref is None:
            self.ref_done = True  # the reference is shorter: counted, reported by finish()
            return
        self.scorer.add(ref, planes)
        if self.vmaf is not None:
            self._to_vmaf(lambda stream: write_frame(stream, planes))

    def _to_vmaf(self, send: Callable[[Any], None]) -> None:
        assert self.vmaf is not None
        try:
            send(self.vmaf.stdin)
        except BrokenPipeError:
            self.vmaf.check(timeout_s=30.0)  # its own error says why
            raise EspcnVideoError("ffmpeg libvmaf stopped reading its input (exit 0)") from None

    def finish(self) -> None:
        ref_frames = len(self.scorer.frames)
        while not self.ref_done and read_frame(self.ref.stdout, self.geometry, ref_frames, self.ref_name) is not None:
            ref_frames += 1  # drain to count what the reference has left, one frame at a time
        self.ref_done = True
        check_decoder(self.ref, self.ref_name)
        if ref_frames != self.dist_frames:
            raise InputError(f"frame counts differ: {self.dist_name} has {self.dist_frames} frames, "
                             f"{self.ref_name} has {ref_frames}")
        if self.vmaf is not None:
            self.vmaf.close_stdin()
            self.vmaf.check(timeout_s=600.0)
            self.vmaf_scores = read_vmaf_log(self.vmaf_log)

    def kill(self) -> None:
        self.ref.kill()
        if self.vmaf is not None:
            self.vmaf.kill()


@functools.lru_cache(maxsize=4)
def has_libvmaf(ffmpeg: str) -> bool:
    """Whether this ffmpeg was built with libvmaf (the imageio-ffmpeg build is)."""
    out = subprocess.run([ffmpeg, "-hide_banner", "-filters"], capture_output=True, text=True, timeout=30,
                         stdin=subprocess.DEVNULL)
    return any(line.split()[1:2] == ["libvmaf"] for line in out.stdout.splitlines())


def read_vmaf_log(path: Path | None) -> list[float]:
    try:
        doc = json.loads(Path(str(path)).read_text())
        return [float(f["metrics"]["vmaf"]) for f in doc["frames"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EspcnVideoError(f"cannot read the libvmaf log {path}: {exc}") from None


class VmafLog:
    """A private folder for libvmaf's JSON log, removed afterwards."""

    def __enter__(self) -> Path:
        self.folder = Path(tempfile.mkdtemp(prefix="espcn-vmaf-"))
        return self.folder / "vmaf.json"

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


# -- inputs ----------------------------------------------------------------------------------

def probe_clip(ffmpeg: str, source: InputSpec) -> Y4MHeader:
    """The reference's decoded header (size, pixel format after our format filter, bit depth)."""
    with FFmpegProcess("probe decoder", build_decode_args(ffmpeg, source), stdout="pipe") as proc:
        try:
            header = read_header(proc.stdout, source.path)
        except EspcnVideoError:
            header = None
        if header is None:
            check_decoder(proc, source.path)
            raise InputError(f"{source.path}: no video frames")
        proc.kill()
    return header



# -- the job ---------------------------------------------------------------------------------

METHODS = ("espcn", "bicubic", "lanczos", "srcnn")
OnRun = Callable[[str, str], None]


@dataclass(frozen=True)
class PsnrSettings:
    clips: tuple[InputSpec, ...]
    scale: int
    preset: str | None = None
    degradation: VideoDegradation = VideoDegradation("bicubic")
    methods: tuple[str, ...] = ("espcn", "bicubic", "lanczos")
    frames: int | None = None
    crop_border: int = 0
    vmaf: bool = False
    threads: int | None = None


def build_upscalers(settings: PsnrSettings) -> tuple[dict[str, FrameUpscaler], PresetInfo | None]:
    """One FrameUpscaler per method, loaded once for every clip."""
    scale, upscalers, info = settings.scale, {}, None
    for name in settings.methods:
        if name == "bicubic":
            upscalers[name] = FrameUpscaler(scale, None)
        elif name == "lanczos":
            upscalers[name] = FrameUpscaler(scale, LanczosEngine(scale))
        elif name == "espcn":
            model, info = load_preset(settings.preset or default_preset_name(scale))
            if info.arch != "espcn" or info.scale != scale:
                raise UsageError(f"--preset {info.name} is {info.arch} x{info.scale}; "
                                 f"the espcn method at --scale {scale} needs an ESPCN x{scale} preset")
            upscalers[name] = FrameUpscaler(scale, TorchEngine(model, threads=settings.threads))
        elif name == "srcnn":
            path = presets_dir() / f"srcnn-x{scale}.pt"
            if not path.is_file():
                raise PresetError(f"no srcnn-x{scale} preset in {presets_dir()}: the srcnn method needs one "
                                  f"(espcn-video train --arch srcnn --scale {scale})")
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


def score_method(ffmpeg: str, clip: InputSpec, header: Y4MHeader, settings: PsnrSettings, method: str,
                 upscaler: FrameUpscaler) -> tuple[VideoScorer, dict[str, Any]]:
    """One run of the shared pipeline: LR decode -> method -> ReferenceSink scoring every frame."""
    g, r = header.geometry, settings.scale
    size = (g.width, g.height)
    hr_w, hr_h = hr_size_for(size, r)
    scorer = VideoScorer(FrameGeometry(hr_w, hr_h, g.pix_fmt), settings.crop_border)
    decode = functools.partial(build_degrade_decode_args, ffmpeg, clip, size=size, pix_fmt=g.pix_fmt, scale=r,
                               frames=settings.frames)
    ref_cmd, lr_cmd = decode(degradation=None), decode(degradation=settings.degradation)
    sinks: list[ReferenceSink] = []
    with ExitStack() as stack:
        log = stack.enter_context(VmafLog()) if settings.vmaf else None
        vmaf_cmd = None if log is None else build_vmaf_args(
            ffmpeg, clip, build_reference_filter(size, r, g.pix_fmt), str(log),
            settings.threads or default_threads(), settings.frames)

        def make_sink(lr: Y4MHeader, hr: Y4MHeader) -> ReferenceSink:
            sinks.append(ReferenceSink(ref_cmd, hr.geometry, scorer, ref_name=clip.path,
                                       dist_name=f"the {method} output", vmaf_cmd=vmaf_cmd,
                                       vmaf_log=log, header=hr))
            return sinks[-1]

        result = run_pipeline(lr_cmd, make_sink, upscaler)
    return scorer, _method_summary(scorer, sinks[0].vmaf_scores, result.fps)


def evaluate_clip(ffmpeg: str, clip: InputSpec, settings: PsnrSettings, upscalers: dict[str, FrameUpscaler],
                  on_run: OnRun | None = None) -> tuple[dict[str, Any], dict[str, VideoScorer]]:
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
    methods, scorers = {}, {}
    for name, upscaler in upscalers.items():
        if on_run is not None:
            on_run(clip.path, name)
        scorers[name], methods[name] = score_method(ffmpeg, clip, header, settings, name, upscaler)
    add_gains(methods)
    doc = {"name": Path(clip.path).stem, "path": clip.path, "size": [hr_w, hr_h],
           "source_size": [g.width, g.height], "cropped": (hr_w, hr_h) != (g.width, g.height),
           "lr_size": [hr_w // r, hr_h // r], "pix_fmt": g.pix_fmt, "bits": g.bits, "peak": g.peak,
           "frames": next(iter(methods.values()))["frames"], "methods": methods}
    return doc, scorers


def evaluate_clips(ffmpeg: str, settings: PsnrSettings, on_run: OnRun | None = None) -> dict[str, Any]:
    """Every clip x every method; per-clip and pooled summaries with gains over bicubic."""
    upscalers, preset = build_upscalers(settings)
    clips, by_method = [], {name: {} for name in upscalers}  # type: ignore[var-annotated]
    for clip in settings.clips:
        doc, scorers = evaluate_clip(ffmpeg, clip, settings, upscalers, on_run)
        clips.append(doc)
        for name, scorer in scorers.items():
            by_method[name][clip.path] = scorer
    overall = {name: pooled_summary(scorers) for name, scorers in by_method.items()}
    add_gains(overall)
    return {"mode": "sr", "scale": settings.scale,
            "degradation": {"spec": settings.degradation.spec(), "description": settings.degradation.describe()},
            "crop_border": settings.crop_border, "frames_limit": settings.frames,
            "methods": list(upscalers),
            "preset": None if preset is None else {"name": preset.name, "path": str(preset.path)},
            "clips": clips, "overall": overall}


def compare_clips(ffmpeg: str, dist: InputSpec, ref: InputSpec, *, frames: int | None = None,
                  crop_border: int = 0, vmaf: bool = False, threads: int | None = None) -> dict[str, Any]:
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
        return build_degrade_decode_args(ffmpeg, spec, size=(g.width, g.height), pix_fmt=g.pix_fmt,
                                         scale=1, degradation=None, frames=frames)

    with ExitStack() as stack:
        log = stack.enter_context(VmafLog()) if vmaf else None
        vmaf_cmd = None if log is None else build_vmaf_args(
            ffmpeg, ref, f"format={g.pix_fmt}", str(log), threads or default_threads(), frames)
        dec = stack.enter_context(FFmpegProcess("decoder", cmd(dist), stdout="pipe"))
        if read_header(dec.stdout, dist.path) is None:
            raise InputError(f"{dist.path}: no video frames")
        sink = stack.enter_context(ReferenceSink(cmd(ref), g, scorer, ref_name=ref.path, dist_name=dist.path,
                                                 vmaf_cmd=vmaf_cmd, vmaf_log=log))
        index = 0
        while (planes := read_frame(dec.stdout, g, index, dist.path)) is not None:
            sink.write(index, planes)
            index += 1
        check_decoder(dec, dist.path)
        sink.finish()
    methods = {"dist": _method_summary(scorer, sink.vmaf_scores, None)}
    clip = {"name": Path(ref.path).stem, "path": ref.path, "dist": dist.path, "size": [g.width, g.height],
            "pix_fmt": g.pix_fmt, "bits": g.bits, "peak": g.peak, "frames": len(scorer.frames), "methods": methods}
    return {"mode": "compare", "crop_border": crop_border, "frames_limit": frames, "methods": ["dist"],
            "clips": [clip], "overall": {"dist": pooled_summary({ref.path: scorer})}}


def frame_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per clip, method and frame: what --csv writes."""
    rows = []
    for clip in report["clips"]:
        for method, summary in clip["methods"].items():
            series = summary["per_frame"]
            for i in range(summary["frames"]):
                rows.append({"clip": clip["name"], "method": method, "frame": i,
                             **{key: values[i] for key, values in series.items()}})
    return rows
