"""Several training runs side by side on one device (training.device's graphs, one stream each).

Used by `tools/train_on_gpu.py` to make the presets on a lent GPU: the three scales, warm
restarts and the SRCNN baseline in one sitting. Each run's data, hold-out and initial weights
are exactly those of `training.loop.train` with the same TrainConfig; only the sampler and the loop
differ (training.device). With `budget_s` the step count is chosen after a timing phase so that
the cosine schedule ends inside the budget; the chosen count is recorded in the metadata.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from espcn_video.training.checkpoints import initial_model, teacher_targets
from espcn_video.training.config import TrainConfig, check_learning_rate
from espcn_video.training.data import DataReport, prepare_data
from espcn_video.training.device import DevicePatchSource, GraphStepper, run_concurrently, synchronize
from espcn_video.training.loop import build_metadata, teacher_sampling, validate
from espcn_video.training.reparam import plain_network

Log = Callable[[str], None]


@dataclass
class Run:
    config: TrainConfig
    stepper: GraphStepper
    val_pairs: list[tuple[np.ndarray, np.ndarray]]
    report: DataReport
    val_curve: list[tuple[int, float | None, float]] = field(default_factory=list)
    val_psnr_db: float | None = None
    elapsed_s: float = 0.0

    @property
    def name(self) -> str:
        return self.config.out.stem

    def validate(self, device: torch.device) -> None:
        """Validation PSNR now, with the mean training loss since the last one, on the curve."""
        loss = self.stepper.take_mean_loss()
        self.val_psnr_db = validate(self.stepper.model, self.val_pairs, self.config.scale, device)
        self.stepper.model.train()
        self.val_curve.append((self.stepper.step, self.val_psnr_db, loss))


def build_run(
    config: TrainConfig,
    device: torch.device,
    preloaded: list[tuple[str, np.ndarray]] | None,
    per_call: int,
    use_graph: bool,
) -> Run:
    check_learning_rate("lr", config.lr, config.lr_min)  # as training.loop.train does
    # the presets (--init, --teacher) before the data, as in the host loop: a wrong one fails fast
    model = initial_model(config).to(device)
    teacher = teacher_targets(config)
    planes, val_pairs, report = prepare_data(config, preloaded)
    planes, patch = teacher_sampling(planes, config, teacher)
    source = DevicePatchSource(planes.inputs, planes.targets, patch, config.stride, device)
    stepper = GraphStepper(
        model,
        source,
        config.batch,
        config.lr,
        config.lr_min,
        config.steps,
        per_call=per_call,
        use_graph=use_graph,
        targets=teacher.to(device) if teacher is not None else None,
        loss=config.loss,
    )
    return Run(config, stepper, val_pairs, report)


def steps_within(
    runs: list[Run], device: torch.device, deadline: float, timing_s: float, per_call: int, validations: int, log: Log
) -> int:
    """Time `timing_s` of real training and one validation pass; the step count that ends by `deadline`."""
    t0, s0 = time.monotonic(), runs[0].stepper.step
    while time.monotonic() - t0 < timing_s:
        for _ in range(16):
            for run in runs:
                run.stepper.advance()
        synchronize(device)  # the clock measures finished work
    rate = (runs[0].stepper.step - s0) / (time.monotonic() - t0)
    v0 = time.monotonic()
    for run in runs:
        validate(run.stepper.model, run.val_pairs, run.config.scale, device)
        run.stepper.model.train()
    val_s = time.monotonic() - v0
    remaining = deadline - time.monotonic() - validations * val_s
    total = int(runs[0].stepper.step + rate * max(remaining, 0.0) * 0.97)
    total = max(total - total % per_call, runs[0].stepper.step + per_call)
    log(
        f"timing: {rate:.0f} steps/s per run with {len(runs)} runs, validation pass {val_s:.1f} s; "
        f"{remaining:.0f} s of training left -> {total:,} steps each"
    )
    return total


def train_together(
    configs: list[TrainConfig],
    device: torch.device,
    *,
    preloaded: list[tuple[str, np.ndarray]] | None = None,
    budget_s: float | None = None,
    timing_s: float = 20.0,
    per_call: int = 4,
    use_graph: bool = True,
    val_times: int = 8,
    log: Log = print,
) -> list[Run]:
    """Train every config to its end; returns the runs (weights in run.stepper.model).

    With `budget_s`, every run gets the step count that a timing phase says fits the budget.
    """
    started = time.monotonic()
    runs = []
    for config in configs:
        run = build_run(config, device, preloaded, per_call, use_graph)
        runs.append(run)
        log(
            f"{run.name}: {len(run.report.train)} train / {len(run.report.val)} val images, "
            f"{run.stepper.source.total:,} patch positions"
        )
    for run in runs:
        run.stepper.prepare()
        how = f"graph of {per_call} steps" if run.stepper.graph is not None else "eager"
        log(
            f"{run.name}: {how}"
            + (f" (capture failed: {run.stepper.capture_error})" if run.stepper.capture_error else "")
        )
    synchronize(device)
    train_started = time.monotonic()
    if budget_s is not None:
        total = steps_within(runs, device, started + budget_s, timing_s, per_call, val_times + 1, log)
        for run in runs:
            run.config = replace(run.config, steps=total)
    else:
        total = max(c.steps for c in configs)
    for run in runs:
        run.stepper.set_total(run.config.steps)

    val_every = max(per_call, total // val_times)
    next_val = (runs[0].stepper.step // val_every + 1) * val_every

    def on_round(step: int) -> None:
        nonlocal next_val
        if step < next_val and step < total:
            return
        next_val += val_every
        synchronize(device)
        for run in runs:
            run.validate(device)
            log(
                f"{run.name}: step {run.stepper.step:,}/{total:,} loss {run.val_curve[-1][2]:.6f} "
                f"val {run.val_psnr_db:.3f} dB  ({time.monotonic() - train_started:.0f} s)"
            )

    run_concurrently([r.stepper for r in runs], total, on_round)
    synchronize(device)
    for run in runs:
        if run.val_curve[-1][0] != run.stepper.step:
            run.validate(device)
        run.elapsed_s = time.monotonic() - train_started
    log(f"trained {len(runs)} runs x {total:,} steps in {time.monotonic() - train_started:.0f} s")
    return runs


def run_record(run: Run, device: torch.device) -> dict[str, Any]:
    """Weights and metadata (as training.loop.train writes them, plus the device and the curve)."""
    weights = {k: v.detach().to("cpu", copy=True) for k, v in plain_network(run.stepper.model).state_dict().items()}
    meta = build_metadata(run.config, run.elapsed_s, run.val_psnr_db, run.report, torch.get_num_threads(), device)
    meta["training"]["device_name"] = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    meta["training"]["loop_detail"] = (
        f"{'CUDA graph' if run.stepper.graph is not None else 'eager'} steps, several runs side by side on one device"
    )
    meta["training"]["val_curve"] = [{"step": s, "val_psnr_db": v, "train_mse": mse} for s, v, mse in run.val_curve]
    return {"state_dict": weights, "metadata": meta}
