"""OpenCV's dnn_superres beside espcn-video, on the same job in one run, as ratios.

    python tools/opencv_peer.py --model ESPCN_x3.pb [--scale 3] [--lr-size 640x360] [--frames 30]

Needs opencv-contrib-python (the dnn_superres module) and one of its ESPCN model files (the
ESPCN_x2/x3/x4.pb published with OpenCV's dnn_superres; opencv-contrib 5.0.0 loads them, 5.1
could not). Nothing is downloaded: give the file. Without those files, `--model OUT.onnx` (made
by `espcn-video export --preset espcn-x3 --io float OUT.onnx`) runs dnn_superres's ESPCN steps
with OpenCV's dnn on espcn-video's own network (the same 5-3-3 architecture, so the same work).
Frames are ffmpeg's testsrc2 at the low-res size, as `espcn-video bench` makes them. The peer's
`upsample` call does the whole frame (BGR -> YCrCb, the network on Y, chroma resized, back to
BGR), so it is set beside bench's `frame_fps` (luma network + chroma) as well as its `sr_fps`
(the network alone). espcn-video is measured
twice, with its default engine and in bf16, in the same run; the ratios are what to compare,
absolute fps vary between runs and machines.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def fail(message: str) -> None:
    print(f"opencv_peer: {message}", file=sys.stderr)
    raise SystemExit(2)


class OnnxPeer:
    """dnn_superres's ESPCN path (DnnSuperResImpl::upsample) step by step in OpenCV, with the
    network read from ONNX by OpenCV's dnn (dnn_superres reads only TensorFlow .pb files): BGR ->
    YCrCb as float / 255, the net on Y, Cr and Cb resized bicubic, merged, back to 8-bit BGR. With
    `espcn-video export --preset espcn-xR --io float OUT.onnx` it times OpenCV's engine on the very
    network espcn-video runs, where the peer's own model files are not at hand."""

    def __init__(self, model: Path, scale: int, width: int, height: int) -> None:
        import cv2
        import onnx

        self.cv2, self.scale = cv2, scale
        # OpenCV's importer cannot shape DepthToSpace with symbolic H and W: fix them to the job's
        graph = onnx.load(str(model))
        sizes = ((1, 1, height, width), (1, 1, height * scale, width * scale))
        for value, dims in zip((graph.graph.input[0], graph.graph.output[0]), sizes, strict=True):
            for dim, size in zip(value.type.tensor_type.shape.dim, dims, strict=True):
                dim.ClearField("dim_param")
                dim.dim_value = size
        self.net = cv2.dnn.readNetFromONNX(np.frombuffer(graph.SerializeToString(), np.uint8))

    def upsample(self, bgr: np.ndarray) -> np.ndarray:
        cv2 = self.cv2
        ycrcb = cv2.cvtColor(bgr, cv2.COLOR_BGR2YCrCb).astype(np.float32) / 255.0
        y, cr, cb = cv2.split(ycrcb)
        self.net.setInput(cv2.dnn.blobFromImage(y, 1.0))
        hr_y = self.net.forward()[0, 0]
        size = (hr_y.shape[1], hr_y.shape[0])
        planes = [hr_y, cv2.resize(cr, size, interpolation=cv2.INTER_CUBIC)]
        planes.append(cv2.resize(cb, size, interpolation=cv2.INTER_CUBIC))
        out = cv2.cvtColor(cv2.merge(planes), cv2.COLOR_YCrCb2BGR)
        return np.clip(out * 255.0, 0, 255).astype(np.uint8)


