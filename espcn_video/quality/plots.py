"""Per-frame PSNR curves as a PNG: people would rather look at a curve than read a column."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import matplotlib

from espcn_video.files import atomic_path

matplotlib.use("Agg")  # files only: never needs a display, safe in threads and on servers
import matplotlib.pyplot as plt  # noqa: E402 - after the backend is chosen

PANEL_HEIGHT_IN = 2.6
MAX_CLIPS_PER_FIGURE = 24  # beyond this a figure stops being readable; the rest are left out


def _series(values: list[float | None]) -> list[float]:
    # None (an identical frame: infinite PSNR) becomes a gap in the line.
    return [math.nan if v is None else v for v in values]


def plot_per_frame_psnr(report: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """One panel per clip, one line per method: Y-PSNR (dB) against frame number; written atomically."""
    clips = report["clips"][:MAX_CLIPS_PER_FIGURE]
    fig, axes = plt.subplots(len(clips), 1, figsize=(10, 0.8 + PANEL_HEIGHT_IN * len(clips)), squeeze=False)
    try:
        for ax, clip in zip(axes[:, 0], clips, strict=True):
            for method, summary in clip["methods"].items():
                mean = summary["y"]["mean_psnr_db"]
                label = f"{method} ({mean:.2f} dB)" if mean is not None else method
                ax.plot(_series(summary["per_frame"]["psnr_y_db"]), label=label, linewidth=1.2)
            ax.set_title(f"{clip['name']}  {clip['size'][0]}x{clip['size'][1]}", fontsize=10, loc="left")
            ax.set_ylabel("Y-PSNR (dB)")
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8, loc="best")
        axes[-1, 0].set_xlabel("frame")
        if report.get("mode") == "sr":
            fig.suptitle(f"x{report['scale']}, LR by {report['degradation']['spec']}", fontsize=11)
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, format=(Path(path).suffix.lstrip(".").lower() or "png"))
    finally:
        plt.close(fig)
