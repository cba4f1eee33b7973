"""ESPCN layout, SR-paper degradations, and a few training steps on a generated image folder."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import run_cli
from espcn_video.errors import DataError, PresetError, UsageError
from espcn_video.model.net import ESPCN, SRCNN
from espcn_video.model.presets import load_preset
from espcn_video.quality.degrade import gaussian_degrade, imresize, mod_crop, parse_degradation
from espcn_video.quality.images import read_y_plane, rgb_to_y
from espcn_video.training.config import TrainConfig
from espcn_video.training.data import TOO_SMALL, rescaled
from espcn_video.training.loop import train

# --- PixelShuffle -------------------------------------------------------------------------


def test_pixel_shuffle_is_the_papers_periodic_shuffle_for_one_channel() -> None:
    # Paper: PS(T)[x, y, c] = T[x // r, y // r, C·r·(y mod r) + C·(x mod r) + c], x = column, y = row.
    r, h, w = 3, 4, 5
    t = torch.arange(r * r * h * w, dtype=torch.float32).reshape(1, r * r, h, w)
    out = torch.nn.PixelShuffle(r)(t)[0, 0]
    for y in range(h * r):
        for x in range(w * r):
            assert out[y, x] == t[0, r * (y % r) + (x % r), y // r, x // r]


def test_pixel_shuffle_orders_colour_channels_channel_major() -> None:
    # For C > 1 torch puts c first (c·r² + r·(y mod r) + (x mod r)); the paper's formula puts c last.
    # Our presets are single-channel (Y), where both agree; this pins torch's order for C > 1.
    r, c_count, h, w = 2, 3, 2, 3
    t = torch.arange(c_count * r * r * h * w, dtype=torch.float32).reshape(1, c_count * r * r, h, w)
    out = torch.nn.PixelShuffle(r)(t)[0]
    for c in range(c_count):
        for y in range(h * r):
            for x in range(w * r):
                assert out[c, y, x] == t[0, c * r * r + r * (y % r) + (x % r), y // r, x // r]


# --- degradations -------------------------------------------------------------------------


def test_rgb_to_y_is_bt601_studio_range() -> None:
    assert rgb_to_y(np.array([[[0, 0, 0]]], dtype=np.uint8))[0, 0] == pytest.approx(16.0)
    assert rgb_to_y(np.array([[[255, 255, 255]]], dtype=np.uint8))[0, 0] == pytest.approx(235.0)
    assert rgb_to_y(np.array([[[255, 0, 0]]], dtype=np.uint8))[0, 0] == pytest.approx(16 + 65.481)
    assert rgb_to_y(np.array([[[0.0, 1.0, 0.0]]]))[0, 0] == pytest.approx(16 + 128.553)
    assert rgb_to_y(np.array([[128]], dtype=np.uint8))[0, 0] == pytest.approx(16 + 219 * 128 / 255)


def test_imresize_keeps_a_constant_image_constant() -> None:
    img = np.full((12, 9), 77.5)
    for scale in (1 / 4, 1 / 3, 1 / 2, 2, 3, 4):
        out = imresize(img, scale)
        assert out.shape == (math.ceil(12 * scale - 1e-9), math.ceil(9 * scale - 1e-9))  # MATLAB: ceil
        np.testing.assert_allclose(out, 77.5, atol=1e-10)


def test_imresize_halves_like_matlab() -> None:
    # Hand-derived from MATLAB's formula for scale 1/2: kernel = 0.5·cubic(0.5·d), 8 taps at
    # d = ±0.5, ±1.5, ±2.5, ±3.5 -> weights 0.43359375, 0.11328125, -0.03515625, -0.01171875;
    # taps before the first sample mirror (index 0 -> 1, -1 -> 2, ...). Row = [1, 4, 9, ..., 64].
    img = np.tile(np.array([1, 4, 9, 16, 25, 36, 49, 64], dtype=np.float64), (4, 1))
    expected = np.array([2.19921875, 12.23828125, 30.44921875, 57.11328125])
    out = imresize(img, 0.5)
    assert out.shape == (2, 4)
    np.testing.assert_allclose(out, np.tile(expected, (2, 1)), atol=1e-12)


def test_imresize_doubles_like_matlab() -> None:
    # Scale 2, no antialiasing: the first output sits at input 0.75 -> weights on inputs
    # (-1 -> 2, 0 -> 1, 1, 2) = cubic(1.75), cubic(0.75), cubic(0.25), cubic(1.25)
    # = -0.0234375, 0.2265625, 0.8671875, -0.0703125 -> 1.09375·a1 - 0.09375·a2.
    row = np.array([1, 4, 9, 16, 25, 36, 49, 64], dtype=np.float64)
    out = imresize(np.tile(row, (3, 1)), 2)
    assert out.shape == (6, 16)
    assert out[0, 0] == pytest.approx(1.09375 * 1 - 0.09375 * 4, abs=1e-12)
    np.testing.assert_allclose(out[0, :4], [0.71875, 1.4921875, 3.0390625, 5.0625], atol=1e-12)


def test_imresize_by_one_third_keeps_mod_cropped_sizes_exact() -> None:
    assert imresize(np.zeros((255, 252)), 1 / 3).shape == (85, 84)


def test_mod_crop_and_gaussian_degrade() -> None:
    img = np.arange(11 * 8, dtype=np.float64).reshape(11, 8)
    assert mod_crop(img, 3).shape == (9, 6)
    lr = gaussian_degrade(np.full((9, 12), 50.0), 3, 1.6)
    assert lr.shape == (3, 4)
    np.testing.assert_allclose(lr, 50.0)
    spike = np.zeros((9, 9))
    spike[4, 4] = 1.0  # the centre sample of the middle 3x3 block is kept for odd scales
    assert gaussian_degrade(spike, 3, 0.5)[1, 1] == pytest.approx(gaussian_degrade(spike, 3, 0.5).max())


def test_parse_degradation() -> None:
    assert parse_degradation("bicubic").spec() == "bicubic"
    assert parse_degradation("gaussian").sigma == pytest.approx(1.6)
    assert parse_degradation("Gaussian:2.5").spec() == "gaussian:2.5"
    assert parse_degradation("area").spec() == "area"
    for bad in ("nearest", "gaussian:x", "gaussian:-1", "area:2"):
        with pytest.raises(UsageError):
            parse_degradation(bad)


# --- training on a generated folder -------------------------------------------------------


def _smooth_rgb(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    base = 127 + 60 * np.sin(xx / 5.0 + rng.uniform(0, 6)) * np.cos(yy / 7.0)
    noise = rng.normal(0, 8, (h, w, 3))
    return np.clip(base[..., None] + noise, 0, 255).astype(np.uint8)


@pytest.fixture()
def image_folder(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    folder = tmp_path / "train"
    folder.mkdir()
    for i in range(4):
        Image.fromarray(_smooth_rgb(rng, 64, 70)).save(folder / f"rgb{i}.png")
    Image.fromarray(_smooth_rgb(rng, 60, 60)[..., 0]).save(folder / "gray.png")
    rgba = np.dstack([_smooth_rgb(rng, 60, 66), np.full((60, 66), 128, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(folder / "rgba.png")
    Image.fromarray(_smooth_rgb(rng, 60, 60)[..., 1].astype(np.uint16) * 257).save(folder / "deep16.png")
    Image.fromarray(_smooth_rgb(rng, 40, 40)).save(folder / "tiny.png")  # < 51x51 HR patch at x3
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + rng.bytes(200))
    (folder / "notes.txt").write_text("not an image, ignored")
    return folder


def test_16_bit_and_gray_read_as_8_bit_y(image_folder: Path) -> None:
    y16, note16 = read_y_plane(image_folder / "deep16.png")
    y8 = rgb_to_y(np.asarray(Image.open(image_folder / "deep16.png"), dtype=np.float64) / 65535.0)
    assert note16 == "16-bit scaled to 8-bit"
    np.testing.assert_allclose(y16, np.floor(y8 + 0.5))
    assert read_y_plane(image_folder / "gray.png")[1] == "grayscale"
    assert read_y_plane(image_folder / "rgba.png")[1] == "alpha dropped"


def _config(folder: Path, tmp_path: Path, **overrides: object) -> TrainConfig:
    base: dict[str, object] = dict(
        scale=3,
        out=tmp_path / "out" / "tiny-x3.pt",
        data_dirs=(folder,),
        steps=20,
        threads=1,
        val_every=10,
        checkpoint_interval_s=3600.0,
        device="cpu",
    )
    base.update(overrides)
    return TrainConfig(**base)  # type: ignore[arg-type]


@pytest.mark.slow
def test_train_skips_counts_resume_and_outputs(image_folder: Path, tmp_path: Path) -> None:
    seen: list[tuple[int, float | None]] = []

    def stop_at_10(step: int, total: int, loss: float, val: float | None) -> None:
        seen.append((step, val))
        if step == 10:
            raise KeyboardInterrupt

    config = _config(image_folder, tmp_path)
    with pytest.raises(KeyboardInterrupt):
        train(config, stop_at_10)
    assert config.checkpoint_path.is_file()  # Ctrl-C saved a checkpoint
    assert seen[-1][0] == 10 and seen[-1][1] is not None
    resumed_steps: list[int] = []
    result = train(_config(image_folder, tmp_path, resume=True), lambda s, t, loss, v: resumed_steps.append(s))
    assert resumed_steps == list(range(11, 21))
    assert result.steps == 20
    assert result.data.skip_counts() == {TOO_SMALL: 1, "unreadable or corrupt": 1}
    assert sorted(item["file"] for item in result.data.skipped) == ["train/corrupt.png", "train/tiny.png"]
    assert dict(result.data.notes) == {"grayscale": 1, "alpha dropped": 1, "16-bit scaled to 8-bit": 1}
    assert len(result.data.train) + len(result.data.val) == 7 and len(result.data.val) == 1

    straight = train(_config(image_folder, tmp_path / "straight"))
    for key, value in straight.metadata.items():
        if key not in ("created", "training"):
            assert result.metadata[key] == value
    resumed_weights = torch.load(result.out, weights_only=True)
    straight_weights = torch.load(straight.out, weights_only=True)
    for key, tensor in straight_weights.items():  # resume continued exactly
        assert torch.equal(resumed_weights[key], tensor), key
    model, info = load_preset(str(result.out))
    assert info.scale == 3 and info.arch == "espcn" and info.metadata["training"]["steps"] == 20
    assert not model.training


@pytest.mark.slow
def test_resume_with_other_settings_is_refused(image_folder: Path, tmp_path: Path) -> None:
    train(_config(image_folder, tmp_path, steps=2))
    with pytest.raises(UsageError, match="steps=2"):
        train(_config(image_folder, tmp_path, steps=3, resume=True))


@pytest.mark.slow
def test_l1_loss_is_recorded_and_resume_keeps_it(image_folder: Path, tmp_path: Path) -> None:
    l1 = train(_config(image_folder, tmp_path / "l1", steps=2, loss="l1"))
    assert l1.metadata["training"]["loss"] == "l1"
    l2 = train(_config(image_folder, tmp_path / "l2", steps=2))
    assert l2.metadata["training"]["loss"] == "l2"
    changed = [
        k
        for k, v in torch.load(l1.out, weights_only=True).items()
        if not torch.equal(v, torch.load(l2.out, weights_only=True)[k])
    ]
    assert changed  # same seed, same batches: only the loss differs
    with pytest.raises(UsageError, match="loss='l1' \\(now 'l2'\\)"):
        train(_config(image_folder, tmp_path / "l1", steps=2, resume=True))


def test_rescale_adds_each_image_downscaled_and_rounded_to_8_bits() -> None:
    rng = np.random.default_rng(1)
    big = np.clip(np.rint(rng.normal(120, 40, (90, 100))), 16, 235)
    small = np.clip(np.rint(rng.normal(120, 40, (60, 60))), 16, 235)
    planes, labels, too_small = rescaled([big, small], ["a.png", "b.png"], (0.9, 0.7), 3, 51)
    # 90x100 at 0.9 -> 81x90, at 0.7 -> 63x70 -> mod 3: 63x69; 60x60 at 0.9 -> 54x54; at 0.7 -> 42 < 51.
    assert labels == ["a.png@0.9", "b.png@0.9", "a.png@0.7"]
    assert [p.shape for p in planes] == [(81, 90), (54, 54), (63, 69)]
    assert too_small == 1
    np.testing.assert_array_equal(planes[0], np.clip(np.floor(imresize(big, 0.9) + 0.5), 16, 235))
    assert all(np.array_equal(p, np.rint(p)) and p.min() >= 16 and p.max() <= 235 for p in planes)


@pytest.mark.slow
def test_rescale_grows_the_training_set_not_the_hold_out_and_resume_keeps_it(
    image_folder: Path, tmp_path: Path
) -> None:
    plain = train(_config(image_folder, tmp_path / "plain", steps=2))
    more = train(_config(image_folder, tmp_path / "more", steps=2, rescale=(0.9, 0.8)))
    images, plain_images = more.metadata["training"]["images"], plain.metadata["training"]["images"]
    assert more.metadata["training"]["rescale"] == [0.9, 0.8]
    assert "rescale" not in plain.metadata["training"] and "rescaled" not in plain_images
    assert (images["train"], images["val"]) == (plain_images["train"], plain_images["val"])
    assert images["rescaled"] + images["rescaled_too_small"] == 2 * images["train"]
    # 64x70 and 60x66 images keep a 51x51 HR patch at 0.8 (52x56, 48x53 -> no); 60x60 ones only at 0.9.
    assert images["rescaled"] > images["train"] and images["rescaled_too_small"] > 0
    assert more.val_psnr_db is not None and plain.val_psnr_db is not None
    with pytest.raises(UsageError, match="rescale=\\[0.9, 0.8\\] \\(now \\[\\]\\)"):
        train(_config(image_folder, tmp_path / "more", steps=2, resume=True))


def test_rescale_out_of_range_is_one_line_usage_error(tmp_path: Path) -> None:
    proc = run_cli("train", "--rescale", "0.9,1.2", "--steps", "1", "--data", str(tmp_path))
    assert proc.returncode == 2
    err = proc.stderr.decode()
    assert "'0.9,1.2' is not a list of distinct factors" in err and "Traceback" not in err


def test_repconv_is_exactly_its_three_branches_and_collapses_to_one_conv() -> None:
    from espcn_video.training.reparam import RepConv2d, collapsed, expanded

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(6, 4, kernel_size=5, padding=2)
    rep = RepConv2d(conv, expand=3)
    for p in rep.parameters():  # every branch active, not just the zero-started ones
        torch.nn.init.normal_(p, std=0.2)
    x = torch.randn(2, 6, 11, 9)
    by_branches = (
        torch.nn.functional.conv2d(x, rep.main, rep.bias, padding=2)
        + torch.nn.functional.conv2d(torch.nn.functional.conv2d(x, rep.down), rep.up, padding=2)
        + torch.nn.functional.conv2d(x, rep.point)
    )
    torch.testing.assert_close(rep(x), by_branches, atol=1e-5, rtol=1e-5)
    # a fresh expansion computes what the network did; the collapsed copy is a plain network again
    net = ESPCN(3)
    lr = torch.rand(1, 1, 12, 10)
    before = net(lr)
    grown = expanded(net, 2)
    torch.testing.assert_close(grown(lr), before, atol=0, rtol=0)
    for p in grown.parameters():
        torch.nn.init.normal_(p, std=0.05)
    plain = collapsed(grown)
    assert set(plain.state_dict()) == set(ESPCN(3).state_dict())
    torch.testing.assert_close(plain(lr), grown(lr), atol=1e-6, rtol=1e-5)


@pytest.mark.slow
def test_expand_trains_a_wider_sum_and_writes_the_plain_network(image_folder: Path, tmp_path: Path) -> None:
    from espcn_video.training.checkpoints import initial_model

    init = tmp_path / "init.pt"
    start = train(_config(image_folder, tmp_path / "start", steps=2, out=init))
    config = _config(image_folder, tmp_path / "rep", steps=3, expand=2, init_from=str(start.out))
    lr = torch.rand(1, 1, 14, 13)
    preset, _ = load_preset(init)
    torch.testing.assert_close(initial_model(config)(lr), preset(lr), atol=0, rtol=0)  # step 0 = the preset
    done = train(config)
    assert done.metadata["training"]["expand"] == 2
    plain, _ = load_preset(done.out)  # the written preset: the plain 5-3-3 network
    assert isinstance(plain, ESPCN) and set(plain.state_dict()) == set(ESPCN(3).state_dict())
    trained = initial_model(config)  # the expanded network, with the checkpoint's weights
    trained.load_state_dict(torch.load(config.checkpoint_path, weights_only=False)["model"])
    torch.testing.assert_close(plain(lr), trained(lr), atol=1e-6, rtol=1e-5)
    assert not torch.equal(plain(lr), preset(lr))
    with pytest.raises(UsageError, match="expand=2 \\(now 0\\)"):
        train(_config(image_folder, tmp_path / "rep", steps=3, init_from=str(start.out), resume=True))


@pytest.mark.slow
def test_srcnn_trains_on_upscaled_patches(image_folder: Path, tmp_path: Path) -> None:
    result = train(_config(image_folder, tmp_path, arch="srcnn", steps=3, out=tmp_path / "srcnn-x3.pt"))
    model, info = load_preset(str(result.out))
    assert info.arch == "srcnn" and info.scale == 3
    assert result.metadata["training"]["patch"] == {"input": 33, "hr": 33}


def test_unusable_data_is_a_data_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no image files"):
        train(_config(empty, tmp_path))
    with pytest.raises(DataError, match="does not exist"):
        train(_config(tmp_path / "missing", tmp_path))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.png").write_bytes(b"nope")
    with pytest.raises(DataError, match="no usable training images"):
        train(_config(broken, tmp_path))


@pytest.mark.slow
def test_init_starts_from_a_preset_and_checks_it_fits(image_folder: Path, tmp_path: Path) -> None:
    first = train(_config(image_folder, tmp_path, steps=3))
    start = torch.load(first.out, weights_only=True)
    # One step at a negligible rate: the result is the --init weights, not the seed's fresh ones.
    warm = train(_config(image_folder, tmp_path / "warm", steps=1, lr=1e-9, lr_min=1e-10, init_from=str(first.out)))
    assert warm.metadata["training"]["init"]["preset"] == "tiny-x3"
    assert warm.metadata["training"]["init"]["training"]["steps"] == 3
    warm_w = torch.load(warm.out, weights_only=True)
    torch.manual_seed(0)
    fresh = ESPCN(3).state_dict()
    for key, tensor in start.items():
        assert torch.allclose(warm_w[key], tensor, atol=1e-6), key
    assert not torch.allclose(fresh["conv1.weight"], start["conv1.weight"], atol=1e-4)
    with pytest.raises(UsageError, match=r"--init .* is espcn x3, not espcn x2"):
        train(_config(image_folder, tmp_path / "x2", scale=2, steps=1, init_from=str(first.out)))


@pytest.mark.slow
def test_srcnn_starts_from_another_scale(image_folder: Path, tmp_path: Path) -> None:
    """SRCNN runs on the upscaled image, so its weights carry no scale: the x2 and x4 baselines
    warm-start from the x3 one. ESPCN's last layer is scale-sized and stays refused (test above)."""
    first = train(_config(image_folder, tmp_path, arch="srcnn", steps=2, out=tmp_path / "out" / "s-x3.pt"))
    warm = train(
        _config(
            image_folder, tmp_path / "x2", arch="srcnn", scale=2, steps=1, lr=1e-9, lr_min=1e-10,
            init_from=str(first.out), out=tmp_path / "x2" / "s-x2.pt",
        )
    )  # fmt: skip
    assert warm.metadata["training"]["init"]["preset"] == "s-x3" and warm.metadata["scale"] == 2
    start, warm_w = torch.load(first.out, weights_only=True), torch.load(warm.out, weights_only=True)
    assert all(torch.allclose(warm_w[k], v, atol=1e-6) for k, v in start.items())
    with pytest.raises(UsageError, match=r"--init .* is srcnn x3, not espcn x2"):
        train(_config(image_folder, tmp_path / "e", scale=2, steps=1, init_from=str(first.out)))
    espcn = train(_config(image_folder, tmp_path / "e3", steps=1))
    with pytest.raises(UsageError, match=r"--init .* is espcn x3, not srcnn$"):
        train(_config(image_folder, tmp_path / "s2", arch="srcnn", scale=2, steps=1, init_from=str(espcn.out)))


