"""Shipped weights: `presets/<name>.pt` (a plain state_dict) plus `presets/<name>.json` metadata.

Weights load with `torch.load(..., weights_only=True)`, so a preset file can never run code.
The architecture comes from the tensor shapes, never from trust in the JSON: a file whose keys
or shapes do not make an ESPCN or SRCNN of ours is refused with a PresetError.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from espcn_video.errors import PresetError, UsageError
from espcn_video.model.net import ESPCN, SRCNN, frames_read, macs_per_hr_pixel
from espcn_video.model.quant import Int8Params, load_twin, twin_path, with_blocks
from espcn_video.settings import SUPPORTED_SCALES

PRESETS_ENV = "ESPCN_VIDEO_PRESETS"
EXPECTED_KEYS = frozenset(f"conv{i}.{p}" for i in (1, 2, 3) for p in ("weight", "bias"))
# The kernel sizes of conv1..conv3 tell the two architectures apart (same key names).
KERNELS = {"espcn": (5, 3, 3), "srcnn": (9, 5, 5)}
_SCALE_IN_NAME = re.compile(r"-x(\d+)$")


@dataclass(frozen=True)
class PresetInfo:
    name: str
    path: Path
    scale: int
    arch: str
    metadata: dict[str, Any] = field(compare=False, repr=False)
    macs_per_hr_pixel: float | None = None  # the network's cost (net.macs_per_hr_pixel); None: unknown


def presets_dir() -> Path:
    """$ESPCN_VIDEO_PRESETS, else <package>/presets (wheel), else <package>/../presets (checkout)."""
    env = os.environ.get(PRESETS_ENV)
    if env:
        return Path(env)
    package_dir = Path(__file__).resolve().parents[1]
    bundled = package_dir / "presets"
    return bundled if bundled.is_dir() else package_dir.parent / "presets"


VIDEO, PAPER = "video", "paper"  # what a default preset is for (default_preset_name)
AUTO_PRESET = "auto"  # --preset auto: the clean or the real-video preset, chosen by a look at the input


def auto_pair(scale: int) -> tuple[str, str]:
    """The two presets --preset auto chooses between at `scale`: (clean, real-video)."""
    return f"espcn-x{scale}", f"espcn-x{scale}-real"


AUTO_ON_LOSSY_VIDEO = "auto_on_lossy_video"  # the metadata key that lets auto run a multi-frame preset


def motion_preset(scale: int) -> str | None:
    """The motion-compensated real-video preset of `scale` (espcn-xR-real-mc), when shipped and its
    metadata says `"auto_on_lossy_video": true`: what auto then runs on lossy video in place of the
    one-frame real preset (docs/robustness.md). A multi-frame preset shipped without it is run only
    when named."""
    name = f"espcn-x{scale}-real-mc"
    path = presets_dir() / f"{name}.pt"
    if not path.is_file():
        return None
    return name if _read_metadata(path).get(AUTO_ON_LOSSY_VIDEO) is True else None


def auto_candidates(scale: int) -> tuple[str, ...]:
    """Every preset --preset auto may choose at `scale`: the clean, the real and, when shipped,
    the motion-compensated real preset."""
    mc = motion_preset(scale)
    return (*auto_pair(scale), *((mc,) if mc else ()))


def default_preset_name(scale: int, arch: str = "espcn", use: str = PAPER) -> str:
    """The preset used when none is named. `paper` (eval, psnr, quantize): espcn-xR, trained on clean
    MATLAB-bicubic LR like the SR papers. `video` (upscale, compare, batch, bench): espcn-xR-real when
    shipped, trained on randomised real degradations: unknown real input is not clean bicubic LR, and
    on the robustness grid (docs/robustness.md) the real preset is never below bicubic where the clean
    one falls 1-2 dB under it."""
    name = f"{arch}-x{scale}"
    if use == VIDEO and arch == "espcn" and (presets_dir() / f"{name}-real.pt").is_file():
        return f"{name}-real"
    return name


def resolve_preset(
    name_or_path: str | os.PathLike[str] | None,
    *,
    scale: int | None = None,
    arch: str | None = "espcn",
    what: str = "--preset",
    use: str = PAPER,
) -> tuple[nn.Module, PresetInfo]:
    """The one preset check: the preset asked for (default: default_preset_name for `use`, x2 when
    no scale is given), refused with a UsageError unless its architecture and scale are those asked
    for (None: any). `what` names the option in the message."""
    if name_or_path is None:
        name_or_path = default_preset_name(scale or 2, arch or "espcn", use)
    model, info = load_preset(name_or_path)
    want = (arch or info.arch, scale or info.scale)
    if (info.arch, info.scale) != want:
        wanted = f"{want[0]} x{want[1]}" if scale is not None else want[0]  # any scale: only the arch is wrong
        raise UsageError(f"{what} {info.name} is {info.arch} x{info.scale}, not {wanted}")
    return model, info


def check_single_frame(model: nn.Module, info: PresetInfo, what: str) -> None:
    """UsageError for a multi-frame (motion-compensated) preset where only one frame is read:
    training from it, distilling from it, quantizing it."""
    frames = frames_read(model)
    if frames > 1:
        raise UsageError(
            f"{what} {info.name} reads {frames} frames (a motion-compensated video preset); this takes "
            "single-frame presets (tools/temporal_probe.py trains the multi-frame ones)"
        )


def list_presets() -> list[PresetInfo]:
    """Every loadable preset in presets_dir(), by name; unreadable files are left out."""
    folder = presets_dir()
    found: list[PresetInfo] = []
    for path in sorted(folder.glob("*.pt")) if folder.is_dir() else []:
        try:
            _, info = _load_path(path)
        except PresetError:
            continue
        found.append(info)
    return found


def load_preset(name_or_path: str | os.PathLike[str]) -> tuple[nn.Module, PresetInfo]:
    """A preset name (`espcn-x3`) or a .pt path -> (model in eval mode on the CPU, info)."""
    text = os.fspath(name_or_path)
    looks_like_path = text.endswith(".pt") or os.sep in text or "/" in text or Path(text).is_file()
    if looks_like_path:
        path = Path(text)
        if not path.is_file():
            raise PresetError(f"preset file {text} does not exist")
        if path.suffix.lower() == ".onnx":
            raise PresetError(f"{text}: an ONNX model runs in `upscale --preset`; this command takes .pt presets")
        return _load_path(path)
    path = presets_dir() / f"{text}.pt"
    if not path.is_file():
        names = [info.name for info in list_presets()]
        available = ", ".join(names) if names else f"none (no .pt files in {presets_dir()})"
        raise PresetError(f"unknown preset {text!r}; available: {available}")
    return _load_path(path)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """torch.load with weights_only=True; every failure becomes one PresetError line."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, UnpicklingError, EOFError, ...
        # torch's own text (weights_only advice, pickle details) is long and says nothing to a user
        raise PresetError(
            f"{path}: not a readable preset (our .pt weights; a model from another tool goes in as .onnx): "
            f"{type(exc).__name__}"
        ) from None
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise PresetError(f"{path}: not a state_dict (a dict of tensors), got {type(obj).__name__}")
    return obj


