"""Inference engines behind one small interface: a Y plane in, a Y plane r times larger out.

TorchEngine (fp32, eager, inference_mode) is the reference path on every CPU.
"""

from __future__ import annotations

import os
from typing import Protocol

import numpy as np
import torch
from torch import nn


class LumaEngine(Protocol):
    scale: int
    name: str

    def upscale_luma(self, y: np.ndarray, peak: int) -> np.ndarray: ...


def to_unit_float(plane: np.ndarray, peak: int) -> torch.Tensor:
    """uint8/uint16 (H, W) -> float32 (1, 1, H, W) in [0, 1]."""
    t = torch.from_numpy(plane.astype(np.float32, copy=False) if plane.dtype != np.uint8 else plane)
    return t.to(torch.float32).div_(float(peak)).unsqueeze(0).unsqueeze(0)


def from_unit_float(t: torch.Tensor, peak: int, dtype: np.dtype) -> np.ndarray:
    """float in [0, 1] (any leading dims of size 1) -> rounded integer plane of `dtype`."""
    out = t.clamp_(0.0, 1.0).mul_(float(peak)).round_()
    return out.squeeze(0).squeeze(0).to(torch.int32).numpy().astype(dtype, copy=False)


class TorchEngine:
    """ESPCN in eager PyTorch fp32: the reference every faster engine is checked against."""

    name = "torch-fp32"

    def __init__(self, model: nn.Module, device: str = "cpu", threads: int | None = None) -> None:
        if threads:
            torch.set_num_threads(threads)
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.scale = int(getattr(model, "scale"))

    @torch.inference_mode()
    def upscale_luma(self, y: np.ndarray, peak: int) -> np.ndarray:
        lr = to_unit_float(y, peak).to(self.device)
        hr = self.model(lr)
        return from_unit_float(hr.cpu(), peak, y.dtype)


def default_threads() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))
