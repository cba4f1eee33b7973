"""The `bench` job: the real pipeline, the SR stage alone, bicubic and SRCNN on the same frames.

Per job (a low-res size and a scale, on a synthetic lavfi clip or a real one):
- pipeline: decode -> SR -> encode through run_pipeline, the encoder chosen or discarded with
  `-f null`; the CPU time the process and its ffmpeg children spent gives the ceiling the
  per-frame cost allows on this many cores, and the pipeline's share of it.
- SR stage alone on frames decoded beforehand: luma (the network) and chroma (bicubic) per frame.
- bicubic: ffmpeg's scale filter with the same decoder and encoder, for the paper's comparison.
- SRCNN (torch fp32, on the bicubic-upscaled Y) against ESPCN on the same torch fp32 engine.
Nothing here prints: the CLI renders the returned document.
"""

from __future__ import annotations

import os
import platform
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from espcn_video.errors import FFmpegError, InputError, PresetError
from espcn_video.ffmpeg.args import COMMON, build_decode_args
from espcn_video.ffmpeg.locate import list_encoders, locate_ffmpeg
from espcn_video.ffmpeg.probe import probe_file
from espcn_video.ffmpeg.process import FFmpegProcess
from espcn_video.ffmpeg.y4m import FrameGeometry, Y4MHeader, decode_all
from espcn_video.frames.baselines import SrcnnEngine
from espcn_video.frames.pipeline import run_pipeline
from espcn_video.frames.resample import upscale_planes_bicubic
from espcn_video.frames.sinks import EncoderSink
from espcn_video.frames.upscaler import FrameUpscaler
from espcn_video.jobs.inputs import check_input
from espcn_video.jobs.summary import peak_memory_mb, summarize_ms, summarize_stages
from espcn_video.model.backends import create_engine, engine_options
from espcn_video.model.engines import LumaEngine, TorchEngine, cpu_info, default_threads, tune_malloc
from espcn_video.model.net import ESPCN, SRCNN, frames_read, macs_per_hr_pixel
from espcn_video.model.quant import Int8Params
from espcn_video.settings import InputSpec

STANDARD_JOBS: tuple[tuple[int, tuple[int, int]], ...] = (
    (3, (640, 360)),
    (2, (960, 540)),
    (4, (480, 270)),
    (2, (1920, 1080)),
)
SYNTHETIC_RATE = 30
WARMUP_FRAMES = 2  # compilation and first-touch allocations happen here, not in the numbers
COMPARE_METRICS = (
    "sr_fps",
    "frame_fps",
    "pipeline_fps",
    "bicubic_fps",
    "srcnn_fps",
    "reference_sr_fps",
    "gflops",
    "ceiling_fps",
)


@dataclass(frozen=True)
class JobSpec:
    scale: int
    lr_size: tuple[int, int] | None = None  # None: the clip's own size
    clip: str | None = None  # None: a synthetic lavfi clip

    @property
    def label(self) -> str:
        size = f"{self.lr_size[0]}x{self.lr_size[1]}" if self.lr_size else "native"
        return f"{Path(self.clip).name if self.clip else 'testsrc2'} {size} x{self.scale}"


@dataclass(frozen=True)
class BenchSettings:
    jobs: tuple[JobSpec, ...]
    frames: int = 60
    backend: str = "auto"
    precision: str = "auto"
    threads: int | None = None
    device: str = "cpu"
    encoder: str = "null"  # an ffmpeg video encoder, or "null" to discard frames (-f null)
    encoder_preset: str | None = None
    preset: str | None = None  # None: the shipped espcn-xR, else seeded random weights
    srcnn_frames: int = 1
    reference_frames: int = 3


@dataclass
class _Model:
    model: torch.nn.Module
    weights: str
    int8: Int8Params | None = field(default=None)
    deltas: dict[str, float] | None = field(default=None)


