"""Fast engines against the torch fp32 reference: agreement on frames, and the Set5 quality bound.

Tolerances, in 8-bit code values (scaled by peak/255 for 10-bit), on smooth random frames:
fp32 engines differ only by rounding ties (max 1, mean <= 0.01); bf16 max 2, mean <= 0.15;
int8 max 4, mean <= 0.3. The quality bound that matters is the PSNR one below.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from espcn_video.errors import UsageError
from espcn_video.model.backends import Backend, auto_precisions, choose_engine, create_engine, engine_options
from espcn_video.model.engines import StripEngine, TorchEngine, cpu_has_bf16, strip_rows
from espcn_video.model.graphs import activation_bounds, calibrate_ranges, ranges_from_metadata
from espcn_video.model.net import ESPCN
from espcn_video.model.presets import PresetInfo, int8_params, precision_deltas
from espcn_video.model.quant import INT8_ALL, INT8_TWIN_LAYERS, Int8Params, QuantizedESPCN, weight_scales
from espcn_video.training.data import calibration_planes
from tests.conftest import REPO, SHARED_DATA

pytestmark = pytest.mark.timeout(300)

TOLERANCE = {"fp32": (1, 0.01), "bf16": (2, 0.15), "fp16": (2, 0.15), "int8": (4, 0.3)}
PSNR_BOUND_DB = 0.05


def available(device: str = "cpu") -> list[Backend]:
    return [o for o in engine_options(device) if o.available]


def smooth_plane(h: int, w: int, peak: int, seed: int) -> np.ndarray:
    """Integrated noise: smooth like video, every level used."""
    rng = np.random.default_rng(seed)
    x = np.cumsum(np.cumsum(rng.normal(0, 1, (h, w)), 0), 1)
    x = (x - x.min()) / np.ptp(x)
    return np.round(x * peak).astype(np.uint8 if peak == 255 else np.uint16)


FAST = [(o.backend, o.precision) for o in available() if (o.backend, o.precision) != ("torch", "fp32")]


@pytest.mark.parametrize("backend,precision", FAST)
@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("peak", [255, 1023])
def test_fast_engine_agrees_with_fp32(backend: str, precision: str, scale: int, peak: int) -> None:
    torch.manual_seed(100 + scale)
    model = ESPCN(scale).eval()
    y = smooth_plane(37, 53, peak, seed=scale)  # odd sizes on purpose
    ref = TorchEngine(model).upscale_luma(y, peak).astype(np.int64)
    engine = create_engine(model, backend, precision)
    out = engine.upscale_luma(y, peak)
    assert out.dtype == y.dtype and out.shape == (37 * scale, 53 * scale)
    assert engine.scale == scale and engine.name == f"{backend}-{precision}"
    diff = np.abs(out.astype(np.int64) - ref) / (peak / 255)
    max_codes, mean_codes = TOLERANCE[precision]
    assert diff.max() <= max_codes and diff.mean() <= mean_codes, (diff.max(), diff.mean())


@pytest.mark.parametrize("backend,precision", FAST)
def test_engine_handles_a_second_frame_size(backend: str, precision: str) -> None:
    """Compiled graphs are per size: a new size must not reuse the old one's."""
    torch.manual_seed(0)
    engine = create_engine(ESPCN(2).eval(), backend, precision)
    assert engine.upscale_luma(smooth_plane(16, 24, 255, 0), 255).shape == (32, 48)
    assert engine.upscale_luma(smooth_plane(9, 11, 255, 1), 255).shape == (18, 22)


def test_bad_names_are_usage_errors() -> None:
    model = ESPCN(2).eval()
    with pytest.raises(UsageError, match="unknown backend"):
        create_engine(model, backend="tensorrt")
    with pytest.raises(UsageError, match="unknown precision"):
        create_engine(model, precision="fp8")
    with pytest.raises(UsageError, match="has no int8"):
        create_engine(model, backend="onnxruntime", precision="int8")


