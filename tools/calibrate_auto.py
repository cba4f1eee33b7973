"""Set and check the thresholds of `upscale`'s automatic preset choice (quality/input_look.py)
on held-out *training* images only: the 20 that `espcn-video train` keeps for validation (seed 0),
never Set5/Set14 or the shared clips.

For each image and each of 48 chains (6 downscalers x none, noise 2, x264 CRF 18/23/28/33, x265
CRF 28, noise then CRF 28) it scores the clean preset, the real preset and bicubic (Y-PSNR,
shave = scale, 8-bit LR) and measures the LR's aliasing index. The choice is then replayed per
image for a range of aliasing thresholds: the clean preset where the index is at most the
threshold and the chain's quantizer is at most QP_MAX (x264's CRF stands for the frame QP, which
is what ffmpeg reports for x264 streams; x265 gives no quantizer to read, so it counts as
unknown: the real preset), else the real preset. Reported per threshold: the mean gain over
always using the real preset, and the worst result against bicubic.

    python tools/calibrate_auto.py --scale 3 --json docs/auto-choice-x3.json

`--inter` replays a limit on the mean QP of the P and B frames instead, on the same images coded
as moving clips with one P/B frame kept (`x264:crf=N:inter`, CRF 18-33), with the shipped
aliasing threshold (docs/robustness.md, "auto on inter-coded video"):

    python tools/calibrate_auto.py --scale 3 --inter --json docs/auto-choice-x3-inter.json

`--rows FILE` replays the thresholds on rows an earlier run saved (FILE.rows.json beside --json).
`--third PRESET` scores a third, compressed-LR preset too and replays the three-way choice (the
clean preset as shipped; the third where the LR is compressed and its aliasing index at most the
threshold; else the real one) with the same rule for that threshold. With `--inter` too, on the
P/B-frame rows, "compressed" meaning a P/B QP above the shipped limit (QP_MAX_INTER):

    python tools/calibrate_auto.py --scale 3 --inter --third runs/espcn-x3-stream.pt \
        --json docs/auto-choice-x3-stream.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from select_real import held_out

from espcn_video.model.presets import load_preset
from espcn_video.quality.degrade import degrade, imresize, mod_crop, parse_degradation
from espcn_video.quality.image_metrics import compute_psnr
from espcn_video.quality.images import matlab_round
from espcn_video.quality.input_look import ALIAS_MAX, QP_MAX, QP_MAX_INTER, aliasing_index
from espcn_video.quality.paper_eval import to_code_values, upscale_y

DOWNSCALERS = ("bicubic", "bicubic-noaa", "area", "bilinear", "lanczos", "gaussian:1.2")
STAGES = ("", ",noise:2", ",x264:crf=18", ",x264:crf=23", ",x264:crf=28", ",x264:crf=33", ",x265:crf=28")
STAGES += (",noise:2,x264:crf=28",)
THRESHOLDS = (-0.5, -0.6, -0.65, -0.7, -0.75, -0.8, -0.85, -0.9, -1.0)


def chain_qp(spec: str) -> float | None:
    """The quantizer the look would read: x264's CRF; None for x265 (not read); 0 for none."""
    for stage in spec.split(",")[1:]:
        if stage.startswith("x264:crf="):
            return float(stage.split("=")[1])
        if stage.startswith("x265"):
            return None
    return 0.0


def scored_models(scale: int, third: str | None) -> list[tuple[str, Any]]:
    """(column, network) of every preset a replay scores: the clean and the real preset, and a third."""
    names = [("clean", f"espcn-x{scale}"), ("real", f"espcn-x{scale}-real")] + ([("third", third)] if third else [])
    return [(key, load_preset(name)[0]) for key, name in names]


