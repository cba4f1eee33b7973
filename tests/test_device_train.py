"""training.device (the GPU training loop), run eagerly on the CPU: patch geometry, schedule, resume."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from espcn_video.errors import DataError
from espcn_video.model.net import ESPCN
from espcn_video.training.config import TrainConfig
from espcn_video.training.data import load_y_planes, pack_y_planes, prepare_data, read_hr_planes
from espcn_video.training.device import DevicePatchSource, GraphStepper, cosine_lr
from espcn_video.training.loop import train

CPU = torch.device("cpu")


def _id_planes(scale: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Inputs whose pixels are unique ids; targets that repeat each id over its scale x scale block."""
    inputs, targets, base = [], [], 0
    for h, w in ((20, 23), (17, 30), (25, 17)):
        ids = (base + np.arange(h * w, dtype=np.float64).reshape(h, w)).astype(np.float32)
        base += h * w
        inputs.append(ids)
        targets.append(np.kron(ids, np.ones((scale, scale), np.float32)))
    return inputs, targets


def _dihedral(patch: np.ndarray, t: int) -> np.ndarray:
    """Flip the source rows (bit 0) and columns (bit 1), then transpose (bit 2)."""
    out = patch[::-1, :] if t & 1 else patch
    out = out[:, ::-1] if t & 2 else out
    return out.T if t & 4 else out


@pytest.mark.parametrize("scale", [2, 3])
def test_patches_stay_aligned_under_every_transform(scale: int) -> None:
    inputs, targets = _id_planes(scale)
    torch.manual_seed(0)
    source = DevicePatchSource(inputs, targets, 17, scale, CPU)
    assert source.total == 4 * 7 + 1 * 14 + 9 * 1  # patch positions of the three planes
    torch.manual_seed(1)
    image, top, left, transform = source.draw(400)
    torch.manual_seed(1)
    x, y = source.batch(400)
    assert x.shape == (400, 1, 17, 17) and y.shape == (400, 1, 17 * scale, 17 * scale)
    assert sorted(set(transform.tolist())) == list(range(8))
    for b in range(400):
        i, t0, l0, t = int(image[b]), int(top[b]), int(left[b]), int(transform[b])
        window = inputs[i][t0 : t0 + 17, l0 : l0 + 17]
        np.testing.assert_array_equal(x[b, 0].numpy(), _dihedral(window, t))
        # every target pixel lies under the input pixel it came from, after the same transform
        np.testing.assert_array_equal(y[b, 0].numpy(), np.kron(x[b, 0].numpy(), np.ones((scale, scale), np.float32)))


def test_every_patch_position_is_equally_likely() -> None:
    inputs, targets = _id_planes(2)
    source = DevicePatchSource(inputs, targets, 17, 2, CPU)
    torch.manual_seed(3)
    image = source.draw(60_000)[0].numpy()
    shares = np.bincount(image, minlength=3) / image.size
    np.testing.assert_allclose(shares, np.array([28, 14, 9]) / 51, atol=0.01)


def test_source_refuses_planes_smaller_than_a_patch() -> None:
    with pytest.raises(ValueError, match="smaller than a 17x17 patch"):
        DevicePatchSource([np.zeros((16, 40), np.float32)], [np.zeros((32, 80), np.float32)], 17, 2, CPU)


def test_cosine_lr_is_cosine_annealing() -> None:
    model = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=50, eta_min=1e-5)
    for step in range(51):
        assert math.isclose(opt.param_groups[0]["lr"], cosine_lr(step, 50, 1e-3, 1e-5), rel_tol=1e-9)
        assert math.isclose(
            float(cosine_lr(torch.tensor(float(step)), torch.tensor(50.0), 1e-3, 1e-5)),
            cosine_lr(step, 50, 1e-3, 1e-5),
            rel_tol=1e-6,
            abs_tol=1e-10,
        )
        opt.step()
        sched.step()


@pytest.mark.slow
def test_stepper_learns_and_follows_its_schedule() -> None:
    rng = np.random.default_rng(0)
    hr = np.clip(np.cumsum(rng.normal(0, 0.02, (96, 96)), axis=1) % 1.0, 0, 1).astype(np.float32)
    lr_plane = hr.reshape(48, 2, 48, 2).mean(axis=(1, 3))
    torch.manual_seed(0)
    stepper = GraphStepper(ESPCN(2), DevicePatchSource([lr_plane], [hr], 17, 2, CPU), 8, 1e-3, 1e-5, total_steps=40)
    stepper.prepare()
    first = None
    for _ in range(40):
        stepper.advance()
        first = first if first is not None else stepper.take_mean_loss()
    assert stepper.step == 40
    assert stepper.take_mean_loss() < first
    assert math.isclose(float(stepper.lr_t), 1e-5, rel_tol=1e-5)  # the schedule ended at lr_min


@pytest.mark.parametrize("loss", ["l1", "l2"])
def test_stepper_minimises_the_loss_it_is_given(loss: str) -> None:
    """The first step's recorded loss is that loss of the untrained model on the first batch."""
    rng = np.random.default_rng(1)
    hr = rng.uniform(0, 1, (60, 60)).astype(np.float32)
    lr_plane = hr.reshape(30, 2, 30, 2).mean(axis=(1, 3))
    source = DevicePatchSource([lr_plane], [hr], 17, 2, CPU)
    torch.manual_seed(0)
    model = ESPCN(2)
    before = copy.deepcopy(model)
    torch.manual_seed(7)
    x, y = source.batch(4)
    expected = (before(x) - y).abs().mean() if loss == "l1" else ((before(x) - y) ** 2).mean()
    stepper = GraphStepper(model, source, 4, 1e-3, 1e-5, total_steps=2, loss=loss)
    stepper.prepare()
    torch.manual_seed(7)
    stepper.advance()
    assert math.isclose(stepper.take_mean_loss(), float(expected.detach()), rel_tol=1e-5)


