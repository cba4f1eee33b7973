"""Multi-frame real-video presets (issue #12, the temporal lever): make, train, score, ship.

ESPCN with early fusion of three LR frames (t-1, t, t+1 as three input channels of conv1, the rest
of the 5-3-3 network unchanged: +3,200 MACs per LR pixel, +14 % at x3), against the same network
on frame t alone, both fine-tuned from `espcn-x3-real` on the same data for the same steps.

Data (training images only; the presets' validation split is held out):
- each training image becomes `--variants` moving clips of 8 frames: the HR image panned by a
  whole number of HR pixels per frame (most motion sub-pixel at LR; 80 % within 2 LR pixels per
  frame, 20 % within 6), reflected at the borders, a `real:noaa=0.3` downscaler and noise drawn
  per clip, then the clip through x264 or x265 at CRF 18..36 (so the frames are real I, P and B
  frames); in 5 % of clips the frames before the kept one come from another image (a cut);
  `--objects P`: in that share of clips an elliptical cut of another image moves over the scene
  on its own (occlusions, where a flow fails), in 30 % of them over a still camera;
- the kept frame (one of 3..6) and its two neighbours are the input (`--align dis`: the
  neighbours warped onto it by frames/motion.py, as the presets run; `oracle`: by the true pan);
  the single-frame model reads the kept frame only.
- validation: each held-out image as a moving clip (motion seeded by the image, within 2 LR
  pixels per frame; with `--objects`, every other one with an object) through x264 at CRF 23 / 28
  / 33 after bicubic, bicubic-noaa and area; Y-PSNR with shave = scale against bicubic of the
  same LR frame.

    python tools/temporal_probe.py data --out DIR --variants 4 --align dis --objects 0.6
    python tools/temporal_probe.py train --out DIR --frames 1 --steps 20000 &   # the control
    python tools/temporal_probe.py train --out DIR --frames 3 --steps 20000 &   # the candidate
    python tools/temporal_probe.py score --out DIR
    python tools/temporal_probe.py ship --out DIR --steps 20000   # presets/espcn-x3-real-mc.{pt,json}

About 2-4 minutes for the data and 13-15 minutes per 20,000 steps on one core (two runs side by
side on two). Results: docs/training.md, "A motion-compensated real-video preset".
"""

from __future__ import annotations

import argparse
import json
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from espcn_video.frames.motion import MotionAligner
from espcn_video.model.net import ESPCN
from espcn_video.model.presets import load_preset
from espcn_video.quality.degrade import (
    CODECS,
    Degradation,
    RandomChains,
    add_noise,
    compress_clip,
    downscale,
    imresize,
    parse_degradation,
)
from espcn_video.quality.image_metrics import compute_psnr
from espcn_video.training.config import TrainConfig
from espcn_video.training.data import read_hr_planes, split_validation

SCALE = 3
FRAMES = 8
DATA = ("../shared/data/train/T91", "../shared/data/train/General100", "../shared/data/train/BSD200")
GRID = [f"{down},x264:crf={crf}" for down in ("bicubic", "bicubic-noaa", "area") for crf in (23, 28, 33)]


@dataclass(frozen=True)
class Sprite:
    """An object moving on its own over the panned scene: an elliptical cut of another image."""

    patch: np.ndarray  # HR, float in [0, 1]
    mask: np.ndarray  # bool, the ellipse
    pos: tuple[int, int]  # top-left corner at the kept frame, HR pixels (may stick out)
    vel: tuple[int, int]  # HR pixels per frame