@pytest.mark.slow
def test_a_wider_network_starts_as_the_narrower_preset(image_folder: Path, tmp_path: Path) -> None:
    """--width wider than --init's preset: the widened network computes the preset's output (new
    channels silent), its new channels are not copies of each other, one step moves them, and the
    preset it makes loads with its widths. Narrower than the preset is refused."""
    from espcn_video.training.checkpoints import initial_model

    first = train(_config(image_folder, tmp_path, steps=2))
    narrow, _ = load_preset(str(first.out))
    wide_config = _config(image_folder, tmp_path / "wide", steps=1, init_from=str(first.out), widths=(96, 48))
    wide = initial_model(wide_config).eval()
    x = torch.rand(1, 1, 23, 31)
    with torch.inference_mode():
        assert torch.equal(wide(x), narrow(x))
    w1 = wide.conv1.weight.detach()
    assert w1.shape == (96, 1, 5, 5) and not torch.allclose(w1[64], w1[65])
    assert not wide.conv3.weight[:, 32:].any() and not wide.conv2.weight[:, 64:].any()
    result = train(wide_config)
    model, info = load_preset(str(result.out))
    assert result.metadata["channels"] == [96, 48] and model.conv2.weight.shape == (48, 96, 3, 3)
    assert model.conv3.weight[:, 32:].abs().sum() > 0  # the new channels are being trained
    with pytest.raises(UsageError, match=r"has widths 96,48; --width cannot be narrower"):
        train(_config(image_folder, tmp_path / "n", steps=1, init_from=str(result.out)))