def build_jobs(clip: str | None, scale: int | None, input_size: tuple[int, int] | None) -> tuple[JobSpec, ...]:
    """A real clip (at its size or resized), one synthetic size, or the standard synthetic jobs."""
    if clip is not None:
        return (JobSpec(scale or 2, input_size, clip),)
    if input_size is not None:
        return (JobSpec(scale or 2, input_size),)
    return tuple(JobSpec(s, size) for s, size in STANDARD_JOBS if scale in (None, s))


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def machine_info(threads: int, ffmpeg_version: str) -> dict[str, Any]:
    model, flags = cpu_info()
    wanted = (
        "avx2",
        "fma",
        "avx512f",
        "avx512bw",
        "avx512vl",
        "avx512_vnni",
        "avx512_bf16",
        "avx_vnni",
        "amx_tile",
        "amx_bf16",
        "amx_int8",
    )
    return {
        "cpu_model": model,
        "cpu_flags": [f for f in wanted if f in flags],
        "cores": default_threads(),
        "threads": threads,
        "platform": platform.platform(),
        "load_average": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "numpy": np.__version__,
            "openvino": _version("openvino"),
            "onnxruntime": _version("onnxruntime"),
            "ffmpeg": ffmpeg_version,
        },
    }


def load_model(scale: int, preset: str | None) -> _Model:
    from espcn_video.model.presets import VIDEO, int8_params, precision_deltas, resolve_preset

    try:
        model, info = resolve_preset(preset, scale=scale, use=VIDEO)
    except PresetError:
        if preset is not None:
            raise
        torch.manual_seed(scale)  # weights do not change the speed; say so in the result
        return _Model(ESPCN(scale).eval(), "random")
    return _Model(model, info.name, int8_params(model, info), precision_deltas(info))


def make_synthetic_clip(ffmpeg: str, size: tuple[int, int], frames: int, folder: Path) -> Path:
    """testsrc2 as H.264 (what real inputs are), FFV1 where this ffmpeg has no libx264 or the
    size is one x264 cannot code in 4:2:0 (odd), so that the clip has the size asked."""
    x264 = "libx264" in list_encoders(ffmpeg) and size[0] % 2 == 0 and size[1] % 2 == 0
    path = folder / f"testsrc2-{size[0]}x{size[1]}-{frames}.{'mp4' if x264 else 'mkv'}"
    if not path.exists():
        codec = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "18"] if x264 else ["-c:v", "ffv1"]
        if not x264 and min(size) < 16:
            codec += ["-slices", "1"]  # FFV1's automatic slice count is 0 for a few pixels
        # testsrc2 makes even sizes only: an odd one is cut from the next even one
        even = (size[0] + size[0] % 2, size[1] + size[1] % 2)
        src = f"testsrc2=s={even[0]}x{even[1]}:r={SYNTHETIC_RATE}"
        if even != size:
            src += f",crop={size[0]}:{size[1]}:0:0:exact=1"
        cmd = [ffmpeg, *COMMON, "-f", "lavfi", "-i", src, "-frames:v", str(frames), *codec]
        cmd += ["-pix_fmt", "yuv420p", "-y", str(path)]
        done = subprocess.run(cmd, timeout=600, stdin=subprocess.DEVNULL, capture_output=True)
        if done.returncode != 0:
            path.unlink(missing_ok=True)
            raise FFmpegError("synthetic clip", cmd, done.returncode, done.stderr.decode(errors="replace"))
    return path


def decode_args(ffmpeg: str, clip: Path, frames: int, lr_size: tuple[int, int] | None) -> list[str]:
    """The pipeline's own decoder command, limited to `frames` and resized when asked."""
    args = build_decode_args(ffmpeg, InputSpec(str(clip)))
    if lr_size is not None:
        vf = args.index("-vf") + 1
        args[vf] = f"scale={lr_size[0]}:{lr_size[1]}:flags=bicubic," + args[vf]
    return [*args[:-1], "-frames:v", str(frames), args[-1]]


def encode_args(
    ffmpeg: str,
    encoder: str,
    preset: str | None,
    source: str = "pipe:0",
    source_format: Sequence[str] = ("-f", "yuv4mpegpipe"),
    vf: str | None = None,
) -> list[str]:
    args = [ffmpeg, *COMMON, *source_format, "-i", source]
    if vf:
        args += ["-vf", vf]
    if encoder != "null":
        args += ["-c:v", encoder] + (["-preset", preset] if preset else [])
    return [*args, "-f", "null", "-"]