def _shape_problem(state: dict[str, torch.Tensor], arch: str) -> str | None:
    """None when the shapes make a consistent network of `arch`, else what is wrong."""
    w1, w2, w3 = (state[f"conv{i}.weight"] for i in (1, 2, 3))
    if any(w.ndim != 4 for w in (w1, w2, w3)):
        return "conv weights are not 4-D"
    if (w1.shape[2], w2.shape[2], w3.shape[2]) != KERNELS[arch]:
        return f"kernel sizes {w1.shape[2]}-{w2.shape[2]}-{w3.shape[2]} are not {arch}'s"
    if w2.shape[1] != w1.shape[0] or w3.shape[1] != w2.shape[0]:
        return "layer widths do not chain"
    for i, w in ((1, w1), (2, w2), (3, w3)):
        if tuple(state[f"conv{i}.bias"].shape) != (w.shape[0],):
            return f"conv{i}.bias does not match conv{i}.weight"
    return None


_BLOCK_KEY = re.compile(r"blocks\.(\d+)\.conv_[ab]\.(weight|bias)$")


def block_keys(blocks: int) -> frozenset[str]:
    """The state_dict keys of `blocks` residual blocks (ESPCN's deeper body; none for 5-3-3)."""
    return frozenset(f"blocks.{i}.conv_{c}.{p}" for i in range(blocks) for c in "ab" for p in ("weight", "bias"))


