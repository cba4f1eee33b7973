"""Choose between candidate real-video presets on held-out *training* images only (issue #12 item 5).

The held-out images are the 20 that `espcn-video train` keeps for validation (seed 0, 5 % of
T91 + General100 + BSD200); Set5, Set14 and the shared clips are never read here. Each candidate,
the clean preset and bicubic are scored (Y-PSNR, shave = scale, SR-paper conventions, as `eval`)
under the 12 chains of the robustness grid (bicubic, bicubic-noaa, area x no compression, x264
CRF 23, 28, 33; each LR image through x264 as a one-frame clip). With `--inter`, also the 9
encoded chains with `:inter` (each image coded as a short moving clip, a P or B frame kept: what
most frames of a real stream are).

The rule, fixed before any candidate was scored:
1. eligible: at or above bicubic under every chain (the grid's first target);
2. among the eligible, those within 0.5 dB of the clean preset under `bicubic` (the third target)
   come first;
3. then the highest mean gain over bicubic across the 12 chains.
If no candidate is eligible, the one with the largest worst-chain gain is reported, marked so.

    python tools/select_real.py --scale 3 --clean espcn-x3 runs/espcn-x3-real.pt runs/espcn-x3-realB.pt
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from espcn_video.model.presets import load_preset
from espcn_video.quality.paper_eval import evaluate_image
from espcn_video.training.config import TrainConfig
from espcn_video.training.data import read_hr_planes, split_validation

TRAIN = Path("..") / "shared" / "data" / "train"


def held_out(scale: int) -> list[tuple[str, np.ndarray]]:
    folders = tuple(TRAIN / n for n in ("T91", "General100", "BSD200"))
    config = TrainConfig(scale=scale, out=Path("unused.pt"), data_dirs=folders)
    labelled, _ = read_hr_planes(config)
    chosen = set(split_validation(len(labelled), config.val_fraction, config.seed).tolist())
    return [item for i, item in enumerate(labelled) if i in chosen]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("candidates", nargs="+")
    parser.add_argument("--scale", type=int, default=3)
    parser.add_argument("--clean", default=None, help="the clean preset (default espcn-xSCALE)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--inter", action="store_true", help="also the encoded chains as P/B frames (:inter)")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from robustness_grid import grid_specs

    clean = args.clean or f"espcn-x{args.scale}"
    models = {name: load_preset(name)[0] for name in [clean, *args.candidates]}
    images = held_out(args.scale)
    table: dict[str, dict[str, float]] = {}
    specs = grid_specs()
    if args.inter:
        specs += [f"{spec}:inter" for spec in grid_specs() if ",x264:" in spec]
    for spec in specs:
        scores: dict[str, list[float]] = {}
        for _, hr in images:
            result = evaluate_image(hr, models, args.scale, spec)
            for key, value in result.items():
                scores.setdefault(key, []).append(value["psnr_db"])
        table[spec] = {key: round(float(np.mean(v)), 4) for key, v in scores.items()}
        print(spec, table[spec], flush=True)
    summary: dict[str, Any] = {}
    for name in args.candidates:
        gains = {spec: row[name] - row["bicubic"] for spec, row in table.items()}
        summary[name] = {
            "worst_gain_db": round(min(gains.values()), 4),
            "mean_gain_db": round(float(np.mean(list(gains.values()))), 4),
            "crf28_gains_db": {s: round(g, 4) for s, g in gains.items() if "crf=28" in s},
            "clean_gap_db": round(table["bicubic"][name] - table["bicubic"][clean], 4),
        }
        summary[name]["eligible"] = summary[name]["worst_gain_db"] >= 0
    ranked = sorted(
        args.candidates,
        key=lambda n: (
            summary[n]["eligible"],
            summary[n]["eligible"] and summary[n]["clean_gap_db"] >= -0.5,
            summary[n]["mean_gain_db"] if summary[n]["eligible"] else summary[n]["worst_gain_db"],
        ),
        reverse=True,
    )
    doc = {
        "images": [label for label, _ in images],
        "clean": clean,
        "per_chain": table,
        "candidates": summary,
        "chosen": ranked[0],
        "chosen_is_eligible": summary[ranked[0]]["eligible"],
    }
    print(json.dumps({"candidates": summary, "chosen": ranked[0]}, indent=1))
    if args.json is not None:
        args.json.write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
