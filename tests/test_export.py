"""`espcn-video export`: the ONNX graph runs in ONNX Runtime and matches the torch fp32 reference."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from espcn_video.model.engines import TorchEngine
from espcn_video.model.graphs import build_onnx_model
from espcn_video.model.presets import load_preset
from tests.conftest import REPO, run_cli

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (the fast extra)")
pytest.importorskip("onnx", reason="onnx is not installed (the fast extra)")


def _frame(h: int = 37, w: int = 53) -> np.ndarray:
    rng = np.random.default_rng(7)
    ramp = np.add.outer(np.arange(h) * 3.0, np.arange(w) * 2.0)
    return np.clip(ramp + rng.normal(0, 20, (h, w)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("io_kind", ["float", "uint8"])
def test_exported_onnx_matches_torch(tmp_path: Path, io_kind: str) -> None:
    out = tmp_path / f"x3-{io_kind}.onnx"
    done = run_cli("export", "--preset", "espcn-x3", "--io", io_kind, str(out))
    assert done.returncode == 0, done.stderr.decode()
    assert f"wrote {out}: espcn-x3 (x3), onnx {io_kind} nchw input 'lr' -> output 'hr'" in done.stderr.decode()
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    y = _frame()
    model, _ = load_preset("espcn-x3")
    if io_kind == "float":
        lr = (y.astype(np.float32) / 255)[None, None]
        got = session.run(["hr"], {"lr": lr})[0]
        with torch.inference_mode():
            want = model(torch.from_numpy(lr)).clamp(0, 1).numpy()
        assert got.shape == (1, 1, 111, 159) and np.allclose(got, want, atol=1e-5)
    else:
        got = session.run(["hr"], {"lr": y[None, None]})[0][0, 0]
        want = TorchEngine(model).upscale_luma(y, 255)
        assert got.dtype == np.uint8 and got.shape == want.shape
        assert np.abs(got.astype(int) - want.astype(int)).max() <= 1 and (got == want).mean() > 0.999


def test_a_deeper_preset_exports_with_its_residual_blocks(tmp_path: Path) -> None:
    """A preset with residual blocks (train --blocks) exports as a graph with their Conv, Tanh and
    Add nodes, and ONNX Runtime computes the torch module's frame."""
    from espcn_video.model.net import ESPCN

    torch.manual_seed(8)
    model = ESPCN(3, blocks=2).eval()
    preset = tmp_path / "deep-x3.pt"
    torch.save(model.state_dict(), preset)
    out = tmp_path / "deep.onnx"
    done = run_cli("export", "--preset", str(preset), str(out))
    assert done.returncode == 0, done.stderr.decode()
    import onnx

    ops = [node.op_type for node in onnx.load(str(out)).graph.node]
    assert ops.count("Conv") == 7 and ops.count("Add") == 2 and ops.count("Tanh") == 4
    lr = (_frame().astype(np.float32) / 255)[None, None]
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(["hr"], {"lr": lr})[0]
    with torch.inference_mode():
        want = model(torch.from_numpy(lr)).clamp(0, 1).numpy()
    assert np.allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("io_kind", ["float", "uint8", "uint16"])
def test_no_unused_initializers_and_nhwc_matches_nchw(tmp_path: Path, io_kind: str) -> None:
    """Every constant in the graph is used (ONNX Runtime warns on each unused one at load), and the
    NHWC layout (OpenCV's dnn_superres) gives the NCHW graph's output, transposed."""
    import onnx

    outputs = {}
    for layout in ("nchw", "nhwc"):
        out = tmp_path / f"{layout}.onnx"
        peak = 65535 if io_kind == "uint16" else 255
        out.write_bytes(build_onnx_model(load_preset("espcn-x2")[0], peak, float_io=io_kind == "float", layout=layout))
        graph = onnx.load(str(out)).graph
        used = {name for node in graph.node for name in node.input}
        assert {init.name for init in graph.initializer} <= used
        options = ort.SessionOptions()
        options.log_severity_level = 1  # warnings and above: an unused initializer would be one
        session = ort.InferenceSession(str(out), options, providers=["CPUExecutionProvider"])
        y = _frame(20, 30)
        lr = (y.astype(np.float32) / 255) if io_kind == "float" else (y if io_kind == "uint8" else y.astype(np.uint16))
        feed = lr[None, None] if layout == "nchw" else lr[None, :, :, None]
        outputs[layout] = session.run(["hr"], {"lr": feed})[0]
    assert outputs["nchw"].shape == (1, 1, 40, 60) and outputs["nhwc"].shape == (1, 40, 60, 1)
    assert np.array_equal(outputs["nchw"][0, 0], outputs["nhwc"][0, :, :, 0])


