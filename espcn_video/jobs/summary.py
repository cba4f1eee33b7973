"""Summaries of per-frame timings (mean, p50, p95, max) and the run summary document."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np

from espcn_video.frames.pipeline import FrameTiming, RunResult

try:
    import resource
except ImportError:  # Windows: no getrusage; peak memory is then not reported
    resource = None  # type: ignore[assignment]  # the module is absent there, its name stays

STAGES = ("read", "model", "write")


def summarize_ms(values: list[float]) -> dict[str, float]:
    if not values:
        return {"mean_ms": 0.0, "p50_ms": 0.0, "p95_ms": 0.0, "max_ms": 0.0}
    arr = np.asarray(values, dtype=np.float64)
    return {
        "mean_ms": round(float(arr.mean()), 3),
        "p50_ms": round(float(np.percentile(arr, 50)), 3),
        "p95_ms": round(float(np.percentile(arr, 95)), 3),
        "max_ms": round(float(arr.max()), 3),
    }


def summarize_stages(timings: list[FrameTiming]) -> dict[str, dict[str, float]]:
    return {stage: summarize_ms([getattr(t, f"{stage}_ms") for t in timings]) for stage in STAGES}


def peak_memory_mb() -> dict[str, float | None]:
    """Peak resident memory of this process and of the largest reaped child (ffmpeg), in MB."""
    if resource is None:
        return {"python_mb": None, "largest_child_mb": None}
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
    return {"python_mb": round(own, 1), "largest_child_mb": round(children, 1)}


def timing_rows(timings: list[FrameTiming]) -> list[dict[str, Any]]:
    return [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(t).items()} for t in timings]


def run_summary(result: RunResult) -> dict[str, Any]:
    return {
        "frames": result.frames_written,
        "wall_s": round(result.wall_s, 3),
        "fps": round(result.fps, 3),
        "method": result.method,
        "lr_size": [result.lr.width, result.lr.height],
        "hr_size": [result.hr.width, result.hr.height],
        "pix_fmt": result.lr.pix_fmt,
        "full_range": result.full_range,
        "frame_rate": f"{result.rate.numerator}/{result.rate.denominator}",
        "stages": summarize_stages(result.timings),
        "peak_memory": peak_memory_mb(),
    }
