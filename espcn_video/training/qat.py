"""Quantization-aware fine-tuning: a preset's int8 twin, trained to run on the int8 engine.

The twin starts from the preset's weights, runs forward exactly as the OpenVINO int8 engine
computes (model/quant.py: conv1's and conv2's inputs and weights on their int8 grids, activation
ranges calibrated on the training images, conv3 on bf16 inputs and weights), and is fine-tuned
with straight-through rounding on the preset's own training data. The LR patches are rounded to
8-bit code values, as decoded video is. The checkpoint kept is the one with the best int8 PSNR
on the held-out training images (the preset's validation split); Set5 and Set14 are measured
afterwards, never used for a choice.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from espcn_video.errors import UsageError
from espcn_video.model.graphs import calibrate_ranges
from espcn_video.model.presets import check_single_frame, load_preset
from espcn_video.model.quant import (
    INT8_TWIN_LAYERS,
    Int8Params,
    QuantizedESPCN,
    all_int8,
    load_convs,
    noise_ranking,
    with_blocks,
)
from espcn_video.quality.image_metrics import compute_psnr
from espcn_video.training.config import LR_PATCH, QAT_LR_MIN, TrainConfig, check_learning_rate
from espcn_video.training.data import PatchSampler, PlaneSet, prepare_data

QatProgress = Callable[[int, int, float, float | None], None]


@dataclass(frozen=True)
class QatConfig:
    preset: str
    data_dirs: tuple[Path, ...]
    steps: int = 1500
    batch: int = 256
    lr: float = 4e-6
    lr_min: float = QAT_LR_MIN
    val_every: int = 100
    layers: tuple[int, ...] = INT8_TWIN_LAYERS
    seed: int = 0
    threads: int | None = None
    quant_lr: float = 2e-3  # for the log ranges and log weight steps
    distill: float = 0.0  # weight of the fp32 preset's output as the target (1: only it; 0: only HR)
    float_channels: int = 0  # conv2's inputs kept in float: the ones carrying the most int8 noise
    rest: str = "bf16"  # the float convolutions (conv3): "bf16" where the CPU has it, or "fp32"


@dataclass
class QatResult:
    model: nn.Module  # the twin's float weights (the engine quantizes them as the twin did)
    ranges: list[np.ndarray]
    weight_steps: list[np.ndarray]
    layers: tuple[int, ...]
    val_psnr_db: dict[str, float]  # fp32 preset, int8 before and after fine-tuning (held-out images)
    best_step: int
    seconds: float
    bf16_rest: bool
    curve: list[dict[str, float]] = field(default_factory=list)
    float_channels: tuple[int, ...] = ()
    rest_fp32: bool = False  # the twin's float convolutions run in fp32 (Int8Params.rest_fp32)

    @property
    def rest_precision(self) -> str:
        """How the twin's float convolutions run: fp32 (--rest fp32), bf16, or f32 (none float,
        or a CPU without bf16)."""
        return "fp32" if self.rest_fp32 else "bf16" if self.bf16_rest else "f32"

    def int8_params(self) -> Int8Params:
        """What the int8 engine runs from this twin."""
        return Int8Params(
            self.model,
            self.ranges,
            self.layers,
            self.weight_steps,
            float_channels=self.float_channels,
            rest_fp32=self.rest_fp32,
        )


def _to_code_values(x: np.ndarray) -> np.ndarray:
    return (np.rint(np.clip(x, 0.0, 1.0) * 255.0) / 255.0).astype(np.float32)


def val_psnr(model: nn.Module, pairs: list[tuple[np.ndarray, np.ndarray]], scale: int) -> float:
    """Mean Y-PSNR (shave = scale) of 8-bit outputs on (HR code values, LR code values / 255) pairs."""
    values = []
    with torch.inference_mode():
        for hr, lr in pairs:
            out = model(torch.from_numpy(lr)[None, None])[0, 0].clamp(0, 1).mul(255).round().double().numpy()
            values.append(compute_psnr(hr, out, 255.0, scale))
    return float(np.mean(values))


def training_config_of(metadata: dict[str, Any], scale: int, data_dirs: tuple[Path, ...], seed: int) -> TrainConfig:
    """The preset's own data, degradation and validation split (so the held-out images stay held out)."""
    training = metadata.get("training") or {}
    return TrainConfig(
        scale=scale,
        out=Path("unused.pt"),
        data_dirs=data_dirs,
        degrade=str(training.get("degrade", "bicubic")),
        seed=int(training.get("seed", seed)),
    )