@pytest.mark.parametrize("fmt,layout", [("openvino", "nchw"), ("torchscript", "nchw"), ("torchscript", "nhwc")])
def test_openvino_ir_and_torchscript_load_in_their_runtimes_and_match(tmp_path: Path, fmt: str, layout: str) -> None:
    out = tmp_path / ("m.xml" if fmt == "openvino" else "m.pt")
    done = run_cli("export", "--preset", "espcn-x3", "--format", fmt, "--layout", layout, str(out))
    assert done.returncode == 0, done.stderr.decode()
    model, _ = load_preset("espcn-x3")
    lr = (_frame(21, 34).astype(np.float32) / 255)[None, None]
    with torch.inference_mode():
        want = model(torch.from_numpy(lr)).clamp(0, 1).numpy()
    feed = lr if layout == "nchw" else lr.transpose(0, 2, 3, 1)
    if fmt == "openvino":
        ov = pytest.importorskip("openvino")
        assert out.with_suffix(".bin").is_file() and not list(tmp_path.glob(".*"))  # no temporaries left
        core = ov.Core()
        compiled = core.compile_model(core.read_model(str(out)), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        got = compiled([feed])[0]
    else:
        with torch.inference_mode():
            got = torch.jit.load(str(out))(torch.from_numpy(feed)).numpy()
    got = got if layout == "nchw" else got.transpose(0, 3, 1, 2)
    assert got.shape == (1, 1, 63, 102) and np.abs(got - want).max() < 1e-4


def test_export_format_refusals(tmp_path: Path) -> None:
    done = run_cli("export", "--preset", "espcn-x3", "--format", "torchscript", "--io", "uint8", str(tmp_path / "a.pt"))
    assert done.returncode == 2 and "--format torchscript takes float I/O" in done.stderr.decode()
    done = run_cli("export", "--preset", "espcn-x3", "--format", "openvino", str(tmp_path / "a.onnx"))
    assert done.returncode == 2 and "give OUT as NAME.xml" in done.stderr.decode()
    assert not list(tmp_path.iterdir())


def test_export_refuses_existing_output_and_unknown_preset(tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    out.write_bytes(b"keep")
    done = run_cli("export", "--preset", "espcn-x3", str(out))
    assert done.returncode == 1 and "already exists (use -y/--overwrite to replace it)" in done.stderr.decode()
    assert out.read_bytes() == b"keep"
    done = run_cli("export", "--preset", "espcn-x9", str(tmp_path / "n.onnx"))
    assert done.returncode == 1 and "unknown preset 'espcn-x9'" in done.stderr.decode()


def test_exported_onnx_given_back_as_preset_gives_the_same_frames(tmp_path: Path, ffmpeg: str) -> None:
    """An ONNX model from elsewhere runs through --preset: our own export, given back, makes the
    frames of the built-in preset on the same engine (uint8 I/O: the same graph, byte for byte;
    float I/O: within one code value)."""
    from tests.conftest import decode_y4m

    clip = tmp_path / "in.mkv"
    subprocess.run([ffmpeg, "-v", "error", "-f", "lavfi", "-i", "testsrc2=s=64x48:r=10:d=0.5", "-c:v", "ffv1",
                    "-pix_fmt", "yuv420p", str(clip)], check=True, timeout=60)  # fmt: skip
    ref = tmp_path / "ref.y4m"
    done = run_cli("upscale", str(clip), str(ref), "--preset", "espcn-x2", "--backend", "onnxruntime", "-q")
    assert done.returncode == 0, done.stderr.decode()
    _, want = decode_y4m(ffmpeg, ref)
    net, _ = load_preset("espcn-x2")
    for io_kind, layout in (("uint8", "nchw"), ("float", "nhwc")):  # nchw = nhwc is tested on the graphs above
        model = tmp_path / f"x2-{io_kind}-{layout}.onnx"
        model.write_bytes(build_onnx_model(net, 255, float_io=io_kind == "float", layout=layout))
        out = tmp_path / f"{model.stem}.y4m"
        done = run_cli("upscale", str(clip), str(out), "--preset", str(model), "--json", "-q")
        assert done.returncode == 0, done.stderr.decode()
        assert f'"method": "onnxruntime-{model.stem}"' in done.stdout.decode() and '"scale": 2' in done.stdout.decode()
        _, got = decode_y4m(ffmpeg, out)
        assert len(got) == len(want) == 5
        for g, w in zip(got, want, strict=True):
            diffs = [np.abs(a.astype(int) - b.astype(int)) for a, b in zip(g, w, strict=True)]
            if io_kind == "uint8":
                assert all(d.max() == 0 for d in diffs)
            else:
                assert all(d.max() <= 1 for d in diffs) and diffs[0].mean() < 0.001


def test_onnx_preset_refusals_are_one_line(tmp_path: Path) -> None:
    model = tmp_path / "x2.onnx"
    model.write_bytes(build_onnx_model(load_preset("espcn-x2")[0], 255, float_io=True))
    clip = REPO / "samples" / "bbb_360p.mp4"
    done = run_cli("upscale", str(clip), str(tmp_path / "o.mkv"), "--preset", str(model), "--scale", "3")
    assert done.returncode == 2 and f"--preset {model} is x2, not x3" in done.stderr.decode()
    done = run_cli("upscale", str(clip), str(tmp_path / "o.mkv"), "--preset", str(model), "--backend", "openvino")
    assert done.returncode == 2 and "an ONNX model runs on ONNX Runtime fp32" in done.stderr.decode()
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    done = run_cli("upscale", str(clip), str(tmp_path / "o.mkv"), "--preset", str(junk))
    assert done.returncode == 1 and "not a loadable ONNX model" in done.stderr.decode()
    done = run_cli("psnr", str(clip), "--preset", str(model), "--frames", "1", "-q")
    assert done.returncode == 1 and "this command takes .pt presets" in done.stderr.decode()
    assert not (tmp_path / "o.mkv").exists()


def test_onnx_loads_in_openvino_as_ffmpegs_openvino_backend_reads_it(tmp_path: Path) -> None:
    """FFmpeg's dnn_processing (OpenVINO backend) reads IR or ONNX through ov::Core::read_model."""
    ov = pytest.importorskip("openvino")
    out = tmp_path / "m.onnx"
    out.write_bytes(build_onnx_model(load_preset("espcn-x3")[0], 255, float_io=True, layout="nchw"))
    lr = (_frame(21, 34).astype(np.float32) / 255)[None, None]
    with torch.inference_mode():
        want = load_preset("espcn-x3")[0](torch.from_numpy(lr)).clamp(0, 1).numpy()
    core = ov.Core()
    got = core.compile_model(core.read_model(str(out)), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})([lr])[0]
    assert got.shape == (1, 1, 63, 102) and np.abs(got - want).max() < 1e-4


def test_nhwc_onnx_runs_in_opencv_dnn_superres(tmp_path: Path) -> None:
    """OpenCV's dnn_superres on a grey picture (Y = the grey value, neutral chroma) gives the
    preset's Y, to uint8 rounding."""
    cv2 = pytest.importorskip("cv2", reason="OpenCV is not installed (opencv-contrib-python is not a dependency)")
    if not hasattr(cv2, "dnn_superres"):
        pytest.skip("this OpenCV has no dnn_superres module (it comes with opencv-contrib-python)")
    out = tmp_path / "espcn_x3.onnx"
    done = run_cli("export", "--preset", "espcn-x3", "--layout", "nhwc", str(out))
    assert done.returncode == 0, done.stderr.decode()
    sr = cv2.dnn_superres.DnnSuperResImpl_create()
    sr.readModel(str(out))
    sr.setModel("espcn", 3)
    y = _frame(21, 34)
    got = sr.upsample(cv2.merge([y, y, y]))
    want = TorchEngine(load_preset("espcn-x3")[0]).upscale_luma(y, 255)
    assert got.shape[:2] == want.shape
    assert np.abs(got[:, :, 1].astype(int) - want.astype(int)).max() <= 2