def test_auto_takes_only_the_precisions_a_preset_records_within_the_bound() -> None:
    backend, precision = choose_engine("cpu", allowed={"fp32", "bf16"})
    assert precision != "int8"
    allowed, note = auto_precisions(None)  # a user's preset: nothing measured
    assert allowed == {"fp32", "fp16", "bf16"} and note is not None and "int8 is left out" in note
    assert "`espcn-video quantize --preset PRESET` makes" in note  # a command that exists
    allowed, note = auto_precisions({"bf16": -0.01, "int8": -0.03})
    assert {"bf16", "int8"} <= allowed and note is None
    allowed, note = auto_precisions({"bf16": -0.01, "int8": -0.07})
    assert "int8" not in allowed and note == "auto: int8 costs 0.070 dB (over 0.05 dB), left out"
    assert choose_engine("cpu", "torch", "auto")[0] == "torch"
    assert choose_engine("cpu", "auto", "fp32") in {("onnxruntime", "fp32"), ("openvino", "fp32"), ("torch", "fp32")}


BLOCKED = """
import sys
for name in ("openvino", "onnxruntime"):
    sys.modules[name] = None  # as if not installed: find_spec answers None, import fails
from espcn_video.model.backends import create_engine
from espcn_video.model.engines import EngineUnavailable
from espcn_video.model.net import ESPCN
engine = create_engine(ESPCN(2).eval())
print(engine.name)
try:
    create_engine(ESPCN(2).eval(), backend="openvino")
except EngineUnavailable as exc:
    print("unavailable:", exc)
"""


