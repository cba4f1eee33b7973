"""Still-image evaluation with the conventions of SR papers, so numbers compare with published ones.

Convention (the SRCNN/ESPCN MATLAB code): HR is the Y of BT.601 studio-range YCbCr rounded to
8-bit code values and mod-cropped to the scale; LR = MATLAB antialiased bicubic of HR/255 (not
quantised), or Gaussian blur + decimation when asked; the model's output and the bicubic
baseline (MATLAB bicubic upscale of that LR) are clipped to [0, 255] and rounded like a saved
PNG; PSNR (peak 255) and SSIM are measured on Y after shaving `scale` pixels from each border.
The mean is the mean of per-image values.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from espcn_video.errors import DataError, PresetError
from espcn_video.model.engines import LumaEngine
from espcn_video.model.net import SRCNN, frames_read
from espcn_video.model.presets import AUTO_PRESET, auto_pair, load_preset, presets_dir, resolve_preset
from espcn_video.quality.degrade import CODECS, Degradation, degrade, imresize, mod_crop, parse_degradation
from espcn_video.quality.image_metrics import SSIM_WINDOW, compute_psnr, compute_ssim
from espcn_video.quality.images import UnusableImage, list_images, matlab_round, read_y_plane
from espcn_video.quality.input_look import InputLook, aliasing_index, choose_by_look


def upscale_y(model: nn.Module, lr_y01: np.ndarray, scale: int, device: str | torch.device = "cpu") -> np.ndarray:
    """Model output for one LR Y plane in [0, 1]; float64, not clipped.

    SRCNN works on the MATLAB-bicubic upscale (as in its paper); ESPCN on the LR itself. A
    multi-frame preset reads an image as a still scene: the image is its own neighbours.
    """
    source = imresize(lr_y01, scale) if isinstance(model, SRCNN) else lr_y01
    tensor = torch.from_numpy(np.ascontiguousarray(source, dtype=np.float32))[None, None].to(device)
    tensor = tensor.expand(1, frames_read(model), *tensor.shape[2:]).contiguous()
    with torch.inference_mode():
        out = model.in_strips(tensor) if isinstance(model, SRCNN) else model(tensor)
    return out[0, 0].to("cpu", torch.float64).numpy()


def to_code_values(y01: np.ndarray) -> np.ndarray:
    """[0, 1] float -> 8-bit code values as float64: what writing and re-reading a PNG gives."""
    return matlab_round(np.clip(y01 * 255.0, 0.0, 255.0))


def score(ref: np.ndarray, dist: np.ndarray, scale: int) -> dict[str, float]:
    return {
        "psnr_db": compute_psnr(ref, dist, peak=255.0, crop_border=scale),
        "ssim": compute_ssim(ref, dist, peak=255.0, crop_border=scale),
    }


def arch_of(model: nn.Module) -> str:
    return "srcnn" if isinstance(model, SRCNN) else "espcn"


def _resolve_model(
    model_or_preset: nn.Module | str | os.PathLike[str], scale: int | None
) -> tuple[nn.Module, int, str | None]:
    if isinstance(model_or_preset, nn.Module):
        model_scale = getattr(model_or_preset, "scale", None)
        if scale is None:
            scale = model_scale
        if scale is None:
            raise PresetError("an SRCNN model needs an explicit scale")
        if model_scale is not None and model_scale != scale:
            raise PresetError(f"the model is x{model_scale}, asked to evaluate x{scale}")
        return model_or_preset.eval(), scale, None
    model, info = resolve_preset(model_or_preset, scale=scale, arch=None)
    return model, info.scale, info.name


def _baseline_srcnn(main_arch: str, scale: int) -> nn.Module | None:
    """The shipped srcnn-x{scale} preset for the comparison column, when there is one."""
    if main_arch == "srcnn" or not (presets_dir() / f"srcnn-x{scale}.pt").is_file():
        return None
    model, _ = load_preset(f"srcnn-x{scale}")
    return model


def image_look(lr01: np.ndarray, degradation: Degradation, qps: list[int], clip_types: Sequence[str] = ()) -> InputLook:
    """What upscale's look would find in this LR image as a user's file: the encoder's stream
    when the chain ends in one (H.264 quantizers read from it, those of P and B frames apart for
    an `:inter` clip; x265's are not), else a lossless one."""
    codecs = [name for name, _ in degradation.stages if name in CODECS]
    codec = {"x264": "h264", "x265": "hevc"}[codecs[-1]] if codecs else "png"
    lr8 = matlab_round(np.clip(lr01 * 255.0, 0.0, 255.0))
    alias = aliasing_index(lr8)
    inter = tuple(q for q, t in zip(qps, clip_types, strict=False) if t in ("P", "B"))
    return InputLook(codec, tuple(qps), () if alias is None else (alias,), lossless=not codecs, inter_qps=inter)


def evaluate_image(
    hr_y: np.ndarray,
    models: dict[str, nn.Module],
    scale: int,
    degradation_spec: str = "bicubic",
    engine: LumaEngine | None = None,
    auto: dict[bool, tuple[str, nn.Module]] | None = None,
) -> dict[str, Any]:
    """Scores of each model and of bicubic for one HR Y plane in [16, 235] code values.

    With `engine`, the LR is rounded to 8-bit code values first (as decoded video is) for every
    method, and the main model runs on that engine (its precision: fp32, bf16, int8). With `auto`
    ({clean?: (name, model)}), the main model is the one upscale's look chooses for this LR."""
    degradation = parse_degradation(degradation_spec)
    hr = mod_crop(hr_y, scale)
    qps: list[int] = []
    clip_types: list[str] = []
    lr01 = degrade(hr / 255.0, scale, degradation, qps, clip_types=clip_types)
    chosen = None
    if auto is not None:
        choice = choose_by_look(image_look(lr01, degradation, qps, clip_types), scale)
        chosen = {"preset": auto[choice.clean][0], "reason": choice.reason}
        models = {**models, next(iter(models)): auto[choice.clean][1]}
    if engine is not None:
        lr8 = matlab_round(np.clip(lr01 * 255.0, 0.0, 255.0)).astype(np.uint8)
        lr01 = lr8 / 255.0
    result = {}
    for key, model in models.items():
        if engine is not None and key == next(iter(models)):  # the main model; SRCNN stays as it is
            frames = frames_read(engine)  # an image is a still scene: its own neighbours
            out = engine.upscale_luma(np.stack([lr8] * frames) if frames > 1 else lr8, 255).astype(np.float64)
        else:
            out = to_code_values(upscale_y(model, lr01, scale))
        result[key] = score(hr, out, scale)
    result["bicubic"] = score(hr, to_code_values(imresize(lr01, scale)), scale)
    if chosen is not None:
        return {**result, "auto_choice": chosen}
    return result


def _choices(images: list[dict[str, Any]]) -> dict[str, int]:
    """How many images --preset auto gave to each preset."""
    counts: dict[str, int] = {}
    for image in images:
        counts[image["auto_choice"]["preset"]] = counts.get(image["auto_choice"]["preset"], 0) + 1
    return counts


def _mean(images: list[dict[str, Any]], key: str) -> dict[str, float]:
    return {metric: float(np.mean([img[key][metric] for img in images])) for metric in ("psnr_db", "ssim")}


X265_MIN_SIDE = 16  # libx265 refuses a smaller picture ("Image size is too small")


def min_hr_side(scale: int) -> int:
    """The smallest HR side measured at `scale`: after the mod-crop to the scale and the shave of
    `scale` pixels on each side, an SSIM_WINDOW-pixel window must still fit (PSNR needs less)."""
    need = SSIM_WINDOW + 2 * scale
    return -(-need // scale) * scale  # the mod-crop keeps only multiples of the scale


def size_problem(shape: tuple[int, ...], scale: int, degradation: Degradation) -> str | None:
    """Why an HR Y plane of `shape` cannot be measured at `scale` with this degradation; None if it can."""
    h, w = shape[:2]
    least = min_hr_side(scale)
    if min(h, w) < least:
        return (
            f"{w}x{h} is smaller than {least}x{least}: at x{scale} an {SSIM_WINDOW}x{SSIM_WINDOW} SSIM window "
            f"must fit in the mod-cropped image less {scale} pixels on each side"
        )
    if any(name == "x265" for name, _ in degradation.stages) and min(h, w) // scale < X265_MIN_SIDE:
        lr_h, lr_w = h // scale, w // scale
        return (
            f"{w}x{h} is too small for x265: its x{scale} LR, {lr_w}x{lr_h}, is under "
            f"{X265_MIN_SIDE}x{X265_MIN_SIDE}, the smallest picture x265 codes"
        )
    return None


def check_folder(folder: str | os.PathLike[str]) -> Path:
    """An evaluation folder that exists and is a folder (an image file given instead is said so)."""
    path = Path(folder)
    if path.is_file():
        raise DataError(f"evaluation folder {path}: is a file; give a folder of images")
    if not path.is_dir():
        raise DataError(f"evaluation folder {path} does not exist")
    return path


def evaluate_folder(
    folder: str | os.PathLike[str],
    model_or_preset: nn.Module | str | os.PathLike[str],
    scale: int | None = None,
    degradation: str = "bicubic",
    engine: LumaEngine | None = None,
) -> dict[str, Any]:
    """Per-image and mean PSNR/SSIM of the model, bicubic (and SRCNN when shipped) on a folder;
    with `engine`, the model runs on it from 8-bit LR (evaluate_image)."""
    try:
        parsed = parse_degradation(degradation)
    except ValueError as exc:
        raise DataError(str(exc)) from None
    auto = None
    if isinstance(model_or_preset, str) and model_or_preset == AUTO_PRESET:  # per image, as upscale's look
        scale = scale or 3
        names = dict(zip((True, False), auto_pair(scale), strict=True))
        auto = {clean: (name, resolve_preset(name, scale=scale)[0]) for clean, name in names.items()}
        model_or_preset = names[True]
    model, scale, preset_name = _resolve_model(model_or_preset, scale)
    if auto is not None:
        preset_name = AUTO_PRESET
    main_key = arch_of(model)
    models = {main_key: model}
    srcnn = _baseline_srcnn(main_key, scale)
    if srcnn is not None:
        models["srcnn"] = srcnn
    folder_path = check_folder(folder)
    images: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    files = list_images(folder_path)
    for path in files:
        try:
            hr_y, _ = read_y_plane(path)
        except UnusableImage as exc:
            skipped.append({"name": path.name, "reason": exc.reason})
            continue
        problem = size_problem(hr_y.shape, scale, parsed)
        if problem is not None:
            skipped.append({"name": path.name, "reason": problem})
            continue
        images.append({"name": path.name, **evaluate_image(hr_y, models, scale, parsed.spec(), engine, auto)})
    if not images:
        if not files:
            raise DataError(f"no usable images in {folder_path}: it has no image files")
        first = skipped[0]
        others = f" (and {len(skipped) - 1} more)" if len(skipped) > 1 else ""
        raise DataError(
            f"no usable images in {folder_path}: {len(skipped)} skipped, {first['name']}{others}: {first['reason']}"
        )
    return {
        "folder": str(folder_path),
        "model": preset_name,
        "scale": scale,
        "degradation": parsed.spec(),
        "engine": engine.name if engine is not None else "torch-fp32 (float LR, the papers' protocol)",
        "mean": {key: _mean(images, key) for key in (*models, "bicubic")},
        **({"auto": _choices(images)} if auto is not None else {}),
        "images": images,
        "skipped": skipped,
    }
