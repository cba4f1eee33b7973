"""Training data: images read to Y planes, the validation hold-out, and the patch sampler.

HR planes are mod-cropped code values; training inputs are degraded from them (LR for ESPCN,
LR upscaled again for SRCNN) and kept in memory as float32 in [0, 1]. About `val_fraction` of
the images (chosen by the seed) are held out for validation. `pack_y_planes` / `load_y_planes`
carry the planes to a remote trainer in one file. `PatchSampler` draws the host loop's random
aligned patches with the 8 flips/rotations (training.device has the on-device equivalent).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from espcn_video.errors import DataError
from espcn_video.quality.degrade import (
    CODECS,
    Degradation,
    RandomChains,
    degrade,
    imresize,
    mod_crop,
    parse_training_degradation,
)
from espcn_video.quality.images import UnusableImage, list_images, matlab_round, read_y_plane
from espcn_video.training.config import TrainConfig

TOO_SMALL = "smaller than one HR patch"
VAL_VARIANTS = 4  # chains per held-out image under `real`


@dataclass
class DataReport:
    train: list[str] = field(default_factory=list)
    val: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    notes: Counter[str] = field(default_factory=Counter)
    rescaled: int = 0  # extra training planes made by --rescale (the held-out images are never rescaled)
    rescaled_too_small: int = 0

    def skip_counts(self) -> dict[str, int]:
        return dict(Counter(item["reason"] for item in self.skipped))

    def as_dict(self) -> dict[str, Any]:
        rescale = {"rescaled": self.rescaled, "rescaled_too_small": self.rescaled_too_small}
        return {
            "train": len(self.train),
            "val": len(self.val),
            "skipped": self.skip_counts(),
            "skipped_files": self.skipped,
            "converted": dict(self.notes),
            **(rescale if self.rescaled or self.rescaled_too_small else {}),
        }


@dataclass
class PlaneSet:
    """Input and target planes (float32, [0, 1]) of the images, kept in memory."""

    inputs: list[np.ndarray] = field(default_factory=list)
    targets: list[np.ndarray] = field(default_factory=list)


def read_hr_planes(
    config: TrainConfig, preloaded: list[tuple[str, np.ndarray]] | None = None
) -> tuple[list[tuple[str, np.ndarray]], DataReport]:
    """Mod-cropped HR Y planes (code values) of every usable image; skips counted with reasons.

    `preloaded` gives (label, full Y plane) pairs already read (a packed copy of the folders,
    made by `pack_y_planes`), in place of reading `config.data_dirs`.
    """
    report = DataReport()
    planes: list[tuple[str, np.ndarray]] = []
    source = (
        _folder_planes(config.data_dirs, report)
        if preloaded is None
        else ((label, hr_y.astype(np.float64), None) for label, hr_y in preloaded)
    )
    for label, hr_y, note in source:
        hr_y = mod_crop(hr_y, config.scale)
        if min(hr_y.shape) < config.hr_patch:
            report.skipped.append({"file": label, "reason": TOO_SMALL})
            continue
        if note:
            report.notes[note] += 1
        planes.append((label, hr_y))
    if not planes:
        where = "the packed planes" if preloaded is not None else ", ".join(map(str, config.data_dirs))
        raise DataError(f"no usable training images in {where}")
    return planes, report


def _folder_planes(folders: tuple[Path, ...], report: DataReport) -> Iterator[tuple[str, np.ndarray, str | None]]:
    """(label, full Y plane, conversion note) of each readable image; unreadable ones go to `report`."""
    if not folders:
        raise DataError("no training data folders given")
    for folder in folders:
        if not folder.is_dir():
            raise DataError(f"training data folder {folder} does not exist")
        files = list_images(folder)
        if not files:
            raise DataError(f"training data folder {folder} has no image files")
        for path in files:
            label = f"{folder.name}/{path.name}"
            try:
                hr_y, note = read_y_plane(path)
            except UnusableImage as exc:
                report.skipped.append({"file": label, "reason": exc.reason})
                continue
            yield label, hr_y, note


def rescaled(
    planes: list[np.ndarray], labels: list[str], factors: tuple[float, ...], scale: int, hr_patch: int
) -> tuple[list[np.ndarray], list[str], int]:
    """Scale augmentation (FSRCNN, Dong et al. 2016): each HR plane again at every factor in
    `factors` (each below 1), by MATLAB's antialiased bicubic imresize, rounded to code values in
    [16, 235] as a downscaled image saved in 8 bits would be, then mod-cropped. Returns the extra
    (planes, labels `name@factor`, how many came out smaller than one HR patch and were left out);
    the originals are not repeated."""
    extra: list[np.ndarray] = []
    extra_labels: list[str] = []
    too_small = 0
    for factor in factors:
        for hr, label in zip(planes, labels, strict=True):
            small = mod_crop(np.clip(matlab_round(imresize(hr, factor)), 16.0, 235.0), scale)
            if min(small.shape) < hr_patch:
                too_small += 1
                continue
            extra.append(small)
            extra_labels.append(f"{label}@{factor:g}")
    return extra, extra_labels, too_small


def split_validation(count: int, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of the deterministic validation hold-out (none when only one image)."""
    if count < 2 or fraction <= 0:
        return np.zeros(0, dtype=np.int64)
    n_val = min(count - 1, max(1, round(count * fraction)))
    return np.sort(np.random.default_rng(seed).permutation(count)[:n_val])


