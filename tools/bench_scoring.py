"""Time the psnr job's per-frame scoring at 1080p: all numpy (PSNR + SSIM) against the fast path
(float32 MSE here, SSIM by ffmpeg's ssim filter in its own process, as frames/sinks.ReferenceSink does).

    python tools/bench_scoring.py [--frames 30]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from espcn_video.ffmpeg.locate import locate_ffmpeg
from espcn_video.ffmpeg.ssim_pipe import build_ssim_args, parse_ssim_stats
from espcn_video.ffmpeg.y4m import FrameGeometry
from espcn_video.quality.video_metrics import VideoScorer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=30)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    g = FrameGeometry(1920, 1080, "yuv420p")
    ref = [rng.integers(16, 236, s, dtype=np.uint8) for s in g.plane_shapes]
    dist = [np.clip(p.astype(int) + rng.integers(-6, 7, p.shape), 0, 255).astype(np.uint8) for p in ref]
    slow, fast = VideoScorer(g, 3), VideoScorer(g, 3)
    h, w = fast.shaved_y(ref[0]).shape
    stack = np.empty((2 * h, w), np.uint8)
    with tempfile.TemporaryDirectory() as folder:
        stats = Path(folder) / "ssim.log"
        proc = subprocess.Popen(build_ssim_args(locate_ffmpeg().path, w, h, 8, stats), stdin=subprocess.PIPE)
        assert proc.stdin is not None
        t0 = time.perf_counter()
        for _ in range(args.frames):
            slow.add(ref, dist)
        t_slow = (time.perf_counter() - t0) / args.frames * 1e3
        t0 = time.perf_counter()
        for _ in range(args.frames):
            fast.add(ref, dist, with_ssim=False)
            stack[:h], stack[h:] = fast.shaved_y(ref[0]), fast.shaved_y(dist[0])
            proc.stdin.write(stack.data.cast("B"))
        t_fast = (time.perf_counter() - t0) / args.frames * 1e3
        proc.stdin.close()
        proc.wait()
        fast.set_ssim(parse_ssim_stats(stats.read_text()))
    worst = max(abs(a.ssim_y - b.ssim_y) for a, b in zip(slow.frames, fast.frames, strict=True))  # type: ignore[operator]
    mse = max(abs(a.mse[0] - b.mse[0]) / a.mse[0] for a, b in zip(slow.frames, fast.frames, strict=True))
    print(
        f"numpy PSNR+SSIM {t_slow:.1f} ms a frame; fast path {t_fast:.1f} ms a frame in this process "
        f"({t_slow / t_fast:.1f}x); largest SSIM difference {worst:.1e}, MSE relative {mse:.1e}"
    )


if __name__ == "__main__":
    main()