def check_clip(ffmpeg: str, clip: str) -> None:
    """A CLIP that cannot be benched fails as upscale's IN would, naming the file: no such file,
    a folder, empty, not readable by ffmpeg, no video stream (an audio file)."""
    source = InputSpec(clip)
    check_input(source)
    probe_file(ffmpeg, clip)


def decode_frames(cmd: list[str]) -> tuple[Y4MHeader, list[list[np.ndarray]]]:
    header, frames = decode_all(cmd)
    if header is None:
        raise InputError("the clip has no video frames")
    return header, frames


def time_sr_stage(
    engine: LumaEngine, frames: list[list[np.ndarray]], geometry: FrameGeometry
) -> dict[str, list[float]]:
    """Per-frame luma (the engine) and chroma (bicubic) milliseconds, each in its own pass.

    Separate passes give each stage's own cost; interleaved, the engine's idle workers and the
    resampler slow each other down, which the pipeline figures show instead. A multi-frame preset's
    luma includes warping each frame's two neighbours onto it (also given alone, as "motion").
    """
    scale, shapes = engine.scale, geometry.scaled(engine.scale).plane_shapes
    ys: list[np.ndarray] = [planes[0] for planes in frames]
    motion: list[float] = []
    if frames_read(engine) > 1:
        from espcn_video.frames.motion import MotionAligner

        aligner = MotionAligner()
        stacked = []
        for k, y in enumerate(ys):
            t0 = time.perf_counter()
            before, after = ys[k - 1] if k else None, ys[k + 1] if k + 1 < len(ys) else None
            stacked.append(aligner.stack(before, y, after, geometry.peak))
            motion.append((time.perf_counter() - t0) * 1e3)
        ys = stacked
    for y in ys[:WARMUP_FRAMES]:
        engine.upscale_luma(y, geometry.peak)
    luma, chroma = [], []
    for k, y in enumerate(ys):
        t0 = time.perf_counter()
        engine.upscale_luma(y, geometry.peak)
        luma.append((time.perf_counter() - t0) * 1e3 + (motion[k] if motion else 0.0))
    for planes in frames:
        t0 = time.perf_counter()
        if len(planes) > 1:
            upscale_planes_bicubic(planes[1:], scale, shapes[1:], geometry.peak)
        chroma.append((time.perf_counter() - t0) * 1e3)
    return {"luma": luma, "chroma": chroma, **({"motion": motion} if motion else {})}


def time_reference(
    model: torch.nn.Module, frames: list[list[np.ndarray]], peak: int, count: int, threads: int
) -> float | None:
    """ESPCN in the torch fp32 reference engine: the same engine SRCNN is timed in."""
    if count <= 0:
        return None
    engine = TorchEngine(model, threads=threads)
    copies = engine.frames  # a multi-frame network timed on the frame as its own neighbours

    def luma(y: np.ndarray) -> np.ndarray:
        return np.stack([y] * copies) if copies > 1 else y

    engine.upscale_luma(luma(frames[0][0]), peak)
    t0 = time.perf_counter()
    for planes in frames[:count]:
        engine.upscale_luma(luma(planes[0]), peak)
    return min(count, len(frames)) / (time.perf_counter() - t0)


def time_srcnn(frames: list[list[np.ndarray]], peak: int, scale: int, count: int, threads: int) -> float | None:
    if count <= 0:
        return None
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    engine = SrcnnEngine(SRCNN(), scale)
    engine.upscale_luma(frames[0][0][:32, :32], peak)  # warm up the kernels on a crop
    t0 = time.perf_counter()
    for planes in frames[:count]:
        engine.upscale_luma(planes[0], peak)
    return min(count, len(frames)) / (time.perf_counter() - t0)