def test_a_deeper_network_starts_as_the_shallower_preset(image_folder: Path, tmp_path: Path) -> None:
    """--blocks N from a 5-3-3 --init preset: the new residual blocks start as identities (the
    preset's output exactly), one run trains them, the preset it writes loads as a deeper ESPCN
    with its receptive field and MACs; fewer blocks than the --init preset, or blocks on SRCNN,
    are refused in one line."""
    from espcn_video.training.checkpoints import initial_model

    first = train(_config(image_folder, tmp_path, steps=2))
    shallow, _ = load_preset(str(first.out))
    deep_config = _config(image_folder, tmp_path / "deep", steps=2, init_from=str(first.out), blocks=2, patch=20)
    deep = initial_model(deep_config).eval()
    x = torch.rand(1, 1, 23, 31)
    with torch.inference_mode():
        assert torch.equal(deep(x), shallow(x))
    result = train(deep_config)
    model, info = load_preset(str(result.out))
    assert isinstance(model, ESPCN) and len(model.blocks) == 2 and model.receptive_radius == 8
    assert model.blocks[0].conv_b.weight.abs().sum() > 0  # the blocks are being trained
    assert result.metadata["blocks"] == 2 and result.metadata["training"]["patch"] == {"input": 20, "hr": 60}
    assert info.macs_per_hr_pixel == pytest.approx((1600 + 18432 + 2 * 18432 + 288 * 9) / 9)
    assert ESPCN.macs_per_lr_pixel(3, blocks=2) == 1600 + 18432 + 2 * 18432 + 288 * 9
    with pytest.raises(UsageError, match=r"has layers this network lacks \(blocks\.0\.conv_a\.bias"):
        train(_config(image_folder, tmp_path / "s", steps=1, init_from=str(result.out)))
    with pytest.raises(UsageError, match="--blocks deepens ESPCN"):
        train(_config(image_folder, tmp_path / "c", steps=1, arch="srcnn", blocks=1))