def load_peer(model: Path, scale: int, threads: int, width: int, height: int) -> Any:
    try:
        import cv2
    except ImportError:
        fail("OpenCV is not installed (pip install opencv-contrib-python==5.0.0)")
    if model.suffix == ".onnx":
        if not model.is_file():
            fail(f"{model} does not exist (espcn-video export --preset espcn-xR --io float {model})")
        cv2.setNumThreads(threads)
        return OnnxPeer(model, scale, width, height)
    if not hasattr(cv2, "dnn_superres"):
        fail(f"this OpenCV ({cv2.__version__}) has no dnn_superres: install opencv-contrib-python")
    if not model.is_file():
        fail(f"{model} does not exist (an ESPCN_xR.pb of OpenCV's dnn_superres; nothing is downloaded)")
    cv2.setNumThreads(threads)
    peer = cv2.dnn_superres.DnnSuperResImpl_create()
    try:
        peer.readModel(str(model))
        peer.setModel("espcn", scale)
    except cv2.error as exc:
        fail(f"OpenCV cannot load {model}: {str(exc).strip().splitlines()[-1]}")
    return peer


def frames_bgr(width: int, height: int, count: int) -> list[np.ndarray]:
    from espcn_video.ffmpeg.locate import locate_ffmpeg

    cmd = [
        locate_ffmpeg().path, "-v", "error", "-f", "lavfi", "-i", f"testsrc2=s={width}x{height}:r=30",
        "-frames:v", str(count), "-f", "rawvideo", "-pix_fmt", "bgr24", "-",
    ]  # fmt: skip
    raw = subprocess.run(cmd, capture_output=True, check=True, timeout=120).stdout
    return [f.copy() for f in np.frombuffer(raw, np.uint8).reshape(count, height, width, 3)]


def time_peer(peer: Any, frames: list[np.ndarray]) -> float:
    peer.upsample(frames[0])  # warm-up: the network is set up on the first call
    t0 = time.perf_counter()
    for frame in frames:
        peer.upsample(frame)
    return len(frames) / (time.perf_counter() - t0)


def bench(scale: int, size: str, frames: int, precision: str, threads: int) -> dict[str, Any]:
    cmd = [
        sys.executable, "-m", "espcn_video", "bench", "--scale", str(scale), "--lr-size", size,
        "--frames", str(frames), "--srcnn-frames", "0", "--reference-frames", "0", "--precision", precision,
        "--threads", str(threads), "--json",
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=1800)
    if done.returncode != 0:
        fail(f"espcn-video bench failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ''}")
    return json.loads(done.stdout)["jobs"][0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="OpenCV's ESPCN_xR.pb")
    parser.add_argument("--scale", type=int, choices=(2, 3, 4), default=3)
    parser.add_argument("--lr-size", default="640x360")
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="The figures as JSON on stdout.")
    args = parser.parse_args()
    try:
        width, height = (int(v) for v in args.lr_size.lower().split("x"))
    except ValueError:
        fail(f"--lr-size {args.lr_size!r} is not WxH")
    peer = load_peer(args.model, args.scale, args.threads, width, height)
    peer_fps = time_peer(peer, frames_bgr(width, height, args.frames))
    rows = {p: bench(args.scale, args.lr_size, args.frames, p, args.threads) for p in ("auto", "bf16")}
    doc = {
        "job": f"{width}x{height} x{args.scale}",
        "threads": args.threads,
        "opencv_dnn_superres_fps": round(peer_fps, 2),
        "peer_model": str(args.model),
        "espcn_video": {
            p: {
                "engine": r["engine"],
                "sr_fps": r["sr_fps"],
                "frame_fps": r["frame_fps"],
                "sr_vs_opencv": round(r["sr_fps"] / peer_fps, 2),
                "frame_vs_opencv": round(r["frame_fps"] / peer_fps, 2),
            }
            for p, r in rows.items()
        },
    }
    if args.json:
        print(json.dumps(doc, indent=1))
        return
    onnx = args.model.suffix == ".onnx"
    peer_name = "OpenCV dnn (dnn_superres's ESPCN steps, ONNX net)" if onnx else "OpenCV dnn_superres"
    print(f"{doc['job']}, {args.threads} threads: {peer_name} {peer_fps:.1f} fps (whole frame)")
    for r in doc["espcn_video"].values():
        print(
            f"espcn-video {r['engine']}: SR {r['sr_fps']:.1f} fps ({r['sr_vs_opencv']:.1f}x the peer), "
            f"frame {r['frame_fps']:.1f} fps ({r['frame_vs_opencv']:.1f}x)"
        )


if __name__ == "__main__":
    main()