def test_missing_optional_packages_fall_back_to_torch() -> None:
    done = subprocess.run([sys.executable, "-c", BLOCKED], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    name, message = done.stdout.strip().splitlines()
    assert name.startswith("torch-")
    assert "openvino is not installed" in message and "espcn-video[fast]" in message


def test_calibrated_ranges_never_exceed_the_bounds_from_the_weights() -> None:
    torch.manual_seed(3)
    model = ESPCN(3).eval()
    planes = [smooth_plane(40, 40, 255, s) / 255.0 for s in range(3)]
    for calibrated, bound in zip(calibrate_ranges(model, planes), activation_bounds(model), strict=True):
        assert calibrated.shape == bound.shape
        assert np.all(calibrated <= bound + 1e-5)


def test_ranges_from_metadata_checks_shapes() -> None:
    model = ESPCN(3).eval()
    good = [[0.5] * 64, [0.5] * 32]
    assert [r.shape for r in ranges_from_metadata({"int8_ranges": good}, model)] == [(64,), (32,)]
    assert ranges_from_metadata({"int8_ranges": [[0.5] * 3, [0.5] * 32]}, model) is None
    assert ranges_from_metadata({}, model) is None


# -- the quality bound on the shipped preset ----------------------------------------------------


def _set5_lr(scale: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(HR Y, 8-bit LR Y) per Set5 image, SR-paper conventions, LR rounded like a video frame."""
    from espcn_video.quality.degrade import imresize, mod_crop
    from espcn_video.quality.images import list_images, matlab_round, read_y_plane

    pairs = []
    for path in list_images(SHARED_DATA / "test" / "Set5"):
        hr, _ = read_y_plane(path)
        hr = mod_crop(hr, scale)
        lr = matlab_round(np.clip(imresize(hr / 255.0, 1.0 / scale) * 255.0, 0, 255)).astype(np.uint8)
        pairs.append((hr, lr))
    return pairs


def _mean_psnr(engine: object, pairs: list[tuple[np.ndarray, np.ndarray]], scale: int) -> float:
    from espcn_video.quality.image_metrics import compute_psnr

    return float(
        np.mean(
            [
                compute_psnr(
                    hr,
                    engine.upscale_luma(lr, 255).astype(np.float64),  # type: ignore[attr-defined]
                    peak=255.0,
                    crop_border=scale,
                )
                for hr, lr in pairs
            ]
        )
    )


def _shipped(scale: int) -> tuple[torch.nn.Module, PresetInfo]:
    from espcn_video.errors import PresetError
    from espcn_video.model.presets import load_preset

    if not (SHARED_DATA / "test" / "Set5").is_dir():
        pytest.skip(f"{SHARED_DATA}/test/Set5 is absent")
    try:
        model, info = load_preset(f"espcn-x{scale}")
    except PresetError as exc:
        pytest.skip(f"the shipped espcn-x{scale} preset is absent: {exc}")
    return model, info


def _psnr_loss_db(model: torch.nn.Module, engine: object, scale: int) -> float:
    pairs = _set5_lr(scale)
    return _mean_psnr(TorchEngine(model), pairs, scale) - _mean_psnr(engine, pairs, scale)


@pytest.mark.slow
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_default_engine_keeps_set5_within_bound(scale: int) -> None:
    """The engine `auto` picks, given the preset's stored int8 ranges as upscale passes them.

    The issue's bound is on x3; every shipped preset is held to it at its own scale, so a preset
    gets int8_ranges (and so the int8 default) only where int8 keeps it.
    """
    model, info = _shipped(scale)
    engine = create_engine(model, int8=int8_params(model, info), deltas=precision_deltas(info))
    assert _psnr_loss_db(model, engine, scale) <= PSNR_BOUND_DB, engine.name


@pytest.mark.slow
@pytest.mark.parametrize("backend,precision", [pair for pair in FAST if pair[1] == "bf16"])
def test_bf16_keeps_set5_x3_within_bound(backend: str, precision: str) -> None:
    model, _ = _shipped(3)
    assert _psnr_loss_db(model, create_engine(model, backend, precision), 3) <= PSNR_BOUND_DB


@pytest.mark.slow
@pytest.mark.skipif(
    not any(o.backend == "openvino" and o.precision == "bf16" for o in available()), reason="no OpenVINO bf16 here"
)
def test_openvino_bf16_reads_the_code_values_exactly() -> None:
    """conv1 reads the 8-bit code values, 1/255 folded into its weights: x / 255 in bf16 is
    rounded to 8 significant bits, which cost the shipped x2 0.029 dB on Set5; now 0.009."""
    model, _ = _shipped(2)
    assert _psnr_loss_db(model, create_engine(model, "openvino", "bf16"), 2) <= 0.015


@pytest.mark.slow
@pytest.mark.skipif(not any(o.precision == "int8" for o in available()), reason="no int8 engine (openvino absent)")
def test_int8_ranges_from_training_images_beat_ranges_from_weights() -> None:
    """Calibrated on T91 (training data, never Set5), int8 loses far less than with weight bounds.

    Measured with the shipped x3 (GPU-trained): 0.07 dB vs 0.13 dB. Both exceed the 0.05 dB bound,
    so this preset carries no int8_ranges and `auto` runs it in bf16 (test above).
    """
    model, _ = _shipped(3)
    t91 = SHARED_DATA / "train" / "T91"
    if not t91.is_dir():
        pytest.skip(f"{t91} is absent")
    planes = calibration_planes([t91], 3)
    calibrated = _psnr_loss_db(
        model,
        create_engine(model, "openvino", "int8", int8=Int8Params(model, calibrate_ranges(model, planes), (1,))),
        3,
    )
    from_weights = _psnr_loss_db(model, create_engine(model, "openvino", "int8"), 3)
    assert calibrated < 0.1 and calibrated < 0.7 * from_weights, (calibrated, from_weights)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="torch sees no CUDA device")
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_cuda_engine_agrees_with_cpu(precision: str) -> None:
    torch.manual_seed(7)
    model = ESPCN(3).eval()
    y = smooth_plane(64, 96, 255, 7)
    ref = TorchEngine(model).upscale_luma(y, 255).astype(np.int64)
    out = create_engine(model, "torch", precision, device="cuda").upscale_luma(y, 255)
    diff = np.abs(out.astype(np.int64) - ref)
    assert diff.max() <= TOLERANCE[precision][0] and diff.mean() <= TOLERANCE[precision][1]


@pytest.mark.skipif(not any(o.precision == "int8" for o in available()), reason="no int8 engine (openvino absent)")
@pytest.mark.parametrize(
    ("layers", "learned", "floats"),
    [
        (INT8_ALL, False, ()),
        (INT8_ALL, True, ()),
        (INT8_TWIN_LAYERS, True, ()),
        (INT8_TWIN_LAYERS, True, tuple(range(3, 64, 4))),  # 16 of conv2's inputs in float
        (INT8_TWIN_LAYERS, False, (0, 5, 6, 40)),
    ],
)
def test_int8_engine_computes_what_the_twin_was_fine_tuned_on(
    layers: tuple[int, ...], learned: bool, floats: tuple[int, ...]
) -> None:
    """OpenVINO int8 gives the torch emulation's frame (model/quant.py), with the default weight
    steps and with learned ones, to one code value (on Set5 the two agree within 0.0001 dB):
    every convolution int8 (the rest in f32), or conv1 and conv2 int8 and conv3 in bf16 where
    the CPU has bf16, also with some of conv2's inputs kept in float beside the int8 rest.
    Quantization-aware fine-tuning relies on it."""
    torch.manual_seed(3)
    model = ESPCN(3).eval()
    y = smooth_plane(40, 56, 255, 5)
    ranges = activation_bounds(model)
    steps = None
    if learned:
        rng = np.random.default_rng(1)
        convs = [model.conv1, model.conv2, model.conv3]
        ins = [None, *ranges]
        steps = [
            weight_scales(c.weight.detach().numpy() * (1 if r is None else r[None, :, None, None]))
            * rng.uniform(0.6, 1.0, c.out_channels).astype(np.float32)  # smaller steps: some weights clip
            for c, r in zip(convs, ins, strict=True)
        ]
    twin = Int8Params(model, ranges, layers, steps, float_channels=floats)
    out = create_engine(model, "openvino", "int8", int8=twin).upscale_luma(y, 255).astype(np.int64)
    bf16_rest = layers != INT8_ALL and cpu_has_bf16()
    emulated = QuantizedESPCN(model, ranges, layers, steps, bf16_rest=bf16_rest, float_channels=floats).eval()
    with torch.inference_mode():
        want = emulated(torch.from_numpy(y.astype(np.float32) / 255)[None, None])[0, 0]
    want_codes = want.clamp(0, 1).mul(255).round().numpy().astype(np.int64)
    diff = np.abs(out - want_codes)
    # float sums in another order flip a value sitting on a rounding edge now and then: never by more than 1
    assert diff.max() <= 1 and (diff == 0).mean() > 0.99, (diff.max(), (diff == 0).mean())


NON_TORCH = [(o.backend, o.precision) for o in available() if o.backend != "torch"]


@pytest.mark.parametrize("pair", [("torch", "fp32"), *NON_TORCH])
def test_strips_give_the_whole_frames_output(pair: tuple[str, str]) -> None:
    """A frame over the memory budget runs in strips with RECEPTIVE_RADIUS rows of context: the
    same output, bit for bit, on every engine (odd sizes, a last strip of another height)."""
    torch.manual_seed(5)
    model = ESPCN(3).eval()
    y = smooth_plane(301, 157, 255, 9)
    whole = create_engine(model, *pair, memory_mb=None)
    strips = create_engine(model, *pair, memory_mb=1)
    assert isinstance(strips, StripEngine) and strips.rows_for(y) is not None and strips.rows_for(y) < 301 // 4
    assert np.array_equal(whole.upscale_luma(y, 255), strips.upscale_luma(y, 255))
    assert np.array_equal(whole.upscale_luma(y, 255), strips.start_luma(y, 255)())


def test_strip_rows_follow_the_budget() -> None:
    assert strip_rows(1920, 2, 512) == 512 * 2**20 // (1920 * (776 + 32))
    assert strip_rows(640, 3, 512) > 360  # 360p -> 1080p runs whole at the default budget
    assert strip_rows(10_000, 4, 1) == 16  # never fewer rows than 4 x the context
    # a wider preset (espcn-x3-hq: 128, 64 channels) gets shorter strips for the same budget
    assert strip_rows(1920, 3, 512, (128, 64)) == 512 * 2**20 // (1920 * (1 + 128 + 64 + 9) * 8)


def test_frames_too_large_for_the_timestamped_pipe_are_refused_with_one_line() -> None:
    from espcn_video.errors import OutputError
    from espcn_video.ffmpeg.mkv import check_frame_fits
    from espcn_video.ffmpeg.y4m import FrameGeometry

    check_frame_fits(FrameGeometry(7680, 4320, "yuv420p"))  # 8K: 47 MB
    with pytest.raises(OutputError, match=r"16000x16000 yuv420p \(366 MB\); ffmpeg reads at most 256 MB"):
        check_frame_fits(FrameGeometry(16000, 16000, "yuv420p"))


FLOAT_PAIRS = [p for p in FAST if p[1] in ("fp32", "bf16")]


@pytest.mark.parametrize("pair", [("torch", "fp32"), *FLOAT_PAIRS])
def test_a_deeper_espcn_runs_on_every_float_engine_and_in_strips(pair: tuple[str, str]) -> None:
    """ESPCN with residual blocks (train --blocks): each float engine computes the torch module's
    output within its tolerance, and strips with the deeper network's larger context give the
    whole frame's output bit for bit (the 5-3-3 radius would not)."""
    torch.manual_seed(6)
    model = ESPCN(3, blocks=2).eval()
    with torch.no_grad():
        for block in model.blocks:  # blocks that change the output (a fresh conv_b is random too)
            block.conv_b.weight.mul_(2.0)
    y = smooth_plane(181, 97, 255, 4)
    reference = TorchEngine(model).upscale_luma(y, 255)
    whole = create_engine(model, *pair, memory_mb=None)
    out = whole.upscale_luma(y, 255)
    worst, mean = TOLERANCE[pair[1]]
    diff = np.abs(out.astype(int) - reference)
    assert diff.max() <= worst and diff.mean() <= mean
    strips = create_engine(model, *pair, memory_mb=0.5)
    assert isinstance(strips, StripEngine) and strips.radius == 8 and strips.rows_for(y) is not None
    assert np.array_equal(strips.upscale_luma(y, 255), out)
    narrow = StripEngine(TorchEngine(model), memory_mb=0.5)  # the 5-3-3 radius: not enough context
    assert not np.array_equal(narrow.upscale_luma(y, 255), reference)


@pytest.mark.skipif(not any(o.precision == "int8" for o in available()), reason="no int8 engine (openvino absent)")
@pytest.mark.parametrize("layers", [INT8_TWIN_LAYERS, INT8_ALL])
def test_int8_engine_runs_a_deeper_espcn_as_emulated(layers: tuple[int, ...]) -> None:
    """With residual blocks the int8 engine quantizes each block's two convolutions too (indices
    3, 4, ...; ranges calibrated on frames) and still computes what model/quant.py emulates, to
    one code value. Six quantized inputs instead of two: a value on a rounding edge, rounded the
    other way by the engine's fused order, reaches more of the later layers, so agreement is
    95 % of pixels (99 % for 5-3-3)."""
    from espcn_video.model.quant import with_blocks

    torch.manual_seed(3)
    model = ESPCN(3, blocks=2).eval()
    y = smooth_plane(80, 96, 255, 5)
    ranges = calibrate_ranges(model, [smooth_plane(60, 60, 255, s) / 255.0 for s in range(3)])
    assert len(ranges) == 6
    full = with_blocks(layers, model)
    assert full == (*layers, 3, 4, 5, 6) if 2 not in layers else full == (0, 1, 2, 3, 4, 5, 6)
    out = create_engine(model, "openvino", "int8", int8=Int8Params(model, ranges, full), memory_mb=None)
    got = out.upscale_luma(y, 255).astype(np.int64)
    bf16_rest = 2 not in full and cpu_has_bf16()
    emulated = QuantizedESPCN(model, ranges, full, bf16_rest=bf16_rest).eval()
    with torch.inference_mode():
        want = emulated(torch.from_numpy(y.astype(np.float32) / 255)[None, None])[0, 0]
    diff = np.abs(got - want.clamp(0, 1).mul(255).round().numpy().astype(np.int64))
    assert diff.max() <= 1 and (diff == 0).mean() > 0.95, (diff.max(), (diff == 0).mean())