def test_a_preset_with_broken_blocks_is_refused(tmp_path: Path) -> None:
    """The architecture comes from the shapes: a missing block key or a block of the wrong
    width is one PresetError line, never a half-built network."""
    state = ESPCN(3, blocks=2).state_dict()
    broken = tmp_path / "gap.pt"
    torch.save({k: v for k, v in state.items() if not k.startswith("blocks.0.conv_b")}, broken)
    with pytest.raises(PresetError, match=r"missing keys \['blocks\.0\.conv_b\.bias'"):
        load_preset(str(broken))
    wrong = dict(state)
    wrong["blocks.1.conv_a.weight"] = torch.zeros(32, 32, 5, 5)
    torch.save(wrong, tmp_path / "wrong.pt")
    with pytest.raises(PresetError, match="blocks.1.conv_a is not a 3x3 convolution of conv2's 32 channels"):
        load_preset(str(tmp_path / "wrong.pt"))


@pytest.mark.slow
@pytest.mark.parametrize("loop", ["host", "device"])
def test_distillation_trains_on_the_teachers_targets(image_folder: Path, tmp_path: Path, loop: str) -> None:
    """--teacher in both loops: the run draws patches with the teacher's context, trains, and names
    the teacher (and that context) in the metadata; the same run without a teacher ends elsewhere."""
    first = train(_config(image_folder, tmp_path, steps=2))
    common = dict(steps=3, lr=1e-3, init_from=str(first.out), loop=loop, patch=9)
    taught = train(
        _config(image_folder, tmp_path / "t", teacher=str(first.out), teacher_weight=1.0, **common)  # type: ignore[arg-type]
    )
    assert taught.steps == 3 and len(taught.data.train) >= 4  # the 64x70 images hold a 9 + 2·4 = 17 LR patch
    assert taught.metadata["training"]["teacher"] == {
        "preset": "tiny-x3", "weight": 1.0, "channels": [64, 32], "val_psnr_db": first.val_psnr_db,
        "context_lr_pixels": 4,
    }  # fmt: skip
    after = torch.load(taught.out, weights_only=True)
    plain = torch.load(train(_config(image_folder, tmp_path / "p", **common)).out, weights_only=True)  # type: ignore[arg-type]
    assert not torch.equal(plain["conv1.weight"], after["conv1.weight"])


