"""The degradation chain: downscaler, then noise and a real encoder, one spec string (#12, item 1)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from espcn_video.errors import UsageError
from espcn_video.quality.degrade import degrade, imresize, parse_degradation
from espcn_video.quality.image_metrics import compute_psnr
from tests.conftest import run_cli


def smooth_hr(h: int = 96, w: int = 123, seed: int = 4) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.cumsum(np.cumsum(rng.normal(0, 1, (h, w)), 0), 1)
    return (x - x.min()) / np.ptp(x)


@pytest.mark.parametrize(
    "spec",
    ["bicubic", "bicubic-noaa", "area", "gaussian:1.2", "bicubic-noaa,x264:crf=28", "area,noise:2,x265:crf=30"],
)
def test_specs_round_trip(spec: str) -> None:
    assert parse_degradation(spec).spec() == spec
    assert parse_degradation(spec.upper().replace(",", " , ")).spec() == spec


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("lanczos", "start with bicubic, bicubic-noaa, area or gaussian"),
        ("bicubic,x264", "write x264:crf=N with N from 0 to 51"),
        ("bicubic,x264:crf=60", "with N from 0 to 51"),
        ("bicubic,noise:0", "noise SIGMA must be in (0, 25]"),
        ("bicubic,blur:2", "unknown stage 'blur:2'"),
        ("bicubic,x264:crf=20,x265:crf=20", "at most one noise stage and one encoder"),
    ],
)
def test_bad_specs_say_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)").replace("]", r"\]")):
        parse_degradation(spec)


def test_bicubic_without_antialiasing_at_x3_is_plain_decimation() -> None:
    """At an odd factor the centre of each 3x3 block is an LR sample point, where the unstretched
    Keys kernel weighs 1 and its neighbours 0: the aliased LR keeps every third pixel."""
    hr = smooth_hr(99, 123)
    lr = degrade(hr, 3, parse_degradation("bicubic-noaa"))
    assert np.allclose(lr, hr[1::3, 1::3], atol=1e-12)
    assert np.allclose(degrade(hr, 2, parse_degradation("bicubic-noaa")), imresize(hr, 0.5, antialias=False))
    assert not np.allclose(degrade(hr, 3, parse_degradation("bicubic")), lr, atol=1e-3)


def test_noise_is_repeatable_and_of_the_asked_strength() -> None:
    hr = smooth_hr(300, 300)
    chain = parse_degradation("area,noise:4")
    a, b = degrade(hr, 2, chain), degrade(hr, 2, chain)
    assert np.array_equal(a, b)
    residual = (a - degrade(hr, 2, parse_degradation("area"))) * 255
    assert abs(residual.std() - 4) < 0.1 and abs(residual.mean()) < 0.1


@pytest.mark.parametrize("codec", ["x264", "x265"])
def test_encoder_stage_is_a_real_lossy_encode(codec: str) -> None:
    hr = smooth_hr(96, 123)
    clean = degrade(hr, 3, parse_degradation("bicubic"))
    light = degrade(hr, 3, parse_degradation(f"bicubic,{codec}:crf=10"))
    heavy = degrade(hr, 3, parse_degradation(f"bicubic,{codec}:crf=45"))
    assert light.shape == clean.shape == (32, 41)  # odd sizes pass (gray, no chroma to round)
    assert np.allclose(light * 255, np.rint(light * 255))  # 8-bit code values out of the decoder
    ref = np.rint(clean * 255)
    assert compute_psnr(ref, light * 255) > compute_psnr(ref, heavy * 255) + 3
    assert compute_psnr(ref, heavy * 255) < 45


def test_eval_takes_a_chain_and_psnr_refuses_what_its_decoder_cannot_make(tmp_path: Path) -> None:
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(2):
        Image.fromarray((smooth_hr(90, 90, seed=i) * 255).astype(np.uint8)).save(folder / f"p{i}.png")
    done = run_cli("eval", str(folder), "--preset", "espcn-x3", "--degrade", "bicubic-noaa,x264:crf=30", "--json")
    assert done.returncode == 0, done.stderr.decode()
    report = json.loads(done.stdout)["folders"][0]
    assert report["degradation"] == "bicubic-noaa,x264:crf=30" and len(report["images"]) == 2
    bad = run_cli("eval", str(folder), "--preset", "espcn-x3", "--degrade", "bicubic,x264:crf=99")
    assert bad.returncode == 2 and len(bad.stderr.decode().strip().splitlines()) == 1
    refused = run_cli("psnr", str(folder / "p0.png"), "--scale", "3", "--degrade", "bicubic-noaa")
    err = refused.stderr.decode()
    assert refused.returncode == 2 and "work on images (eval, train) so far" in err
    assert len(err.strip().splitlines()) == 1
