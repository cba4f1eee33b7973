"""The degradation chain: downscaler, then noise and a real encoder, one spec string (#12, item 1)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from espcn_video.errors import EspcnVideoError, UsageError
from espcn_video.quality.degrade import degrade, imresize, parse_degradation
from espcn_video.quality.image_metrics import compute_psnr
from tests.conftest import run_cli


def smooth_hr(h: int = 96, w: int = 123, seed: int = 4) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.cumsum(np.cumsum(rng.normal(0, 1, (h, w)), 0), 1)
    return (x - x.min()) / np.ptp(x)


@pytest.mark.parametrize(
    "spec",
    [
        "bicubic",
        "bicubic-noaa",
        "area",
        "bilinear",
        "lanczos",
        "gaussian:1.2",
        "bicubic-noaa,x264:crf=28",
        "area,noise:2,x265:crf=30",
        "bicubic,x264:crf=28:inter",
        "gaussian:1.2,noise:1.5,x265:crf=33:inter",
    ],
)
def test_specs_round_trip(spec: str) -> None:
    assert parse_degradation(spec).spec() == spec
    assert parse_degradation(spec.upper().replace(",", " , ")).spec() == spec


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("lanczos2", "start with bicubic, bicubic-noaa, area, bilinear, lanczos or gaussian"),
        ("bicubic,x264", "write x264:crf=N or x264:crf=N:inter with N from 0 to 51"),
        ("bicubic,x264:crf=28:intra", "write x264:crf=N or x264:crf=N:inter"),
        ("bicubic,noise:2:inter", "noise:SIGMA needs a number"),
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


def test_inter_stage_keeps_a_p_or_b_frame_of_the_image_itself() -> None:
    """`:inter` codes the image as a moving clip: the frame kept is an inter frame, of the same
    size, repeatable, and the LR of the unshifted image (it lines up with the clean LR at no shift,
    not at the clip's motion)."""
    from espcn_video.quality.degrade import INTER_FRAMES, inter_plan

    hr = smooth_hr(96, 123, seed=7)
    (dy, dx), kept = inter_plan(hr, 3)
    assert 3 <= kept <= INTER_FRAMES - 2 and (dy, dx) != (0, 0) and max(abs(dy), abs(dx)) <= 6
    chain = parse_degradation("bicubic,x264:crf=24:inter")
    types: list[str] = []
    qps: list[int] = []
    lr = degrade(hr, 3, chain, qps, types)
    assert types in (["P"], ["B"]) and len(qps) == INTER_FRAMES  # the clip's quantizers, as the look reads a file
    assert np.array_equal(lr, degrade(hr, 3, chain))
    intra_types: list[str] = []
    intra = degrade(hr, 3, parse_degradation("bicubic,x264:crf=24"), None, intra_types)
    assert intra_types == ["I"] and lr.shape == intra.shape == (32, 41) and not np.array_equal(lr, intra)
    clean = np.rint(degrade(hr, 3, parse_degradation("bicubic")) * 255)
    assert compute_psnr(clean, lr * 255) > 35
    # a whole-LR-pixel stand-in for the clip's motion: the kept frame is not the shifted image
    sy, sx = int(np.sign(dy)) or 0, int(np.sign(dx)) or 0
    moved = np.roll(clean, (sy, sx), axis=(0, 1))[2:-2, 2:-2]
    assert compute_psnr(clean[2:-2, 2:-2], lr[2:-2, 2:-2] * 255) > compute_psnr(moved, lr[2:-2, 2:-2] * 255) + 3


def test_real_inter_share_draws_p_b_chains_and_leaves_older_mixes_alone() -> None:
    from espcn_video.quality.degrade import RandomChains, parse_training_degradation
    from espcn_video.training.data import draw_chains

    labels = [f"BSD200/im{i}.png" for i in range(200)]
    plain = draw_chains(parse_training_degradation("real"), labels, 3, 0, "train")
    assert draw_chains(parse_training_degradation("real:inter=0"), labels, 3, 0, "train") == plain
    mix = parse_training_degradation("real:inter=0.5")
    assert isinstance(mix, RandomChains) and mix.spec() == "real:inter=0.5" and "P/B" in mix.describe()
    chains = [c for _, c in draw_chains(mix, labels, 3, 0, "train")]
    encoded = [c for c in chains if c.stages and c.stages[-1][0] in ("x264", "x265")]
    assert not any(c.inter for c in chains if c not in encoded)
    assert 0.4 < sum(c.inter for c in encoded) / len(encoded) < 0.6
    assert all(parse_degradation(c.spec()) == c for c in chains)
    with pytest.raises(UsageError, match=r"real\[:noaa=P\]\[:noise=P\]\[:encode=P\]\[:inter=P\]"):
        parse_training_degradation("real:inter=2")


def test_eval_takes_a_chain(tmp_path: Path) -> None:
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(2):
        Image.fromarray((smooth_hr(90, 90, seed=i) * 255).astype(np.uint8)).save(folder / f"p{i}.png")
    done = run_cli("eval", str(folder), "--preset", "espcn-x3", "--degrade", "bicubic-noaa,x264:crf=30", "--json")
    assert done.returncode == 0, done.stderr.decode()
    report = json.loads(done.stdout)["folders"][0]
    assert report["degradation"] == "bicubic-noaa,x264:crf=30" and len(report["images"]) == 2
    inter = run_cli("eval", str(folder), "--preset", "espcn-x3", "--degrade", "bicubic,x264:crf=30:inter", "--json")
    assert inter.returncode == 0, inter.stderr.decode()
    moving = json.loads(inter.stdout)["folders"][0]
    assert moving["degradation"] == "bicubic,x264:crf=30:inter"
    assert len(moving["images"]) == 2 and all(10 < i["espcn"]["psnr_db"] < 60 for i in moving["images"])
    bad = run_cli("eval", str(folder), "--preset", "espcn-x3", "--degrade", "bicubic,x264:crf=99")
    assert bad.returncode == 2 and len(bad.stderr.decode().strip().splitlines()) == 1
    real = run_cli("eval", str(folder), "--preset", "espcn-x3", "--degrade", "real")
    assert real.returncode == 2 and "start with bicubic" in real.stderr.decode()


# --- the chain on video (psnr --degrade; jobs/psnr_lr.py) ------------------------------------------


def test_bilinear_and_lanczos_keep_flat_images_flat_and_differ_from_bicubic() -> None:
    flat = np.full((30, 36), 0.4)
    for kind in ("bilinear", "lanczos"):
        assert np.allclose(degrade(flat, 3, parse_degradation(kind)), 0.4)
    hr = smooth_hr(90, 90)
    lrs = {k: degrade(hr, 3, parse_degradation(k)) for k in ("bicubic", "bilinear", "lanczos")}
    assert all(lr.shape == (30, 30) for lr in lrs.values())
    # Lanczos-3 is sharper than bicubic, bilinear softer: their LRs differ, but only a little.
    assert 35 < compute_psnr(lrs["bicubic"] * 255, lrs["lanczos"] * 255) < 80
    assert 35 < compute_psnr(lrs["bicubic"] * 255, lrs["bilinear"] * 255) < 80


def _make_lr(ffmpeg: str, clip: Path, spec: str, folder: Path, scale: int = 3):  # type: ignore[no-untyped-def]
    from espcn_video.jobs.psnr import probe_clip
    from espcn_video.jobs.psnr_lr import make_lr_clip
    from espcn_video.settings import InputSpec

    folder.mkdir(parents=True, exist_ok=True)
    header = probe_clip(ffmpeg, InputSpec(str(clip)))
    return make_lr_clip(ffmpeg, InputSpec(str(clip)), header, parse_degradation(spec), scale, None, folder)


def test_numpy_downscalers_on_video_are_eval_s_on_every_plane(ffmpeg: str, clips, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import decode_y4m

    clip = clips("chain_src.y4m", "-pix_fmt", "yuv420p", src="testsrc2=s=96x54:r=10:d=0.5")
    lr = _make_lr(ffmpeg, clip, "bicubic-noaa", tmp_path / "lr")
    assert lr.path.endswith(".y4m")
    _, refs = decode_y4m(ffmpeg, clip)
    header, frames = decode_y4m(ffmpeg, lr.path)
    assert (header.geometry.width, header.geometry.height) == (32, 18) and len(frames) == len(refs) == 5
    for ref, out in zip(refs, frames, strict=True):
        for ref_plane, out_plane in zip(ref, out, strict=True):
            want = np.rint(np.clip(imresize(ref_plane / 255.0, 1 / 3, antialias=False), 0, 1) * 255)
            assert np.array_equal(out_plane, want)


def test_encoder_stage_compresses_the_decoder_s_lr_as_one_clip(ffmpeg: str, clips, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import decode_y4m

    clip = clips("chain_src.y4m", "-pix_fmt", "yuv420p", src="testsrc2=s=96x54:r=10:d=0.5")
    plain = _make_lr(ffmpeg, clip, "bicubic,noise:3", tmp_path / "plain")  # noise: forces the made clip
    encoded = _make_lr(ffmpeg, clip, "bicubic,noise:3,x264:crf=30", tmp_path / "enc")
    noisy_then_more = _make_lr(ffmpeg, clip, "bicubic,x264:crf=30,noise:3", tmp_path / "after")
    assert encoded.path.endswith(".mkv") and noisy_then_more.path.endswith(".y4m")
    _, a = decode_y4m(ffmpeg, plain.path)
    _, b = decode_y4m(ffmpeg, encoded.path)
    _, c = decode_y4m(ffmpeg, noisy_then_more.path)
    assert len(a) == len(b) == len(c) == 5
    for x, y in zip(a, b, strict=True):
        db = compute_psnr(x[0].astype(np.float64), y[0].astype(np.float64))
        assert 25 < db < 50  # the same picture, through a lossy encoder
    assert not np.array_equal(b[0][0], c[0][0])
    # on video `:inter` changes nothing: the LR clip is always coded with its P and B frames
    inter = _make_lr(ffmpeg, clip, "bicubic,noise:3,x264:crf=30:inter", tmp_path / "inter")
    _, d = decode_y4m(ffmpeg, inter.path)
    assert all(np.array_equal(x[0], y[0]) for x, y in zip(b, d, strict=True))


def test_psnr_degrade_chains_on_video_reproduce_the_aliased_case(clips) -> None:  # type: ignore[no-untyped-def]
    clip = clips("chain_big.y4m", "-pix_fmt", "yuv420p", src="testsrc2=s=192x108:r=10:d=0.6")
    scores = {}
    for spec in ("bicubic", "bicubic-noaa", "lanczos,x265:crf=30"):
        args = ("--scale", "3", "--methods", "espcn,bicubic", "--degrade", spec, "--json", "-q")
        done = run_cli("psnr", str(clip), *args)
        assert done.returncode == 0, done.stderr.decode()
        report = json.loads(done.stdout)
        assert report["degradation"]["spec"] == spec and report["clips"][0]["frames"] == 6
        scores[spec] = {m: v["y"]["mean_psnr_db"] for m, v in report["overall"].items()}
    # The clean preset helps on antialiased LR and hurts on aliased LR (issue #12's measurement).
    assert scores["bicubic"]["espcn"] > scores["bicubic"]["bicubic"] + 0.5
    assert scores["bicubic-noaa"]["espcn"] < scores["bicubic-noaa"]["bicubic"] - 0.5


def test_psnr_chain_on_a_10_bit_clip(clips) -> None:  # type: ignore[no-untyped-def]
    clip = clips("chain_10bit.mkv", "-pix_fmt", "yuv420p10le", "-c:v", "ffv1", src="testsrc2=s=96x54:r=10:d=0.3")
    done = run_cli("psnr", str(clip), "--scale", "3", "--methods", "bicubic", "--degrade", "area,x265:crf=20", "--json")
    assert done.returncode == 0, done.stderr.decode()
    clip_doc = json.loads(done.stdout)["clips"][0]
    assert clip_doc["bits"] == 10 and clip_doc["frames"] == 3
    assert 20 < clip_doc["methods"]["bicubic"]["y"]["mean_psnr_db"] < 60


# --- `train --degrade real`: randomised chains, drawn once and cached ------------------------------


def test_real_chains_are_drawn_from_the_grammar_and_repeatable() -> None:
    from collections import Counter

    from espcn_video.quality.degrade import RandomChains, parse_training_degradation
    from espcn_video.training.data import draw_chains

    model = parse_training_degradation("REAL")
    assert isinstance(model, RandomChains) and model.spec() == "real"
    labels = [f"T91/im{i}.png" for i in range(300)]
    chains = draw_chains(model, labels, 3, 0, "train")
    assert len(chains) == 8 * 300 and chains == draw_chains(model, labels, 3, 0, "train")
    # an image's chains depend on its label, not on its place in the list
    flipped = draw_chains(model, labels[::-1], 3, 0, "train")
    assert [c for i, c in flipped if i == 299] == [c for i, c in chains if i == 0]
    assert draw_chains(model, labels, 3, 1, "train") != chains
    for _, chain in chains:
        assert parse_degradation(chain.spec()) == chain
    kinds = Counter(chain.kind for _, chain in chains)
    assert set(kinds) == {"bicubic", "bicubic-noaa", "area", "bilinear", "lanczos", "gaussian"}
    encoded = sum(any(n in ("x264", "x265") for n, _ in c.stages) for _, c in chains) / len(chains)
    assert 0.7 < encoded < 0.8


def test_real_training_data_has_variants_and_a_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    from espcn_video.training import data as data_module
    from espcn_video.training.config import TrainConfig

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(4):
        Image.fromarray((smooth_hr(66, 72, seed=i) * 255).astype(np.uint8)).save(folder / f"im{i}.png")
    monkeypatch.setenv("ESPCN_VIDEO_CACHE", str(tmp_path / "cache"))
    config = TrainConfig(scale=3, out=tmp_path / "r.pt", data_dirs=(folder,), degrade="real", val_fraction=0.25)
    planes, val_pairs, report = data_module.prepare_data(config)
    assert len(report.train) == 3 and len(report.val) == 1
    assert len(planes.inputs) == 3 * 8 and len(val_pairs) == 4
    assert all(p.shape == (22, 24) for p in planes.inputs)
    # the 8 variants of an image share its HR target and differ from each other
    assert all(planes.targets[k] is planes.targets[k - k % 8] for k in range(24))
    specs = [c.spec() for _, c in data_module.draw_chains(data_module.RandomChains(), report.train, 3, 0, "train")]
    assert len({planes.inputs[k].tobytes() for k in range(8)}) == len(set(specs[:8])) >= 5
    cached = list((tmp_path / "cache").glob("lr-x3-*.npz"))
    assert len(cached) == 1

    def no_degrading(*args: object) -> np.ndarray:
        raise AssertionError("the cache should have answered")

    monkeypatch.setattr(data_module, "degrade", no_degrading)
    again = data_module.make_planes(config, [hr for hr in _train_hr(config, report)], report.train)
    for a, b in zip(planes.inputs, again.inputs, strict=True):
        np.testing.assert_array_equal(a, b)


def _train_hr(config, report):  # type: ignore[no-untyped-def]
    from espcn_video.training.data import read_hr_planes

    labelled, _ = read_hr_planes(config)
    return [hr for label, hr in labelled if label in report.train]


def test_psnr_crops_show_the_chain_s_lr(clips, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image

    clip = clips("chain_big.y4m", "-pix_fmt", "yuv420p", src="testsrc2=s=192x108:r=10:d=0.6")
    args = ("--scale", "3", "--methods", "espcn,bicubic", "--degrade", "bicubic-noaa,x264:crf=28")
    done = run_cli("psnr", str(clip), *args, "--crops", str(tmp_path / "crops"), "--worst", "1", "--json", "-q")
    assert done.returncode == 0, done.stderr.decode()
    clip_doc = json.loads(done.stdout)["clips"][0]
    (crop,) = clip_doc["crops"]
    worst = min(clip_doc["methods"]["espcn"]["per_frame"]["psnr_y_db"])
    assert f"_{worst:.2f}dB_" in crop and Image.open(crop).size[0] > 3 * 96


def test_making_the_lr_clip_is_said_but_not_counted_as_a_run(capsys: pytest.CaptureFixture[str]) -> None:
    from espcn_video.cli.psnr_cmd import _progress
    from espcn_video.jobs.psnr import LR_RUN

    on_run, _ = _progress(True, 1, 2, None)
    for method in (LR_RUN, "espcn", "bicubic"):
        on_run("a.y4m", method)
    assert capsys.readouterr().err.splitlines() == [
        "psnr a.y4m: making the LR clip",
        "psnr [1/2] a.y4m: espcn",
        "psnr [2/2] a.y4m: bicubic",
    ]


def test_an_encoder_crash_is_tried_again_then_said_in_one_line(
    fake_ffmpeg: Callable[[str], dict[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bundled libx265 now and then aborts on a clip it codes fine when run again (seen while
    making `real:...:inter=1` training data): one crash costs a retry, not the whole preparation."""
    hr = smooth_hr()
    chain = parse_degradation("bicubic,x265:crf=30")
    expected = degrade(hr, 3, chain)  # the real ffmpeg
    once = tmp_path / "once"
    once.touch()
    for key, value in {**fake_ffmpeg("encoder-crash-once"), "FAKE_ONCE": str(once)}.items():
        monkeypatch.setenv(key, value)
    np.testing.assert_array_equal(degrade(hr, 3, chain), expected)
    assert not once.exists()  # the first encoder did crash
    monkeypatch.setenv("FAKE_MODE", "encoder-crash")
    with pytest.raises(EspcnVideoError) as failed:
        degrade(hr, 3, chain)
    assert (
        str(failed.value) == "--degrade x265: ffmpeg crashed (signal SIGABRT) 3 times: free(): invalid next size (fast)"
    )


def test_psnr_s_lr_encode_is_tried_again_after_a_crash_then_fails_in_one_line(  # type: ignore[no-untyped-def]
    ffmpeg: str, clips, fake_ffmpeg: Callable[[str], dict[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """psnr's LR clip is a stream (decoder, downscale, noise, encoder): a crashed encoder is run
    again from a fresh stream, and its LR is the one an uncrashed run makes."""
    from tests.conftest import decode_y4m

    clip = clips("chain_src.y4m", "-pix_fmt", "yuv420p", src="testsrc2=s=96x54:r=10:d=0.5")
    spec = "bicubic-noaa,noise:2,x264:crf=30"
    plain = _make_lr(ffmpeg, clip, spec, tmp_path / "plain")
    once = tmp_path / "once"
    once.touch()
    env = {**fake_ffmpeg("encoder-crash-once"), "FAKE_ONCE": str(once)}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    crashed = _make_lr(env["ESPCN_VIDEO_FFMPEG"], clip, spec, tmp_path / "crashed")
    assert not once.exists()  # the first encode did crash
    _, want = decode_y4m(ffmpeg, plain.path)
    _, got = decode_y4m(ffmpeg, crashed.path)
    assert len(got) == len(want) == 5
    assert all(np.array_equal(a, b) for x, y in zip(want, got, strict=True) for a, b in zip(x, y, strict=True))
    monkeypatch.setenv("FAKE_MODE", "encoder-crash")
    done = run_cli("psnr", str(clip), "--scale", "3", "--methods", "bicubic", "--degrade", spec)
    err = done.stderr.decode()
    assert done.returncode != 0 and "Traceback" not in err
    assert "LR encoder failed" in err and "SIGABRT" in err and "free(): invalid next size" in err, err
