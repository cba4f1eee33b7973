"""The LR clip of a degradation chain that psnr's decoder cannot make alone.

`psnr --degrade` makes bicubic, area and gaussian as filters in the LR decode (jobs/psnr.py). Any
other chain of the grammar (bicubic-noaa, bilinear, lanczos, noise, x264/x265) is made here once per
clip, before the methods run, into a temporary file that every method then decodes:

1. the downscale: ffmpeg's degrade filter for bicubic/area/gaussian (so `bicubic,x264:crf=28` is
   exactly the `bicubic` LR, compressed), else numpy on each plane (quality.degrade.downscale, the
   same code as `eval` and `train`), rounded to the clip's bit depth;
2. the stages in the order written: noise on every plane (sigma in 8-bit code values, scaled to the
   bit depth, seeded by the plane), and the encoder: the whole LR clip through libx264/libx265 at
   the CRF with their default preset and GOP, so inter-frame prediction, blocking and ringing are
   those of a real stream;
3. the result is a lossless y4m (or the encoder's own .mkv when it is the last stage). An LR of odd
   size is edge-padded to even for the encoder (4:2:0 needs it) and cropped back after decoding.

Frames are paired by order, as in the rest of psnr: the LR file has exactly the reference's frames.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from espcn_video.errors import EspcnVideoError, FFmpegError
from espcn_video.ffmpeg.process import FFmpegProcess
from espcn_video.ffmpeg.psnr_args import build_degrade_decode_args, build_lr_encode_args, hr_size_for
from espcn_video.ffmpeg.y4m import FrameGeometry, Y4MHeader, read_frame, read_header, write_frame
from espcn_video.frames.sinks import check_decoder
from espcn_video.quality.degrade import (
    CODECS,
    ENCODE_TRIES,
    Degradation,
    add_noise,
    build_degrade_filter,
    downscale,
)
from espcn_video.settings import InputSpec

Frames = Iterator[tuple[Y4MHeader, list[np.ndarray]]]  # a y4m header and each frame's planes


def needs_lr_clip(degradation: Degradation) -> bool:
    return not degradation.on_video


def _decoder_downscaler(degradation: Degradation) -> Degradation | None:
    """The chain's downscaler alone when ffmpeg's decoder makes it, else None (numpy does)."""
    plain = dataclasses.replace(degradation, stages=())
    return plain if plain.on_video else None


def _frames(proc: FFmpegProcess, source: str) -> Iterator[tuple[Y4MHeader, list[np.ndarray]]]:
    header = read_header(proc.stdout, source)
    if header is None:
        check_decoder(proc, source)
        raise EspcnVideoError(f"{source}: no video frames")
    index = 0
    while (planes := read_frame(proc.stdout, header.geometry, index, source)) is not None:
        yield header, planes
        index += 1
    proc.check()


def _fit(plane: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Crop or edge-pad a downscaled chroma plane to the LR geometry's chroma size."""
    plane = plane[: shape[0], : shape[1]]
    pad = ((0, shape[0] - plane.shape[0]), (0, shape[1] - plane.shape[1]))
    return np.pad(plane, pad, mode="edge") if any(p for _, p in pad) else plane


def _to_code(plane01: np.ndarray, peak: int, dtype: np.dtype) -> np.ndarray:
    return np.clip(np.rint(plane01 * peak), 0, peak).astype(dtype)


def _add_noise(planes: list[np.ndarray], sigma: float, peak: int) -> list[np.ndarray]:
    """Gaussian noise of `sigma` 8-bit code values (the same fraction of the range at any depth)."""
    return [_to_code(add_noise(p / peak, sigma), peak, p.dtype) for p in planes]


def _even_geometry(geometry: FrameGeometry) -> FrameGeometry:
    """The size an encoder takes: subsampled chroma needs even luma sizes (x264, x265)."""
    sx, sy = geometry.chroma_shift if geometry.has_chroma else (0, 0)
    width = geometry.width + (geometry.width % 2 if sx else 0)
    height = geometry.height + (geometry.height % 2 if sy else 0)
    return dataclasses.replace(geometry, width=width, height=height)


def _padded(
    stream: Iterator[tuple[Y4MHeader, list[np.ndarray]]], geometry: FrameGeometry
) -> Iterator[tuple[Y4MHeader, list[np.ndarray]]]:
    """Frames edge-padded on the right and bottom to `geometry` (cropped off again after decoding)."""
    for header, planes in stream:
        shapes = geometry.plane_shapes
        out = [
            np.pad(p, ((0, h - p.shape[0]), (0, w - p.shape[1])), mode="edge")
            for p, (h, w) in zip(planes, shapes, strict=True)
        ]
        yield dataclasses.replace(header, geometry=geometry), out


def _cropped(
    stream: Iterator[tuple[Y4MHeader, list[np.ndarray]]], geometry: FrameGeometry
) -> Iterator[tuple[Y4MHeader, list[np.ndarray]]]:
    for header, planes in stream:
        out = [p[:h, :w] for p, (h, w) in zip(planes, geometry.plane_shapes, strict=True)]
        yield dataclasses.replace(header, geometry=geometry), out


def _noisy(
    stream: Iterator[tuple[Y4MHeader, list[np.ndarray]]], sigma: float, peak: int
) -> Iterator[tuple[Y4MHeader, list[np.ndarray]]]:
    for header, planes in stream:
        yield header, _add_noise(planes, sigma, peak)


