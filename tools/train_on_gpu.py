"""Train the preset candidates side by side on one GPU within a time budget.

    python tools/train_on_gpu.py --pack train_planes.npz --out OUTDIR --budget 470

The pack holds the Y planes of ../shared/data/train (made here by `tools/train_on_gpu.py --make-pack`,
since the image folders do not travel to a lent machine). Every run uses `train.TrainConfig`
defaults except the batch and the optimiser-step count, which comes from a timing phase so the
cosine schedule ends inside the budget. Writes OUTDIR/runs.pt (weights + metadata of each run)
at the end and logs to stdout. Choosing between runs is done afterwards on the
validation PSNR only (tools/finish_presets.py).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from espcn_video.errors import EspcnVideoError
from espcn_video.training.checkpoints import atomic_torch_save
from espcn_video.training.config import DEFAULT_WIDTHS, TrainConfig
from espcn_video.training.data import load_y_planes, pack_y_planes
from espcn_video.training.multi import run_record, train_together

DATA = tuple(Path("../shared/data/train") / n for n in ("T91", "General100", "BSD200"))

# name, arch, scale, init preset, batch, lr
RUNS = [
    ("espcn-x2-gpu", "espcn", 2, None, 64, 1e-3),
    ("espcn-x3-gpu", "espcn", 3, None, 64, 1e-3),
    ("espcn-x4-gpu", "espcn", 4, None, 64, 1e-3),
    ("espcn-x2-gpu-init", "espcn", 2, "espcn-x2", 64, 1e-3),
    ("espcn-x3-gpu-init", "espcn", 3, "espcn-x3", 64, 1e-3),
    ("espcn-x4-gpu-init", "espcn", 4, "espcn-x4", 64, 1e-3),
    ("srcnn-x3-gpu", "srcnn", 3, None, 64, 5e-4),
]

# Warm restarts of the presets made by RUNS (longer schedules with restarts).
RESTARTS = [
    ("espcn-x2-r2", "espcn", 2, "espcn-x2", 64, 5e-4),
    ("espcn-x3-r2", "espcn", 3, "espcn-x3", 64, 5e-4),
    ("espcn-x4-r2", "espcn", 4, "espcn-x4", 64, 5e-4),
    ("espcn-x3-r2-low", "espcn", 3, "espcn-x3", 64, 2e-4),
]
# The frontier and distillation (issue #15), two sittings: first the wider networks, each an exact
# widening of its preset (train --width 128,64 --init espcn-xR); then the 64/32 presets distilled
# from them (train --teacher espcn-xR-hq), once the hq presets exist in presets/.
# name, arch, scale, init preset, batch, lr, widths, teacher
HQ = [(f"espcn-x{r}-hq", "espcn", r, f"espcn-x{r}", 64, 5e-4, (128, 64), None) for r in (2, 3, 4)]
DISTILL = [(f"espcn-x{r}-kd", "espcn", r, f"espcn-x{r}", 64, 5e-4, DEFAULT_WIDTHS, f"espcn-x{r}-hq") for r in (2, 3, 4)]
# Deeper bodies (train --blocks 4 --patch 24 --init espcn-xR: residual blocks that start as
# identities; docs/training.md, "A deeper preset"); + blocks and patch after the teacher.
DEEP = [(f"espcn-x{r}-deep", "espcn", r, f"espcn-x{r}", 64, 3e-4, DEFAULT_WIDTHS, None, 4, 24) for r in (2, 3, 4)]
# ... and the 64/32 presets distilled from those, once the deep presets exist in presets/.
DISTILL_DEEP = [
    (f"espcn-x{r}-kd-deep", "espcn", r, f"espcn-x{r}", 64, 5e-4, DEFAULT_WIDTHS, f"espcn-x{r}-deep") for r in (2, 3, 4)
]
# Structural re-parameterisation (train --expand 2, docs/training.md) from scratch, where it is
# said to help most, beside the plain network at the same steps: what it gives is the difference.
# + blocks, patch and expand after the teacher.
EXPAND = [
    (f"espcn-x{r}-{kind}", "espcn", r, None, 64, 1e-3, DEFAULT_WIDTHS, None, 0, None, expand)
    for r in (2, 3, 4)
    for kind, expand in (("plain", 0), ("rep", 2))
]
PLANS = {
    "first": RUNS,
    "restart": RESTARTS,
    "hq": HQ,
    "distill": DISTILL,
    "deep": DEEP,
    "distill-deep": DISTILL_DEEP,
    "expand": EXPAND,
}
DEFAULT_EXTRA = (DEFAULT_WIDTHS, None, 0, None, 0)  # widths, teacher, blocks, patch, expand


def run_configs(plan: str, out: Path, device: str, wanted: set[str]) -> list[TrainConfig]:
    """The plan's runs (all, or those named), as TrainConfigs with an open-ended step count."""
    configs = []
    for name, arch, scale, init, batch, lr, *extra in PLANS[plan]:
        widths, teacher, blocks, patch, expand = (*extra, *DEFAULT_EXTRA[len(extra) :])
        if wanted and name not in wanted:
            continue
        configs.append(
            TrainConfig(
                scale=scale,
                out=out / f"{name}.pt",
                data_dirs=DATA,
                arch=arch,
                steps=10**8,
                batch=batch,
                lr=lr,
                init_from=init,
                widths=widths,
                teacher=teacher,
                blocks=blocks,
                patch=patch,
                expand=expand,
                device=device,
            )
        )
    return configs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pack", type=Path, required=True)
    parser.add_argument("--make-pack", action="store_true", help="write the pack from ../shared/data/train and exit")
    parser.add_argument("--out", type=Path, default=Path("gpu_runs"))
    parser.add_argument("--budget", type=float, default=470.0, help="seconds from start to the end of training")
    parser.add_argument("--timing", type=float, default=20.0)
    parser.add_argument("--per-call", type=int, default=4)
    parser.add_argument("--plan", choices=sorted(PLANS), default="first")
    parser.add_argument("--only", default="", help="comma-separated run names (default: all)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--eager", action="store_true")
    args = parser.parse_args()
    started = time.monotonic()
    if args.make_pack:
        n = pack_y_planes(DATA, args.pack)
        print(f"packed {n} planes into {args.pack}")
        return
    device = torch.device(args.device)
    if device.type == "cuda":
        print(f"device: {torch.cuda.get_device_name(device)}, torch {torch.__version__}", flush=True)
    preloaded = load_y_planes(args.pack)
    print(f"{len(preloaded)} planes loaded in {time.monotonic() - started:.1f} s", flush=True)
    wanted = set(filter(None, args.only.split(",")))
    configs = run_configs(args.plan, args.out, args.device, wanted)
    runs = train_together(
        configs,
        device,
        preloaded=preloaded,
        budget_s=args.budget - (time.monotonic() - started),
        timing_s=args.timing,
        per_call=args.per_call,
        use_graph=not args.eager,
        log=lambda line: print(line, flush=True),
    )
    records_path = args.out / "runs.pt"
    atomic_torch_save({run.name: run_record(run, device) for run in runs}, records_path)
    print(f"saved {records_path} ({len(runs)} runs)", flush=True)
    print(f"done in {time.monotonic() - started:.0f} s", flush=True)


if __name__ == "__main__":
    try:
        main()
    except EspcnVideoError as exc:
        sys.exit(f"train_on_gpu: error: {exc}")
