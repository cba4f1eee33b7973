"""Install runs from tools/train_on_gpu.py as presets: weights, metadata, Set5/Set14, int8 ranges.

    python tools/finish_presets.py RUNS.pt RUN_NAME=PRESET_NAME ... [--int8-ranges]

--int8-ranges also stores calibrated int8 activation ranges, which make OpenVINO int8 the
default engine for the preset: give it only where tests/test_engines.py shows int8 within 0.05 dB.
Which run becomes a preset is decided on the validation PSNR recorded by the run (held-out
training images), never on Set5/Set14: those are measured here for the metadata only.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from espcn_video.files import atomic_write_json
from espcn_video.model.graphs import calibrate_ranges
from espcn_video.model.presets import build_model, infer_architecture
from espcn_video.training.checkpoints import atomic_torch_save
from espcn_video.training.config import TrainConfig
from espcn_video.training.data import calibration_planes
from espcn_video.training.loop import measure_test_sets

PRESETS = Path(__file__).resolve().parents[1] / "presets"
TEST = Path("../shared/data/test")
CALIBRATION_NOTE = (
    "per-channel activation ranges of conv1 and conv2 on patches of the training images "
    "(T91, General100, BSD200); used only by the OpenVINO int8 engine (conv2 in int8)"
)


def main() -> None:
    torch.set_num_threads(2)
    args = [a for a in sys.argv[1:] if a != "--int8-ranges"]
    with_int8 = "--int8-ranges" in sys.argv
    records = torch.load(args[0], weights_only=False)
    for pair in args[1:]:
        run_name, preset = pair.split("=")
        record = records[run_name]
        meta = record["metadata"]
        scale, arch = meta["scale"], meta["arch"]
        state = record["state_dict"]
        _, _, sizes = infer_architecture(state, run_name)  # --width and --blocks runs too
        model = build_model(arch, scale, sizes)
        model.load_state_dict(state)
        model.eval()
        meta["name"] = preset
        meta["training"]["run"] = run_name
        config = TrainConfig(
            scale=scale,
            out=PRESETS / f"{preset}.pt",
            data_dirs=(),
            arch=arch,
            degrade=meta["training"]["degrade"],
            eval_dirs=tuple((n, TEST / n) for n in ("Set5", "Set14")),
        )
        meta["eval"] = measure_test_sets(config, model)
        if arch == "espcn" and with_int8:
            folders = [Path(d) for d in meta["training"]["data"]]
            ranges = calibrate_ranges(model, calibration_planes(folders, scale))
            meta["int8_ranges"] = [[round(float(v), 6) for v in r] for r in ranges]
            meta["int8_calibration"] = CALIBRATION_NOTE
        atomic_torch_save({k: v.detach().clone() for k, v in model.state_dict().items()}, config.out)
        atomic_write_json(config.out.with_suffix(".json"), meta)
        e = meta["eval"]
        print(
            f"{preset} <- {run_name}: val {meta['training']['val_psnr_db']:.3f} dB, "
            f"Set5 {e['Set5']['psnr_db']:.3f}, Set14 {e['Set14']['psnr_db']:.3f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
