"""Inference engines behind one small interface: a Y plane in, a Y plane r times larger out.

TorchEngine (fp32, eager, inference_mode) is the reference path on every CPU. The fast engines
are checked against it (tests/test_engines.py) and chosen by model/backends.create_engine:

- openvino: the graph from model/graphs.py with the convert/round tail inside it; bf16 where
  the CPU has bf16 dot products, int8 (VNNI) on the convolutions where they are worth it.
- onnxruntime: the same graph in fp32; the fastest fp32 path measured where OpenVINO is absent.
- torch bf16: oneDNN convolutions with tanh fused as a post-op, channels_last, no extra package.

Which one "auto" picks is a measurement (docs/bench.md), not a guess: see speed_order().
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import os
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from espcn_video.errors import EspcnVideoError
from espcn_video.model.net import frames_read, model_scale
from espcn_video.model.quant import Int8Params, all_int8, with_blocks

# int8 without a twin (a preset that has no quantization-aware int8 twin, model/quant.py): conv2
# only, 80% of the work, with calibrated ranges (or ranges from the weights). Set5 cost -0.13,
# -0.07 and -0.05 dB (x2, x3, x4) with the GPU-trained presets: over the 0.05 dB bound, so "auto"
# takes int8 only for presets whose twin's measured cost is recorded within the bound.
INT8_LAYERS = (1,)


class LumaEngine(Protocol):
    scale: int
    name: str

    def upscale_luma(self, y: np.ndarray, peak: int) -> np.ndarray: ...


class EngineUnavailable(EspcnVideoError):
    """A backend or precision that this machine or installation cannot run."""


def to_unit_float(plane: np.ndarray, peak: int) -> torch.Tensor:
    """uint8/uint16 (H, W) -> float32 (1, 1, H, W) in [0, 1]; a multi-frame preset's (F, H, W)
    stack -> (1, F, H, W)."""
    t = torch.from_numpy(plane.astype(np.float32, copy=False) if plane.dtype != np.uint8 else plane)
    t = t.to(torch.float32).div_(float(peak)).unsqueeze(0)
    return t if plane.ndim == 3 else t.unsqueeze(0)


def as_batch(y: np.ndarray) -> np.ndarray:
    """A plane (H, W) as (1, 1, H, W), a multi-frame preset's stack (F, H, W) as (1, F, H, W)."""
    y = np.ascontiguousarray(y)
    return y[None] if y.ndim == 3 else y[None, None]


def from_unit_float(t: torch.Tensor, peak: int, dtype: np.dtype) -> np.ndarray:
    """float in [0, 1] (any leading dims of size 1) -> rounded integer plane of `dtype`."""
    out = t.clamp_(0.0, 1.0).mul_(float(peak)).round_().squeeze(0).squeeze(0)
    if dtype == np.uint8:  # one conversion on the per-frame path; values are already in range
        return out.to(torch.uint8).numpy()
    return out.to(torch.int32).numpy().astype(dtype, copy=False)


class TorchEngine:
    """ESPCN in eager PyTorch fp32: the reference every faster engine is checked against."""

    name = "torch-fp32"
    backend = "torch"
    precision = "fp32"

    def __init__(self, model: nn.Module, device: str = "cpu", threads: int | None = None) -> None:
        if threads:
            torch.set_num_threads(threads)
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.scale = model_scale(model)
        self.frames = frames_read(model)

    @torch.inference_mode()
    def upscale_luma(self, y: np.ndarray, peak: int) -> np.ndarray:
        lr = to_unit_float(y, peak).to(self.device)
        hr = self.model(lr)
        return from_unit_float(hr.cpu(), peak, y.dtype)


RECEPTIVE_RADIUS = 4  # LR pixels each side one output pixel depends on: 5x5 (2) + 3x3 (1) + 3x3 (1)


def receptive_radius(model: nn.Module) -> int:
    """RECEPTIVE_RADIUS, or a deeper ESPCN's (2 more LR pixels per residual block)."""
    return int(getattr(model, "receptive_radius", RECEPTIVE_RADIUS))


DEFAULT_MEMORY_MB = 512  # the network's working memory on one frame, unless told otherwise
DEFAULT_WIDTHS = (64, 32)  # the paper's conv1 and conv2 channels


