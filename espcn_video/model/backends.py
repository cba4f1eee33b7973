"""Choosing an engine: one typed Backend per engine (as vs-mlrt's Backend types), what this
machine can run, the speed order measured on two cores, and `create_engine`, which fills in
"auto" with the fastest choice that keeps the quality bound."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from espcn_video.errors import UsageError
from espcn_video.model.engines import (
    EngineUnavailable,
    LumaEngine,
    OnnxRuntimeEngine,
    OpenVINOEngine,
    TorchEngine,
    TorchFastEngine,
    cpu_has_bf16,
    cpu_has_int8_dot,
    have_package,
    tune_malloc,
)
from espcn_video.settings import BACKENDS, PRECISIONS

_NO_BF16 = "this CPU has no bf16 dot product (avx512_bf16 or amx_bf16)"


_NO_FAST = "is not installed (pip install 'espcn-video[fast]')"


@dataclass(frozen=True)
class Backend:
    """One way to run the net: a backend at a precision on a device (as vs-mlrt's Backend types).

    Each subclass knows its precisions, whether it runs on this machine (`reason` says why not)
    and how to build its engine; names are checked once, in `backend_for`.
    """

    name: ClassVar[str] = ""
    precisions: ClassVar[tuple[str, ...]] = ()
    precision: str = "fp32"
    device: str = "cpu"

    @property
    def backend(self) -> str:
        return self.name

    @property
    def reason(self) -> str:
        """Why this pair cannot run here; "" when it can."""
        return ""

    @property
    def available(self) -> bool:
        return not self.reason

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "precision": self.precision,
            "device": self.device,
            "available": self.available,
            "reason": self.reason,
        }

    def build(self, model: nn.Module, threads: int | None, calibration: Sequence[np.ndarray] | None) -> LumaEngine:
        raise NotImplementedError


@dataclass(frozen=True)
class TorchBackend(Backend):
    name: ClassVar[str] = "torch"
    precisions: ClassVar[tuple[str, ...]] = ("fp32", "bf16", "fp16")

    @property
    def reason(self) -> str:
        if self.device.startswith("cuda"):
            return "" if torch.cuda.is_available() else "torch sees no CUDA device"
        if self.precision == "fp16":
            return "torch fp16 runs on CUDA only"
        if self.precision == "bf16" and not torch_has_bf16():
            return _NO_BF16
        return ""

    def build(self, model: nn.Module, threads: int | None, calibration: Sequence[np.ndarray] | None) -> LumaEngine:
        if self.precision == "fp32":
            return TorchEngine(model, device=self.device, threads=threads)
        return TorchFastEngine(model, self.precision, device=self.device, threads=threads)


@dataclass(frozen=True)
class OpenVINOBackend(Backend):
    name: ClassVar[str] = "openvino"
    precisions: ClassVar[tuple[str, ...]] = ("fp32", "bf16", "int8")

    @property
    def reason(self) -> str:
        if not have_package("openvino"):
            return f"openvino {_NO_FAST}"
        return _NO_BF16 if self.precision == "bf16" and not cpu_has_bf16() else ""

    def build(self, model: nn.Module, threads: int | None, calibration: Sequence[np.ndarray] | None) -> LumaEngine:
        return OpenVINOEngine(model, self.precision, threads=threads, calibration=calibration)


@dataclass(frozen=True)
class OnnxRuntimeBackend(Backend):
    name: ClassVar[str] = "onnxruntime"
    precisions: ClassVar[tuple[str, ...]] = ("fp32",)

    @property
    def reason(self) -> str:
        ok = have_package("onnxruntime") and have_package("onnx")
        return "" if ok else f"onnxruntime and onnx {_NO_FAST}"

    def build(self, model: nn.Module, threads: int | None, calibration: Sequence[np.ndarray] | None) -> LumaEngine:
        return OnnxRuntimeEngine(model, threads=threads)


BACKEND_TYPES: dict[str, type[Backend]] = {b.name: b for b in (TorchBackend, OpenVINOBackend, OnnxRuntimeBackend)}
assert tuple(BACKEND_TYPES) == BACKENDS


def torch_has_bf16() -> bool:
    return (
        cpu_has_bf16()
        and torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.mkldnn, "_convolution_pointwise")
        and hasattr(torch.ops.mkldnn, "_reorder_convolution_weight")
    )


def engine_options(device: str = "cpu") -> list[Backend]:
    """Every backend/precision pair for `device` and whether it runs here (for `bench` and errors)."""
    if device.startswith("cuda"):
        return [TorchBackend(p, device) for p in ("fp32", "fp16", "bf16")]
    return [
        TorchBackend("fp32"),
        TorchBackend("bf16"),
        OpenVINOBackend("fp32"),
        OpenVINOBackend("bf16"),
        OpenVINOBackend("int8"),
        OnnxRuntimeBackend("fp32"),
    ]


def backend_for(backend: str, precision: str, device: str = "cpu") -> Backend:
    """The one check of backend and precision names (both explicit here, after choose_engine)."""
    kind = BACKEND_TYPES.get(backend)
    if kind is None:
        raise UsageError(f"unknown backend {backend!r}; choose auto, {', '.join(BACKENDS)}")
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}; choose auto, {', '.join(PRECISIONS)}")
    choice = kind(precision, device)
    if choice not in engine_options(device):
        raise UsageError(f"backend {backend} has no {precision} on {device}")
    return choice


def speed_order(device: str = "cpu") -> list[tuple[str, str]]:
    """(backend, precision) pairs, fastest first, as measured on two cores (docs/bench.md).

    bf16 keeps Set5 PSNR within 0.01-0.02 dB of fp32. int8 (conv2 only) keeps it within 0.05 dB
    only for some weights, so create_engine offers it to "auto" only when a preset brings
    calibrated ranges, and a preset carries them only where int8 keeps the bound
    (tests/test_engines.py checks every preset; the shipped GPU-trained ones carry none).
    """
    if device.startswith("cuda"):
        return [("torch", "fp16"), ("torch", "bf16"), ("torch", "fp32")]
    order = [
        ("openvino", "int8"),
        ("openvino", "bf16"),
        ("torch", "bf16"),
        ("onnxruntime", "fp32"),
        ("openvino", "fp32"),
        ("torch", "fp32"),
    ]
    if not cpu_has_int8_dot():
        order.remove(("openvino", "int8"))  # emulated int8 is slower than bf16 or fp32
    return order


def choose_engine(
    device: str = "cpu", backend: str = "auto", precision: str = "auto", allow_int8: bool = True
) -> tuple[str, str]:
    """Fill in "auto": the fastest available pair that matches what was asked.

    When nothing available matches, the asked pair comes back as it is, so that create_engine
    names why it cannot run.
    """
    available = {(o.backend, o.precision) for o in engine_options(device) if o.available}
    ranked = [pair for pair in speed_order(device) if allow_int8 or pair[1] != "int8" or precision == "int8"]
    for pair in ranked:
        if pair in available and backend in ("auto", pair[0]) and precision in ("auto", pair[1]):
            return pair
    if backend == "auto":
        backend = "torch"
    if precision == "auto":
        precision = next((p for b, p in ranked if b == backend), "fp32")
    return backend, precision


def create_engine(
    model: nn.Module,
    backend: str = "auto",
    precision: str = "auto",
    threads: int | None = None,
    device: str = "cpu",
    calibration: Sequence[np.ndarray] | None = None,
) -> LumaEngine:
    """An engine for `model`; "auto" picks the fastest one that keeps the quality bound.

    `calibration`: int8 activation ranges measured on training images (export.calibrate_ranges,
    stored with a preset). Without it "auto" never picks int8, and an explicit int8 uses ranges
    from the weights alone, which never clip but cost about 0.05 dB more.
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if backend != "auto" and precision != "auto":
        backend_for(backend, precision, device)  # a wrong name fails before any choosing
    backend, precision = choose_engine(device, backend, precision, allow_int8=calibration is not None)
    choice = backend_for(backend, precision, device)
    if not choice.available:
        raise EngineUnavailable(f"{backend} {precision}: {choice.reason}")
    if device == "cpu":
        tune_malloc()  # torch runs the chroma resampler beside every engine: 142 -> 31 ms at 4K
    if backend != "torch":
        # What torch still does beside another engine is the chroma resampler: small tensors on
        # which a second OpenMP pool only fights the engine's threads for the same cores
        # (measured on 2 cores: 5 ms per 1080p frame on one thread, 46-259 ms on two).
        torch.set_num_threads(1)
    return choice.build(model, threads, calibration)
