"""`espcn-video bench`: the JSON schema on tiny clips, --compare, job selection. No timed assertions."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from espcn_video.ffmpeg.locate import list_encoders
from espcn_video.jobs.bench import STANDARD_JOBS, JobSpec, build_jobs, compare_runs
from tests.conftest import one_error_line, run_cli

pytestmark = pytest.mark.timeout(300)

JOB_KEYS = {
    "scale",
    "lr_size",
    "hr_size",
    "backend",
    "precision",
    "engine",
    "sr_fps",
    "frame_fps",
    "pipeline_fps",
    "bicubic_fps",
    "srcnn_fps",
    "reference_sr_fps",
    "espcn_vs_srcnn",
    "gflops",
    "ceiling_fps",
    "cpu_ms_per_frame",
    "stages",
    "peak_memory",
    "weights",
    "frames",
}
SUMMARY_KEYS = {"mean_ms", "p50_ms", "p95_ms", "max_ms"}


def _bench(*args: str) -> dict[str, Any]:
    done = run_cli("bench", *args, "--json")
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def tiny_run(clips: Callable[..., Path], random_preset: Callable[[int], Path]) -> dict[str, Any]:
    src = clips("bench.mkv", "-pix_fmt", "yuv420p", "-c:v", "ffv1", src="testsrc2=s=48x32:r=10:d=0.4")
    return _bench(
        str(src),
        "--scale",
        "2",
        "--frames",
        "4",
        "--preset",
        str(random_preset(2)),
        "--srcnn-frames",
        "1",
        "--reference-frames",
        "1",
    )


def test_json_has_the_schema_keys(tiny_run: dict[str, Any]) -> None:
    doc = tiny_run
    assert doc["schema_version"] == 1 and doc["command"] == "bench"
    machine = doc["machine"]
    assert {"cpu_model", "cpu_flags", "cores", "threads", "versions"} <= set(machine)
    assert {"python", "torch", "numpy", "openvino", "onnxruntime", "ffmpeg"} <= set(machine["versions"])
    [job] = doc["jobs"]
    assert JOB_KEYS <= set(job)
    assert job["scale"] == 2 and job["lr_size"] == [48, 32] and job["hr_size"] == [96, 64]
    assert job["frames"] == 4
    for name in ("sr_luma", "sr_chroma", "pipeline_read", "pipeline_model", "pipeline_write"):
        assert SUMMARY_KEYS <= set(job["stages"][name])
    for key in ("sr_fps", "pipeline_fps", "bicubic_fps", "srcnn_fps", "reference_sr_fps", "gflops"):
        assert job[key] > 0
    assert job["gflop_per_frame"] == pytest.approx(2 * (1600 + 18432 + 288 * 4) * 48 * 32 / 1e9, abs=1e-3)
    assert any(e["backend"] == job["backend"] and e["available"] for e in doc["engines"])


def test_synthetic_clip_and_chosen_engine(random_preset: Callable[[int], Path]) -> None:
    doc = _bench(
        "--lr-size",
        "64x36",
        "--scale",
        "3",
        "--frames",
        "3",
        "--preset",
        str(random_preset(3)),
        "--backend",
        "torch",
        "--precision",
        "fp32",
        "--srcnn-frames",
        "0",
        "--reference-frames",
        "0",
    )
    [job] = doc["jobs"]
    assert job["input"].startswith("lavfi testsrc2") and job["lr_size"] == [64, 36] and job["hr_size"] == [192, 108]
    assert (job["backend"], job["precision"], job["engine"]) == ("torch", "fp32", "torch-fp32")
    assert job["srcnn_fps"] is None and job["espcn_vs_srcnn"] is None


def test_real_encoder_runs(ffmpeg: str, clips: Callable[..., Path], random_preset: Callable[[int], Path]) -> None:
    if "libx264" not in list_encoders(ffmpeg):
        pytest.skip("this ffmpeg has no libx264")
    src = clips("bench.mkv", "-pix_fmt", "yuv420p", "-c:v", "ffv1", src="testsrc2=s=48x32:r=10:d=0.4")
    doc = _bench(
        str(src),
        "--scale",
        "2",
        "--frames",
        "2",
        "--preset",
        str(random_preset(2)),
        "--encoder",
        "libx264",
        "--encoder-preset",
        "ultrafast",
        "--srcnn-frames",
        "0",
    )
    assert doc["jobs"][0]["encoder"] == "libx264" and doc["jobs"][0]["pipeline_fps"] > 0


def test_compare_prints_ratios(tiny_run: dict[str, Any], tmp_path: Path) -> None:
    faster = json.loads(json.dumps(tiny_run))
    faster["jobs"][0]["sr_fps"] = tiny_run["jobs"][0]["sr_fps"] * 2
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(tiny_run))
    b.write_text(json.dumps(faster))
    done = run_cli("bench", "--compare", str(a), str(b), "--json")
    assert done.returncode == 0, done.stderr.decode()
    rows = {row["metric"]: row for row in json.loads(done.stdout)["rows"]}
    assert rows["sr_fps"]["ratio"] == pytest.approx(2.0, rel=1e-3)
    assert rows["pipeline_fps"]["ratio"] == pytest.approx(1.0)
    assert "2.00x" in done.stderr.decode()


def test_compare_refuses_what_is_not_a_bench_result(tmp_path: Path) -> None:
    a = tmp_path / "a.json"
    a.write_text(json.dumps({"schema_version": 1, "command": "upscale"}))
    done = run_cli("bench", "--compare", str(a), str(a))
    assert done.returncode == 1
    assert b"not an `espcn-video bench --json` result" in done.stderr


def test_bad_scale_is_a_usage_error() -> None:
    done = run_cli("bench", "--scale", "5")
    assert done.returncode == 2 and b"'5' is not one of '2', '3', '4'" in done.stderr


def test_job_selection() -> None:
    assert build_jobs(None, None, None) == tuple(JobSpec(s, size) for s, size in STANDARD_JOBS)
    assert [j.lr_size for j in build_jobs(None, 2, None)] == [(960, 540), (1920, 1080)]
    assert build_jobs("clip.mp4", None, None) == (JobSpec(2, None, "clip.mp4"),)
    assert build_jobs(None, 3, (320, 180)) == (JobSpec(3, (320, 180)),)


def test_compare_matches_jobs_by_input_scale_and_size() -> None:
    a = {"jobs": [{"name": "x", "input": "i", "scale": 2, "lr_size": [4, 4], "sr_fps": 10.0}]}
    b = {"jobs": [{"name": "x", "input": "i", "scale": 3, "lr_size": [4, 4], "sr_fps": 20.0}]}
    assert compare_runs(a, b) == []
    b["jobs"][0]["scale"] = 2
    assert [r for r in compare_runs(a, b) if r["metric"] == "sr_fps"][0]["ratio"] == 2.0


def test_opencv_peer_script_says_what_it_needs_in_one_line(tmp_path: Path) -> None:
    """tools/opencv_peer.py runs the peer only where opencv-contrib and its model file are; else
    one line and exit 2 (here: OpenCV absent, or the model file missing)."""
    import subprocess
    import sys

    from tests.conftest import REPO

    done = subprocess.run(
        [sys.executable, str(REPO / "tools" / "opencv_peer.py"), "--model", str(tmp_path / "ESPCN_x3.pb")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    err = done.stderr.strip()
    assert done.returncode == 2 and len(err.splitlines()) == 1, err
    assert "OpenCV is not installed" in err or "has no dnn_superres" in err or "does not exist" in err


@pytest.mark.parametrize("size", [(1, 1), (97, 65)])
def test_a_synthetic_clip_has_the_size_asked(random_preset: Callable[[int], Path], size: tuple[int, int]) -> None:
    """testsrc2 makes even sizes only, and x264 codes 4:2:0 at even sizes only: 97x65 ran as 96x64
    without a word, 1x1 was a traceback."""
    doc = _bench("--scale", "2", "--lr-size", f"{size[0]}x{size[1]}", "--frames", "2",
                 "--preset", str(random_preset(2)), "--srcnn-frames", "0", "--reference-frames", "0")  # fmt: skip
    assert doc["jobs"][0]["lr_size"] == list(size)
    assert doc["jobs"][0]["hr_size"] == [2 * size[0], 2 * size[1]]


def test_compare_refuses_a_result_whose_jobs_are_not_a_list(tmp_path: Path) -> None:
    path = tmp_path / "null.json"
    path.write_text(json.dumps({"command": "bench", "schema_version": 1, "jobs": None}))
    done = run_cli("bench", "--compare", str(path), str(path))
    assert done.returncode == 1
    assert one_error_line(done) == f"espcn-video: error: {path}: not an `espcn-video bench --json` result"