def _cpu_seconds() -> tuple[float, float]:
    """CPU seconds of this process and of its reaped children (ffmpeg); children are 0 on Windows."""
    times = os.times()
    return times.user + times.system, times.children_user + times.children_system


def time_pipeline(dec_cmd: list[str], enc_cmd: list[str], upscaler: FrameUpscaler) -> dict[str, Any]:
    """The real pipeline; CPU seconds of this process and of the reaped ffmpeg children."""
    cpu0 = _cpu_seconds()
    result = run_pipeline(dec_cmd, lambda lr, hr: EncoderSink(enc_cmd, hr), upscaler)
    cpu1 = _cpu_seconds()
    frames = max(result.frames_written, 1)
    python_ms, ffmpeg_ms = ((cpu1[i] - cpu0[i]) * 1e3 / frames for i in (0, 1))
    cores = default_threads()
    ceiling = cores * 1e3 / (python_ms + ffmpeg_ms) if python_ms + ffmpeg_ms > 0 else None
    return {
        "fps": result.fps,
        "frames": result.frames_written,
        "wall_s": round(result.wall_s, 3),
        "cpu_ms_per_frame": {"python": round(python_ms, 2), "ffmpeg": round(ffmpeg_ms, 2)},
        "ceiling_fps": ceiling,
        "stages": summarize_stages(result.timings),
    }


def time_ffmpeg_bicubic(
    ffmpeg: str, dec_cmd: list[str], settings: BenchSettings, hr: tuple[int, int], frames: int
) -> float:
    """ffmpeg's bicubic scale on the same decoded frames, into the same encoder (or -f null)."""
    enc = encode_args(ffmpeg, settings.encoder, settings.encoder_preset, vf=f"scale={hr[0]}:{hr[1]}:flags=bicubic")
    t0 = time.perf_counter()
    with (
        FFmpegProcess("decoder", dec_cmd, stdout="pipe") as dec,
        FFmpegProcess("bicubic", enc, stdin=dec.stdout) as scaler,
    ):  # the scaler owns the read end
        scaler.check(timeout_s=600.0)
        dec.check(timeout_s=30.0)
    return frames / (time.perf_counter() - t0)


def _int8_source(engine: LumaEngine, loaded: _Model) -> str | None:
    """Where int8 activation ranges came from: the preset's calibration, or the weights' bounds."""
    if getattr(engine, "precision", None) != "int8":
        return None
    return loaded.int8.source if loaded.int8 is not None else "bounds from the weights"


def _fps(ms: list[float]) -> float:
    return 1e3 / float(np.mean(ms)) if ms else 0.0


