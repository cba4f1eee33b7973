"""Several training runs side by side on one device (device_train's graphs, one stream each).

Used by `tools/train_on_gpu.py` to make the presets on a lent GPU: the three scales, warm
restarts and the SRCNN baseline in one sitting. Each run's data, hold-out and initial weights
are exactly those of `train.train` with the same TrainConfig; only the sampler and the loop
differ (device_train). With `budget_s` the step count is chosen after a timing phase so that
the cosine schedule ends inside the budget; the chosen count is recorded in the metadata.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from espcn_video.model.device_train import DevicePatchSource, GraphStepper, run_concurrently, synchronize
from espcn_video.model.train import (
    DataReport, TrainConfig, build_metadata, build_network, initial_weights, prepare_data, validate,
)

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


def build_run(config: TrainConfig, device: torch.device, preloaded: list[tuple[str, np.ndarray]] | None,
              per_call: int, use_graph: bool) -> Run:
    planes, val_pairs, report = prepare_data(config, preloaded)
    model = build_network(config)  # seeded: the same initial weights as train.train
    if config.init_from:
        model.load_state_dict(initial_weights(config))
    source = DevicePatchSource(planes.inputs, planes.targets, config.input_patch, config.stride, device)
    stepper = GraphStepper(model.to(device), source, config.batch, config.lr, config.lr_min, config.steps,
                           per_call=per_call, use_graph=use_graph, name=config.out.stem)
    return Run(config, stepper, val_pairs, report)


def train_together(configs: list[TrainConfig], device: torch.device, *, preloaded: list[tuple[str, np.ndarray]] | None = None,
                   budget_s: float | None = None, timing_s: float = 20.0, per_call: int = 4, use_graph: bool = True,
                   val_times: int = 8, log: Log = print, on_checkpoint: Callable[[list[Run]], None] | None = None,
                   checkpoint_every_s: float = 90.0) -> list[Run]:
    """Train every config to its end; returns the runs (weights in run.stepper.model)."""
    if device.type == "cuda":
        torch.backends.cudnn.allow_tf32 = False  # full fp32, as on the CPU
        torch.backends.cuda.matmul.allow_tf32 = False
    started = time.monotonic()
    runs = []
    for config in configs:
        run = build_run(config, device, preloaded, per_call, use_graph)
        runs.append(run)
        log(f"{run.name}: {len(run.report.train)} train / {len(run.report.val)} val images, "
            f"{run.stepper.source.total:,} patch positions")
    for run in runs:
        run.stepper.prepare()
        error = getattr(run.stepper, "capture_error", None)
        log(f"{run.name}: {'graph of ' + str(per_call) + ' steps' if run.stepper.graph is not None else 'eager'}"
            + (f" (capture failed: {error})" if error else ""))
    synchronize(device)
    train_started = time.monotonic()
    target = {"steps": max(c.steps for c in configs)}

    if budget_s is not None:
        deadline = started + budget_s
        t0, s0 = time.monotonic(), runs[0].stepper.step
        while time.monotonic() - t0 < timing_s:
            for _ in range(16):
                for run in runs:
                    run.stepper.advance()
            synchronize(device)  # the clock measures finished work
        elapsed = time.monotonic() - t0
        rate = (runs[0].stepper.step - s0) / elapsed
        v0 = time.monotonic()
        for run in runs:  # one validation pass, timed: the schedule leaves room for val_times + 1 more
            validate(run.stepper.model, run.val_pairs, run.config.scale, device)
            run.stepper.model.train()
        val_s = time.monotonic() - v0
        remaining = deadline - time.monotonic() - (val_times + 1) * val_s
        total = int(runs[0].stepper.step + rate * max(remaining, 0.0) * 0.97)
        total = max(total - total % per_call, runs[0].stepper.step + per_call)
        log(f"timing: {rate:.0f} steps/s per run with {len(runs)} runs, validation pass {val_s:.1f} s; "
            f"{remaining:.0f} s of training left -> {total:,} steps each")
        for run in runs:
            run.stepper.set_total(total)
            run.config = replace(run.config, steps=total)
        target["steps"] = total
    else:
        for run in runs:
            run.stepper.set_total(run.config.steps)

    val_every = max(per_call, target["steps"] // val_times)
    state = {"next_val": (runs[0].stepper.step // val_every + 1) * val_every, "last_ckpt": time.monotonic()}

    def on_round(step: int) -> bool:
        if step >= state["next_val"] or step >= target["steps"]:
            state["next_val"] += val_every
            synchronize(device)
            for run in runs:
                loss = run.stepper.take_mean_loss()
                run.val_psnr_db = validate(run.stepper.model, run.val_pairs, run.config.scale, device)
                run.stepper.model.train()
                run.val_curve.append((run.stepper.step, run.val_psnr_db, loss))
                log(f"{run.name}: step {run.stepper.step:,}/{target['steps']:,} loss {loss:.6f} "
                    f"val {run.val_psnr_db:.3f} dB  ({time.monotonic() - train_started:.0f} s)")
            if on_checkpoint is not None and time.monotonic() - state["last_ckpt"] >= checkpoint_every_s:
                on_checkpoint(runs)
                state["last_ckpt"] = time.monotonic()
        return True

    run_concurrently([r.stepper for r in runs], lambda: target["steps"], on_round)
    synchronize(device)
    for run in runs:
        if not run.val_curve or run.val_curve[-1][0] != run.stepper.step:
            loss = run.stepper.take_mean_loss()
            run.val_psnr_db = validate(run.stepper.model, run.val_pairs, run.config.scale, device)
            run.val_curve.append((run.stepper.step, run.val_psnr_db, loss))
        run.elapsed_s = time.monotonic() - train_started
    log(f"trained {len(runs)} runs x {target['steps']:,} steps in {time.monotonic() - train_started:.0f} s")
    return runs


def run_record(run: Run, device: torch.device, wall_s: float) -> dict[str, Any]:
    """Weights and metadata (as train.train writes them, plus the device and the curve)."""
    weights = {k: v.detach().to("cpu", copy=True) for k, v in run.stepper.model.state_dict().items()}
    state = SimpleNamespace(elapsed_s=wall_s, val_psnr_db=run.val_psnr_db)
    meta = build_metadata(run.config, state, run.report, torch.get_num_threads(), device)  # type: ignore[arg-type]
    meta["training"]["device_name"] = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    meta["training"]["loop"] = ("device_train: patches drawn on the device, "
                                f"{'CUDA graph' if run.stepper.graph is not None else 'eager'} steps, "
                                "several runs side by side on one device")
    meta["training"]["val_curve"] = [{"step": s, "val_psnr_db": v, "train_mse": l} for s, v, l in run.val_curve]
    return {"state_dict": weights, "metadata": meta}
