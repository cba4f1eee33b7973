"""`psnr --worst N --crops DIR`: pictures of where a method does worst, to look at, not read.

For each clip, the N frames with the lowest Y-PSNR of the judged method (espcn when scored)
are decoded again, the reference and the LR exactly as the scoring decoded them. Each method
upsamples the LR frame; the window of the largest squared Y error of the judged method is cut
out of the reference and of every method's output and put side by side, shown at 2x (nearest),
labelled with each method's Y-PSNR of the whole frame as the report gives it. Y only, in gray:
the metric is on Y.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from espcn_video.errors import InputError
from espcn_video.ffmpeg.process import FFmpegProcess
from espcn_video.ffmpeg.psnr_args import build_degrade_decode_args, hr_size_for
from espcn_video.ffmpeg.y4m import FrameGeometry, Y4MHeader, read_frame, read_header
from espcn_video.files import atomic_path
from espcn_video.frames.upscaler import FrameUpscaler
from espcn_video.settings import InputSpec

CROP_PX = 96  # HR pixels on a side, or the whole frame when smaller
ZOOM = 2  # each pixel shown as ZOOM x ZOOM (nearest), so single-pixel errors can be seen
LABEL_PX = 18
GAP_PX = 4


def worst_frames(per_frame_db: list[float | None], count: int) -> list[int]:
    """Indices of the `count` lowest PSNRs (identical frames, None, are never the worst)."""
    scored = [(db, i) for i, db in enumerate(per_frame_db) if db is not None]
    return [i for _, i in sorted(scored)[:count]]


def worst_window(err: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left of the size x size window with the largest summed error (an integral image)."""
    h, w = err.shape
    sh, sw = min(size, h), min(size, w)
    total = np.zeros((h + 1, w + 1))
    total[1:, 1:] = err.cumsum(0).cumsum(1)
    sums = total[sh:, sw:] - total[:-sh, sw:] - total[sh:, :-sw] + total[:-sh, :-sw]
    y, x = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(y), int(x)


def _decode_frames(cmd: list[str], indices: list[int], what: str) -> tuple[Y4MHeader, dict[int, list[np.ndarray]]]:
    """The frames at `indices` from one pass of a decode; the others are read and dropped."""
    wanted, kept = set(indices), {}
    with FFmpegProcess(what, cmd, stdout="pipe") as proc:
        header = read_header(proc.stdout, what)
        if header is None:
            raise InputError(f"{what}: no frames")
        for i in range(max(indices) + 1):
            planes = read_frame(proc.stdout, header.geometry, i, what)
            if planes is None:
                raise InputError(f"{what}: ended before frame {max(indices)}")
            if i in wanted:
                kept[i] = planes
        proc.kill()
    return header, kept


def _to_gray8(plane: np.ndarray, peak: int) -> np.ndarray:
    gray = np.clip(np.round(plane.astype(np.float64) * (255.0 / peak)), 0, 255).astype(np.uint8)
    return np.repeat(np.repeat(gray, ZOOM, axis=0), ZOOM, axis=1)


def compose(panels: list[tuple[str, np.ndarray]], path: Path) -> None:
    """Gray panels side by side under their labels, as one PNG (written atomically)."""
    from PIL import Image, ImageDraw

    h = max(p.shape[0] for _, p in panels)
    w = sum(p.shape[1] for _, p in panels) + GAP_PX * (len(panels) - 1)
    canvas = Image.new("L", (w, h + LABEL_PX), color=255)
    draw = ImageDraw.Draw(canvas)
    x = 0
    for label, pixels in panels:
        canvas.paste(Image.fromarray(pixels, mode="L"), (x, LABEL_PX))
        draw.text((x + 2, 3), label, fill=0)
        x += pixels.shape[1] + GAP_PX
    with atomic_path(path) as tmp:
        canvas.save(tmp, format="PNG")


def write_crops(
    ffmpeg: str,
    clip: InputSpec,
    clip_doc: dict[str, Any],
    upscalers: dict[str, FrameUpscaler],
    settings: Any,
    count: int,
    folder: Path,
    lr_clip: InputSpec | None = None,
) -> list[str]:
    """PNG crops of the clip's `count` worst frames of the judged method; their paths."""
    judged = "espcn" if "espcn" in upscalers else next((m for m in upscalers if m != "bicubic"), "bicubic")
    indices = worst_frames(clip_doc["methods"][judged]["per_frame"]["psnr_y_db"], count)
    src_w, src_h = clip_doc["source_size"]
    pix_fmt, scale = clip_doc["pix_fmt"], settings.scale
    hr_w, hr_h = hr_size_for((src_w, src_h), scale)
    decode = dict(size=(src_w, src_h), pix_fmt=pix_fmt, scale=scale, frames=settings.frames)
    if not indices:
        return []
    from espcn_video.jobs.psnr import lr_decode_args

    _, refs = _decode_frames(build_degrade_decode_args(ffmpeg, clip, degrade_filter=None, **decode), indices, clip.path)
    lr_cmd = lr_decode_args(ffmpeg, clip, (src_w, src_h), pix_fmt, settings, lr_clip)
    lr_header, lrs = _decode_frames(lr_cmd, indices, f"{clip.path} (LR)")
    peak = FrameGeometry(hr_w, hr_h, pix_fmt).peak
    written = []
    for index in indices:
        ref = refs[index]
        outputs = {name: up.upscale(lrs[index], lr_header.geometry)[0] for name, up in upscalers.items()}
        err = (outputs[judged].astype(np.float64) - ref[0].astype(np.float64)) ** 2
        y, x = worst_window(err, CROP_PX)
        size = (min(CROP_PX, hr_h), min(CROP_PX, hr_w))
        window = (slice(y, y + size[0]), slice(x, x + size[1]))
        panels = [("reference", _to_gray8(ref[0][window], peak))]
        for name, out in outputs.items():
            db = clip_doc["methods"][name]["per_frame"]["psnr_y_db"][index]  # as the report says it
            panels.append((f"{name} {'identical' if db is None else f'{db:.2f} dB'}", _to_gray8(out[window], peak)))
        judged_db = clip_doc["methods"][judged]["per_frame"]["psnr_y_db"][index]
        name = f"{clip_doc['name']}_frame{index:05d}_{judged}_{judged_db:.2f}dB_at{x}x{y}.png"
        compose(panels, folder / name)
        written.append(str(folder / name))
    return written