def run_job(spec: JobSpec, settings: BenchSettings, ffmpeg: str, folder: Path) -> dict[str, Any]:
    clip = (
        Path(spec.clip)
        if spec.clip
        else make_synthetic_clip(ffmpeg, spec.lr_size or (640, 360), settings.frames, folder)
    )
    if not clip.exists():
        raise InputError(f"{clip}: no such file")
    resize = spec.lr_size if spec.clip else None
    dec_cmd = decode_args(ffmpeg, clip, settings.frames, resize)
    header, frames = decode_frames(dec_cmd)
    lr, hr = header.geometry, header.geometry.scaled(spec.scale)
    loaded = load_model(spec.scale, settings.preset)
    engine = create_engine(
        loaded.model,
        settings.backend,
        settings.precision,
        settings.threads,
        settings.device,
        int8=loaded.int8,
        deltas=loaded.deltas,
    )
    sr = time_sr_stage(engine, frames, lr)
    pipeline = time_pipeline(
        dec_cmd, encode_args(ffmpeg, settings.encoder, settings.encoder_preset), FrameUpscaler(spec.scale, engine)
    )
    bicubic_fps = time_ffmpeg_bicubic(ffmpeg, dec_cmd, settings, (hr.width, hr.height), len(frames))
    threads = settings.threads or default_threads()
    reference_fps = time_reference(loaded.model, frames, lr.peak, settings.reference_frames, threads)
    srcnn_fps = time_srcnn(frames, lr.peak, spec.scale, settings.srcnn_frames, threads)
    gflop = 2 * macs_per_hr_pixel(loaded.model) * hr.width * hr.height / 1e9  # the preset's own network
    sr_fps = _fps(sr["luma"])
    return {
        "name": spec.label,
        "input": str(clip) if spec.clip else f"lavfi testsrc2 ({clip.suffix[1:]})",
        "scale": spec.scale,
        "lr_size": [lr.width, lr.height],
        "hr_size": [hr.width, hr.height],
        "pix_fmt": lr.pix_fmt,
        "frames": len(frames),
        "weights": loaded.weights,
        "backend": getattr(engine, "backend", "torch"),
        "precision": getattr(engine, "precision", "fp32"),
        "engine": engine.name,
        "int8_ranges": _int8_source(engine, loaded),
        "encoder": settings.encoder,
        "encoder_preset": settings.encoder_preset,
        "sr_fps": sr_fps,
        "frame_fps": _fps([a + b for a, b in zip(sr["luma"], sr["chroma"], strict=True)]),
        "pipeline_fps": pipeline["fps"],
        "bicubic_fps": bicubic_fps,
        "srcnn_fps": srcnn_fps,
        "reference_sr_fps": reference_fps,
        "espcn_vs_srcnn": reference_fps / srcnn_fps if reference_fps and srcnn_fps else None,
        "gflop_per_frame": gflop,
        "gflops": gflop * sr_fps,
        "ceiling_fps": pipeline["ceiling_fps"],
        "pipeline_share_of_ceiling": pipeline["fps"] / pipeline["ceiling_fps"] if pipeline["ceiling_fps"] else None,
        "cpu_ms_per_frame": pipeline["cpu_ms_per_frame"],
        "stages": {
            "sr_luma": summarize_ms(sr["luma"]),
            "sr_chroma": summarize_ms(sr["chroma"]),
            **({"sr_motion": summarize_ms(sr["motion"])} if "motion" in sr else {}),
            **{f"pipeline_{k}": v for k, v in pipeline["stages"].items()},
        },
        "peak_memory": peak_memory_mb(),
    }


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def run_bench(settings: BenchSettings, on_job: Callable[[JobSpec], None] | None = None) -> dict[str, Any]:
    """Every job in turn; the document the CLI prints (schema_version is added there)."""
    ffmpeg = locate_ffmpeg()
    for spec in settings.jobs:
        if spec.clip is not None:  # before any job: missing, empty, not a video, no video stream
            check_clip(ffmpeg.path, spec.clip)
    threads = settings.threads or default_threads()
    tune_malloc()  # the reference and SRCNN get the same allocator as the engines (see engines.py)
    jobs = []
    with tempfile.TemporaryDirectory(prefix="espcn-bench-") as tmp:
        folder = Path(tmp)
        for spec in settings.jobs:
            if on_job is not None:
                on_job(spec)
            jobs.append(_rounded(run_job(spec, settings, ffmpeg.path, folder)))
    return {
        "command": "bench",
        "machine": machine_info(threads, ffmpeg.version),
        "engines": [o.describe() for o in engine_options(settings.device)],
        "jobs": jobs,
    }


def job_key(job: dict[str, Any]) -> tuple[Any, ...]:
    return (job.get("input"), job.get("scale"), tuple(job.get("lr_size", ())))


def compare_runs(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows (job, metric, a, b, b/a) for the jobs both runs have, matched by input, scale and size."""
    by_key = {job_key(job): job for job in b.get("jobs", [])}
    rows = []
    for job_a in a.get("jobs", []):
        job_b = by_key.get(job_key(job_a))
        if job_b is None:
            continue
        for metric in COMPARE_METRICS:
            va, vb = job_a.get(metric), job_b.get(metric)
            ratio = vb / va if isinstance(va, (int, float)) and isinstance(vb, (int, float)) and va else None
            rows.append(
                {
                    "job": job_a.get("name"),
                    "metric": metric,
                    "a": va,
                    "b": vb,
                    "ratio": round(ratio, 3) if ratio is not None else None,
                }
            )
    return rows
