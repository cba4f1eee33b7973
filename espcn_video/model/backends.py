"""Choosing an engine: one typed Backend per engine (as vs-mlrt's Backend types), what this
machine can run, the speed order measured on two cores, and `create_engine`, which fills in
"auto" with the fastest choice that keeps the quality bound."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from espcn_video.errors import UsageError
from espcn_video.model.engines import (
    DEFAULT_MEMORY_MB,
    EngineUnavailable,
    LumaEngine,
    OnnxRuntimeEngine,
    OpenVINOEngine,
    StripEngine,
    TorchEngine,
    TorchFastEngine,
    cpu_has_bf16,
    cpu_has_int8_dot,
    have_package,
    model_widths,
    receptive_radius,
    tune_malloc,
)
from espcn_video.model.net import frames_read
from espcn_video.model.quant import Int8Params
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

    def build(self, model: nn.Module, threads: int | None, int8: Int8Params | None) -> LumaEngine:
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

    def build(self, model: nn.Module, threads: int | None, int8: Int8Params | None) -> LumaEngine:
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

    def build(self, model: nn.Module, threads: int | None, int8: Int8Params | None) -> LumaEngine:
        return OpenVINOEngine(model, self.precision, threads=threads, int8=int8)


@dataclass(frozen=True)
class OnnxRuntimeBackend(Backend):
    name: ClassVar[str] = "onnxruntime"
    precisions: ClassVar[tuple[str, ...]] = ("fp32",)

    @property
    def reason(self) -> str:
        ok = have_package("onnxruntime") and have_package("onnx")
        return "" if ok else f"onnxruntime and onnx {_NO_FAST}"

    def build(self, model: nn.Module, threads: int | None, int8: Int8Params | None) -> LumaEngine:
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


_DEVICE = re.compile(r"auto|cpu|cuda(?::\d+)?")  # torch's names (the CLI's --device type, cli/common.DEVICE)


def check_device(device: str) -> None:
    """The one check of a device name below the CLI: auto, cpu, cuda or cuda:N."""
    if not _DEVICE.fullmatch(device):
        raise UsageError(f"unknown device {device!r}; choose auto, cpu, cuda or cuda:N")


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

    Which of these "auto" may use is decided by the quality each preset records for them
    (auto_precisions), not here.
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


QUALITY_BOUND_DB = 0.05  # "auto" takes a precision only if it costs at most this on Set5 and Set14


def auto_precisions(deltas: Mapping[str, float] | None) -> tuple[set[str], str | None]:
    """The precisions "auto" may use, from a preset's recorded cost of each (dB vs fp32, the
    worst of Set5 and Set14), and a line saying why when something was left out.

    fp32 (and fp16, CUDA only) always; bf16 and int8 when recorded within QUALITY_BOUND_DB. A
    preset that records nothing (a user's own) gets bf16, which cost 0.01-0.02 dB on every
    shipped preset, and no int8."""
    allowed = {"fp32", "fp16"}
    if not deltas:
        allowed.add("bf16")
        return allowed, (
            "auto: the preset records no measured int8 or bf16 cost, so int8 is left out "
            "(`espcn-video quantize --preset PRESET` makes and measures its int8 twin)"
        )
    left_out = []
    for precision in ("bf16", "int8"):
        delta = deltas.get(precision)
        if delta is not None and delta >= -QUALITY_BOUND_DB:
            allowed.add(precision)
        elif delta is not None:
            left_out.append(f"{precision} costs {-delta:.3f} dB")
        elif precision == "bf16":
            allowed.add("bf16")
    note = f"auto: {', '.join(left_out)} (over {QUALITY_BOUND_DB} dB), left out" if left_out else None
    return allowed, note


def choose_engine(
    device: str = "cpu", backend: str = "auto", precision: str = "auto", allowed: set[str] | None = None
) -> tuple[str, str]:
    """Fill in "auto": the fastest available pair that matches what was asked; an auto precision
    only among `allowed` (default: all).

    When nothing available matches, the asked pair comes back as it is, so that create_engine
    names why it cannot run.
    """
    available = {(o.backend, o.precision) for o in engine_options(device) if o.available}
    ranked = [pair for pair in speed_order(device) if allowed is None or precision != "auto" or pair[1] in allowed]
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
    int8: Int8Params | None = None,
    deltas: Mapping[str, float] | None = None,
    notes: list[str] | None = None,
    memory_mb: float | None = DEFAULT_MEMORY_MB,
) -> LumaEngine:
    """An engine for `model`; "auto" picks the fastest one that keeps the quality bound.

    `int8`: what the int8 engine runs (a preset's twin, or calibrated ranges; None: ranges from
    the weights alone). `deltas`: the preset's recorded cost of bf16 and int8 (auto_precisions);
    `notes` gets a line when "auto" left a precision out. `memory_mb`: frames whose network
    working memory would exceed it run in strips (StripEngine, the same output); None: never.
    """
    check_device(device)  # before a backend is named for it: "tpu" is not a device with no int8
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if backend != "auto" and precision != "auto":
        backend_for(backend, precision, device)  # a wrong name fails before any choosing
    allowed, note = auto_precisions(deltas)
    if note and frames_read(model) > 1:
        note = "auto: a multi-frame preset has no int8 twin (quantize takes single-frame presets), so int8 is left out"
    backend, precision = choose_engine(device, backend, precision, allowed)
    if note and notes is not None and device == "cpu" and cpu_has_int8_dot() and precision != "int8":
        notes.append(note)
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
    engine = choice.build(model, threads, int8)
    if memory_mb is None:
        return engine
    return StripEngine(engine, memory_mb, model_widths(model), receptive_radius(model))