def test_teacher_targets_mix_hr_and_the_teacher() -> None:
    """The call takes a patch drawn `margin` LR pixels larger and gives the centre and its target."""
    from espcn_video.training.checkpoints import TeacherTargets

    torch.manual_seed(0)
    teacher = ESPCN(2)
    mixer = TeacherTargets(teacher, 0.25)
    m = mixer.margin
    assert m == 4  # 5x5 then two 3x3 convolutions
    x, y = torch.rand(2, 1, 9 + 2 * m, 9 + 2 * m), torch.rand(2, 1, 18 + 4 * m, 18 + 4 * m)
    with torch.no_grad():
        t = teacher(x)[..., 2 * m : -2 * m, 2 * m : -2 * m]
    centre, target = mixer(x, y)
    assert torch.equal(centre, x[..., m:-m, m:-m]) and target.shape == (2, 1, 18, 18)
    assert torch.allclose(target, 0.75 * y[..., 2 * m : -2 * m, 2 * m : -2 * m] + 0.25 * t, atol=1e-6)
    assert torch.equal(TeacherTargets(teacher, 1.0)(x, y)[1], t)


def test_a_deep_teachers_targets_are_its_whole_image_output() -> None:
    """With the context, the target of every pixel of the student's patch is exactly the teacher's
    output on the whole image, also for a teacher whose view (25x25 with 4 blocks) is larger than
    the patch; without it (the patch alone, zero-padded) the targets were wrong at every pixel."""
    from espcn_video.training.checkpoints import TeacherTargets
    from espcn_video.training.data import PlaneSet, with_context

    torch.manual_seed(1)
    teacher = ESPCN(3, blocks=4)
    for block in teacher.blocks:  # type: ignore[attr-defined]
        torch.nn.init.normal_(block.conv_b.weight, std=0.05)  # blocks that do something
    mixer = TeacherTargets(teacher, 1.0)
    assert mixer.margin == 12
    rng = np.random.default_rng(0)
    lr = rng.random((48, 50)).astype(np.float32)
    hr = rng.random((144, 150)).astype(np.float32)
    with torch.no_grad():
        whole = teacher(torch.from_numpy(lr)[None, None])[0, 0]
    padded = with_context(PlaneSet([lr], [hr]), mixer.margin, 3)
    assert padded.inputs[0].shape == (72, 74) and padded.targets[0].shape == (216, 222)
    p = 17
    for py, px in ((12, 14), (0, 0)):  # the second patch's context is the image's reflection
        big = padded.inputs[0][py : py + p + 24, px : px + p + 24]
        big_hr = padded.targets[0][py * 3 : (py + p + 24) * 3, px * 3 : (px + p + 24) * 3]
        centre, target = mixer(torch.from_numpy(big)[None, None], torch.from_numpy(big_hr)[None, None])
        assert torch.equal(centre[0, 0], torch.from_numpy(lr[py : py + p, px : px + p]))
        assert target.shape == (1, 1, 3 * p, 3 * p)
    centre, target = mixer(  # the patch at (12, 14): its whole 25x25 view of every pixel is in the image
        torch.from_numpy(padded.inputs[0][12 : 12 + p + 24, 14 : 14 + p + 24])[None, None],
        torch.from_numpy(padded.targets[0][36 : 36 + 3 * (p + 24), 42 : 42 + 3 * (p + 24)])[None, None],
    )
    want = whole[36 : 36 + 3 * p, 42 : 42 + 3 * p]
    assert torch.allclose(target[0, 0], want, atol=1e-5)
    with torch.no_grad():
        alone = teacher(centre)[0, 0]  # the old way: the teacher on the student's patch alone
    assert not torch.allclose(alone, want, atol=1e-3)