def strip_rows(width: int, scale: int, memory_mb: float, widths: tuple[int, int] = DEFAULT_WIDTHS) -> int:
    """LR rows per strip so that one strip's working memory stays within `memory_mb`: per LR
    pixel, the input, conv1's and conv2's activations and the r² outputs (f32), twice over."""
    per_row = width * (1 + widths[0] + widths[1] + scale * scale) * 4 * 2
    return max(4 * RECEPTIVE_RADIUS, int(memory_mb * 1024 * 1024 // per_row))


def model_widths(model: nn.Module) -> tuple[int, int]:
    """conv1's and conv2's output channels (64, 32 for the paper's networks)."""
    conv1, conv2 = getattr(model, "conv1", None), getattr(model, "conv2", None)
    if isinstance(conv1, nn.Conv2d) and isinstance(conv2, nn.Conv2d):
        return conv1.out_channels, conv2.out_channels
    return DEFAULT_WIDTHS


class StripEngine:
    """Runs an engine on horizontal strips of a large frame, each with the network's receptive
    radius (RECEPTIVE_RADIUS for 5-3-3) in rows of context above and below that are cut from its
    output: every output pixel is computed from the same LR pixels as on the whole frame, so
    memory is bounded by the strip, not the frame.

    Frames that fit the budget go to the engine whole (and keep its asynchronous start)."""

    def __init__(
        self,
        engine: LumaEngine,
        memory_mb: float = DEFAULT_MEMORY_MB,
        widths: tuple[int, int] = DEFAULT_WIDTHS,
        radius: int = RECEPTIVE_RADIUS,
    ) -> None:
        self.engine = engine
        self.scale = engine.scale
        self.name = engine.name
        self.memory_mb = memory_mb
        self.widths = widths
        self.radius = radius
        self.frames = frames_read(engine)
        for attr in ("backend", "precision"):
            if hasattr(engine, attr):
                setattr(self, attr, getattr(engine, attr))

    def rows_for(self, y: np.ndarray) -> int | None:
        rows = strip_rows(y.shape[-1], self.scale, self.memory_mb, self.widths)
        return rows if y.shape[-2] > rows else None

    def upscale_luma(self, y: np.ndarray, peak: int) -> np.ndarray:
        """`y`: the LR plane, or a multi-frame preset's (F, H, W) stack (cut into the same strips)."""
        rows = self.rows_for(y)
        if rows is None:
            return self.engine.upscale_luma(y, peak)
        r, h, pad = self.scale, y.shape[-2], self.radius
        out = np.empty((h * r, y.shape[-1] * r), dtype=y.dtype)
        # equal strips (one shape, so an engine that compiles per shape compiles once or twice)
        count = -(-h // rows)
        step = -(-h // count)
        for top in range(0, h, step):
            bottom = min(h, top + step)
            a, b = max(0, top - pad), min(h, bottom + pad)
            part = self.engine.upscale_luma(np.ascontiguousarray(y[..., a:b, :]), peak)
            out[top * r : bottom * r] = part[(top - a) * r : (top - a + bottom - top) * r]
        return out

    def start_luma(self, y: np.ndarray, peak: int) -> Callable[[], np.ndarray]:
        start = getattr(self.engine, "start_luma", None)
        if start is not None and self.rows_for(y) is None:
            pending: Callable[[], np.ndarray] = start(y, peak)
            return pending
        done = self.upscale_luma(y, peak)
        return lambda: done


def default_threads() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


# -- what this CPU and installation offer ----------------------------------------------------


@functools.lru_cache(maxsize=1)
def cpu_info() -> tuple[str, frozenset[str]]:
    """(model name, flags) from /proc/cpuinfo; ("unknown", {}) where there is none."""
    model, flags = "unknown", frozenset[str]()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model == "unknown":
                    model = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = frozenset(value.split())
    except OSError:
        pass
    return model, flags


def cpu_has_bf16() -> bool:
    """bf16 dot products in hardware (AVX512-BF16 or AMX); elsewhere bf16 is emulated, slower than fp32."""
    flags = cpu_info()[1]
    return bool({"avx512_bf16", "amx_bf16"} & flags)


def cpu_has_int8_dot() -> bool:
    flags = cpu_info()[1]
    return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & flags)


def have_package(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def tune_malloc() -> None:
    """Keep large buffers in glibc's heap instead of a fresh mmap per allocation.

    Eager torch allocates 15-60 MB activations on every call; above glibc's mmap threshold each
    is a new mapping whose pages fault on first touch, which cost about half of eager fp32's
    time. The heap keeps freed blocks, so the next frame reuses warm pages. Process-wide and
    harmless elsewhere: only the peak RSS stays claimed.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return  # not glibc: nothing to tune
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 1 << 30)
    libc.mallopt(m_trim_threshold, 1 << 30)


# -- fast engines ----------------------------------------------------------------------------


class TorchFastEngine:
    """Torch without extra packages: bf16 oneDNN convolutions with tanh fused in (CPU), or a
    half-precision copy of the model (CUDA)."""

    backend = "torch"

    def __init__(self, model: nn.Module, precision: str, device: str = "cpu", threads: int | None = None) -> None:
        if threads:
            torch.set_num_threads(threads)
        self.scale = model_scale(model)
        self.frames = frames_read(model)
        self.precision = precision
        self.name = f"torch-{precision}"
        self.device = torch.device(device)
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision]
        if self.device.type == "cpu":
            from espcn_video.model.graphs import espcn_blocks, espcn_layers

            layers = espcn_layers(model)
            # a deeper ESPCN's residual blocks run after conv2: (layer, role) with role "a" (the
            # block's input is kept), "b" (the kept input is added back) or "" (plain)
            inner = [(layer, role) for a, b in espcn_blocks(model) for layer, role in ((a, "a"), (b, "b"))]
            self.layers = [(layers[0], ""), (layers[1], ""), *inner, (layers[2], "")]
            self._packed: dict[tuple[int, int, float], list[tuple[torch.Tensor, torch.Tensor, int, bool, str]]] = {}
        else:
            self.model = model.to(self.device, self.dtype).eval()

    def _weights(
        self, shape: tuple[int, int], in_scale: float
    ) -> list[tuple[torch.Tensor, torch.Tensor, int, bool, str]]:
        """Weights reordered once per frame size into oneDNN's blocked layout (what
        torch.compile's freezing does): unpacked, every call reorders them, 85 ms -> 37 ms.
        conv1's are multiplied by `in_scale` (1/peak when the input is the code values)."""
        key = (*shape, in_scale)
        if key not in self._packed:
            self._packed[key] = [
                (
                    torch.ops.mkldnn._reorder_convolution_weight(
                        torch.from_numpy(layer.weight * np.float32(in_scale if i == 0 else 1.0)).to(self.dtype),
                        [layer.padding] * 2,
                        [1, 1],
                        [1, 1],
                        1,
                        [1, layer.weight.shape[1], *shape],
                    ),
                    torch.from_numpy(layer.bias).to(self.dtype),
                    layer.padding,
                    layer.tanh,
                    role,
                )
                for i, (layer, role) in enumerate(self.layers)
            ]
        return self._packed[key]

    def _forward_cpu(self, x: torch.Tensor, in_scale: float = 1.0) -> torch.Tensor:
        weights = self._weights((x.shape[2], x.shape[3]), in_scale)
        x = x.to(self.dtype).contiguous(memory_format=torch.channels_last)
        skip = x
        for weight, bias, pad, tanh, role in weights:
            if role == "a":
                skip = x
            x = torch.ops.mkldnn._convolution_pointwise(
                x, weight, bias, [pad, pad], [1, 1], [1, 1], 1, "tanh" if tanh else "none", [None], ""
            )
            if role == "b":
                x = skip + x
        return torch.pixel_shuffle(x, self.scale)

    @torch.inference_mode()
    def upscale_luma(self, y: np.ndarray, peak: int) -> np.ndarray:
        if self.device.type == "cpu" and y.dtype == np.uint8:
            # the code values themselves (exact in bf16; x / 255 is not), 1/peak in conv1's weights
            lr = torch.from_numpy(as_batch(y))
            return from_unit_float(self._forward_cpu(lr, 1.0 / peak).float(), peak, y.dtype)
        lr = to_unit_float(y, peak).to(self.device)
        hr = self._forward_cpu(lr) if self.device.type == "cpu" else self.model(lr.to(self.dtype))
        return from_unit_float(hr.float().cpu(), peak, y.dtype)


class OpenVINOEngine:
    """The ESPCN graph compiled by OpenVINO for each frame size and bit depth it meets (once per video)."""

    backend = "openvino"

    def __init__(
        self,
        model: nn.Module,
        precision: str,
        threads: int | None = None,
        int8: Int8Params | None = None,
    ) -> None:
        import openvino as ov

        self.core = ov.Core()
        self.model = model
        self.scale = model_scale(model)
        self.frames = frames_read(model)
        self.precision = precision
        self.name = f"openvino-{precision}"
        self.threads = threads or default_threads()
        self.int8 = int8
        self._requests: dict[tuple[int, int, int], Any] = {}

    def _request(self, shape: tuple[int, int], peak: int) -> Any:
        key = (*shape, peak)
        if key not in self._requests:
            from espcn_video.model.graphs import activation_bounds, build_openvino_model

            params = self.int8
            if self.precision == "int8" and params is None:
                layers = with_blocks(INT8_LAYERS, self.model)
                params = Int8Params(self.model, activation_bounds(self.model), layers, source="weight bounds")
            if self.precision == "int8" and params is not None:
                graph = build_openvino_model(
                    params.model, peak, shape, params.layers, params.ranges, params.weight_steps, params.float_channels
                )
            else:
                graph = build_openvino_model(self.model, peak, shape)
            config = {
                "INFERENCE_NUM_THREADS": self.threads,
                "INFERENCE_PRECISION_HINT": "f32" if self.precision == "fp32" else "bf16",
                "PERFORMANCE_HINT": "LATENCY",
                "NUM_STREAMS": 1,
                # Decode and encode share the cores: pinned workers would fight them for a core.
                "ENABLE_CPU_PINNING": False,
            }
            if self.precision == "int8" and (
                not cpu_has_bf16()
                or (params is not None and (params.rest_fp32 or all_int8(params.layers, params.model)))
            ):
                # every convolution int8, or a twin made with its float convolutions in fp32: what
                # is left (conv3, bias, tanh, the tail) runs in f32, so the engine computes exactly
                # what the twin was fine-tuned on (model/quant.py)
                config["INFERENCE_PRECISION_HINT"] = "f32"
            self._requests[key] = self.core.compile_model(graph, "CPU", config).create_infer_request()
        return self._requests[key]

    def start_luma(self, y: np.ndarray, peak: int) -> Callable[[], np.ndarray]:
        """Start the network on OpenVINO's threads; calling the result waits for the plane.

        The caller's thread is free meanwhile (e.g. for the chroma resampler).
        """
        request = self._request(y.shape[-2:], peak)
        lr = as_batch(y)
        request.start_async({0: lr}, share_inputs=True)
        return _PendingPlane(request, lr)

    def upscale_luma(self, y: np.ndarray, peak: int) -> np.ndarray:
        return self.start_luma(y, peak)()


class _PendingPlane:
    """An OpenVINO request in flight; holds the input it shares (not copies) until it is done."""

    def __init__(self, request: Any, lr: np.ndarray) -> None:
        self.request = request
        self.lr: np.ndarray | None = lr

    def __call__(self) -> np.ndarray:
        self.request.wait()
        self.lr = None
        # The output tensor is reused by the next call; the pipeline keeps frames in queues.
        return self.request.get_output_tensor(0).data[0, 0].copy()


class OnnxRuntimeEngine:
    """The ESPCN graph in ONNX Runtime fp32 (one session per bit depth, any frame size)."""

    backend = "onnxruntime"
    precision = "fp32"
    name = "onnxruntime-fp32"

    def __init__(self, model: nn.Module, threads: int | None = None) -> None:
        self.model = model
        self.scale = model_scale(model)
        self.frames = frames_read(model)
        self.threads = threads or default_threads()
        self._sessions: dict[int, Any] = {}

    def _session(self, peak: int) -> Any:
        if peak not in self._sessions:
            import onnxruntime as ort

            from espcn_video.model.graphs import build_onnx_model

            options = ort.SessionOptions()
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
            # Spinning workers would burn the cores that decode and encode need between frames.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            self._sessions[peak] = ort.InferenceSession(
                build_onnx_model(self.model, peak), options, providers=["CPUExecutionProvider"]
            )
        return self._sessions[peak]

    def upscale_luma(self, y: np.ndarray, peak: int) -> np.ndarray:
        lr = as_batch(y)
        out = self._session(peak).run(None, {"lr": lr})[0]
        return out[0, 0]
