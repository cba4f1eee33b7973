"""An SR model made elsewhere, as a one-channel ONNX file, run on ONNX Runtime as the Y engine.

Accepted: one input and one output of rank 4, one channel, NCHW (1, 1, H, W) or NHWC
(1, H, W, 1); either float32 Y in [0, 1] in and out, or uint8 code values in and out (8-bit
video only). The scale is read from the shapes: an 8x8 probe must come out 8r x 8r, r in 2..4.
Files exported by `espcn-video export` are such models.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from espcn_video.errors import PresetError
from espcn_video.model.engines import default_threads, from_unit_float, to_unit_float
from espcn_video.model.presets import PresetInfo
from espcn_video.settings import SUPPORTED_SCALES

PROBE = 8


def is_external_model(name_or_path: str | None) -> bool:
    return name_or_path is not None and name_or_path.lower().endswith(".onnx")


class ExternalOnnxEngine:
    """The model's own graph on ONNX Runtime (CPU, fp32); frames of any size."""

    backend = "onnxruntime"
    precision = "fp32"

    def __init__(self, path: str, threads: int | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise PresetError(f"{path}: an ONNX model needs onnxruntime: pip install 'espcn-video[fast]'") from None
        if not Path(path).is_file():
            raise PresetError(f"preset file {path} does not exist")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or default_threads()
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - ONNX Runtime raises its own types for bad files
            raise PresetError(f"{path}: not a loadable ONNX model ({type(exc).__name__})") from None
        self.path = path
        self.name = f"onnxruntime-{Path(path).stem}"
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1 or len(inputs[0].shape) != 4:
            raise PresetError(f"{path}: expected one rank-4 input and one output (a one-channel SR model)")
        self.input_name = inputs[0].name
        shape = inputs[0].shape
        if shape[1] == 1:
            self.nhwc = False
        elif shape[3] == 1:
            self.nhwc = True
        else:
            raise PresetError(f"{path}: input shape {shape} has no single channel (NCHW or NHWC, one channel)")
        kinds = {"tensor(float)": "float", "tensor(uint8)": "uint8"}
        self.io = kinds.get(inputs[0].type, "")
        if not self.io or outputs[0].type != inputs[0].type:
            raise PresetError(f"{path}: input/output types {inputs[0].type}/{outputs[0].type}; float32 or uint8 both")
        self.scale = self._probe_scale()

    def _run(self, lr: np.ndarray) -> np.ndarray:
        feed = lr[None, :, :, None] if self.nhwc else lr[None, None]
        out = self.session.run(None, {self.input_name: feed})[0]
        return np.asarray(out[0, :, :, 0] if self.nhwc else out[0, 0])

    def _probe_scale(self) -> int:
        probe = np.zeros((PROBE, PROBE), np.float32 if self.io == "float" else np.uint8)
        try:
            h, w = self._run(probe).shape
        except Exception as exc:  # noqa: BLE001 - a model that cannot run an 8x8 frame says so here
            raise PresetError(f"{self.path}: does not run on an 8x8 frame ({type(exc).__name__})") from None
        scale = h // PROBE
        if h % PROBE or w != h or scale not in SUPPORTED_SCALES:
            raise PresetError(f"{self.path}: an 8x8 frame comes out {w}x{h}; only x2, x3 and x4 are supported")
        return scale

    def info(self) -> PresetInfo:
        return PresetInfo(Path(self.path).stem, Path(self.path), self.scale, "external", {})

    def upscale_luma(self, y: np.ndarray, peak: int) -> np.ndarray:
        if self.io == "uint8":
            if peak != 255:
                raise PresetError(f"{self.path}: a uint8 model takes 8-bit video; this one is {peak.bit_length()}-bit")
            return self._run(np.ascontiguousarray(y))
        lr = to_unit_float(y, peak)[0, 0].numpy()
        return from_unit_float(_as_tensor(self._run(lr)), peak, y.dtype)


def _as_tensor(array: np.ndarray) -> Any:
    import torch

    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