def test_a_teacher_must_be_espcn_at_the_runs_scale(image_folder: Path, tmp_path: Path) -> None:
    first = train(_config(image_folder, tmp_path, steps=1))
    with pytest.raises(UsageError, match=r"--teacher tiny-x3 is espcn x3, not espcn x2"):
        train(_config(image_folder, tmp_path / "a", scale=2, steps=1, teacher=str(first.out)))
    with pytest.raises(UsageError, match="distillation is for ESPCN students"):
        train(_config(image_folder, tmp_path / "b", arch="srcnn", steps=1, teacher=str(first.out)))
    # refused before the data is read: a folder with no images would be the error otherwise
    empty = tmp_path / "no-images"
    empty.mkdir()
    for bad in ({"teacher": str(first.out), "scale": 2}, {"init_from": str(first.out), "widths": (32, 16)}):
        with pytest.raises(UsageError, match="--teacher|--init"):
            train(_config(empty, tmp_path / "d", steps=1, **bad))
    train(_config(image_folder, tmp_path / "c", steps=2, teacher=str(first.out)))
    with pytest.raises(UsageError, match=r"teacher=.*0\.5.* \(now .*0\.25"):
        train(_config(image_folder, tmp_path / "c", steps=2, teacher=str(first.out), teacher_weight=0.25, resume=True))


@pytest.mark.parametrize("width", ["128", "128,64,32", "0,32", "a,b", "2000,32"])
def test_width_must_be_two_channel_counts(width: str) -> None:
    proc = run_cli("train", "--width", width, "--steps", "1")
    err = proc.stderr.decode()
    assert proc.returncode == 2 and "is not N1,N2" in err and "Traceback" not in err


def test_srcnn_in_strips_equals_one_piece() -> None:
    """The one way SRCNN runs outside training (bench, psnr, eval): strips with a halo, same output."""
    torch.manual_seed(0)
    model = SRCNN().eval()
    x = torch.rand(1, 1, 1100, 40)  # three strips of 540 rows
    with torch.inference_mode():
        assert torch.allclose(model.in_strips(x), model(x), atol=1e-6)