def _block_count(keys: set[str]) -> int:
    """How many residual blocks the keys name (1 + the highest index; 0 without any)."""
    found = [int(m.group(1)) for m in map(_BLOCK_KEY.match, keys) if m]
    return max(found) + 1 if found else 0


def _block_problem(state: dict[str, torch.Tensor], blocks: int, arch: str) -> str | None:
    """None when every residual block is a pair of 3x3 convolutions at conv2's width."""
    if not blocks:
        return None
    if arch != "espcn":
        return "residual blocks belong to ESPCN, not SRCNN"
    n2 = state["conv2.weight"].shape[0]
    for i in range(blocks):
        for c in "ab":
            w, b = state[f"blocks.{i}.conv_{c}.weight"], state[f"blocks.{i}.conv_{c}.bias"]
            if tuple(w.shape) != (n2, n2, 3, 3) or tuple(b.shape) != (n2,):
                return f"blocks.{i}.conv_{c} is not a 3x3 convolution of conv2's {n2} channels"
    return None


def infer_architecture(state: dict[str, torch.Tensor], where: str) -> tuple[str, int | None, dict[str, int]]:
    """(arch, scale or None for SRCNN, constructor sizes) from the tensor shapes alone."""
    keys = set(state)
    blocks = _block_count(keys)
    expected = EXPECTED_KEYS | block_keys(blocks)
    if keys != expected:
        missing = sorted(expected - keys)
        extra = sorted(keys - expected)
        raise PresetError(
            f"{where}: not an ESPCN state_dict (missing keys {missing or '-'}, unexpected {extra[:4] or '-'})"
        )
    kernel = state["conv1.weight"].shape[-1] if state["conv1.weight"].ndim == 4 else -1
    arch = "srcnn" if kernel == KERNELS["srcnn"][0] else "espcn"
    problem = _shape_problem(state, arch) or _block_problem(state, blocks, arch)
    if problem:
        raise PresetError(f"{where}: not an ESPCN state_dict of ours: {problem}")
    inputs = int(state["conv1.weight"].shape[1])
    channels = _espcn_channels(inputs, int(state["conv3.weight"].shape[0])) if arch == "espcn" else inputs
    sizes = {"channels": channels, "n1": int(state["conv1.weight"].shape[0]), "n2": int(state["conv2.weight"].shape[0])}
    if blocks:
        sizes["blocks"] = blocks
    if inputs > channels:
        sizes["frames"] = inputs // channels
    if arch == "srcnn":
        if state["conv3.weight"].shape[0] != channels:
            raise PresetError(f"{where}: SRCNN output channels differ from its input channels")
        return arch, None, sizes
    # ESPCN's last conv makes C·r² channels for the periodic shuffle.
    r2, rem = divmod(int(state["conv3.weight"].shape[0]), channels)
    scale = math.isqrt(r2)
    if rem or scale * scale != r2 or scale not in SUPPORTED_SCALES:
        raise PresetError(
            f"{where}: conv3 makes {state['conv3.weight'].shape[0]} channels, not C·r² for r in {SUPPORTED_SCALES}"
        )
    return arch, scale, sizes