def score_rows(scale: int, third: str | None = None) -> list[dict[str, Any]]:
    models = scored_models(scale, third)
    rows = []
    for label, hr_full in held_out(scale):
        hr = mod_crop(hr_full, scale)
        for spec in (d + s for d in DOWNSCALERS for s in STAGES):
            lr8 = matlab_round(np.clip(degrade(hr / 255.0, scale, parse_degradation(spec)) * 255, 0, 255))
            lr01 = lr8 / 255.0
            row: dict[str, Any] = {"image": label, "chain": spec, "aliasing": aliasing_index(lr8)}
            for key, model in models:
                row[key] = compute_psnr(hr, to_code_values(upscale_y(model, lr01, scale)), 255.0, scale)
            row["bicubic"] = compute_psnr(hr, to_code_values(imresize(lr01, scale)), 255.0, scale)
            rows.append(row)
        print(label, flush=True)
    return rows


def _tally(rows: list[dict[str, Any]], clean_for: Callable[[dict[str, Any]], bool]) -> dict[str, float]:
    """The mean gain over always using the real preset, and the worst case against bicubic, of
    giving the clean preset to the rows `clean_for` picks."""
    gains, worst, picked = [], np.inf, 0
    for r in rows:
        clean = clean_for(r)
        picked += clean
        value = r["clean"] if clean else r["real"]
        gains.append(value - r["real"])
        worst = min(worst, value - r["bicubic"])
    return {
        "mean_gain_over_real_db": round(float(np.mean(gains)), 4),
        "worst_vs_bicubic_db": round(float(worst), 3),
        "clean_chosen": picked,
        "cases": len(rows),
    }


def replay(rows: list[dict[str, Any]], threshold: float) -> dict[str, float]:
    def clean_for(r: dict[str, Any]) -> bool:
        qp = chain_qp(r["chain"])
        return r["aliasing"] is not None and r["aliasing"] <= threshold and qp is not None and qp <= QP_MAX

    return {"threshold": threshold, **_tally(rows, clean_for)}


INTER_CRFS = (18, 20, 23, 25, 28, 33)
INTER_LIMITS = (20, 22, 24, 26, 28, 30, 32)
QP_MARGIN = 2  # towards the real preset, for content the 20 images do not have


def score_inter_rows(scale: int, third: str | None = None) -> list[dict[str, Any]]:
    """Clean, real (and a third preset's) and bicubic on each held-out image coded as a P/B frame
    of a moving clip, with the mean QP of the clip's P and B frames (what the look reads on a stream)."""
    models = scored_models(scale, third)
    rows = []
    for label, hr_full in held_out(scale):
        hr = mod_crop(hr_full, scale)
        for spec in (f"{d},x264:crf={c}:inter" for d in DOWNSCALERS for c in INTER_CRFS):
            qps: list[int] = []
            types: list[str] = []
            lr = degrade(hr / 255.0, scale, parse_degradation(spec), qps=qps, clip_types=types)
            lr8 = matlab_round(np.clip(lr * 255, 0, 255))
            inter = [q for q, t in zip(qps, types, strict=False) if t in ("P", "B")]
            row: dict[str, Any] = {"image": label, "chain": spec, "aliasing": aliasing_index(lr8)}
            row["inter_qp"] = float(np.mean(inter)) if inter else None
            for key, model in models:
                row[key] = compute_psnr(hr, to_code_values(upscale_y(model, lr8 / 255.0, scale)), 255.0, scale)
            row["bicubic"] = compute_psnr(hr, to_code_values(imresize(lr8 / 255.0, scale)), 255.0, scale)
            rows.append(row)
        print(label, flush=True)
    return rows


def replay_inter(rows: list[dict[str, Any]], alias_max: float, limit: float) -> dict[str, float]:
    """The clean preset where the aliasing index is at most `alias_max` and the P/B QP at most `limit`."""

    def clean_for(r: dict[str, Any]) -> bool:
        a, q = r["aliasing"], r["inter_qp"]
        return a is not None and a <= alias_max and q is not None and q <= limit

    return {"qp_limit": limit, **_tally(rows, clean_for)}


def suggest_inter(table: list[dict[str, float]]) -> float | None:
    """docs/robustness.md's rule: the best mean gain among limits with a worst case of at least
    WORST_ALLOWED_DB, minus QP_MARGIN; None when that gain is under MIN_GAIN_DB."""
    eligible = [t for t in table if t["worst_vs_bicubic_db"] >= WORST_ALLOWED_DB]
    if not eligible:
        return None
    best = max(eligible, key=lambda t: t["mean_gain_over_real_db"])
    return best["qp_limit"] - QP_MARGIN if best["mean_gain_over_real_db"] >= MIN_GAIN_DB else None