# --- train(loop="device") ------------------------------------------------------------------


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    rng = np.random.default_rng(5)
    out = tmp_path / "imgs"
    out.mkdir()
    yy, xx = np.mgrid[0:66, 0:72]
    for i in range(5):
        base = 127 + 60 * np.sin(xx / (4.0 + i) + rng.uniform(0, 6)) * np.cos(yy / 6.0)
        rgb = np.clip(base[..., None] + rng.normal(0, 6, (66, 72, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(rgb).save(out / f"im{i}.png")
    Image.fromarray(np.zeros((30, 30, 3), np.uint8)).save(out / "small.png")
    return out


def _config(folder: Path, out: Path, **overrides: object) -> TrainConfig:
    base: dict[str, object] = dict(
        scale=3,
        out=out / "dev-x3.pt",
        data_dirs=(folder,),
        steps=12,
        threads=1,
        val_every=6,
        checkpoint_interval_s=3600.0,
        device="cpu",
        loop="device",
    )
    base.update(overrides)
    return TrainConfig(**base)  # type: ignore[arg-type]


@pytest.mark.slow
def test_device_loop_resumes_exactly(folder: Path, tmp_path: Path) -> None:
    seen: list[tuple[int, float | None]] = []

    def stop_at_5(step: int, total: int, loss: float, val: float | None) -> None:
        seen.append((step, val))
        if step == 5:
            raise KeyboardInterrupt

    config = _config(folder, tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        train(config, stop_at_5)
    assert [s for s, _ in seen] == [1, 2, 3, 4, 5]
    resumed_steps: list[int] = []
    resumed = train(_config(folder, tmp_path / "a", resume=True), lambda s, t, loss, v: resumed_steps.append(s))
    assert resumed_steps == list(range(6, 13))
    straight = train(_config(folder, tmp_path / "b"))
    assert resumed.metadata["training"]["loop"] == straight.metadata["training"]["loop"] == "device"
    assert resumed.steps == straight.steps == 12
    a, b = torch.load(resumed.out, weights_only=True), torch.load(straight.out, weights_only=True)
    for key in b:
        assert torch.equal(a[key], b[key]), key
    with pytest.raises(Exception, match="loop='device' \\(now 'host'\\)"):
        train(_config(folder, tmp_path / "a", loop="host", resume=True))


@pytest.mark.slow
def test_wide_and_distilled_runs_train_side_by_side(folder: Path, tmp_path: Path) -> None:
    """The hq, distill, deep and expand plans of tools/train_on_gpu.py on the CPU: a widened run, a
    run distilled from a preset, a deepened one and a re-parameterised one train together; their
    records carry the widths, the teacher, the blocks, the patch and the expansion."""
    from espcn_video.training.multi import run_record, train_together

    first = train(_config(folder, tmp_path / "t", steps=2))
    configs = [
        _config(folder, tmp_path / "w", steps=4, init_from=str(first.out), widths=(96, 48)),
        _config(folder, tmp_path / "k", steps=4, teacher=str(first.out), teacher_weight=0.5),
        _config(folder, tmp_path / "d", steps=4, init_from=str(first.out), blocks=1, patch=12),
        _config(folder, tmp_path / "e", steps=4, init_from=str(first.out), expand=2),
    ]
    runs = train_together(configs, torch.device("cpu"), use_graph=False, per_call=1, log=lambda line: None)
    wide, distilled, deep, rep = (run_record(run, torch.device("cpu")) for run in runs)
    # the expand plan: trained as three branches, recorded as the plain network it folds into
    assert rep["metadata"]["training"]["expand"] == 2
    assert {k: tuple(v.shape) for k, v in rep["state_dict"].items()} == {
        k: tuple(v.shape) for k, v in torch.load(first.out, weights_only=True).items()
    }
    assert deep["metadata"]["blocks"] == 1 and deep["metadata"]["training"]["patch"]["input"] == 12
    assert deep["state_dict"]["blocks.0.conv_b.weight"].abs().sum() > 0
    assert wide["metadata"]["channels"] == [96, 48] and wide["state_dict"]["conv1.weight"].shape[0] == 96
    assert wide["metadata"]["training"]["init"]["preset"] == first.out.stem
    assert distilled["metadata"]["training"]["teacher"]["preset"] == first.out.stem
    assert all(run.stepper.step == 4 for run in runs)


def test_packed_planes_read_like_the_folder(folder: Path, tmp_path: Path) -> None:
    config = _config(folder, tmp_path)
    pack = tmp_path / "planes.npz"
    assert pack_y_planes(config.data_dirs, pack) == 6
    preloaded = load_y_planes(pack)
    from_files, report_files = read_hr_planes(config)
    from_pack, report_pack = read_hr_planes(config, preloaded)
    assert (
        [label for label, _ in from_pack] == [label for label, _ in from_files] == [f"imgs/im{i}.png" for i in range(5)]
    )
    for (_, a), (_, b) in zip(from_files, from_pack, strict=True):
        np.testing.assert_array_equal(a, b)
    assert report_pack.skip_counts() == report_files.skip_counts() == {"smaller than one HR patch": 1}
    planes_f, val_f, _ = prepare_data(config)
    planes_p, val_p, _ = prepare_data(config, preloaded)
    for a, b in zip(planes_f.inputs, planes_p.inputs, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_file_that_is_not_a_pack_is_a_data_error(tmp_path: Path) -> None:
    bad = tmp_path / "planes.npz"
    bad.write_text("nope")
    with pytest.raises(DataError, match="not a pack of Y planes"):
        load_y_planes(bad)