def make_sprite(rng: np.random.Generator, source01: np.ndarray, shape: tuple[int, int]) -> Sprite:
    h, w = shape
    oh = max(8, min(source01.shape[0], int(rng.uniform(0.2, 0.45) * h)))
    ow = max(8, min(source01.shape[1], int(rng.uniform(0.2, 0.45) * w)))
    y0 = int(rng.integers(0, source01.shape[0] - oh + 1))
    x0 = int(rng.integers(0, source01.shape[1] - ow + 1))
    patch = source01[y0 : y0 + oh, x0 : x0 + ow]
    yy, xx = np.mgrid[0:oh, 0:ow]
    mask = ((yy - (oh - 1) / 2) / (oh / 2)) ** 2 + ((xx - (ow - 1) / 2) / (ow / 2)) ** 2 <= 1.0
    pos = (int(rng.integers(-oh // 4, h - 3 * oh // 4 + 1)), int(rng.integers(-ow // 4, w - 3 * ow // 4 + 1)))
    vel = tuple(int(v) for v in rng.integers(-4 * SCALE, 4 * SCALE + 1, size=2))
    return Sprite(patch, mask, pos, vel)  # type: ignore[arg-type]


def paste(frame: np.ndarray, sprite: Sprite, offset: int) -> np.ndarray:
    """`frame` with the sprite where it is `offset` frames after the kept one."""
    out = frame.copy()
    h, w = frame.shape
    oh, ow = sprite.patch.shape
    y0, x0 = sprite.pos[0] + offset * sprite.vel[0], sprite.pos[1] + offset * sprite.vel[1]
    ya, yb, xa, xb = max(0, y0), min(h, y0 + oh), max(0, x0), min(w, x0 + ow)
    if ya >= yb or xa >= xb:
        return out
    m = sprite.mask[ya - y0 : yb - y0, xa - x0 : xb - x0]
    region = out[ya:yb, xa:xb]
    region[m] = sprite.patch[ya - y0 : yb - y0, xa - x0 : xb - x0][m]
    return out


def moving_lr(
    hr01: np.ndarray,
    chain: Degradation,
    step: tuple[int, int],
    kept: int,
    before: np.ndarray | None = None,
    sprite: Sprite | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(LR frames kept-1, kept, kept+1 (uint8), HR of the kept frame (float)) of the 8-frame clip
    of `hr01` panned by `step` HR pixels per frame, with `sprite` moving over it; `before` (same
    size) is shown in the frames before `kept` (a cut)."""
    dy, dx = step
    reach = FRAMES * max(abs(dy), abs(dx), 1)
    h, w = hr01.shape
    frames, target = [], hr01
    for k in range(FRAMES):
        source = before if before is not None and k < kept else hr01
        padded = np.pad(source, reach, mode="reflect")
        oy, ox = reach + (k - kept) * dy, reach + (k - kept) * dx
        frame = padded[oy : oy + h, ox : ox + w]
        if sprite is not None:
            frame = paste(frame, sprite, k - kept)
        if k == kept:
            target = frame
        frames.append(downscale(frame, SCALE, chain))
    for name, value in chain.stages:
        if name == "noise":
            frames = [add_noise(f, value, salt=k) for k, f in enumerate(frames)]
        elif name in CODECS:
            frames = compress_clip(frames, name, int(value))
    lr = np.stack([np.clip(np.rint(f * 255.0), 0, 255).astype(np.uint8) for f in frames[kept - 1 : kept + 2]])
    return lr, target


def align(lrs: np.ndarray, step: tuple[int, int]) -> np.ndarray:
    """The two neighbours of `moving_lr` shifted onto the kept frame by the known motion (the
    oracle motion compensation: an upper bound for any estimated one), bicubic, reflected."""
    import torch.nn.functional as F

    out = lrs.copy()
    h, w = lrs.shape[1:]
    for k, sign in ((0, 1), (2, -1)):
        dy, dx = (sign * v / SCALE for v in step)
        ys = torch.arange(h, dtype=torch.float64) + dy
        xs = torch.arange(w, dtype=torch.float64) + dx
        gy, gx = torch.meshgrid(2 * ys / (h - 1) - 1, 2 * xs / (w - 1) - 1, indexing="ij")
        grid = torch.stack([gx, gy], dim=-1)[None].float()
        src = torch.from_numpy(lrs[k].astype(np.float32))[None, None]
        moved = F.grid_sample(src, grid, mode="bicubic", padding_mode="reflection", align_corners=True)
        out[k] = np.clip(np.rint(moved[0, 0].numpy()), 0, 255).astype(np.uint8)
    return out


def align_dis(lrs: np.ndarray) -> np.ndarray:
    """The two neighbours warped onto the kept frame by the motion compensation the presets run
    (frames/motion.py: DIS optical flow estimated on the decoded LR frames themselves)."""
    import cv2

    cv2.setNumThreads(1)
    return MotionAligner().stack(lrs[0], lrs[1], lrs[2])


def split() -> tuple[list[tuple[str, np.ndarray]], list[tuple[str, np.ndarray]]]:
    config = TrainConfig(data_dirs=tuple(Path(d) for d in DATA), scale=SCALE, out=Path("/dev/null"))
    labelled, _ = read_hr_planes(config)
    val = set(split_validation(len(labelled), config.val_fraction, config.seed).tolist())
    train = [item for i, item in enumerate(labelled) if i not in val]
    held = [item for i, item in enumerate(labelled) if i in val]
    return train, held


def make_data(out: Path, variants: int, aligned: str, objects: float) -> None:
    train, held = split()
    mix = RandomChains(noaa=0.3, encode=1.0)
    jobs = []
    for i, (label, _hr) in enumerate(train):
        rng = np.random.default_rng([7, zlib.crc32(label.encode())])
        for _ in range(variants):
            chain = mix.draw(rng, SCALE)
            reach = (6 if rng.random() < 0.2 else 2) * SCALE
            step = tuple(int(v) for v in rng.integers(-reach, reach + 1, size=2))
            kept = int(rng.integers(3, FRAMES - 1))
            cut = int(rng.integers(len(train))) if rng.random() < 0.05 else None
            sprite = None
            if objects > 0 and rng.random() < objects:
                if rng.random() < 0.3:
                    step = (0, 0)  # a still camera, only the object moves
                other = train[int(rng.integers(len(train)))][1] / 255.0
                sprite = make_sprite(rng, other, train[i][1].shape)
            jobs.append((i, chain, step, kept, cut, sprite))

    def aligned_lr(lr: np.ndarray, step: tuple[int, int]) -> np.ndarray:
        return align(lr, step) if aligned == "oracle" else align_dis(lr) if aligned == "dis" else lr

    def one(job: tuple) -> tuple[np.ndarray, np.ndarray]:
        i, chain, step, kept, cut, sprite = job
        hr01 = train[i][1] / 255.0
        before = None
        if cut is not None:
            other = train[cut][1] / 255.0
            h, w = hr01.shape
            other = np.pad(other, [(0, max(0, h - other.shape[0])), (0, max(0, w - other.shape[1]))], mode="reflect")
            before = other[:h, :w]
        lr, target = moving_lr(hr01, chain, step, kept, before, sprite)
        return aligned_lr(lr, step), target

    t0 = time.time()
    with ThreadPoolExecutor(max_workers=2) as pool:
        made = list(pool.map(one, jobs))
    arrays = {f"lr{k:05d}": lr for k, (lr, _) in enumerate(made)}
    for k, ((_, target), job) in enumerate(zip(made, jobs, strict=True)):
        if job[5] is not None:  # the kept frame's HR is the scene with the object
            arrays[f"hr{k:05d}"] = np.rint(target * 255.0).astype(np.uint8)
    arrays["index"] = np.array([job[0] for job in jobs])
    np.savez(out / "train.npz", **arrays)
    print(f"train: {len(jobs)} clips in {time.time() - t0:.0f} s", flush=True)

    val, targets = [], {}
    for n, (label, hr) in enumerate(held):
        rng = np.random.default_rng(zlib.crc32(label.encode()))
        step = tuple(int(v) for v in rng.integers(-2 * SCALE, 2 * SCALE + 1, size=2))
        kept = int(rng.integers(3, FRAMES - 1))
        sprite = None
        if objects > 0 and n % 2 == 0:  # every other held-out image with an object of the next one
            sprite = make_sprite(rng, held[(n + 1) % len(held)][1] / 255.0, hr.shape)
        for spec in GRID:
            lr, target = moving_lr(hr / 255.0, parse_degradation(spec), step, kept, None, sprite)
            if sprite is not None:
                targets[f"hr{len(val):05d}"] = np.rint(target * 255.0).astype(np.uint8)
            val.append((label, spec, aligned_lr(lr, step)))
    np.savez(out / "val.npz", **{f"lr{k:05d}": lr for k, (_, _, lr) in enumerate(val)}, **targets)
    (out / "val.json").write_text(json.dumps([(label, spec) for label, spec, _ in val]))
    print(f"val: {len(val)} clips in {time.time() - t0:.0f} s")


def load_train(out: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    train, _ = split()
    targets = [(hr / 255.0).astype(np.float32) for _, hr in train]
    with np.load(out / "train.npz") as data:
        index = data["index"]
        lrs = [data[f"lr{k:05d}"].astype(np.float32) / 255.0 for k in range(len(index))]
        hrs = [
            data[f"hr{k:05d}"].astype(np.float32) / 255.0 if f"hr{k:05d}" in data.files else targets[i]
            for k, i in enumerate(index)
        ]
    return lrs, hrs


def temporal_model(frames: int) -> ESPCN:
    base, _ = load_preset("espcn-x3-real")
    model = ESPCN(SCALE)
    model.load_state_dict(base.state_dict())
    if frames == 3:
        weight = model.conv1.weight.detach()
        model.conv1 = nn.Conv2d(3, weight.shape[0], kernel_size=5, padding=2)
        with torch.no_grad():
            model.conv1.weight.zero_()
            model.conv1.weight[:, 1:2] = weight
            model.conv1.bias.copy_(base.conv1.bias)
    return model


def train(out: Path, frames: int, steps: int, lr0: float, seed: int) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    lrs, hrs = load_train(out)
    model = temporal_model(frames)
    opt = torch.optim.Adam(model.parameters(), lr=lr0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=1e-5)
    rng = np.random.default_rng(seed)
    sizes = np.array([lr.shape[1:] for lr in lrs])
    weights = (sizes - 16).prod(axis=1).astype(np.float64)
    weights /= weights.sum()
    p, s, batch = 17, SCALE, 64
    loss_fn = nn.MSELoss()
    t0, running = time.time(), 0.0
    for step in range(1, steps + 1):
        which = rng.choice(len(lrs), size=batch, p=weights)
        x = np.empty((batch, frames, p, p), np.float32)
        y = np.empty((batch, 1, p * s, p * s), np.float32)
        for b, i in enumerate(which):
            h, w = sizes[i]
            oy, ox = int(rng.integers(h - p + 1)), int(rng.integers(w - p + 1))
            t = int(rng.integers(8))
            src = lrs[i][:, oy : oy + p, ox : ox + p] if frames == 3 else lrs[i][1:2, oy : oy + p, ox : ox + p]
            dst = hrs[i][oy * s : (oy + p) * s, ox * s : (ox + p) * s]
            src = np.rot90(src, t % 4, axes=(1, 2))
            dst = np.rot90(dst, t % 4)
            if t >= 4:
                src, dst = src.transpose(0, 2, 1), dst.T
            x[b], y[b, 0] = src, dst
        loss = loss_fn(model(torch.from_numpy(x)), torch.from_numpy(y))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        running += float(loss.detach())
        if step % 1000 == 0:
            print(f"frames={frames} step {step} loss {running / 1000:.6f} {time.time() - t0:.0f} s", flush=True)
            running = 0.0
            torch.save(model.state_dict(), out / f"model-f{frames}.pt")
    torch.save(model.state_dict(), out / f"model-f{frames}.pt")


def score(out: Path) -> None:
    _, held = split()
    hr_of = dict(held)
    names = json.loads((out / "val.json").read_text())
    with np.load(out / "val.npz") as data:
        lrs = [data[f"lr{k:05d}"].astype(np.float32) / 255.0 for k in range(len(names))]
        own = {k: data[f"hr{k:05d}"].astype(np.float64) for k in range(len(names)) if f"hr{k:05d}" in data.files}
    models: dict[str, tuple[nn.Module, int]] = {"espcn-x3-real": (temporal_model(1), 1)}
    for frames in (1, 3):
        path = out / f"model-f{frames}.pt"
        if path.is_file():
            model = temporal_model(frames)
            model.load_state_dict(torch.load(path))
            models[f"tuned-f{frames}"] = (model, frames)
    table: dict[str, dict[str, list[float]]] = {}
    with torch.no_grad():
        for k, ((label, spec), lr) in enumerate(zip(names, lrs, strict=True)):
            hr = own.get(k, hr_of[label])
            row = table.setdefault(spec, {})
            bic = np.clip(np.rint(imresize(lr[1].astype(np.float64), SCALE) * 255), 0, 255)
            row.setdefault("bicubic", []).append(compute_psnr(hr, bic, 255.0, SCALE))
            for name, (model, frames) in models.items():
                x = torch.from_numpy(lr if frames == 3 else lr[1:2])[None]
                sr = np.clip(np.rint(model(x)[0, 0].numpy() * 255), 0, 255)
                row.setdefault(name, []).append(compute_psnr(hr, sr, 255.0, SCALE))
    result = {spec: {name: float(np.mean(v)) for name, v in row.items()} for spec, row in table.items()}
    (out / "score.json").write_text(json.dumps(result, indent=1))
    cols = list(next(iter(result.values())))
    print("| LR | " + " | ".join(cols) + " |")
    for spec, row in result.items():
        base = row["bicubic"]
        print(f"| {spec} | " + " | ".join(f"{v:.2f} ({v - base:+.2f})" for v in row.values()) + " |")
    means = {name: float(np.mean([row[name] - row["bicubic"] for row in result.values()])) for name in cols}
    print("mean gain over bicubic:", {k: round(v, 3) for k, v in means.items()})


def ship(out: Path, name: str, steps: int) -> None:
    """presets/NAME.pt and .json: the 3-frame weights of `train`, with what made them and the
    held-out scores of `score` (run both first)."""
    import datetime

    state = torch.load(out / "model-f3.pt")
    model = temporal_model(3)
    model.load_state_dict(state)  # the shapes check
    scores = json.loads((out / "score.json").read_text())
    folder = Path(__file__).resolve().parents[1] / "presets"
    torch.save(model.state_dict(), folder / f"{name}.pt")
    gains = {
        spec: {k: round(v - row["bicubic"], 4) for k, v in row.items() if k != "bicubic"}
        for spec, row in scores.items()
    }
    meta = {
        "name": name,
        "arch": "espcn",
        "scale": SCALE,
        "channels": [64, 32],
        "activation": "tanh",
        "frames": 3,
        "motion": "OpenCV DIS optical flow (fast) on the LR Y planes; neighbours warped bicubic (frames/motion.py)",
        "training": {
            "data": list(DATA),
            "degradation": "each image as 4 moving 8-frame clips (pan of whole HR pixels per frame, 80 % within 2 "
            "LR pixels, 20 % within 6; 5 % with a cut before the kept frame), real:noaa=0.3:encode=1 chain per clip, "
            "the whole clip through x264/x265 CRF 18-36; frames kept-1, kept, kept+1",
            "degrade": "real:noaa=0.3:encode=1, moving clips",
            "init": "espcn-x3-real (conv1's neighbour weights from zero)",
            "patch": {"input": 17, "hr": 51},
            "batch": 64,
            "steps": steps,
            "lr": 2e-4,
            "lr_min": 1e-5,
            "threads": 1,
            "command": "python tools/temporal_probe.py data --out DIR --variants 4 --align dis && "
            f"python tools/temporal_probe.py train --out DIR --frames 3 --steps {steps}",
            "torch": torch.__version__,
        },
        "selection": {
            "rule": "docs/training.md, 'A motion-compensated real-video preset': above bicubic in all 9 held-out P/B "
            "chains, mean gain >= the one-frame control's + 0.05 dB, not below it at bicubic,x264:crf=28",
            "held_out_gain_db": gains,
            "mean_gain_db": {
                k: round(float(np.mean([g[k] for g in gains.values()])), 4) for k in next(iter(gains.values()))
            },
        },
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    (folder / f"{name}.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"wrote presets/{name}.pt and .json")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["data", "train", "score", "ship"])
    parser.add_argument("--name", default="espcn-x3-real-mc", help="ship: the preset's name")
    parser.add_argument("--objects", type=float, default=0.0, help="data: share of clips with an object moving alone")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--variants", type=int, default=4)
    parser.add_argument("--frames", type=int, default=3, choices=[1, 3])
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--align", choices=["none", "oracle", "dis"], default="none", help="data: neighbours moved onto the kept frame"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.what == "data":
        make_data(args.out, args.variants, args.align, args.objects)
    elif args.what == "train":
        train(args.out, args.frames, args.steps, args.lr, args.seed)
    elif args.what == "score":
        score(args.out)
    else:
        ship(args.out, args.name, args.steps)


if __name__ == "__main__":
    main()