def inter_main(scale: int, json_path: Path | None, rows_path: Path | None) -> None:
    rows = json.loads(rows_path.read_text()) if rows_path else score_inter_rows(scale)
    if json_path is not None:
        json_path.with_suffix(".rows.json").write_text(json.dumps(rows) + "\n")
    alias_max = ALIAS_MAX[scale]
    table = [replay_inter(rows, alias_max, q) for q in (*INTER_LIMITS, QP_MAX_INTER)]
    per_chain = {}
    for spec in dict.fromkeys(r["chain"] for r in rows):
        sub = [r for r in rows if r["chain"] == spec]
        qs = [r["inter_qp"] for r in sub if r["inter_qp"] is not None]
        per_chain[spec] = {
            "clean_minus_real_db": round(float(np.mean([r["clean"] - r["real"] for r in sub])), 3),
            "real_minus_bicubic_db": round(float(np.mean([r["real"] - r["bicubic"] for r in sub])), 3),
            "inter_qp": [round(min(qs), 1), round(max(qs), 1)] if qs else None,
        }
    oracle = float(np.mean([max(r["clean"], r["real"]) - r["real"] for r in rows]))
    doc = {
        "scale": scale,
        "rule": {"alias_max": alias_max, "qp_max_inter": QP_MAX_INTER, "margin_qp": QP_MARGIN},
        "suggested_qp_max_inter": suggest_inter(table[: len(INTER_LIMITS)]),
        "limits": table,
        "real_worst_vs_bicubic_db": round(min(r["real"] - r["bicubic"] for r in rows), 3),
        "oracle_gain_over_real_db": round(oracle, 4),
        "per_chain": per_chain,
        "images": sorted({r["image"] for r in rows}),
    }
    for line in table:
        print(json.dumps(line))
    print(json.dumps({k: doc[k] for k in ("suggested_qp_max_inter", "oracle_gain_over_real_db")}))
    if json_path is not None:
        json_path.write_text(json.dumps(doc, indent=1) + "\n")


def replay_third(rows: list[dict[str, Any]], clean_max: float, threshold: float, inter: bool = False) -> dict[str, Any]:
    """The three-way choice: the clean preset as auto has it (aliasing <= clean_max, QP <= QP_MAX;
    with `inter`, the P/B-frame QP <= QP_MAX_INTER), else the third (a compressed-LR preset) where
    aliasing <= threshold and the LR is compressed (QP above that limit or unread), else the real
    one; gains are over the two-way auto. Also the mean gain on the cases the third is chosen for."""
    gains, worst, picked, on_picked = [], np.inf, 0, []
    for r in rows:
        qp, limit = (r["inter_qp"], QP_MAX_INTER) if inter else (chain_qp(r["chain"]), QP_MAX)
        low = r["aliasing"] is not None
        clean = low and r["aliasing"] <= clean_max and qp is not None and qp <= limit
        third = not clean and low and r["aliasing"] <= threshold and (qp is None or qp > limit)
        picked += third
        if third:
            on_picked.append(r["third"] - r["real"])
        two_way = r["clean"] if clean else r["real"]
        value = r["third"] if third else two_way
        gains.append(value - two_way)
        worst = min(worst, value - r["bicubic"])
    return {
        "threshold": threshold,
        "mean_gain_over_real_db": round(float(np.mean(gains)), 4),  # here: over the two-way auto
        "worst_vs_bicubic_db": round(float(worst), 3),
        "clean_chosen": picked,  # here: the third preset chosen
        "gain_where_chosen_db": round(float(np.mean(on_picked)), 4) if on_picked else None,
        "cases": len(rows),
    }


WORST_ALLOWED_DB = -0.5  # no held-out case further below bicubic than this
MARGIN = 0.1  # towards the real preset, for content the 20 images do not have
MIN_GAIN_DB = 0.05  # below this mean gain over the real preset, auto is not worth its risk