def make_lr_clip(
    ffmpeg: str,
    clip: InputSpec,
    header: Y4MHeader,
    degradation: Degradation,
    scale: int,
    frames: int | None,
    folder: Path,
) -> InputSpec:
    """Write the clip's LR by the whole chain into `folder`; the InputSpec to decode it from."""
    g = header.geometry
    size = (g.width, g.height)
    hr_w, hr_h = hr_size_for(size, scale)
    lr_geometry = FrameGeometry(hr_w // scale, hr_h // scale, g.pix_fmt)
    peak = g.peak
    plain = _decoder_downscaler(degradation)
    degrade_filter = None if plain is None else build_degrade_filter(plain, (hr_w, hr_h), scale, g.pix_fmt)
    decode = build_degrade_decode_args(
        ffmpeg, clip, size=size, pix_fmt=g.pix_fmt, scale=scale, degrade_filter=degrade_filter, frames=frames
    )

    def downscaled() -> Iterator[tuple[Y4MHeader, list[np.ndarray]]]:
        with FFmpegProcess("LR source decoder", decode, stdout="pipe") as proc:
            for src_header, planes in _frames(proc, clip.path):
                if plain is None:
                    shapes = lr_geometry.plane_shapes
                    planes = [
                        _to_code(_fit(downscale(p / peak, scale, degradation), shape), peak, p.dtype)
                        for p, shape in zip(planes, shapes, strict=True)
                    ]
                yield dataclasses.replace(src_header, geometry=lr_geometry), planes

    # Each stage is a function that starts its input stream afresh, so that an encode killed by a
    # signal can be run again from the last file written (see _encode_retrying).
    source: Callable[[], Frames] = downscaled
    for k, stage in enumerate(degradation.stages):
        name, value = stage
        last = k == len(degradation.stages) - 1
        if name == "noise":
            source = functools.partial(_then, source, _noisy, value, peak)
            continue
        encoded = folder / f"lr-{k}-{name}.mkv"
        padded = _even_geometry(lr_geometry)
        cmd = build_lr_encode_args(ffmpeg, CODECS[name], int(value), g.pix_fmt, str(encoded))
        _encode_retrying(ffmpeg, functools.partial(_then, source, _padded, padded), cmd, clip.path)
        if last and padded == lr_geometry:
            return InputSpec(str(encoded))
        decoded = functools.partial(_decoded, ffmpeg, encoded, g.pix_fmt, padded)
        source = functools.partial(_then, decoded, _cropped, lr_geometry)
    stream = source()
    out = folder / "lr.y4m"
    with out.open("wb") as fh:
        first = True
        for lr_header, planes in stream:
            if first:
                fh.write(lr_header.encode())
                first = False
            write_frame(fh, planes)
    return InputSpec(str(out))


def last_encoded(folder: Path) -> Path | None:
    """The last encoder's own stream that make_lr_clip wrote in `folder` (the file a user would
    have: it carries the encoder's quantizers, which a y4m made from it does not), if any."""
    encoded = sorted(folder.glob("lr-*.mkv"), key=lambda p: int(p.name.split("-")[1]))
    return encoded[-1] if encoded else None


def _then(source: Callable[[], Frames], step: Callable[..., Frames], *args: Any) -> Frames:
    """`step` over a fresh stream from `source`: with functools.partial, a stage that can start again."""
    return step(source(), *args)


def _encode_retrying(ffmpeg: str, source: Callable[[], Frames], cmd: list[str], clip: str) -> None:
    """_encode, run again (from a fresh input stream) when an ffmpeg of the stage was killed by a
    signal: the bundled libx265 aborts now and then on a clip it codes fine the next time ("free():
    invalid next size"). Up to ENCODE_TRIES runs; any other failure, or the last crash, is raised."""
    for attempt in range(1, ENCODE_TRIES + 1):
        stream = source()
        try:
            _encode(ffmpeg, stream, cmd, clip)
            return
        except FFmpegError as exc:
            if exc.returncode >= 0 or attempt == ENCODE_TRIES:
                raise
        finally:
            if isinstance(stream, Generator):
                stream.close()  # stops this attempt's decoders now, not when collected


def _encode(ffmpeg: str, stream: Iterator[tuple[Y4MHeader, list[np.ndarray]]], cmd: list[str], source: str) -> None:
    with FFmpegProcess("LR encoder", cmd, stdin="pipe") as enc:
        first = True
        try:
            for lr_header, planes in stream:
                if first:
                    enc.stdin.write(lr_header.encode())
                    first = False
                write_frame(enc.stdin, planes)
        except BrokenPipeError:
            enc.check()
            raise EspcnVideoError(f"{source}: the LR encoder stopped reading") from None
        enc.close_stdin()
        enc.check()


def _decoded(
    ffmpeg: str, path: Path, pix_fmt: str, geometry: FrameGeometry
) -> Iterator[tuple[Y4MHeader, list[np.ndarray]]]:
    decode = build_degrade_decode_args(
        ffmpeg,
        InputSpec(str(path)),
        size=(geometry.width, geometry.height),
        pix_fmt=pix_fmt,
        scale=1,
        degrade_filter=None,
    )
    with FFmpegProcess("LR decoder", decode, stdout="pipe") as proc:
        yield from _frames(proc, str(path))
