"""`quantize`: a preset's int8 twin, fine-tuned for the int8 engine, recorded and then used."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from espcn_video.model.backends import create_engine
from espcn_video.model.engines import cpu_has_bf16
from espcn_video.model.net import ESPCN
from espcn_video.model.presets import int8_params, load_preset, precision_deltas
from espcn_video.model.quant import INT8_TWIN_LAYERS, QuantizedESPCN, load_twin, twin_path
from tests.conftest import run_cli

pytest.importorskip("openvino", reason="the int8 engine is OpenVINO's (the fast extra)")
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory, ffmpeg: str) -> Path:
    """Six 96x96 training pictures (two kinds of test pattern, three moments each)."""
    folder = tmp_path_factory.mktemp("images")
    for i, src in enumerate(["testsrc2=s=96x96:r=1", "mandelbrot=s=96x96:r=1"]):
        subprocess.run(
            [ffmpeg, "-v", "error", "-f", "lavfi", "-i", src, "-frames:v", "3", str(folder / f"p{i}_%d.png")],
            check=True,
            timeout=60,
        )
    return folder


@pytest.fixture
def user_preset(tmp_path: Path) -> Path:
    torch.manual_seed(11)
    path = tmp_path / "mine-x2.pt"
    torch.save(ESPCN(2).state_dict(), path)
    return path


def test_quantize_writes_a_twin_that_int8_runs_and_records_it(
    images: Path, user_preset: Path, tmp_path: Path, clips: Callable[..., Path]
) -> None:
    done = run_cli(
        "quantize", "--preset", str(user_preset), "--data", str(images), "--steps", "30", "--batch", "8",
        "--no-eval", "--threads", "2",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    doc = json.loads(done.stdout)
    twin = twin_path(user_preset)
    assert doc["twin"] == str(twin) and twin.is_file()
    assert set(doc["val_psnr_db"]) == {"fp32", "int8_before", "int8_after"}
    assert doc["val_psnr_db"]["int8_after"] >= doc["val_psnr_db"]["int8_before"]  # the best checkpoint is kept
    meta = json.loads(user_preset.with_suffix(".json").read_text())
    assert meta["int8"]["twin"] == twin.name and meta["int8"]["layers"] == [0, 1] and meta["int8"]["steps"] == 30
    model, info = load_preset(user_preset)
    params = int8_params(model, info)
    assert params is not None and params.layers == INT8_TWIN_LAYERS and params.weight_steps is not None
    assert precision_deltas(info) is None  # --no-eval measured nothing: auto keeps to bf16
    # the twin is what --precision int8 runs; the preset's own weights are untouched
    assert torch.equal(load_preset(user_preset)[0].conv1.weight, torch.load(user_preset)["conv1.weight"])
    src = clips("q.mkv", "-c:v", "ffv1", src="testsrc2=s=48x32:r=10:d=0.3")
    out = tmp_path / "o.mkv"
    up = run_cli("upscale", str(src), str(out), "--preset", str(user_preset), "--precision", "int8", "--json")
    assert up.returncode == 0, up.stderr.decode()
    assert json.loads(up.stdout)["method"] == "openvino-int8"
    auto = run_cli("upscale", str(src), str(tmp_path / "a.mkv"), "--preset", str(user_preset), "--json")
    summary = json.loads(auto.stdout)
    assert summary["method"] != "openvino-int8"
    assert any("records no measured int8 or bf16 cost" in n for n in summary["notes"])


@pytest.mark.slow
def test_float_channels_keep_the_noisiest_conv2_inputs_in_float(images: Path, user_preset: Path) -> None:
    """quantize --float-channels K: the twin records which K of conv2's inputs stay float (those
    carrying the most int8 noise), and the int8 engine runs it as the emulation does."""
    done = run_cli(
        "quantize", "--preset", str(user_preset), "--data", str(images), "--steps", "20", "--batch", "8",
        "--no-eval", "--threads", "2", "--float-channels", "8",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    doc = json.loads(done.stdout)
    meta = json.loads(user_preset.with_suffix(".json").read_text())
    assert len(doc["float_channels"]) == 8 and meta["int8"]["float_channels"] == doc["float_channels"]
    model, info = load_preset(user_preset)
    params = int8_params(model, info)
    assert params is not None and params.float_channels == tuple(doc["float_channels"])
    y = np.random.default_rng(0).integers(0, 256, (24, 32), dtype=np.uint8)
    out = create_engine(model, "openvino", "int8", int8=params).upscale_luma(y, 255).astype(np.int64)
    emulated = QuantizedESPCN(
        params.model, params.ranges, params.layers, params.weight_steps, cpu_has_bf16(), params.float_channels
    ).eval()
    with torch.inference_mode():
        want = emulated(torch.from_numpy(y.astype(np.float32) / 255)[None, None])[0, 0]
    diff = np.abs(out - want.clamp(0, 1).mul(255).round().numpy().astype(np.int64))
    assert diff.max() <= 1 and (diff == 0).mean() > 0.99
    refused = run_cli(
        "quantize", "--preset", str(user_preset), "--data", str(images), "--steps", "2", "--no-eval",
        "--float-channels", "64",
    )  # fmt: skip
    assert refused.returncode == 2 and b"--float-channels" in refused.stderr  # conv2 has 64 inputs


def test_rest_fp32_twin_runs_its_float_convolution_in_fp32(images: Path, user_preset: Path) -> None:
    """quantize --rest fp32: the twin is fine-tuned with conv3 in fp32, records it (file and
    metadata), and the int8 engine then runs conv3 in fp32 too (espcn-x2-deep: bf16 arithmetic
    alone costs it more than the int8 bound)."""
    done = run_cli(
        "quantize", "--preset", str(user_preset), "--data", str(images), "--steps", "20", "--batch", "8",
        "--no-eval", "--threads", "2", "--rest", "fp32",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    assert json.loads(done.stdout)["rest"] == "fp32"
    meta = json.loads(user_preset.with_suffix(".json").read_text())
    assert meta["int8"]["others"].startswith("fp32") and meta["int8"]["layers"] == [0, 1]
    model, info = load_preset(user_preset)
    params = int8_params(model, info)
    assert params is not None and params.rest_fp32 and params.layers == INT8_TWIN_LAYERS
    y = np.random.default_rng(2).integers(0, 256, (24, 32), dtype=np.uint8)
    out = create_engine(model, "openvino", "int8", int8=params).upscale_luma(y, 255).astype(np.int64)
    lr = torch.from_numpy(y.astype(np.float32) / 255)[None, None]

    def emulated(bf16_rest: bool) -> np.ndarray:
        twin = QuantizedESPCN(params.model, params.ranges, params.layers, params.weight_steps, bf16_rest).eval()
        with torch.inference_mode():
            return twin(lr)[0, 0].clamp(0, 1).mul(255).round().numpy().astype(np.int64)

    diff = np.abs(out - emulated(False))
    assert diff.max() <= 1 and (diff == 0).mean() > 0.99
    if cpu_has_bf16():  # what the bf16 twin computes is measurably another frame
        assert (out != emulated(True)).mean() > (diff != 0).mean()
    refused = run_cli("quantize", "--preset", str(user_preset), "--rest", "fp16", "--no-eval")
    assert refused.returncode == 2 and b"--rest" in refused.stderr


@pytest.mark.slow
def test_measure_only_records_the_costs_again_and_trains_nothing(user_preset: Path) -> None:
    """After an engine change the recorded costs are measured again by one command; the twin,
    if any, and the weights are left as they are."""
    from espcn_video.cli.model_cmds import default_eval_dirs

    if {name for name, _ in default_eval_dirs()} != {"Set5", "Set14"}:
        pytest.skip("../shared/data/test/Set5 and Set14 are needed")
    bad = run_cli("quantize", "--preset", str(user_preset), "--measure-only", "--no-eval")
    err = bad.stderr.decode().strip()
    assert bad.returncode == 2 and "cannot go with --no-eval" in err and len(err.splitlines()) == 1, err
    weights = user_preset.read_bytes()
    done = run_cli("quantize", "--preset", str(user_preset), "--measure-only", "--threads", "2")
    assert done.returncode == 0, done.stderr.decode()
    deltas = json.loads(done.stdout)["precision_delta_db"]
    assert "int8" in deltas and set(deltas["int8"]) == {"Set5", "Set14"}
    assert all(isinstance(v, float) and abs(v) < 5 for per_set in deltas.values() for v in per_set.values())
    meta = json.loads(user_preset.with_suffix(".json").read_text())
    assert meta["precision_delta_db"] == deltas and "espcn-video eval" in meta["precision_delta_protocol"]
    assert user_preset.read_bytes() == weights and not twin_path(user_preset).exists()


def test_recorded_costs_decide_auto(user_preset: Path, tmp_path: Path) -> None:
    from espcn_video.model.presets import file_sha256

    meta = {
        "precision_delta_db": {"int8": {"Set5": -0.012, "Set14": -0.031}, "bf16": {"Set5": -0.004}},
        "int8": {"weights_sha256": file_sha256(user_preset)},
    }
    user_preset.with_suffix(".json").write_text(json.dumps(meta))
    _, info = load_preset(user_preset)
    assert precision_deltas(info) == {"int8": -0.031, "bf16": -0.004}
    torch.save(ESPCN(2).state_dict(), user_preset)  # other weights: the costs were not measured on them
    _, info = load_preset(user_preset)
    assert precision_deltas(info) is None


def test_a_damaged_twin_is_ignored(user_preset: Path) -> None:
    twin_path(user_preset).write_bytes(b"not a torch file")
    model, info = load_preset(user_preset)
    assert load_twin(twin_path(user_preset), model) is None and int8_params(model, info) is None


def test_quantize_refuses_srcnn_and_missing_data(tmp_path: Path) -> None:
    shipped = Path(__file__).resolve().parents[1] / "presets" / "srcnn-x3.pt"
    if shipped.is_file():
        copy = tmp_path / "srcnn-x3.pt"
        shutil.copy(shipped, copy)
        done = run_cli("quantize", "--preset", str(copy), "--data", str(tmp_path), "--steps", "1")
        assert done.returncode == 2 and b"fine-tunes ESPCN presets" in done.stderr, done.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    torch.save(ESPCN(2).state_dict(), tmp_path / "e-x2.pt")
    done = run_cli("quantize", "--preset", str(tmp_path / "e-x2.pt"), "--data", str(empty), "--steps", "1")
    assert done.returncode != 0 and len(done.stderr.decode().strip().splitlines()) == 1, done.stderr
    assert not np.any([p.name.endswith(".int8.pth") for p in tmp_path.iterdir()])


def test_a_twin_counts_only_for_the_weights_it_was_made_from(images: Path, user_preset: Path, tmp_path: Path) -> None:
    """Retraining (new weights, new JSON) or changing the weights leaves the old twin unused."""
    done = run_cli(
        "quantize", "--preset", str(user_preset), "--data", str(images), "--steps", "2", "--batch", "4",
        "--no-eval", "--threads", "2",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    model, info = load_preset(user_preset)
    assert int8_params(model, info) is not None
    torch.manual_seed(99)
    torch.save(ESPCN(2).state_dict(), user_preset)  # other weights, same JSON
    model, info = load_preset(user_preset)
    assert int8_params(model, info) is None


def test_a_deeper_preset_gets_a_twin_with_its_blocks_in_int8(images: Path, tmp_path: Path) -> None:
    """A preset with residual blocks (train --blocks): quantize puts the blocks' convolutions in
    int8 with conv1 and conv2 (indices 3, 4, ...), the twin round-trips with a range and a step
    for each of them, and --precision int8 upscales with it."""
    torch.manual_seed(12)
    path = tmp_path / "deep-x2.pt"
    torch.save(ESPCN(2, blocks=1).state_dict(), path)
    done = run_cli(
        "quantize", "--preset", str(path), "--data", str(images), "--steps", "10", "--batch", "8",
        "--no-eval", "--threads", "2",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    assert json.loads(path.with_suffix(".json").read_text())["int8"]["layers"] == [0, 1, 3, 4]
    model, info = load_preset(path)
    params = int8_params(model, info)
    assert params is not None and params.layers == (0, 1, 3, 4)
    assert [len(r) for r in params.ranges] == [64, 32, 32, 32]
    assert params.weight_steps is not None and [len(s) for s in params.weight_steps] == [64, 32, 4, 32, 32]
    y = (np.random.default_rng(0).random((24, 30)) * 255).astype(np.uint8)
    out = create_engine(model, "openvino", "int8", int8=params).upscale_luma(y, 255)
    assert out.shape == (48, 60)