def suggest(table: list[dict[str, float]]) -> float | None:
    """The rule (written after the x3 and x2 replays were seen, before x4's): the threshold with the
    highest mean gain among those whose worst case is at least WORST_ALLOWED_DB against bicubic,
    minus MARGIN; None (always the real preset) when that gain is under MIN_GAIN_DB."""
    eligible = [t for t in table[: len(THRESHOLDS)] if t["worst_vs_bicubic_db"] >= WORST_ALLOWED_DB]
    if not eligible:
        return None
    best = max(eligible, key=lambda t: t["mean_gain_over_real_db"])
    return round(best["threshold"] - MARGIN, 2) if best["mean_gain_over_real_db"] >= MIN_GAIN_DB else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--rows", type=Path, default=None, help="replay saved rows instead of scoring again")
    parser.add_argument(
        "--third", default=None, help="a compressed-LR candidate: replay the three-way choice for its threshold"
    )
    parser.add_argument("--inter", action="store_true", help="replay a P/B-frame QP limit on moving clips")
    args = parser.parse_args()
    if args.inter and args.third is None:
        inter_main(args.scale, args.json, args.rows)
        return
    if args.rows:
        rows = json.loads(args.rows.read_text())
    else:
        rows = score_inter_rows(args.scale, args.third) if args.inter else score_rows(args.scale, args.third)
    if args.third is not None:
        if args.json is not None:
            args.json.with_suffix(".rows.json").write_text(json.dumps(rows) + "\n")
        clean_max = ALIAS_MAX[args.scale]
        table = [replay_third(rows, clean_max, t, args.inter) for t in THRESHOLDS]
        chains = sorted({r["chain"] for r in rows}, key=[r["chain"] for r in rows].index)
        per_chain = {
            c: round(float(np.mean([r["third"] - r["real"] for r in rows if r["chain"] == c])), 3) for c in chains
        }
        doc = {"scale": args.scale, "third": args.third, "inter": args.inter, "thresholds": table,
               "suggested": suggest(table), "third_minus_real_per_chain_db": per_chain}  # fmt: skip
        print(json.dumps(doc, indent=1))
        if args.json is not None:
            args.json.write_text(json.dumps(doc, indent=1) + "\n")
        return
    if args.json is not None:  # the raw rows first: the replay below is cheap to redo, the scoring is not
        args.json.with_suffix(".rows.json").write_text(json.dumps(rows) + "\n")
    shipped = ALIAS_MAX.get(args.scale)
    table = [replay(rows, t) for t in (*THRESHOLDS, *([shipped] if shipped is not None else []))]
    oracle = float(np.mean([max(r["clean"], r["real"]) - r["real"] for r in rows]))
    always_clean = float(np.mean([r["clean"] - r["real"] for r in rows]))
    per_chain = {}
    for spec in dict.fromkeys(r["chain"] for r in rows):
        sub = [r for r in rows if r["chain"] == spec]
        measured = [r["aliasing"] for r in sub if r["aliasing"] is not None]  # None: a tiny LR image
        per_chain[spec] = {
            "clean_minus_real_db": round(float(np.mean([r["clean"] - r["real"] for r in sub])), 3),
            "aliasing": [round(min(measured), 3), round(max(measured), 3)],
        }
    doc = {
        "scale": args.scale,
        "rule": {"alias_max": ALIAS_MAX.get(args.scale), "qp_max": QP_MAX},
        "suggested_alias_max": suggest(table),
        "thresholds": table,
        "real_worst_vs_bicubic_db": round(min(r["real"] - r["bicubic"] for r in rows), 3),
        "oracle_gain_over_real_db": round(oracle, 4),
        "always_clean_gain_over_real_db": round(always_clean, 4),
        "per_chain": per_chain,
        "images": sorted({r["image"] for r in rows}),
    }
    for line in table:
        print(json.dumps(line))
    keys = ("real_worst_vs_bicubic_db", "oracle_gain_over_real_db", "suggested_alias_max")
    print(json.dumps({k: doc[k] for k in keys}))
    if args.json is not None:
        args.json.write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
