"""ESPCN as an inference graph for OpenVINO and ONNX Runtime, built in memory from the weights.

Both graphs take the integer Y plane (uint8 or uint16, shape (1, 1, H, W)) and return the
integer high-res plane: the conversions to and from [0, 1] (divide, clamp, scale, round half to
even like the torch reference) run inside the engine's threads instead of as separate numpy
passes over a 1080p frame. OpenVINO's float conv1 reads 8-bit code values as they are, with
1/255 in its weights (bf16 holds the integers exactly, not x / 255).

The graphs are written out op by op rather than traced from torch: ESPCN is three convolutions,
two tanh and a depth-to-space (ONNX "CRD", OpenVINO "depth_first": torch's PixelShuffle), and
writing them out avoids depending on torch's exporter (which wants onnxscript) at run time.

int8 (OpenVINO only): OpenVINO turns a FakeQuantize in front of a convolution with int8
weights into a VNNI convolution. Its signed-activation kernels measured 3-4x the error of the
same quantization done in fp32, its unsigned ones matched it exactly, so each tanh output is
divided per channel by its range r_c (r_c moves into the weights), quantized to uint8 with zero
point 128 (zero on the grid, so zero padding stays exact) and step 2/255. conv1's input is
quantized only for 8-bit video, where 256 levels over [0, 1] are the code values themselves.
r_c comes from calibration on training images (calibrate_ranges) or, lacking that, from the
weights alone (activation_bounds: never clips, but coarser).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from espcn_video.model.net import model_scale

ONNX_OPSET = 17


@dataclass(frozen=True)
class ConvLayer:
    weight: np.ndarray  # (out, in, k, k) float32
    bias: np.ndarray  # (out,) float32
    padding: int
    tanh: bool  # followed by tanh


def _conv_layer(conv: nn.Conv2d, tanh: bool) -> ConvLayer:
    pad = conv.padding[0] if isinstance(conv.padding, tuple) else conv.padding
    assert isinstance(pad, int)
    bias = conv.bias.detach().cpu().float().numpy().copy() if conv.bias is not None else None
    return ConvLayer(
        conv.weight.detach().cpu().float().numpy().copy(),
        bias if bias is not None else np.zeros(conv.out_channels, np.float32),
        pad,
        tanh=tanh,
    )


def espcn_layers(model: nn.Module) -> list[ConvLayer]:
    """The three convolutions of an ESPCN as numpy arrays; refuses anything else."""
    convs = [getattr(model, f"conv{i}", None) for i in (1, 2, 3)]
    if not all(isinstance(c, nn.Conv2d) for c in convs) or not hasattr(model, "scale"):
        raise TypeError(f"{type(model).__name__} is not an ESPCN (conv1..conv3 and a scale)")
    return [_conv_layer(conv, tanh=i < 2) for i, conv in enumerate(convs) if isinstance(conv, nn.Conv2d)]


def espcn_blocks(model: nn.Module) -> list[tuple[ConvLayer, ConvLayer]]:
    """A deeper ESPCN's residual blocks, between conv2's tanh and conv3: (conv_a with tanh, conv_b)
    each, computing x + conv_b(tanh(conv_a(x))); none for the paper's 5-3-3."""
    blocks = getattr(model, "blocks", None) or []
    return [(_conv_layer(b.conv_a, tanh=True), _conv_layer(b.conv_b, tanh=False)) for b in blocks]


def indexed_layers(model: nn.Module) -> list[ConvLayer]:
    """Every convolution in the order the int8 code indexes them: conv1, conv2, conv3 (0, 1, 2),
    then each residual block's conv_a and conv_b (3 + 2j, 4 + 2j). Conv i's input range is
    ranges[i - 1]: conv2's is conv1's tanh, conv3's the body's output (conv2's tanh for 5-3-3,
    the residual stream after the last block otherwise), conv_a's the stream entering its block,
    conv_b's conv_a's tanh."""
    return [*espcn_layers(model), *(layer for pair in espcn_blocks(model) for layer in pair)]


def block_layer_indices(model: nn.Module) -> tuple[int, ...]:
    """The int8 indices of a deeper ESPCN's block convolutions (none for 5-3-3)."""
    return tuple(range(3, 3 + 2 * len(getattr(model, "blocks", None) or [])))


def weight_scales(weight: np.ndarray) -> np.ndarray:
    """The default int8 step per output channel: max|w| / 127 (1 for an all-zero channel)."""
    absmax = np.abs(weight).reshape(weight.shape[0], -1).max(axis=1)
    return np.where(absmax > 0, absmax / 127.0, 1.0).astype(np.float32)


