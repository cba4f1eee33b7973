"""`train` and `quantize` as a user runs them: Ctrl-C and --resume, the ranges of their options, and
what a run does to the files of an earlier one."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import CLI_TIMEOUT_S, REPO, default_sigint, one_error_line, run_cli
from espcn_video.training.config import TrainConfig
from espcn_video.training.data import PatchSampler
from espcn_video.training.device import DevicePatchSource
from espcn_video.training.interrupts import StepBoundary
from espcn_video.training.loop import train

TRAIN = ("train", "--scale", "2", "--batch", "4", "--threads", "1", "--no-eval", "--val-every", "100")
LOG_LINE = re.compile(r"step (\d+)/\d+  loss \S+  val \S+ dB")  # a validation line, less its steps/s


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    """Four smooth noisy RGB images (three to train on, one held out)."""
    rng = np.random.default_rng(5)
    folder = tmp_path / "data"
    folder.mkdir()
    for i in range(4):
        yy, xx = np.mgrid[0:72, 0:80]
        base = 127 + 60 * np.sin(xx / 5.0 + rng.uniform(0, 6)) * np.cos(yy / 7.0)
        rgb = np.clip(base[..., None] + rng.normal(0, 8, (72, 80, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(rgb).save(folder / f"i{i}.png")
    return folder


def _weights(path: Path) -> dict[str, torch.Tensor]:
    weights: dict[str, torch.Tensor] = torch.load(path, weights_only=True)
    return weights


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


def _log(stderr: str) -> dict[int, str]:
    """{step: its validation line without the rate} of a run's log."""
    return {int(m.group(1)): m.group(0) for m in map(LOG_LINE.match, stderr.splitlines()) if m}


def _interrupted_train(*args: str, after_step: int) -> tuple[int, str]:
    """`train ARGS` as a child process, sent SIGINT (Ctrl-C) a random few milliseconds after it
    logged step `after_step`: so anywhere in a step, or between two. (exit code, stderr)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "espcn_video", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
    )
    watchdog = threading.Timer(CLI_TIMEOUT_S, proc.kill)  # a hang fails the test, never blocks it
    watchdog.start()
    try:
        assert proc.stderr is not None
        lines = []
        for line in proc.stderr:
            lines.append(line)
            if line.startswith(f"step {after_step}/"):
                time.sleep(random.uniform(0.0, 0.02))
                proc.send_signal(signal.SIGINT)
        return proc.wait(timeout=CLI_TIMEOUT_S), "".join(lines)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()


@pytest.mark.slow
@pytest.mark.parametrize("loop", ["host", "device"])
def test_resume_after_ctrl_c_continues_exactly_as_the_run_would_have(data: Path, tmp_path: Path, loop: str) -> None:
    """Ctrl-C lands in the middle of a step (the batch drawn, Adam half way through the weights); the
    checkpoint it saves was that of the step before, with the RNG or the weights already moved on, so
    the resumed run went its own way (1e-4 apart). Now the interrupt waits for the step to finish."""
    args = (*TRAIN, "--loop", loop, "--data", str(data), "--steps", "2000")
    straight = run_cli(*args, "--out", str(tmp_path / "straight.pt"))
    assert straight.returncode == 0, straight.stderr.decode()
    out = tmp_path / "cut.pt"
    code, err = _interrupted_train(*args, "--out", str(out), after_step=200)
    assert code == 130 and err.splitlines()[-1] == "espcn-video: interrupted" and "Traceback" not in err, err
    assert not out.exists()
    step = torch.load(out.with_suffix(".ckpt"), weights_only=True)["step"]
    assert 200 <= step < 2000
    resumed = run_cli(*args, "--out", str(out), "--resume")
    assert resumed.returncode == 0, resumed.stderr.decode()
    assert json.loads(resumed.stdout)["steps"] == 2000
    _assert_same_weights(out, tmp_path / "straight.pt")
    # the same losses and validation PSNRs from the step after the checkpoint on
    after = {s: line for s, line in _log(straight.stderr.decode()).items() if s > step}
    assert _log(resumed.stderr.decode()) == after and len(after) >= 18


def _config(folder: Path, out: Path, **overrides: object) -> TrainConfig:
    base: dict[str, object] = dict(
        scale=2,
        out=out,
        data_dirs=(folder,),
        steps=30,
        batch=4,
        threads=1,
        val_every=10,
        checkpoint_interval_s=3600.0,
        device="cpu",
    )
    base.update(overrides)
    return TrainConfig(**base)  # type: ignore[arg-type]


def _in_a_child(call: str) -> None:
    """Run `call` (on this module, as `t`) in a fresh Python: the SIGINT it sends itself stays
    there, away from the test worker, which must never see a KeyboardInterrupt of its own."""
    path = [str(REPO / "tests"), str(REPO)]
    code = f"import sys; sys.path[:0] = {path!r}; import test_train_cli as t; {call}"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, timeout=CLI_TIMEOUT_S, cwd=REPO, stdin=subprocess.DEVNULL
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-4000:]


@pytest.mark.slow
@pytest.mark.parametrize("loop", ["host", "device"])
def test_ctrl_c_inside_a_step_saves_the_state_after_it(data: Path, tmp_path: Path, loop: str) -> None:
    """The same, made certain: SIGINT arrives just after step 12's batch is drawn."""
    _in_a_child(f"t.ctrl_c_inside_a_step({str(data)!r}, {str(tmp_path)!r}, {loop!r})")


