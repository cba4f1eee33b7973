"""Training on a GPU at small-batch speed: data on the device, one CUDA graph per step.

The CPU loop (training.loop.run_steps) draws patches in numpy and is bound by Python: on a GPU that
would leave the card idle, and this network's progress follows the number of optimiser steps.
Here everything one step needs is on the device and has no host synchronisation, so the whole
step (patch draw, forward, loss, backward, Adam, cosine learning rate) is captured once as a
CUDA graph and replayed:

* `DevicePatchSource` keeps every training plane flattened on the device and draws aligned
  input/target patches with one of the 8 flips/rotations by index arithmetic (a gather), with
  the same distribution as training.data.PatchSampler: every patch position of every image equally likely.
* `GraphStepper` owns one model's Adam (capturable, learning rate as a device tensor) and its
  cosine schedule (computed on the device from a step counter), and captures K steps per graph.
* `run_concurrently` replays several steppers on their own CUDA streams, so several models
  (scales, restarts, the SRCNN baseline) train side by side on one card: each small step uses a
  few multiprocessors, and kernels of different streams overlap.

Without CUDA (tests, CPU machines) the same code runs eagerly on the CPU.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from espcn_video.training.config import loss_function


class DevicePatchSource:
    """Random aligned (input, target) patches drawn on `device` from planes held there.

    `inputs[i]` and `targets[i]` are float32 [0, 1] planes; target pixel (Y, X) lies under input
    pixel (Y // stride, X // stride). Transform t in 0..7: bit 0 flips the source rows, bit 1 its
    columns, then bit 2 transposes (the dihedral group of the square), both patches alike.
    """

    def __init__(
        self,
        inputs: Sequence[np.ndarray],
        targets: Sequence[np.ndarray],
        input_patch: int,
        stride: int,
        device: torch.device,
    ) -> None:
        if not inputs or len(inputs) != len(targets):
            raise ValueError("need as many input planes as target planes, and at least one")
        p, s = input_patch, stride
        pos_h, pos_w, in_off, tgt_off, in_w, tgt_w = [], [], [], [], [], []
        n_in = n_tgt = 0
        for src, dst in zip(inputs, targets, strict=True):
            h, w = src.shape
            if dst.shape != (h * s, w * s):
                raise ValueError(f"target {dst.shape} is not input {src.shape} times {s}")
            if h < p or w < p:
                raise ValueError(f"plane {src.shape} is smaller than a {p}x{p} patch")
            pos_h.append(h - p + 1)
            pos_w.append(w - p + 1)
            in_off.append(n_in)
            tgt_off.append(n_tgt)
            in_w.append(w)
            tgt_w.append(w * s)
            n_in += src.size
            n_tgt += dst.size
        counts = np.array(pos_h, dtype=np.int64) * np.array(pos_w, dtype=np.int64)

        def as_long(values: Any) -> torch.Tensor:
            return torch.tensor(values, dtype=torch.int64, device=device)

        self.device = device
        self.stride = s
        self.total = int(counts.sum())
        self.ends = as_long(np.cumsum(counts))  # exclusive end of each image's position range
        self.starts = as_long(np.cumsum(counts) - counts)
        self.pos_w = as_long(pos_w)
        self.in_off, self.tgt_off = as_long(in_off), as_long(tgt_off)
        self.in_w, self.tgt_w = as_long(in_w), as_long(tgt_w)
        self.in_flat = torch.from_numpy(np.concatenate([a.ravel() for a in inputs]).astype(np.float32)).to(device)
        self.tgt_flat = torch.from_numpy(np.concatenate([a.ravel() for a in targets]).astype(np.float32)).to(device)
        self.in_grid = torch.arange(p, device=device)
        self.tgt_grid = torch.arange(p * s, device=device)

    def draw(self, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(image index, top, left in input pixels, transform) of `size` patches."""
        u = torch.randint(0, self.total, (size,), device=self.device)
        image = torch.searchsorted(self.ends, u, right=True)
        k = u - self.starts[image]
        width = self.pos_w[image]
        transform = torch.randint(0, 8, (size,), device=self.device)
        return image, k // width, k % width, transform

    def batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, top, left, transform = self.draw(size)
        s = self.stride
        x = self.in_flat[self._index(self.in_grid, self.in_off[image], self.in_w[image], top, left, transform)]
        y = self.tgt_flat[
            self._index(self.tgt_grid, self.tgt_off[image], self.tgt_w[image], top * s, left * s, transform)
        ]
        return x.unsqueeze(1), y.unsqueeze(1)

    @staticmethod
    def _index(
        grid: torch.Tensor,
        offset: torch.Tensor,
        width: torch.Tensor,
        top: torch.Tensor,
        left: torch.Tensor,
        transform: torch.Tensor,
    ) -> torch.Tensor:
        n = grid.numel()
        rows, cols = grid.view(1, n, 1), grid.view(1, 1, n)

        def col(v: torch.Tensor) -> torch.Tensor:
            return v.view(-1, 1, 1)

        t = col(transform)
        transpose, flip_rows, flip_cols = (t & 4) != 0, (t & 1) != 0, (t & 2) != 0
        a = torch.where(transpose, cols, rows)
        b = torch.where(transpose, rows, cols)
        a = torch.where(flip_rows, n - 1 - a, a)
        b = torch.where(flip_cols, n - 1 - b, b)
        return col(offset) + (col(top) + a) * col(width) + col(left) + b


def cosine_lr(step: torch.Tensor | float, total: torch.Tensor | float, lr: float, lr_min: float) -> Any:
    """CosineAnnealingLR's closed form: the learning rate that step number `step` uses."""
    frac = step / total
    cos = torch.cos(frac * math.pi) if isinstance(frac, torch.Tensor) else math.cos(frac * math.pi)
    return lr_min + 0.5 * (lr - lr_min) * (1.0 + cos)


@dataclass
class GraphStepper:
    """One model's optimiser and schedule on the device; `advance()` runs `per_call` steps.

    On CUDA the steps are one captured graph (unless `use_graph` is False or capture fails,
    then `capture_error` says why); elsewhere eager. The total step count is a device tensor so it
    can be set after a timing run. On CUDA, TF32 is switched off: full fp32, as on the CPU.
    """

    model: nn.Module
    source: DevicePatchSource
    batch: int
    lr: float
    lr_min: float
    total_steps: int
    start_step: int = 0
    per_call: int = 1
    use_graph: bool = True
    optimizer_state: dict[str, Any] | None = None
    targets: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None  # distillation
    loss: str = "l2"  # training.config.LOSSES
    stream: Any = field(init=False, default=None)
    graph: Any = field(init=False, default=None)
    capture_error: str | None = field(init=False, default=None)
    step: int = field(init=False)

    def __post_init__(self) -> None:
        device = self.source.device
        self.step = self.start_step
        self.cuda = device.type == "cuda"
        self.step_t = torch.tensor(float(self.start_step), device=device)
        self.total_t = torch.tensor(float(self.total_steps), device=device)
        # computed as the graph computes it, so that a resumed run continues bit for bit
        self.lr_t = cosine_lr(self.step_t, self.total_t, self.lr, self.lr_min).clone()
        self.loss_fn = loss_function(self.loss)
        self.loss_sum = torch.zeros((), device=device)
        self.loss_count = 0
        options: dict[str, Any] = {"capturable": True, "foreach": True} if self.cuda else {"foreach": False}
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.lr_t, **options)
        if self.optimizer_state is not None:
            self.optimizer.load_state_dict(self.optimizer_state)
            for group in self.optimizer.param_groups:
                group["lr"] = self.lr_t
        if self.cuda:
            self.stream = torch.cuda.Stream(device=device)
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False

    def set_total(self, total_steps: int) -> None:
        self.total_steps = total_steps
        self.total_t.fill_(float(total_steps))

    def _body(self) -> None:
        x, y = self.source.batch(self.batch)
        if self.targets is not None:
            x, y = self.targets(x, y)  # the teacher's forward pass (and the crop) is captured in the graph too
        loss = self.loss_fn(self.model(x), y)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=False)
        self.step_t.add_(1.0)
        self.lr_t.copy_(cosine_lr(self.step_t, self.total_t, self.lr, self.lr_min))
        self.loss_sum.add_(loss.detach())

    def prepare(self) -> None:
        """Warm up (3 real steps, counted) and capture the graph; eager fallback if capture fails."""
        self.model.train()
        if not (self.cuda and self.use_graph):
            return
        self.stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.stream):
            for _ in range(3):
                self._body()
                self.step += 1
                self.loss_count += 1
        torch.cuda.current_stream().wait_stream(self.stream)
        try:
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=self.stream):
                for _ in range(self.per_call):
                    self._body()
            self.graph = graph
        except Exception as exc:  # noqa: BLE001 - reported by the caller, training goes on eagerly
            self.graph = None
            torch.cuda.synchronize()
            self.capture_error = f"{type(exc).__name__}: {exc}"

    def advance(self) -> None:
        """Queue `per_call` steps (asynchronous on CUDA)."""
        if self.graph is not None:
            with torch.cuda.stream(self.stream):
                self.graph.replay()
        elif self.cuda:
            with torch.cuda.stream(self.stream):
                for _ in range(self.per_call):
                    self._body()
        else:
            for _ in range(self.per_call):
                self._body()
        self.step += self.per_call
        self.loss_count += self.per_call

    def take_mean_loss(self) -> float:
        """Mean training loss since the last call (synchronises this stepper's stream)."""
        value = float(self.loss_sum.item()) / max(self.loss_count, 1)
        if self.stream is not None:
            self.stream.wait_stream(torch.cuda.current_stream())  # later replays see the reset
        self.loss_sum.zero_()
        self.loss_count = 0
        return value


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_concurrently(
    steppers: Sequence[GraphStepper], until: int, on_round: Callable[[int], None] | None = None
) -> None:
    """Advance all steppers round by round (each on its own stream) until each reaches `until`.

    `on_round(step)` runs after each round with the lowest step reached; it may synchronise.
    """
    while live := [s for s in steppers if s.step < until]:
        for stepper in live:
            stepper.advance()
        if on_round is not None:
            on_round(min(s.step for s in steppers))