def safe_ranges(ranges: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Activation ranges as the int8 graph divides by them: a dead channel (range ~0) gets 1."""
    return [np.where(r > 1e-6, r, 1.0).astype(np.float32) for r in ranges]


def quantize_weight_int8(weight: np.ndarray, step: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-output-channel int8 with `step` (default weight_scales): (int8 weights, step)."""
    weight = weight.astype(np.float32)
    scale = weight_scales(weight) if step is None else step.astype(np.float32)
    q = np.clip(np.rint(weight / scale[:, None, None, None]), -127, 127).astype(np.int8)
    return q, scale


def _tanh_bounds(layer: ConvLayer, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (min, max) of tanh(layer(x)) for inputs with per-channel bounds [lo, hi]."""
    pos, neg = np.maximum(layer.weight, 0), np.minimum(layer.weight, 0)
    top = layer.bias + (pos * hi[None, :, None, None]).sum((1, 2, 3)) + (neg * lo[None, :, None, None]).sum((1, 2, 3))
    bottom = (
        layer.bias + (pos * lo[None, :, None, None]).sum((1, 2, 3)) + (neg * hi[None, :, None, None]).sum((1, 2, 3))
    )
    return np.tanh(bottom), np.tanh(top)


def activation_bounds(model: nn.Module) -> list[np.ndarray]:
    """Per-channel max |input| of every int8-able convolution after conv1 (indexed_layers' order of
    ranges) for any input in [0, 1], from the weights alone. For 5-3-3: conv1's and conv2's tanh."""
    layers = espcn_layers(model)
    lo, hi = _tanh_bounds(layers[0], np.zeros(1), np.ones(1))
    first = np.maximum(-lo, hi).astype(np.float32)
    lo, hi = _tanh_bounds(layers[1], lo, hi)
    stream = np.maximum(-lo, hi)
    inner = []
    for a, b in espcn_blocks(model):
        inner.append(stream.astype(np.float32))
        t = np.maximum(*(np.abs(v) for v in _tanh_bounds(a, -stream, stream)))
        inner.append(t.astype(np.float32))
        stream = stream + np.abs(b.bias) + (np.abs(b.weight) * t[None, :, None, None]).sum((1, 2, 3))
    return [first, stream.astype(np.float32), *inner]


def calibrate_ranges(model: nn.Module, planes: Iterable[np.ndarray]) -> list[np.ndarray]:
    """Per-channel max |input| of every int8-able convolution after conv1 (activation_bounds'
    order) over low-res Y planes in [0, 1] (training images)."""
    import torch
    import torch.nn.functional as F

    def conv(x: torch.Tensor, layer: ConvLayer) -> torch.Tensor:
        y = F.conv2d(x, torch.from_numpy(layer.weight), torch.from_numpy(layer.bias), padding=layer.padding)
        return torch.tanh(y) if layer.tanh else y

    layers, blocks = espcn_layers(model), espcn_blocks(model)
    ranges: list[np.ndarray] = []
    with torch.inference_mode():
        for plane in planes:
            x = torch.from_numpy(np.ascontiguousarray(plane, dtype=np.float32))[None, None]
            seen = [conv(x, layers[0])]
            x = conv(seen[0], layers[1])
            inner = []
            for a, b in blocks:
                t = conv(x, a)
                inner += [x, t]
                x = x + conv(t, b)
            seen += [x, *inner]
            found = [v.abs().amax(dim=(0, 2, 3)).numpy() for v in seen]
            ranges = found if not ranges else [np.maximum(r, f) for r, f in zip(ranges, found, strict=True)]
    if not ranges:
        ranges = [np.zeros(layer.weight.shape[1], np.float32) for layer in indexed_layers(model)[1:]]
    return [r.astype(np.float32) for r in ranges]


def ranges_from_metadata(metadata: dict[str, Any], model: nn.Module) -> list[np.ndarray] | None:
    """The preset's stored "int8_ranges" (one list per int8-able input after conv1: [conv2's],
    [conv3's], then the blocks') if they fit the model."""
    stored = metadata.get("int8_ranges")
    inputs = [layer.weight.shape[1] for layer in indexed_layers(model)[1:]]
    if not isinstance(stored, list) or len(stored) != len(inputs):
        return None
    ranges = [np.asarray(r, dtype=np.float32) for r in stored]
    fits = (r.shape == (n,) and np.all(np.isfinite(r)) for r, n in zip(ranges, inputs, strict=True))
    if not all(fits):
        return None
    return ranges


# -- OpenVINO --------------------------------------------------------------------------------


def _opset() -> Any:
    """opset13 builders: top-level in recent OpenVINO, under openvino.runtime in older releases."""
    try:
        import openvino.opset13 as ops
    except ImportError:
        import openvino.runtime.opset13 as ops
    return ops


INT8_STEP = 2.0 / 255.0  # uint8 with zero point 128 over [-1, 1]


def _int8_weight(weight: np.ndarray, in_scale: np.ndarray | None, step: np.ndarray | None = None) -> Any:
    """int8 weights per output channel, dequantized in the graph (the pattern OpenVINO fuses);
    `step`: the int8 step per output channel an int8 twin learned, else max|w| / 127."""
    import openvino as ov

    ops = _opset()
    if in_scale is not None:
        weight = weight * in_scale[None, :, None, None]
    q, scale = quantize_weight_int8(weight, step)
    return ops.multiply(ops.convert(ops.constant(q), ov.Type.f32), ops.constant(scale.reshape(-1, 1, 1, 1)))


def _quantize_input(x: Any, index: int, ranges: Sequence[np.ndarray]) -> tuple[Any, np.ndarray | None]:
    """FakeQuantize the input of conv `index`; returns it and the per-channel scale for the weights."""
    ops = _opset()
    if index == 0:  # 8-bit code values / 255: exactly the 256 uint8 levels
        return ops.fake_quantize(x, np.float32(0), np.float32(1), np.float32(0), np.float32(1), 256), None
    r = safe_ranges(ranges[index - 1 : index])[0]
    x = ops.multiply(x, ops.constant((1.0 / r).reshape(1, -1, 1, 1)))
    lo, hi = np.float32(-128 * INT8_STEP), np.float32(127 * INT8_STEP)
    return ops.fake_quantize(x, lo, hi, lo, hi, 256), r


def build_openvino_model(
    model: nn.Module,
    peak: int,
    shape: tuple[int, int],
    int8_layers: Collection[int] = (),
    ranges: Sequence[np.ndarray] | None = None,
    weight_steps: Sequence[np.ndarray] | None = None,
    float_channels: Sequence[int] = (),
) -> Any:
    """ov.Model: integer (1, 1, H, W) plane in (a multi-frame preset's (1, F, H, W) stack), integer
    (1, 1, rH, rW) plane out.

    `int8_layers` names the convolutions (0, 1, 2, and a deeper ESPCN's blocks from 3 on:
    indexed_layers) to run in int8 (conv 0 only when peak is 255); `ranges` are the per-channel
    activation ranges (default: activation_bounds).
    `float_channels`: conv2's inputs that stay float beside the int8 rest (with conv2 int8): conv1
    runs as two convolutions, one for each group, and conv2 as the sum of an int8 convolution over
    the first group and a float one over the second (model/quant.py emulates exactly that).
    """
    import openvino as ov

    ops = _opset()

    int_type = ov.Type.u8 if peak <= 255 else ov.Type.u16
    ranges = list(ranges) if ranges is not None else activation_bounds(model)
    frames = int(indexed_layers(model)[0].weight.shape[1])  # a multi-frame preset reads (1, F, H, W)
    lr = ops.parameter([1, frames, shape[0], shape[1]], int_type, name="lr")
    x = ops.convert(lr, ov.Type.f32)
    int8_first = 0 in int8_layers and peak == 255
    # A float conv1 reads the code values themselves, 1/peak folded into its weights: integers up
    # to 256 are exact in bf16, x / 255 is not (rounded to 8 significant bits it cost 0.015-0.02
    # dB at x2, the largest part of what bf16 cost).
    codes_in = peak <= 255 and not int8_first
    if not codes_in:
        x = ops.multiply(x, np.float32(1.0 / peak))
    layers = indexed_layers(model)

    def conv(v: Any, i: int) -> Any:
        """Convolution i (indexed_layers) plus its bias and tanh, in int8 where `int8_layers` says."""
        layer = layers[i]
        if i in int8_layers and not (i == 0 and peak != 255):
            v, in_scale = _quantize_input(v, i, ranges)
            weight = _int8_weight(layer.weight, in_scale, weight_steps[i] if weight_steps is not None else None)
        elif i == 0 and codes_in:
            weight = ops.constant((layer.weight / np.float32(peak)).astype(np.float32))
        else:
            weight = ops.constant(layer.weight)
        p = layer.padding
        v = ops.add(
            ops.convolution(v, weight, [1, 1], [p, p], [p, p], [1, 1]), ops.constant(layer.bias.reshape(1, -1, 1, 1))
        )
        return ops.tanh(v) if layer.tanh else v

    if float_channels and 1 in int8_layers:
        x = _split_conv1_conv2(x, layers, peak, int8_layers, ranges, weight_steps, float_channels, codes_in)
    else:
        x = conv(conv(x, 0), 1)
    for a in block_layer_indices(model)[::2]:  # a deeper ESPCN's residual blocks: x + conv_b(tanh(conv_a(x)))
        x = ops.add(x, conv(conv(x, a), a + 1))
    x = conv(x, 2)
    # Round and narrow before the shuffle: depth-to-space then moves 1-2 bytes a pixel, not 4.
    x = ops.multiply(ops.clamp(x, 0.0, 1.0), np.float32(peak))
    x = ops.convert(ops.round(x, "half_to_even"), int_type)
    hr = ops.depth_to_space(x, "depth_first", model_scale(model))
    return ov.Model([hr], [lr], "espcn")


def _split_conv1_conv2(
    x: Any,
    layers: Sequence[ConvLayer],
    peak: int,
    int8_layers: Collection[int],
    ranges: Sequence[np.ndarray],
    weight_steps: Sequence[np.ndarray] | None,
    float_channels: Sequence[int],
    codes_in: bool,
) -> Any:
    """conv1 and conv2 with conv2's `float_channels` inputs kept in float: tanh(conv2) out."""
    ops = _opset()
    conv1, conv2 = layers[0], layers[1]
    floats = np.zeros(conv1.weight.shape[0], bool)
    floats[list(float_channels)] = True
    int8_first = 0 in int8_layers and peak == 255
    if int8_first:
        x, _ = _quantize_input(x, 0, ranges)

    def first(rows: np.ndarray) -> Any:
        if int8_first:
            step = weight_steps[0][rows] if weight_steps is not None else None
            weight = _int8_weight(conv1.weight[rows], None, step)
        else:
            scale = np.float32(peak) if codes_in else np.float32(1)
            weight = ops.constant((conv1.weight[rows] / scale).astype(np.float32))
        p = conv1.padding
        y = ops.convolution(x, weight, [1, 1], [p, p], [p, p], [1, 1])
        return ops.tanh(ops.add(y, ops.constant(conv1.bias[rows].reshape(1, -1, 1, 1))))

    quantized, kept = first(~floats), first(floats)
    r = safe_ranges(ranges[:1])[0][~floats]
    xq, in_scale = _quantize_input(quantized, 1, [r])
    step = weight_steps[1] if weight_steps is not None else None
    p = conv2.padding
    yq = ops.convolution(xq, _int8_weight(conv2.weight[:, ~floats], in_scale, step), [1, 1], [p, p], [p, p], [1, 1])
    yf = ops.convolution(kept, ops.constant(conv2.weight[:, floats]), [1, 1], [p, p], [p, p], [1, 1])
    y = ops.add(ops.add(yq, yf), ops.constant(conv2.bias.reshape(1, -1, 1, 1)))
    return ops.tanh(y)


# -- ONNX (ONNX Runtime) ---------------------------------------------------------------------


def build_onnx_model(model: nn.Module, peak: int, float_io: bool = False, layout: str = "nchw") -> bytes:
    """Serialized ONNX, any h and w: integer (1, 1, h, w) in, integer (1, 1, rh, rw) out; or, with
    `float_io`, float32 in [0, 1] in and out (what ffmpeg's dnn_processing and most tools feed).
    `layout="nhwc"`: (1, h, w, 1) in and (1, rh, rw, 1) out (OpenCV's dnn_superres feeds NHWC);
    for one channel the transposes only relabel axes."""
    if layout not in ("nchw", "nhwc"):
        raise ValueError(f"layout {layout!r}: nchw or nhwc")
    from onnx import TensorProto, checker, helper, numpy_helper

    int_type = TensorProto.UINT8 if peak <= 255 else TensorProto.UINT16
    io_type = TensorProto.FLOAT if float_io else int_type
    consts = {
        "inv_peak": np.float32(1.0 / peak),
        "peak": np.float32(peak),
        "zero": np.float32(0.0),
        "one": np.float32(1.0),
    }
    inits = [numpy_helper.from_array(np.array(v), k) for k, v in consts.items()]
    nodes = []
    first = "lr"
    if layout == "nhwc":
        nodes.append(helper.make_node("Transpose", ["lr"], ["lr_nchw"], perm=[0, 3, 1, 2]))
        first = "lr_nchw"
    if not float_io:
        nodes += [
            helper.make_node("Cast", [first], ["lr_f"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["lr_f", "inv_peak"], ["x0"]),
        ]
    prev = first if float_io else "x0"
    last = "hr_nchw" if layout == "nhwc" else "hr"

    def conv(name: str, src: str, layer: ConvLayer) -> str:
        inits.extend(
            (numpy_helper.from_array(layer.weight, f"w{name}"), numpy_helper.from_array(layer.bias, f"b{name}"))
        )
        k = list(layer.weight.shape[2:])  # optional in ONNX, required by OpenCV's importer
        pads = [layer.padding] * 4
        nodes.append(helper.make_node("Conv", [src, f"w{name}", f"b{name}"], [f"c{name}"], pads=pads, kernel_shape=k))
        if not layer.tanh:
            return f"c{name}"
        nodes.append(helper.make_node("Tanh", [f"c{name}"], [f"t{name}"]))
        return f"t{name}"

    for i, layer in enumerate(espcn_layers(model), 1):
        prev = conv(str(i), prev, layer)
        if i == 2:
            for j, (a, b) in enumerate(espcn_blocks(model)):
                inner = conv(f"{j}b", conv(f"{j}a", prev, a), b)
                nodes.append(helper.make_node("Add", [prev, inner], [f"r{j}"]))
                prev = f"r{j}"
    nodes += [
        helper.make_node("DepthToSpace", [prev], ["ps"], blocksize=model_scale(model), mode="CRD"),
        helper.make_node("Clip", ["ps", "zero", "one"], [last if float_io else "clipped"]),
    ]
    if not float_io:
        nodes += [
            helper.make_node("Mul", ["clipped", "peak"], ["scaled"]),
            helper.make_node("Round", ["scaled"], ["rounded"]),  # ONNX Round is half to even
            helper.make_node("Cast", ["rounded"], [last], to=int_type),
        ]
    if layout == "nhwc":
        nodes.append(helper.make_node("Transpose", [last], ["hr"], perm=[0, 2, 3, 1]))
    used = {name for node in nodes for name in node.input}
    inits = [init for init in inits if init.name in used]  # no unused constants: runtimes warn on them
    frames = int(espcn_layers(model)[0].weight.shape[1])  # a multi-frame preset reads (1, F, h, w)
    if frames > 1 and layout == "nhwc":
        raise ValueError("a multi-frame preset has no NHWC graph")
    dims_in: list[str | int] = [1, frames, "h", "w"] if layout == "nchw" else [1, "h", "w", 1]
    dims_out: list[str | int] = [1, 1, "rh", "rw"] if layout == "nchw" else [1, "rh", "rw", 1]
    graph = helper.make_graph(
        nodes,
        "espcn",
        [helper.make_tensor_value_info("lr", io_type, dims_in)],
        [helper.make_tensor_value_info("hr", io_type, dims_out)],
        inits,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)])
    proto.ir_version = 8  # readable by every onnxruntime >= 1.10
    checker.check_model(proto)
    return proto.SerializeToString()


class _FloatSR(nn.Module):
    """What the float ONNX graph computes, as a torch module: Y in [0, 1] in, clipped Y out."""

    def __init__(self, model: nn.Module, nhwc: bool) -> None:
        super().__init__()
        self.model = model.eval()
        self.nhwc = nhwc

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        x = lr.permute(0, 3, 1, 2) if self.nhwc else lr
        hr = self.model(x).clamp(0.0, 1.0)
        return hr.permute(0, 2, 3, 1) if self.nhwc else hr


def build_torchscript(model: nn.Module, layout: str = "nchw") -> bytes:
    """A TorchScript module (what FFmpeg's torch backend loads): float32 Y in [0, 1] in and out."""
    import io

    scripted = torch.jit.script(_FloatSR(model, layout == "nhwc"))
    buffer = io.BytesIO()
    torch.jit.save(scripted, buffer)
    return buffer.getvalue()


def build_openvino_ir(onnx_blob: bytes, xml_path: Path) -> None:
    """OpenVINO IR (.xml and .bin beside it) converted from the ONNX graph, any H and W."""
    import tempfile

    import openvino as ov

    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        onnx_path.write_bytes(onnx_blob)
        ov.save_model(ov.convert_model(str(onnx_path)), str(xml_path), compress_to_fp16=False)