def ctrl_c_inside_a_step(data_dir: str, tmp: str, loop: str) -> None:
    """test_ctrl_c_inside_a_step_saves_the_state_after_it, in its own process."""
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C as at a terminal
    data, tmp_path = Path(data_dir), Path(tmp)
    source = DevicePatchSource if loop == "device" else PatchSampler
    draw = source.batch
    drawn = 0

    def batch_then_ctrl_c(self: object, size: int) -> object:
        nonlocal drawn
        patches = draw(self, size)  # type: ignore[arg-type]
        drawn += 1
        if drawn == 12:
            os.kill(os.getpid(), signal.SIGINT)
        return patches

    straight = train(_config(data, tmp_path / "straight" / "a.pt", loop=loop))
    source.batch = batch_then_ctrl_c  # type: ignore[method-assign,assignment]
    cut = _config(data, tmp_path / "cut" / "a.pt", loop=loop)
    with pytest.raises(KeyboardInterrupt):
        train(cut)
    assert torch.load(cut.checkpoint_path, weights_only=True)["step"] == 12  # step 12 finished, then stopped
    source.batch = draw  # type: ignore[method-assign]
    resumed = train(_config(data, cut.out, loop=loop, resume=True))
    assert resumed.steps == 30 and resumed.val_psnr_db == straight.val_psnr_db
    _assert_same_weights(resumed.out, straight.out)


def test_a_signal_inside_a_step_is_held_until_its_end() -> None:
    _in_a_child("t.signals_held_until_a_step_ends()")


def signals_held_until_a_step_ends() -> None:
    """test_a_signal_inside_a_step_is_held_until_its_end, in its own process."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    done = []
    with StepBoundary() as boundary:
        with pytest.raises(KeyboardInterrupt):
            with boundary.step:
                os.kill(os.getpid(), signal.SIGINT)
                done.append("rest of the step")
        assert done == ["rest of the step"]
        with pytest.raises(KeyboardInterrupt):  # between steps: at once
            os.kill(os.getpid(), signal.SIGINT)
            done.append("never")
        with pytest.raises(ValueError):  # a step that fails: its error, not the held signal
            with boundary.step:
                os.kill(os.getpid(), signal.SIGINT)
                raise ValueError("broken step")
        with boundary.step:
            pass  # nothing held over from the failed step
        with pytest.raises(KeyboardInterrupt):  # a second signal in one step: at once
            with boundary.step:
                os.kill(os.getpid(), signal.SIGINT)
                done.append("held")
                os.kill(os.getpid(), signal.SIGINT)
                done.append("never")
    assert done == ["rest of the step", "held"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler given back


# --- the ranges of the options ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--lr", "-1", "-1.0 is not in the range x>=1e-05."),
        ("--lr", "0", "0.0 is not in the range x>=1e-05."),
        ("--lr", "1e-6", "1e-06 is not in the range x>=1e-05."),  # below the cosine's end: it would rise
        ("--lr", "nan", "'nan' is not a finite number."),
        ("--lr", "inf", "'inf' is not a finite number."),
        ("--teacher-weight", "nan", "'nan' is not a finite number."),
        ("--teacher-weight", "0", "0.0 is not in the range 0.0<x<=1.0."),
    ],
)
def test_train_refuses_a_learning_rate_or_weight_out_of_range(
    data: Path, tmp_path: Path, option: str, value: str, message: str
) -> None:
    """--lr -1 was a torch traceback (ValueError: Invalid learning rate) after the data was read."""
    out = tmp_path / "out.pt"
    done = run_cli(*TRAIN, "--data", str(data), "--steps", "1", "--out", str(out), "--teacher", "espcn-x2",
                   option, value)  # fmt: skip
    err = done.stderr.decode()
    assert done.returncode == 2 and "Traceback" not in err, err
    assert err.splitlines()[-1] == f"Error: Invalid value for '{option}': {message}"
    assert not any(tmp_path.glob("out.*"))


def test_train_refuses_a_teacher_weight_without_a_teacher(data: Path, tmp_path: Path) -> None:
    """It was ignored: the run trained on HR alone and recorded no teacher."""
    out = tmp_path / "out.pt"
    done = run_cli(*TRAIN, "--data", str(data), "--steps", "1", "--out", str(out), "--teacher-weight", "0.3")
    assert done.returncode == 2
    assert one_error_line(done) == (
        "espcn-video: error: --teacher-weight is the teacher's share of the target: it needs --teacher"
    )
    assert not any(tmp_path.glob("out.*"))


def _tree(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--lr", "-1", "-1.0 is not in the range x>=1e-07."),
        ("--lr", "0", "0.0 is not in the range x>=1e-07."),
        ("--lr", "1e-8", "1e-08 is not in the range x>=1e-07."),
        ("--lr", "nan", "'nan' is not a finite number."),
        ("--quant-lr", "0", "0.0 is not in the range x>0.0."),
        ("--quant-lr", "-2e-3", "-0.002 is not in the range x>0.0."),
        ("--quant-lr", "inf", "'inf' is not a finite number."),
    ],
)
def test_quantize_refuses_a_learning_rate_out_of_range_and_writes_nothing(
    data: Path, tmp_path: Path, option: str, value: str, message: str
) -> None:
    """`quantize --lr -1` ran and wrote the preset's int8 twin and JSON (a shipped one, named)."""
    folder = tmp_path / "presets"
    folder.mkdir()
    for suffix in (".pt", ".json", ".int8.pth"):
        shutil.copy(REPO / "presets" / f"espcn-x2{suffix}", folder / f"espcn-x2{suffix}")
    before = _tree(folder)
    done = run_cli("quantize", "--preset", str(folder / "espcn-x2.pt"), "--data", str(data), "--steps", "1",
                   "--batch", "4", "--threads", "1", "--no-eval", option, value)  # fmt: skip
    err = done.stderr.decode()
    assert done.returncode == 2 and "Traceback" not in err, err
    assert err.splitlines()[-1] == f"Error: Invalid value for '{option}': {message}"
    assert _tree(folder) == before