def _espcn_channels(inputs: int, outputs: int) -> int:
    """An ESPCN's channels C from conv1's inputs (C·frames) and conv3's outputs (C·r²): the C for
    which both divide and r is a supported scale, one frame preferred; else `inputs` (refused later)."""
    for frames in range(1, inputs + 1):
        channels, rem = divmod(inputs, frames)
        if rem == 0 and outputs % channels == 0:
            r = math.isqrt(outputs // channels)
            if r * r * channels == outputs and r in SUPPORTED_SCALES:
                return channels
    return inputs


def build_model(arch: str, scale: int, sizes: dict[str, int]) -> nn.Module:
    if arch == "srcnn":
        return SRCNN(sizes["channels"], sizes["n1"], sizes["n2"])
    return ESPCN(scale, sizes["channels"], sizes["n1"], sizes["n2"], sizes.get("blocks", 0), sizes.get("frames", 1))


def _read_metadata(path: Path) -> dict[str, Any]:
    meta_path = path.with_suffix(".json")
    if not meta_path.is_file():
        return {}
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PresetError(f"{meta_path}: unreadable preset metadata: {exc}") from None
    if not isinstance(meta, dict):
        raise PresetError(f"{meta_path}: preset metadata is not a JSON object")
    return meta


def _resolve_scale(path: Path, arch: str, inferred: int | None, meta: dict[str, Any]) -> int:
    declared = meta.get("scale")
    if declared is not None and not isinstance(declared, int):
        raise PresetError(f"{path.with_suffix('.json')}: scale {declared!r} is not an integer")
    if inferred is not None:
        if declared is not None and declared != inferred:
            raise PresetError(f"{path}: metadata says x{declared} but the weights are x{inferred}")
        return inferred
    if declared is not None:
        return declared
    match = _SCALE_IN_NAME.search(path.stem)
    if match:
        return int(match.group(1))
    raise PresetError(f"{path}: {arch} weights do not carry a scale; put {path.stem}.json beside it")


def _load_path(path: Path) -> tuple[nn.Module, PresetInfo]:
    state = read_state_dict(path)
    arch, inferred, sizes = infer_architecture(state, str(path))
    meta = _read_metadata(path)
    if meta.get("arch", arch) != arch:
        raise PresetError(f"{path}: metadata says {meta.get('arch')} but the weights are {arch}")
    scale = _resolve_scale(path, arch, inferred, meta)
    model = build_model(arch, scale, sizes)
    model.load_state_dict(state, strict=True)
    model.eval()
    info = PresetInfo(
        name=str(meta.get("name") or path.stem),
        path=path,
        scale=scale,
        arch=arch,
        metadata=meta,
        macs_per_hr_pixel=macs_per_hr_pixel(model),
    )
    return model, info


def precision_deltas(info: PresetInfo) -> dict[str, float] | None:
    """The preset's recorded cost of each fast precision against fp32, in dB: the worst of the
    test sets it was measured on ("precision_delta_db": {"int8": {"Set5": -0.01, ...}, ...})."""
    doc = info.metadata.get("precision_delta_db")
    record = info.metadata.get("int8")
    if not isinstance(doc, dict) or not isinstance(record, dict):
        return None
    if record.get("weights_sha256") != file_sha256(info.path):
        return None  # measured on other weights than the ones in the file now
    worst: dict[str, float] = {}
    for precision, per_set in doc.items():
        values = [float(v) for v in per_set.values()] if isinstance(per_set, dict) else []
        if values and all(math.isfinite(v) for v in values):
            worst[str(precision)] = min(values)
    return worst or None


def file_sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def int8_params(model: nn.Module, info: PresetInfo) -> Int8Params | None:
    """What the int8 engine runs for this preset: its int8 twin (`espcn-video quantize`) when there is one,
    else conv2 on the calibrated ranges the metadata may carry, else None (ranges from the weights)."""
    from espcn_video.model.graphs import ranges_from_metadata

    if info.arch != "espcn":
        return None
    record = info.metadata.get("int8")
    # a twin counts only for the weights it was made from (a retrained preset's JSON has no record)
    if isinstance(record, dict) and record.get("weights_sha256") == file_sha256(info.path):
        twin = load_twin(twin_path(info.path), model)
        if twin is not None:
            return twin
    ranges = ranges_from_metadata(info.metadata, model)
    return Int8Params(model, ranges, with_blocks((1,), model)) if ranges is not None else None