def make_planes(config: TrainConfig, hr_planes: list[np.ndarray], labels: list[str]) -> PlaneSet:
    """Training planes: one LR per image for a chain, `variants` per image for `real` (the HR
    target array is shared by an image's variants, not copied)."""
    model = parse_training_degradation(config.degrade)
    chains = draw_chains(model, labels, config.scale, config.seed, "train")
    lrs = degrade_all(hr_planes, chains, config.scale, cache_path(config, labels, hr_planes, chains))
    targets = [(hr / 255.0).astype(np.float32) for hr in hr_planes]
    planes = PlaneSet()
    for (index, _), lr01 in zip(chains, lrs, strict=True):
        source = imresize(lr01, config.scale) if config.arch == "srcnn" else lr01
        planes.inputs.append(source.astype(np.float32))
        planes.targets.append(targets[index])
    return planes


def draw_chains(
    model: Degradation | RandomChains, labels: list[str], scale: int, seed: int, purpose: str
) -> list[tuple[int, Degradation]]:
    """(image index, chain) of every LR plane to make: one per image for a chain; for `real`,
    `variants` draws per image from a generator seeded by (seed, purpose, label), so a run, its
    resume and its cache see the same chains whatever the order of the images."""
    if isinstance(model, Degradation):
        return [(i, model) for i in range(len(labels))]
    import zlib

    chains = []
    for i, label in enumerate(labels):
        rng = np.random.default_rng([seed, zlib.crc32(f"{purpose}:{label}".encode())])
        chains += [(i, model.draw(rng, scale)) for _ in range(model.variants)]
    return chains


def cache_path(
    config: TrainConfig, labels: list[str], hr_planes: list[np.ndarray], chains: list[tuple[int, Degradation]]
) -> Path | None:
    """Where the LR planes of chains with an encoder are kept between runs (None: nothing to cache).

    Keyed by the chains, the images (label and size) and the scale, in the cache folder
    (ESPCN_VIDEO_CACHE, else $XDG_CACHE_HOME/espcn-video, else ~/.cache/espcn-video)."""
    if not any(name in CODECS for _, chain in chains for name, _ in chain.stages):
        return None
    import hashlib

    key = hashlib.sha256(repr((config.scale, [(labels[i], hr_planes[i].shape, c.spec()) for i, c in chains])).encode())
    root = os.environ.get("ESPCN_VIDEO_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "espcn-video"
    )
    return Path(root) / f"lr-x{config.scale}-{key.hexdigest()[:20]}.npz"