# --- an earlier run's files -------------------------------------------------------------------


@pytest.mark.slow
def test_train_keeps_an_earlier_runs_files_unless_told(data: Path, tmp_path: Path) -> None:
    """A run without --resume replaced OUT and, worse, the .ckpt of an unfinished run."""
    out = tmp_path / "t6.pt"
    ckpt = out.with_suffix(".ckpt")

    def stop_at_10(step: int, total: int, loss: float, val: float | None) -> None:
        if step == 10:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # an unfinished run: Ctrl-C at step 10 of 30
        train(_config(data, out), stop_at_10)
    args = (*TRAIN, "--data", str(data), "--steps", "30", "--val-every", "10", "--out", str(out))
    saved = ckpt.read_bytes()
    done = run_cli(*args)
    assert done.returncode == 1 and one_error_line(done) == (
        f"espcn-video: error: {out}: {ckpt} holds an unfinished run (step 10 of 30); add --resume to continue "
        "it, or -y/--overwrite to start again"
    )
    assert ckpt.read_bytes() == saved and not out.exists()

    resumed = run_cli(*args, "--resume")
    assert resumed.returncode == 0 and json.loads(resumed.stdout)["steps"] == 30
    finished = out.read_bytes()
    done = run_cli(*args)  # finished: OUT is there
    assert done.returncode == 1
    assert one_error_line(done) == f"espcn-video: error: {out}: already exists (use -y/--overwrite to replace it)"
    assert out.read_bytes() == finished

    shutil.copy(out, tmp_path / "resumed.pt")
    again = run_cli(*args, "-y")  # starts again, from step 1: the same run, so the same weights
    assert again.returncode == 0 and json.loads(again.stdout)["steps"] == 30
    assert sorted(_log(again.stderr.decode())) == [10, 20, 30]
    _assert_same_weights(out, tmp_path / "resumed.pt")

    out.unlink()  # a finished checkpoint whose OUT was never written (or was removed)
    done = run_cli(*args)
    assert done.returncode == 1 and one_error_line(done) == (
        f"espcn-video: error: {out}: {ckpt} holds a finished run (step 30 of 30) that {out} was not written "
        "from; add --resume to write it, or -y/--overwrite to start again"
    )
    ckpt.write_bytes(b"not a checkpoint")
    done = run_cli(*args)
    assert done.returncode == 1
    assert (
        one_error_line(done) == f"espcn-video: error: {out}: {ckpt} already exists (use -y/--overwrite to replace it)"
    )
    assert not out.exists()