def quantization_aware_finetune(config: QatConfig, on_progress: QatProgress | None = None) -> QatResult:
    check_learning_rate("--lr", config.lr, config.lr_min)
    check_learning_rate("--quant-lr", config.quant_lr, 0.0)
    if not 0.0 <= config.distill <= 1.0:
        raise UsageError(f"distill {config.distill} is not in [0, 1]")
    model, info = load_preset(config.preset)
    if info.arch != "espcn":
        raise UsageError(f"quantize fine-tunes ESPCN presets; {info.name} is {info.arch}")
    check_single_frame(model, info, "quantize:")
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    t0 = time.monotonic()
    train_config = training_config_of(info.metadata, info.scale, config.data_dirs, config.seed)
    planes, val_pairs, _ = prepare_data(train_config)
    planes = PlaneSet([_to_code_values(p) for p in planes.inputs], planes.targets)
    val_pairs = [(hr, _to_code_values(lr)) for hr, lr in val_pairs]
    if not val_pairs:
        raise UsageError("quantize needs held-out training images to choose its checkpoint (give more than one image)")
    ranges = calibrate_ranges(model, planes.inputs)
    reference = val_psnr(model.eval(), val_pairs, info.scale)
    # the other convolutions as the engine runs them: bf16 where this CPU has it (engines.py)
    from espcn_video.model.engines import cpu_has_bf16

    layers = with_blocks(config.layers, model)  # a deeper ESPCN's blocks go int8 with conv2
    if config.rest not in ("bf16", "fp32"):
        raise UsageError(f"the float convolutions run in bf16 or fp32, not {config.rest}")
    rest_fp32 = config.rest == "fp32" and not all_int8(layers, model)
    bf16_rest = not all_int8(layers, model) and cpu_has_bf16() and not rest_fp32
    floats: tuple[int, ...] = ()
    if config.float_channels:
        if 1 not in config.layers:
            raise UsageError("--float-channels keeps some of conv2's inputs in float: conv2 must be int8")
        floats = tuple(sorted(int(c) for c in noise_ranking(model, ranges)[: config.float_channels]))
    twin = QuantizedESPCN(copy.deepcopy(model), ranges, layers, bf16_rest=bf16_rest, float_channels=floats)
    before = best = val_psnr(twin.eval(), val_pairs, info.scale)
    best_state, best_step = copy.deepcopy(twin.state_dict()), 0
    curve = [{"step": 0, "val_psnr_db": before}]
    sampler = PatchSampler(planes, LR_PATCH, info.scale, np.random.default_rng(config.seed))
    quant = {id(p) for p in twin.quant_parameters()}
    optimizer = torch.optim.Adam(
        [
            {"params": [p for p in twin.parameters() if id(p) not in quant], "base": config.lr},
            {"params": twin.quant_parameters(), "base": config.quant_lr},
        ]
    )
    loss_fn = nn.MSELoss()
    twin.train()
    for step in range(1, config.steps + 1):
        lr_now = config.lr_min + 0.5 * (config.lr - config.lr_min) * (1 + math.cos(math.pi * (step - 1) / config.steps))
        for group in optimizer.param_groups:
            group["lr"] = lr_now * group["base"] / config.lr
        inputs, targets = sampler.batch(config.batch)
        x = torch.from_numpy(inputs)
        target = torch.from_numpy(targets)
        if config.distill > 0:
            with torch.no_grad():
                teacher = model(x)
            target = config.distill * teacher + (1 - config.distill) * target
        loss = loss_fn(twin(x), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        val = None
        if step % config.val_every == 0 or step == config.steps:
            val = val_psnr(twin.eval(), val_pairs, info.scale)
            twin.train()
            curve.append({"step": step, "val_psnr_db": val})
            if val > best:
                best, best_step, best_state = val, step, copy.deepcopy(twin.state_dict())
        if on_progress is not None:
            on_progress(step, config.steps, float(loss.item()), val)
    twin.load_state_dict(best_state)
    out = copy.deepcopy(model)
    load_convs(out, list(twin.convs))
    return QatResult(
        model=out.eval(),
        ranges=[r.detach().numpy().copy() for r in twin.ranges],
        weight_steps=[s.detach().numpy().copy() for s in twin.steps],
        layers=layers,
        val_psnr_db={"fp32": reference, "int8_before": before, "int8_after": best},
        best_step=best_step,
        seconds=time.monotonic() - t0,
        bf16_rest=bf16_rest,
        curve=curve,
        float_channels=floats,
        rest_fp32=rest_fp32,
    )


def measure_precision_deltas(
    preset: str, eval_dirs: Sequence[tuple[str, Path]], threads: int | None = None
) -> dict[str, dict[str, float]]:
    """PSNR of bf16 and int8 minus fp32, per test set, all on the OpenVINO engine from 8-bit LR
    (as video runs): what "auto" reads to decide (model/backends.auto_precisions). Precisions
    this CPU cannot run are left out."""
    from espcn_video.model.backends import backend_for, create_engine
    from espcn_video.model.presets import int8_params
    from espcn_video.quality.paper_eval import evaluate_folder

    model, info = load_preset(preset)
    params = int8_params(model, info)
    psnr: dict[str, dict[str, float]] = {}
    for precision in ("fp32", "bf16", "int8"):
        if not backend_for("openvino", precision).available:
            continue
        engine = create_engine(model, "openvino", precision, threads=threads, int8=params)
        psnr[precision] = {
            name: evaluate_folder(folder, model, info.scale, "bicubic", engine)["mean"]["espcn"]["psnr_db"]
            for name, folder in eval_dirs
        }
    if "fp32" not in psnr:
        return {}
    return {
        p: {name: round(v - psnr["fp32"][name], 4) for name, v in per_set.items()}
        for p, per_set in psnr.items()
        if p != "fp32"
    }


def record_deltas(preset: str, deltas: dict[str, dict[str, float]]) -> None:
    """The measured cost of each precision, in the preset's metadata (what "auto" reads)."""
    from espcn_video.files import atomic_write_json

    _, info = load_preset(preset)
    meta = dict(info.metadata)
    meta["precision_delta_db"] = deltas
    meta["precision_delta_protocol"] = (
        "PSNR of the OpenVINO engine at each precision minus OpenVINO fp32, Y, shave = scale, LR made by "
        "MATLAB bicubic and rounded to 8-bit code values (espcn-video eval DIR --precision P)"
    )
    atomic_write_json(info.path.with_suffix(".json"), meta)


def record_twin(preset: str, result: QatResult, config: QatConfig) -> Path:
    """Write the twin beside the preset and say so in its metadata (atomically); the costs the
    old twin had no longer hold, so they are dropped until measured again."""
    from espcn_video.files import atomic_write_json
    from espcn_video.model.presets import file_sha256
    from espcn_video.model.quant import save_twin, twin_path

    _, info = load_preset(preset)
    path = twin_path(info.path)
    save_twin(path, result.int8_params())
    meta_path = info.path.with_suffix(".json")
    meta = dict(info.metadata)
    meta["int8"] = {
        "twin": path.name,
        "weights_sha256": file_sha256(info.path),  # the preset weights the twin was made from
        "layers": list(result.layers),
        "float_channels": list(result.float_channels),  # conv2's inputs kept in float (bf16)
        "others": {
            "bf16": "bf16 (as the engine runs them on a CPU with bf16)",
            "fp32": "fp32 (quantize --rest fp32)",
            "f32": "f32",
        }[result.rest_precision],
        "method": "quantization-aware fine-tuning (espcn-video quantize): the int8 convolutions' inputs and "
        "weights on the int8 engine's grids with learned activation ranges and weight steps, the others as "
        "the engine runs them",
        "data": [str(d) for d in config.data_dirs],
        "steps": config.steps,
        "batch": config.batch,
        "lr": config.lr,
        "quant_lr": config.quant_lr,
        "best_step": result.best_step,
        "val_psnr_db": {k: round(v, 4) for k, v in result.val_psnr_db.items()},
        "seconds": round(result.seconds, 1),
        "torch": torch.__version__,
    }
    meta.pop("precision_delta_db", None)
    atomic_write_json(meta_path, meta)
    return path