def degrade_all(
    hr_planes: list[np.ndarray], chains: list[tuple[int, Degradation]], scale: int, cache: Path | None
) -> list[np.ndarray]:
    """The LR (float64 in [0, 1]) of each (image, chain); encoder chains run two at a time (each
    is an ffmpeg encode and decode) and are cached at `cache` when given."""
    if cache is not None and cache.is_file():
        try:
            with np.load(cache) as data:
                stored = [data[f"lr{k:06d}"] for k in range(len(chains))]
            return [lr / 255.0 if lr.dtype == np.uint8 else lr.astype(np.float64) for lr in stored]
        except (OSError, ValueError, KeyError, EOFError):
            pass  # a damaged cache is made again
    from concurrent.futures import ThreadPoolExecutor

    def one(item: tuple[int, Degradation]) -> np.ndarray:
        index, chain = item
        return degrade(hr_planes[index] / 255.0, scale, chain)

    with ThreadPoolExecutor(max_workers=2) as pool:
        lrs = list(pool.map(one, chains))
    if cache is not None:
        _save_cache(cache, lrs, [chain for _, chain in chains])
    return lrs


def _save_cache(cache: Path, lrs: list[np.ndarray], chains: list[Degradation]) -> None:
    """What an encoder gave is exact in 8 bits (kept as uint8); other LR as float32."""
    arrays: dict[str, Any] = {}
    for k, (lr, chain) in enumerate(zip(lrs, chains, strict=True)):
        encoded = bool(chain.stages) and chain.stages[-1][0] in CODECS
        arrays[f"lr{k:06d}"] = np.rint(lr * 255.0).astype(np.uint8) if encoded else lr.astype(np.float32)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(cache.name + f".{os.getpid()}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, cache)


def pack_y_planes(folders: tuple[Path, ...], out: Path) -> int:
    """Write the full Y plane (uint8 code values) of every readable image in `folders` to one .npz.

    The pack is what a remote trainer reads in place of the image folders (`read_hr_planes`'s
    `preloaded`); the planes are not mod-cropped, so one pack serves every scale. Unreadable
    files are left out (reading the folders reports them).
    """
    labelled = [(label, hr_y) for label, hr_y, _ in _folder_planes(folders, DataReport())]
    arrays: dict[str, Any] = {f"plane{i:05d}": hr_y.astype(np.uint8) for i, (_, hr_y) in enumerate(labelled)}
    np.savez_compressed(out, labels=np.array([label for label, _ in labelled]), **arrays)
    return len(labelled)


def load_y_planes(pack: Path) -> list[tuple[str, np.ndarray]]:
    """The (label, Y plane) pairs of a `pack_y_planes` file; DataError for anything else."""
    try:
        with np.load(pack) as data:
            return [(str(label), data[f"plane{i:05d}"]) for i, label in enumerate(data["labels"])]
    except (OSError, ValueError, KeyError, EOFError) as exc:
        raise DataError(f"{pack}: not a pack of Y planes made by pack_y_planes ({str(exc).splitlines()[0]})") from None


def prepare_data(
    config: TrainConfig,
    preloaded: list[tuple[str, np.ndarray]] | None = None,
) -> tuple[PlaneSet, list[tuple[np.ndarray, np.ndarray]], DataReport]:
    """(training planes, validation (HR code values, LR in [0,1]) pairs, report)."""
    labelled, report = read_hr_planes(config, preloaded)
    val_idx = set(split_validation(len(labelled), config.val_fraction, config.seed).tolist())
    train_hr = [hr for i, (_, hr) in enumerate(labelled) if i not in val_idx]
    report.train = [name for i, (name, _) in enumerate(labelled) if i not in val_idx]
    report.val = [name for i, (name, _) in enumerate(labelled) if i in val_idx]
    val_hr = [hr for i, (_, hr) in enumerate(labelled) if i in val_idx]
    train_labels = list(report.train)
    if config.rescale:
        extra, extra_labels, report.rescaled_too_small = rescaled(
            train_hr, train_labels, config.rescale, config.scale, config.hr_patch
        )
        train_hr += extra
        train_labels += extra_labels
        report.rescaled = len(extra)
    model = parse_training_degradation(config.degrade)
    if isinstance(model, RandomChains):
        model = RandomChains(variants=VAL_VARIANTS)  # one yardstick for every `real:...` mix
    val_chains = draw_chains(model, report.val, config.scale, config.seed, "val")
    val_lrs = degrade_all(val_hr, val_chains, config.scale, None)
    val_pairs = [(val_hr[i], lr) for (i, _), lr in zip(val_chains, val_lrs, strict=True)]
    return make_planes(config, train_hr, train_labels), val_pairs, report


def with_context(planes: PlaneSet, context: int, stride: int) -> PlaneSet:
    """The planes reflect-padded by `context` input pixels (and `context`·stride target pixels) on
    every side, for a teacher that reads that much around each patch: a sampler drawing patches
    2·context larger from them draws the same patch positions as before, each with its
    surroundings (reflected at the image border). An HR target shared by several LR variants is
    padded once and still shared."""
    if context == 0:
        return planes
    padded = PlaneSet()
    targets: dict[int, np.ndarray] = {}
    for source, target in zip(planes.inputs, planes.targets, strict=True):
        padded.inputs.append(np.pad(source, context, mode="reflect"))
        if id(target) not in targets:
            targets[id(target)] = np.pad(target, context * stride, mode="reflect")
        padded.targets.append(targets[id(target)])
    return padded


class PatchSampler:
    """Random aligned input/target patches with the 8 dihedral transforms, from one numpy RNG."""

    def __init__(self, planes: PlaneSet, input_patch: int, stride: int, rng: np.random.Generator) -> None:
        self.planes = planes
        self.patch = input_patch
        self.stride = stride
        self.rng = rng
        self.positions = np.array(
            [(h - input_patch + 1, w - input_patch + 1) for h, w in (p.shape for p in planes.inputs)]
        )
        # Weight images by their number of patch positions: every position equally likely.
        counts = self.positions.prod(axis=1).astype(np.float64)
        self.weights = counts / counts.sum()

    def batch(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        p, s = self.patch, self.stride
        which = self.rng.choice(len(self.weights), size=size, p=self.weights)
        corners = np.floor(self.rng.random((size, 2)) * self.positions[which]).astype(np.int64)
        transforms = self.rng.integers(0, 8, size=size)
        inputs = np.empty((size, 1, p, p), dtype=np.float32)
        targets = np.empty((size, 1, p * s, p * s), dtype=np.float32)
        for b, (i, (y, x), t) in enumerate(zip(which, corners, transforms, strict=True)):
            src = self.planes.inputs[i][y : y + p, x : x + p]
            dst = self.planes.targets[i][y * s : (y + p) * s, x * s : (x + p) * s]
            inputs[b, 0] = _dihedral(src, int(t))
            targets[b, 0] = _dihedral(dst, int(t))
        return inputs, targets


def _dihedral(patch: np.ndarray, transform: int) -> np.ndarray:
    rotated = np.rot90(patch, transform % 4)
    return rotated.T if transform >= 4 else rotated


def calibration_planes(folders: Iterable[str | os.PathLike[str]], scale: int, limit: int = 40) -> Iterator[np.ndarray]:
    """LR Y planes in [0, 1] of up to `limit` training images per folder, made as training makes them."""
    for folder in folders:
        for path in list_images(folder)[:limit]:
            try:
                hr, _ = read_y_plane(path)
            except UnusableImage:
                continue
            yield imresize(mod_crop(hr, scale) / 255.0, 1.0 / scale)
