"""int8 as the OpenVINO engine runs it, emulated in torch: for quantization-aware fine-tuning.

The OpenVINO int8 graph (model/graphs.py) quantizes, for each int8 convolution i:
- its input: conv1's to the 256 code values of 8-bit video (x in [0, 1], step 1/255); conv2's and
  conv3's (tanh outputs) divided per channel by the calibrated range r_c, then to uint8 with zero
  point 128 and step 2/255 (levels -128..127), r_c moved into the weights;
- its weights (times r_c along the input channels): symmetric int8 per output channel, scale
  max|w| / 127.
`QuantizedESPCN` does exactly that with straight-through rounding, so that fine-tuning sees the
int8 errors; OpenVINO's unsigned int8 kernels compute the same numbers (docs/bench.md).
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from espcn_video.model.graphs import INT8_STEP, block_layer_indices, safe_ranges, weight_scales

WEIGHT_LEVELS = 127
__all__ = ["weight_scales", "safe_ranges"]  # the engine's defaults, re-exported for the twin's users
INT8_ALL = (0, 1, 2)
# What an int8 twin quantizes by default: conv1 and conv2 (90% of the work). conv3 stays bf16:
# its 32 inputs on 256 levels alone cost 0.09 dB at x3 (8-bit activation noise through the
# output layer), which fine-tuning did not win back (all three int8: -0.075 / -0.041 dB on
# Set5 / Set14 after fine-tuning, against -0.038 / -0.018 for these two).
INT8_TWIN_LAYERS = (0, 1)


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """round in the forward pass, identity in the backward pass (straight-through)."""
    return x + (torch.round(x) - x).detach()


def bf16_ste(x: torch.Tensor) -> torch.Tensor:
    """x rounded to bfloat16 (as the engine's bf16 convolutions read it), straight-through."""
    return x + (x.to(torch.bfloat16).to(x.dtype) - x).detach()


def fake_quant_input(x: torch.Tensor, index: int, ranges: Sequence[torch.Tensor]) -> torch.Tensor:
    """conv `index`'s input on the int8 engine's grid, in the units the weights then expect."""
    if index == 0:
        return round_ste(x.clamp(0.0, 1.0) * 255.0) / 255.0
    r = ranges[index - 1].view(1, -1, 1, 1)
    q = round_ste(x / r / INT8_STEP).clamp(-128.0, 127.0)
    return q * INT8_STEP


def fake_quant_weight(weight: torch.Tensor, in_scale: torch.Tensor | None, step: torch.Tensor) -> torch.Tensor:
    """int8 weights with the step `step` per output channel (weights beyond 127 steps clip)."""
    if in_scale is not None:
        weight = weight * in_scale.view(1, -1, 1, 1)
    step = step.view(-1, 1, 1, 1)
    return round_ste(weight / step).clamp(-WEIGHT_LEVELS, WEIGHT_LEVELS) * step


def conv_modules(model: nn.Module) -> list[nn.Conv2d]:
    """An ESPCN's convolutions in int8 index order (graphs.indexed_layers): conv1, conv2, conv3,
    then each residual block's conv_a and conv_b."""
    convs = [getattr(model, f"conv{i}") for i in (1, 2, 3)]
    for block in getattr(model, "blocks", None) or []:
        convs += [block.conv_a, block.conv_b]
    return [cast(nn.Conv2d, c) for c in convs]


def with_blocks(layers: Collection[int], model: nn.Module) -> tuple[int, ...]:
    """`layers` (indices among conv1..conv3) plus a deeper ESPCN's block convolutions when conv2
    is int8: the body runs in int8 as a whole."""
    extra = block_layer_indices(model) if 1 in layers else ()
    return tuple(sorted({*layers, *extra}))


def all_int8(layers: Collection[int], model: nn.Module) -> bool:
    """Whether `layers` name every convolution of `model` (then nothing runs in bf16: the engine
    takes the f32 hint and the emulation no bf16 rounding)."""
    return set(range(len(conv_modules(model)))) <= set(layers)


def load_convs(model: nn.Module, convs: Sequence[nn.Module]) -> None:
    """Copy `convs` (conv_modules order) into `model`'s convolutions."""
    for target, source in zip(conv_modules(model), convs, strict=True):
        target.load_state_dict(source.state_dict())


class QuantizedESPCN(nn.Module):
    """An ESPCN whose `int8_layers` compute as the OpenVINO int8 engine does.

    The activation ranges and the weight steps are learnable (as log values, so that a step of
    the optimizer is relative), starting from the calibrated ranges and from max|w| / 127: what
    quantization-aware fine-tuning learns is stored with the twin and used by the engine as is.
    Layer indices and ranges follow graphs.indexed_layers (a deeper ESPCN's blocks from 3 on).
    """

    def __init__(
        self,
        model: nn.Module,
        ranges: Sequence[np.ndarray],
        int8_layers: Collection[int],
        weight_steps: Sequence[np.ndarray] | None = None,
        bf16_rest: bool = False,
        float_channels: Sequence[int] = (),
    ) -> None:
        super().__init__()
        self.bf16_rest = bf16_rest  # the other convolutions read bf16 inputs and weights
        # conv2's inputs that stay float (bf16 where the CPU has it) beside the int8 rest
        self.float_mask = torch.zeros(cast(nn.Conv2d, model.conv1).out_channels, dtype=torch.bool)
        self.float_mask[list(float_channels)] = True
        self.split_conv2 = 1 in int8_layers and bool(self.float_mask.any())  # conv2 as two convolutions
        self.convs = nn.ModuleList(conv_modules(model))
        self.scale = int(model.scale)  # type: ignore[arg-type]
        self.int8_layers = tuple(sorted(int8_layers))
        safe = safe_ranges(ranges)
        self.log_ranges = nn.ParameterList([nn.Parameter(torch.from_numpy(np.log(r))) for r in safe])
        if weight_steps is None:
            weight_steps = []
            for i, conv in enumerate(self.convs):
                assert isinstance(conv, nn.Conv2d)
                w = conv.weight.detach().numpy()
                if i > 0:
                    w = w * safe[i - 1][None, :, None, None]
                if i == 1:  # the int8 inputs' weights only (all of them without float channels)
                    w = w[:, ~self.float_mask.numpy()]
                weight_steps.append(weight_scales(w))
        self.log_steps = nn.ParameterList([nn.Parameter(torch.from_numpy(np.log(s))) for s in weight_steps])

    @property
    def ranges(self) -> list[torch.Tensor]:
        return [r.exp() for r in self.log_ranges]

    @property
    def steps(self) -> list[torch.Tensor]:
        return [s.exp() for s in self.log_steps]

    def quant_parameters(self) -> list[nn.Parameter]:
        return [*self.log_ranges, *self.log_steps]

    def _conv(self, x: torch.Tensor, i: int, ranges: list[torch.Tensor], steps: list[torch.Tensor]) -> torch.Tensor:
        conv = cast(nn.Conv2d, self.convs[i])
        if i in self.int8_layers:
            x = fake_quant_input(x, i, ranges)
            weight = fake_quant_weight(conv.weight, ranges[i - 1] if i > 0 else None, steps[i])
        elif self.bf16_rest and i == 0:
            # the engine's float conv1 reads the 8-bit code values (exact in bf16) with the
            # weights / 255 rounded to bf16 (model/graphs.py)
            weight = bf16_ste(conv.weight / 255.0) * 255.0
        elif self.bf16_rest:
            x, weight = bf16_ste(x), bf16_ste(conv.weight)
        else:
            weight = conv.weight
        return F.conv2d(x, weight, conv.bias, padding=conv.padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ranges, steps = self.ranges, self.steps
        x = torch.tanh(self._conv(x, 0, ranges, steps))
        if self.split_conv2:
            x = torch.tanh(self._split_conv2(x, cast(nn.Conv2d, self.convs[1]), ranges[0], steps[1]))
        else:
            x = torch.tanh(self._conv(x, 1, ranges, steps))
        if self.bf16_rest and len(self.convs) > 3:
            # OpenVINO (bf16 hint) holds conv2's tanh, the stream entering the blocks, in bf16 and
            # each conv_b's output too (found by trying roundings against the engine: one block
            # then agrees on 99.9 % of pixels, four on 92 %, never by more than one code value)
            x = bf16_ste(x)
        for a in range(3, len(self.convs), 2):  # residual blocks: x + conv_b(tanh(conv_a(x)))
            y = self._conv(torch.tanh(self._conv(x, a, ranges, steps)), a + 1, ranges, steps)
            x = x + (bf16_ste(y) if self.bf16_rest else y)
        return F.pixel_shuffle(self._conv(x, 2, ranges, steps), self.scale)

    def _split_conv2(self, x: torch.Tensor, conv: nn.Conv2d, ranges: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        """conv2 with its float_mask inputs in float (bf16 with bf16_rest) and the rest in int8:
        two convolutions summed, as the engine runs them (model/graphs.py)."""
        keep, q = self.float_mask, ~self.float_mask
        xq = fake_quant_input(x[:, q], 1, [ranges[q]])
        weight_q = fake_quant_weight(conv.weight[:, q], ranges[q], step)
        xf, weight_f = x[:, keep], conv.weight[:, keep]
        if self.bf16_rest:
            xf, weight_f = bf16_ste(xf), bf16_ste(weight_f)
        kept = F.conv2d(xf, weight_f, None, padding=conv.padding)
        if self.bf16_rest:  # OpenVINO keeps the float convolution's output in bf16 before the sum
            kept = bf16_ste(kept)
        return F.conv2d(xq, weight_q, conv.bias, padding=conv.padding) + kept


@dataclass(frozen=True)
class Int8Params:
    """What the int8 engine runs: the weights (a preset's int8 twin, or the preset's own), the
    activation ranges of the inputs of conv2, conv3 and any residual blocks' convolutions
    (graphs.indexed_layers), which convolutions are int8, and the
    learned int8 weight steps (None: max|w| / 127)."""

    model: nn.Module
    ranges: list[np.ndarray]
    layers: tuple[int, ...]
    weight_steps: list[np.ndarray] | None = None
    source: str = "calibrated ranges"
    float_channels: tuple[int, ...] = ()  # conv2's inputs kept in float beside the int8 rest
    # the convolutions that are not int8 (conv3) in fp32 rather than bf16: for a preset whose
    # bf16 arithmetic alone costs more than the int8 bound (espcn-x2-deep, docs/training.md)
    rest_fp32: bool = False


TWIN_SUFFIX = ".int8.pth"  # beside <preset>.pt; not *.pt, so never listed as a preset of its own


def twin_path(preset_path: Path) -> Path:
    return preset_path.with_name(preset_path.stem + TWIN_SUFFIX)


def save_twin(path: Path, params: Int8Params) -> None:
    """The twin as a plain dict of tensors (torch.load weights_only reads it)."""
    state = {k: v.detach().cpu().clone() for k, v in params.model.state_dict().items()}
    state.update({f"int8.range{i}": torch.from_numpy(r.astype(np.float32)) for i, r in enumerate(params.ranges)})
    for i, s in enumerate(params.weight_steps or []):
        state[f"int8.step{i}"] = torch.from_numpy(s.astype(np.float32))
    state["int8.layers"] = torch.tensor(params.layers, dtype=torch.int64)
    if params.float_channels:
        state["int8.float_channels"] = torch.tensor(params.float_channels, dtype=torch.int64)
    if params.rest_fp32:
        state["int8.rest_fp32"] = torch.tensor(1, dtype=torch.int64)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def load_twin(path: Path, model: nn.Module) -> Int8Params | None:
    """The twin beside a preset, if it fits that preset's network; else None."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        layers = tuple(int(v) for v in state.pop("int8.layers").tolist())
        count = len(conv_modules(model))  # a range for every input after conv1's, a step for every conv
        ranges = [state.pop(f"int8.range{i}").numpy() for i in range(count - 1)]
        steps = [state.pop(f"int8.step{i}").numpy() for i in range(count)] if "int8.step0" in state else None
        floats = tuple(int(v) for v in state.pop("int8.float_channels", torch.zeros(0)).tolist())
        rest_fp32 = bool(int(state.pop("int8.rest_fp32", torch.tensor(0)).item()))
        twin = copy.deepcopy(model)
        twin.load_state_dict(state, strict=True)
    except Exception:  # noqa: BLE001 - a damaged or foreign twin file: the preset runs without it
        return None
    return Int8Params(
        twin.eval(),
        ranges,
        layers,
        steps,
        source=f"int8 twin {path.name}",
        float_channels=floats,
        rest_fp32=rest_fp32,
    )


def noise_ranking(model: nn.Module, ranges: Sequence[np.ndarray]) -> np.ndarray:
    """conv2's input channels, the most quantization noise first: channel c's int8 step is
    proportional to its range r_c, and its rounding noise reaches conv2's outputs through its
    weights, so it carries r_c^2 * sum(w2[:, c]^2)."""
    r = safe_ranges(ranges)[0].astype(np.float64)
    w = cast(nn.Conv2d, model.conv2).weight.detach().double().numpy()
    return np.argsort(-(r**2) * (w**2).sum(axis=(0, 2, 3)), kind="stable")
