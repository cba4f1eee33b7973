"""How LR is made from HR: the one degradation grammar (bicubic | area | gaussian[:SIGMA]), made
on images in numpy (train, eval) and as ffmpeg filters in the decode of a video (psnr).

`imresize` is a numpy port of MATLAB's `imresize(..., 'bicubic')` (the same algorithm as BasicSR's
`basicsr/utils/matlab_functions.py`): Keys cubic with a = -0.5, kernel width 4, the kernel
stretched by 1/scale when shrinking (antialiasing), and out-of-range taps mirrored symmetrically.
Every published SR number (bicubic Set5 x3 = 30.39 dB, ...) was made with it, so a different
resampler would not be comparable. Each axis is one dense weight matrix, so a resize is two
matrix products.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from espcn_video.errors import UsageError
from espcn_video.ffmpeg.y4m import FrameGeometry

DEFAULT_GAUSSIAN_SIGMA = 1.6  # the usual "BD" blur of the SR literature (RDN, SRMD)


def mod_crop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crop the bottom/right so height and width are multiples of `scale` (SR-paper convention)."""
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]


def _triangle(x: np.ndarray) -> np.ndarray:
    """MATLAB's 'bilinear' (triangle) kernel, support 2."""
    absx = np.abs(x)
    return (1.0 - absx) * (absx <= 1)


def _lanczos3(x: np.ndarray) -> np.ndarray:
    """MATLAB's 'lanczos3' kernel, support 6."""
    return np.sinc(x) * np.sinc(x / 3.0) * (np.abs(x) < 3)


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys cubic convolution kernel with a = -0.5 (MATLAB's 'bicubic')."""
    absx = np.abs(x)
    absx2 = absx * absx
    absx3 = absx2 * absx
    near = (1.5 * absx3 - 2.5 * absx2 + 1.0) * (absx <= 1)
    far = (-0.5 * absx3 + 2.5 * absx2 - 4.0 * absx + 2.0) * ((absx > 1) & (absx <= 2))
    return near + far


KERNELS = {"bicubic": (_cubic, 4.0), "bilinear": (_triangle, 2.0), "lanczos3": (_lanczos3, 6.0)}


def _output_length(in_length: int, scale: float) -> int:
    # MATLAB takes ceil(scale * size); the tolerance keeps 1/3 * 255 = 84.99999999999999 at 85.
    return max(1, math.ceil(in_length * scale - 1e-9))


def resize_matrix(
    in_length: int, out_length: int, scale: float, antialias: bool = True, kernel: str = "bicubic"
) -> np.ndarray:
    """Dense (out_length, in_length) weights of MATLAB's imresize along one axis (bicubic by default;
    `kernel` "bilinear" or "lanczos3" for MATLAB's other kernels)."""
    function, kernel_width = KERNELS[kernel]
    shrink_aa = scale < 1 and antialias
    if shrink_aa:
        kernel_width /= scale  # wider support = low-pass before decimation
    x = np.arange(1, out_length + 1, dtype=np.float64)
    # Centre-aligned mapping of output pixel x to input coordinate u (1-based, as MATLAB).
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - kernel_width / 2.0)
    taps = math.ceil(kernel_width) + 2
    indices = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]
    distance = u[:, None] - indices
    weights = scale * function(distance * scale) if shrink_aa else function(distance)
    weights /= weights.sum(axis=1, keepdims=True)
    # Symmetric boundary: MATLAB's aux = [1:n, n:-1:1] indexed modulo 2n.
    mirror = np.concatenate([np.arange(in_length), np.arange(in_length - 1, -1, -1)])
    cols = mirror[np.mod(indices.astype(np.int64) - 1, 2 * in_length)]
    rows = np.repeat(np.arange(out_length), taps)
    matrix = np.zeros((out_length, in_length), dtype=np.float64)
    np.add.at(matrix, (rows, cols.ravel()), weights.ravel())
    return matrix


def imresize(img: np.ndarray, scale: float, antialias: bool = True, kernel: str = "bicubic") -> np.ndarray:
    """MATLAB `imresize(img, scale, 'bicubic')` for a 2-D (or HxWxC) float array; float64 out
    (`kernel` "bilinear" or "lanczos3" for those of MATLAB's methods).

    No clipping or rounding (MATLAB on double input does neither).
    """
    arr = np.asarray(img, dtype=np.float64)
    if arr.ndim not in (2, 3):
        raise ValueError(f"expected a 2-D or HxWxC array, got shape {arr.shape}")
    in_h, in_w = arr.shape[:2]
    rows = resize_matrix(in_h, _output_length(in_h, scale), scale, antialias, kernel)
    cols = resize_matrix(in_w, _output_length(in_w, scale), scale, antialias, kernel)
    if arr.ndim == 2:
        return rows @ arr @ cols.T
    return np.einsum("oh,hwc,pw->opc", rows, arr, cols, optimize=True)


def gaussian_kernel1d(sigma: float, radius: int | None = None) -> np.ndarray:
    """Normalised 1-D Gaussian taps; radius defaults to ceil(3 sigma)."""
    if sigma <= 0:
        raise ValueError(f"Gaussian sigma must be > 0, got {sigma}")
    radius = math.ceil(3.0 * sigma) if radius is None else radius
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    taps = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return taps / taps.sum()


def _filter_axis(arr: np.ndarray, taps: np.ndarray, axis: int) -> np.ndarray:
    """Same-size 1-D correlation along `axis` with symmetric (edge-repeating) padding."""
    radius = len(taps) // 2
    pad = [(0, 0)] * arr.ndim
    pad[axis] = (radius, radius)
    padded = np.pad(arr, pad, mode="symmetric")
    length = arr.shape[axis]
    out = np.zeros_like(arr, dtype=np.float64)
    for k, tap in enumerate(taps):
        out += tap * np.take(padded, np.arange(k, k + length), axis=axis)
    return out


def gaussian_degrade(img: np.ndarray, scale: int, sigma: float = DEFAULT_GAUSSIAN_SIGMA) -> np.ndarray:
    """Gaussian blur then decimation by `scale` (the ESPCN paper's degradation); float64 out.

    The kept sample of each scale x scale block is index (scale - 1) // 2: its centre for odd
    scales, half a pixel up-left of it for even scales (plain decimation has no exact centre there).
    """
    arr = np.asarray(img, dtype=np.float64)
    taps = gaussian_kernel1d(sigma)
    blurred = _filter_axis(_filter_axis(arr, taps, 0), taps, 1)
    offset = (scale - 1) // 2
    h, w = arr.shape[:2]
    return blurred[offset : h - h % scale : scale, offset : w - w % scale : scale]


AREA = "area"
BICUBIC = "bicubic"
GAUSSIAN = "gaussian"
TAP_ONE = 4096  # ffmpeg's convolution filter takes integer taps: these sum to about this
MAX_TAPS = 49  # ffmpeg's convolution filter, row/column mode: sigma at most (49 - 3) / 2 / 3


BICUBIC_NOAA = "bicubic-noaa"
BILINEAR = "bilinear"
LANCZOS = "lanczos"
PLAIN_DOWNSCALERS = (BICUBIC, BICUBIC_NOAA, AREA, BILINEAR, LANCZOS)  # no argument
CODECS = {"x264": "libx264", "x265": "libx265"}
MAX_NOISE = 25.0  # code values (8-bit), Gaussian standard deviation


@dataclass(frozen=True)
class Degradation:
    """How LR is made from HR, the one grammar of `train --degrade`, `eval --degrade` and
    `psnr --degrade`: a downscaler, then optional stages in the order written, comma-separated:

        bicubic | bicubic-noaa | area | bilinear | lanczos | gaussian[:SIGMA]
            [,noise:SIGMA] [,x264:crf=N[:inter] | x265:crf=N[:inter]]

    e.g. `bicubic-noaa,x264:crf=28`. `bicubic` is MATLAB's antialiased imresize (the SR papers');
    `bicubic-noaa` the same Keys a = -0.5 kernel without antialiasing (what a player or a plain
    resize does: aliased, sharp); `bilinear` and `lanczos` MATLAB's antialiased 'bilinear' and
    'lanczos3'; `noise:SIGMA` adds Gaussian noise of SIGMA code values (seeded by
    the image, so a run is repeatable); `x264:crf=N` / `x265:crf=N` compresses the LR through that
    encoder in ffmpeg (one frame, gray), so its blocking and ringing are the real ones; with
    `:inter` an image goes through the encoder as a short moving clip instead (`INTER_FRAMES` frames
    of the image panned by a seeded sub-pixel step, the kept one a P or B frame: the residual coding
    and motion compensation of a stream's inter frames; a video's LR clip is always coded so).
    `degrade` makes the whole chain on images (numpy + ffmpeg); `build_degrade_filter` makes the
    downscalers bicubic, area and gaussian in ffmpeg's decode of a video (psnr)."""

    kind: str
    sigma: float | None = None
    stages: tuple[tuple[str, float], ...] = ()  # ("noise", sigma) or ("x264"/"x265", crf), in order
    inter: bool = False  # the encoder stage codes images as a moving clip (`:inter`)

    def spec(self) -> str:
        first = f"gaussian:{self.sigma:g}" if self.kind == GAUSSIAN else self.kind
        inter = ":inter" if self.inter else ""
        rest = [f"noise:{v:g}" if name == "noise" else f"{name}:crf={v:g}{inter}" for name, v in self.stages]
        return ",".join([first, *rest])

    @property
    def on_video(self) -> bool:
        """Whether psnr's decoder can make it (the downscalers bicubic, area, gaussian alone)."""
        return self.kind in (BICUBIC, AREA, GAUSSIAN) and not self.stages

    def describe(self) -> str:
        if self.kind == GAUSSIAN:
            text = f"Gaussian blur sigma {self.sigma:g} + decimation (kept sample (r-1)//2)"
        elif self.kind == AREA:
            text = "area average (the mean of each r x r block)"
        elif self.kind == BICUBIC_NOAA:
            text = "bicubic a=-0.5 without antialiasing (aliased)"
        elif self.kind == BILINEAR:
            text = "bilinear, antialiased (MATLAB imresize 'bilinear')"
        elif self.kind == LANCZOS:
            text = "Lanczos-3, antialiased (MATLAB imresize 'lanczos3')"
        else:
            text = "bicubic a=-0.5, antialiased (MATLAB imresize; swscale bicubic B=0 C=0.5 on video)"
        for name, value in self.stages:
            if name == "noise":
                text += f", then Gaussian noise sigma {value:g}"
            else:
                text += f", then {name} CRF {value:g}" + (
                    " (images: a moving clip, one P/B frame kept)" if self.inter else ""
                )
        return text


def _parse_stage(text: str, stage: str) -> tuple[str, float, bool]:
    """(name, value, inter) of one stage after the downscaler."""
    name, _, arg = stage.partition(":")
    if name == "noise":
        try:
            sigma = float(arg)
        except ValueError:
            raise UsageError(f"--degrade {text!r}: noise:SIGMA needs a number of code values") from None
        if not math.isfinite(sigma) or not 0 < sigma <= MAX_NOISE:
            raise UsageError(f"--degrade {text!r}: noise SIGMA must be in (0, {MAX_NOISE:g}] code values")
        return "noise", sigma, False
    if name in CODECS:
        setting, _, option = arg.partition(":")
        key, _, value = setting.partition("=")
        if key != "crf" or not value.isdigit() or not 0 <= int(value) <= 51 or option not in ("", "inter"):
            raise UsageError(f"--degrade {text!r}: write {name}:crf=N or {name}:crf=N:inter with N from 0 to 51")
        return name, float(int(value)), option == "inter"
    raise UsageError(
        f"--degrade {text!r}: unknown stage {stage!r} (noise:SIGMA, x264:crf=N[:inter], x265:crf=N[:inter])"
    )


def parse_degradation(text: str) -> Degradation:
    """The grammar of Degradation -> Degradation; UsageError (one line) otherwise."""
    first, *rest = [part.strip() for part in text.strip().lower().split(",")]
    parsed = [_parse_stage(text, stage) for stage in rest]
    stages = tuple((name, value) for name, value, _ in parsed)
    inter = any(flag for _, _, flag in parsed)
    if sum(name in CODECS for name, _ in stages) > 1 or sum(name == "noise" for name, _ in stages) > 1:
        raise UsageError(f"--degrade {text!r}: at most one noise stage and one encoder")
    kind, _, arg = first.partition(":")
    if kind in PLAIN_DOWNSCALERS and not arg:
        return Degradation(kind, None, stages, inter)
    if kind != GAUSSIAN:
        raise UsageError(
            f"--degrade {text!r}: start with {', '.join(PLAIN_DOWNSCALERS)} or gaussian[:SIGMA], "
            "then optionally noise:SIGMA and x264:crf=N or x265:crf=N"
        )
    try:
        sigma = float(arg) if arg else DEFAULT_GAUSSIAN_SIGMA
    except ValueError:
        raise UsageError(f"--degrade {text!r}: SIGMA must be a number") from None
    radius_max = (MAX_TAPS - 3) // 2
    if not math.isfinite(sigma) or not 0 < sigma <= radius_max / 3:
        raise UsageError(
            f"--degrade {text!r}: SIGMA must be in (0, {math.floor(radius_max / 3 * 1000) / 1000:g}] "
            f"(ffmpeg's convolution filter takes at most {MAX_TAPS} taps)"
        )
    return Degradation(GAUSSIAN, sigma, stages, inter)


def area_degrade(img: np.ndarray, scale: int) -> np.ndarray:
    """The mean of each scale x scale block (swscale's `area` for an integer factor); float64 out."""
    arr = np.asarray(img, dtype=np.float64)
    h, w = arr.shape[0] // scale * scale, arr.shape[1] // scale * scale
    blocks = arr[:h, :w].reshape(h // scale, scale, w // scale, scale, *arr.shape[2:])
    return blocks.mean(axis=(1, 3))


def downscale(hr: np.ndarray, scale: int, degradation: Degradation) -> np.ndarray:
    if degradation.kind == GAUSSIAN:
        assert degradation.sigma is not None
        return gaussian_degrade(hr, scale, degradation.sigma)
    if degradation.kind == AREA:
        return area_degrade(hr, scale)
    kernel = {BILINEAR: "bilinear", LANCZOS: "lanczos3"}.get(degradation.kind, "bicubic")
    return imresize(hr, 1.0 / scale, antialias=degradation.kind != BICUBIC_NOAA, kernel=kernel)


def add_noise(lr01: np.ndarray, sigma: float, salt: int | None = None) -> np.ndarray:
    """Gaussian noise of `sigma` code values, seeded by the image itself (repeatable runs); `salt`
    (a frame's index in a clip) gives identical frames their own noise."""
    import zlib

    seed = zlib.crc32(np.ascontiguousarray(lr01, dtype=np.float64).tobytes())
    rng = np.random.default_rng(seed if salt is None else [seed, salt])
    return lr01 + rng.normal(0.0, sigma / 255.0, lr01.shape)


_FRAME_TYPE = re.compile(r"\btype:([A-Z?])")


def parse_frame_types(log: str) -> list[str]:
    """The picture type (I, P, B) of each frame that ffmpeg's showinfo printed, in display order."""
    return _FRAME_TYPE.findall(log)


ENCODE_TRIES = 3  # an encoder or decoder killed by a signal is run again, up to this many times in all


def compress_clip(
    frames01: list[np.ndarray],
    codec: str,
    crf: int,
    qps: list[int] | None = None,
    types: list[str] | None = None,
) -> list[np.ndarray]:
    """LR planes through a real encoder as one clip: 8-bit gray, ffmpeg libx264/libx265 at `crf`
    with the encoder's defaults (so after the first frame come P and B frames). With `qps`, the
    decoder's H.264 frame quantizers are appended to it (what `upscale`'s look reads); with
    `types`, each frame's picture type (I, P, B) in display order."""
    import signal
    import subprocess

    from espcn_video.errors import EspcnVideoError
    from espcn_video.ffmpeg.locate import locate_ffmpeg

    codes = [np.clip(np.rint(f * 255.0), 0, 255).astype(np.uint8) for f in frames01]
    h, w = codes[0].shape
    ffmpeg = locate_ffmpeg().path
    raw = ["-f", "rawvideo", "-pix_fmt", "gray", "-s", f"{w}x{h}"]
    quiet = ["-x265-params", "log-level=error"] if codec == "x265" else []
    encode = [ffmpeg, "-nostdin", "-v", "error", *raw, "-i", "pipe:0", "-c:v", CODECS[codec], "-crf", str(crf)]
    encode += [*quiet, "-f", "matroska", "pipe:1"]
    # with qps or types, showinfo prints each frame's quantizer and picture type (at the info level)
    shown = qps is not None or types is not None
    look = ["-v", "info", "-export_side_data", "venc_params"] if shown else ["-v", "error"]
    decode = [ffmpeg, "-nostdin", *look, "-f", "matroska", "-i", "pipe:0", *raw[:4]]
    decode += [*(["-vf", "showinfo"] if shown else []), "pipe:1"]
    data = b"".join(code.tobytes() for code in codes)
    for attempt in range(1, ENCODE_TRIES + 1):
        try:
            stream = subprocess.run(encode, input=data, capture_output=True, timeout=120, check=True).stdout
            done = subprocess.run(decode, input=stream, capture_output=True, timeout=120, check=True)
            break
        except subprocess.CalledProcessError as exc:
            lines = exc.stderr.decode(errors="replace").strip().splitlines()
            last = lines[-1] if lines else str(exc)
            if exc.returncode >= 0:
                raise EspcnVideoError(f"--degrade {codec}: ffmpeg failed: {last}") from None
            # killed by a signal: the bundled libx265 aborts now and then on a clip it codes
            # fine when run again ("free(): invalid next size"), so a crash is tried again
            if attempt == ENCODE_TRIES:
                crash = f"signal {signal.Signals(-exc.returncode).name}"
                raise EspcnVideoError(f"--degrade {codec}: ffmpeg crashed ({crash}) {attempt} times: {last}") from None
    out = done.stdout
    if len(out) != h * w * len(codes):
        raise EspcnVideoError(f"--degrade {codec}: ffmpeg gave {len(out)} bytes for {len(codes)} {w}x{h} frames")
    log = done.stderr.decode(errors="replace")
    if qps is not None:
        from espcn_video.ffmpeg.look import parse_frame_qps

        qps += parse_frame_qps(log)
    if types is not None:
        types += parse_frame_types(log)
    planes = np.frombuffer(out, np.uint8).reshape(len(codes), h, w)
    return [plane / 255.0 for plane in planes]


INTER_FRAMES = 8  # frames of the moving clip an `:inter` stage codes an image in
INTER_STEP = 2  # the largest motion per frame on each axis, in LR pixels


def inter_plan(hr: np.ndarray, scale: int) -> tuple[tuple[int, int], int]:
    """((dy, dx) motion per frame in HR pixels, index of the kept frame) of an image's moving
    clip, seeded by the image: each axis uniform in [-INTER_STEP, INTER_STEP] LR pixels in steps
    of 1/scale (so most motion is sub-pixel at LR; none at all is one case in (4·scale+1)²), and
    the kept frame one of 3..6 of the 8 (x264 codes it as a P or B frame)."""
    import zlib

    rng = np.random.default_rng(zlib.crc32(np.ascontiguousarray(hr, dtype=np.float64).tobytes()))
    reach = INTER_STEP * scale
    dy, dx = (int(v) for v in rng.integers(-reach, reach + 1, size=2))
    return (dy, dx), int(rng.integers(3, INTER_FRAMES - 1))


def _degrade_moving(
    hr: np.ndarray,
    scale: int,
    degradation: Degradation,
    qps: list[int] | None,
    types: list[str] | None,
    clip_types: list[str] | None = None,
) -> np.ndarray:
    """An `:inter` chain: the HR image panned by inter_plan's step (reflected at the borders),
    every frame downscaled and noised, the clip encoded; the kept frame is unshifted, so it is the
    LR of `hr` itself as it comes out of a P or B frame."""
    (dy, dx), kept = inter_plan(hr, scale)
    reach = INTER_FRAMES * INTER_STEP * scale
    padded = np.pad(hr, [(reach, reach), (reach, reach)] + [(0, 0)] * (hr.ndim - 2), mode="reflect")
    h, w = hr.shape[:2]
    frames = []
    for k in range(INTER_FRAMES):
        oy, ox = reach + (k - kept) * dy, reach + (k - kept) * dx
        frames.append(downscale(padded[oy : oy + h, ox : ox + w], scale, degradation))
    for name, value in degradation.stages:
        if name == "noise":
            frames = [add_noise(f, value, salt=k) for k, f in enumerate(frames)]
        else:
            coded: list[str] = []
            frames = compress_clip(frames, name, int(value), qps, coded)
            if types is not None:
                types.append(coded[kept] if kept < len(coded) else "?")
            if clip_types is not None:
                clip_types += coded
    return frames[kept]


def degrade(
    hr: np.ndarray,
    scale: int,
    degradation: Degradation,
    qps: list[int] | None = None,
    types: list[str] | None = None,
    clip_types: list[str] | None = None,
) -> np.ndarray:
    """LR of a mod-cropped HR plane (float, [0, 1]) by the whole chain; float64 out. With `qps`,
    an H.264 stage appends the quantizers its decoder reports (every frame of an `:inter` clip);
    with `types`, an encoder stage appends the picture type of the frame kept; with `clip_types`,
    an `:inter` chain appends the type of every frame of its clip (in the order of `qps`)."""
    if degradation.inter and any(name in CODECS for name, _ in degradation.stages):
        return _degrade_moving(hr, scale, degradation, qps, types, clip_types)
    lr = downscale(hr, scale, degradation)
    for name, value in degradation.stages:
        if name == "noise":
            lr = add_noise(lr, value)
        else:
            lr = compress_clip([lr], name, int(value), qps, types)[0]
    return lr


# --- `real`: the randomised chains the robust presets train on ----------------------------------

REAL = "real"
MIX_KEYS = ("noaa", "noise", "encode", "inter")


@dataclass(frozen=True)
class RandomChains:
    """`train --degrade real[:KEY=P...]`: every training image gets `variants` LR versions, each made
    by its own chain drawn from the grammar above (seeded, so a run is repeatable and its cache
    reusable). With the default keys (`real`):

    - downscaler: bicubic 25 %, bicubic-noaa 20 % (`noaa=P`; the other five keep their ratios),
      area 15 %, bilinear 15 %, lanczos 10 %, gaussian 15 % with SIGMA uniform in [0.35, 0.55] x scale;
    - then noise 25 % of the time (`noise=P`), SIGMA uniform in [0.5, 3] code values;
    - then an encoder 75 % of the time (`encode=P`): x264 (70 %) or x265 (30 %), CRF uniform in 18..36;
    - `inter=P` (default 0): that share of the encoded chains codes the image as a moving clip and
      keeps a P or B frame (`x264:crf=N:inter`), as most frames of a real stream are.

    The draws are Degradation values, so each is written down by its spec."""

    noaa: float = 0.20
    noise: float = 0.25
    encode: float = 0.75
    inter: float = 0.0
    variants: int = 8

    OTHERS = ((BICUBIC, 0.25), (AREA, 0.15), (BILINEAR, 0.15), (LANCZOS, 0.10), (GAUSSIAN, 0.15))  # sum 0.8

    def draw(self, rng: np.random.Generator, scale: int) -> Degradation:
        kinds = (BICUBIC, BICUBIC_NOAA, AREA, BILINEAR, LANCZOS, GAUSSIAN)
        rest = (1.0 - self.noaa) / 0.8
        weights = dict(self.OTHERS)
        p = [weights[BICUBIC] * rest, self.noaa] + [weights[k] * rest for k in kinds[2:]]
        kind = kinds[int(rng.choice(len(kinds), p=p))]
        sigma = round(float(rng.uniform(0.35, 0.55)) * scale, 2) if kind == GAUSSIAN else None
        stages: list[tuple[str, float]] = []
        if rng.random() < self.noise:
            stages.append(("noise", round(float(rng.uniform(0.5, 3.0)), 2)))
        if rng.random() < self.encode:
            codec = "x264" if rng.random() < 0.7 else "x265"
            stages.append((codec, float(rng.integers(18, 37))))
        # no draw at all when inter is 0, so the chains (and caches) of older mixes stay as they were
        inter = bool(stages) and stages[-1][0] in CODECS and self.inter > 0 and rng.random() < self.inter
        return Degradation(kind, sigma, tuple(stages), inter)

    def spec(self) -> str:
        default = RandomChains()
        keys = [f"{k}={getattr(self, k):g}" for k in MIX_KEYS if getattr(self, k) != getattr(default, k)]
        return ":".join([REAL, *keys])

    def describe(self) -> str:
        return (
            f"randomised chains ({self.variants} per image): downscaler bicubic/bicubic-noaa ({self.noaa:.0%})/area/"
            f"bilinear/lanczos/gaussian, noise {self.noise:.0%} (sigma 0.5-3), x264/x265 CRF 18-36 {self.encode:.0%}"
            + (f" ({self.inter:.0%} of them as P/B frames of a moving clip)" if self.inter else "")
        )


def parse_training_degradation(text: str) -> Degradation | RandomChains:
    """`real[:noaa=P][:noise=P][:encode=P][:inter=P]` (the randomised chains) or one chain of the grammar."""
    head, *keys = text.strip().lower().split(":")
    if head != REAL:
        return parse_degradation(text)
    values: dict[str, float] = {}
    for item in keys:
        key, _, value = item.partition("=")
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if key not in MIX_KEYS or key in values or not 0.0 <= number <= 1.0:
            raise UsageError(
                f"--degrade {text!r}: write real[:noaa=P][:noise=P][:encode=P][:inter=P] with P from 0 to 1"
            )
        values[key] = number
    default = RandomChains()
    return RandomChains(
        noaa=values.get("noaa", default.noaa),
        noise=values.get("noise", default.noise),
        encode=values.get("encode", default.encode),
        inter=values.get("inter", default.inter),
    )


# --- the same degradations as ffmpeg filters (the psnr job degrades video in its decoder) ---------


def gaussian_taps(sigma: float, scale: int) -> list[int]:
    """gaussian_kernel1d as integers of sum about TAP_ONE; for even scales two zeros appended, which
    moves the kernel one pixel so swscale's point sampler (sample r // 2) keeps blurred sample
    (r - 1) // 2, the sample gaussian_degrade keeps."""
    ints = [int(v) for v in np.round(gaussian_kernel1d(sigma) * TAP_ONE)]
    return ints + [0, 0] if scale % 2 == 0 else ints


def _convolution(mode: str, sigmas: list[float], scale: int) -> str:
    parts = []
    for plane, sigma in enumerate(sigmas):
        taps = gaussian_taps(sigma, scale)
        parts.append(f"{plane}m='{' '.join(map(str, taps))}':{plane}rdiv=1/{sum(taps)}:{plane}mode={mode}")
    return "convolution=" + ":".join(parts)


def build_degrade_filter(degradation: Degradation, hr_size: tuple[int, int], scale: int, pix_fmt: str) -> str:
    """The ffmpeg filters that turn the (mod-cropped) HR frames into LR, ending in `pix_fmt`."""
    if not degradation.on_video:
        raise UsageError(
            f"--degrade {degradation.spec()}: the decoder makes bicubic, area and gaussian alone; "
            "the rest of the chain is made by jobs/psnr_lr.py"
        )
    hr_w, hr_h = hr_size
    lr_w, lr_h = hr_w // scale, hr_h // scale
    sited = "in_chroma_loc=center:out_chroma_loc=center"
    if degradation.kind == BICUBIC:
        chain = f"scale={lr_w}:{lr_h}:flags=bicubic+accurate_rnd+bitexact:param0=0:param1=0.5:{sited}"
    elif degradation.kind == AREA:
        chain = f"scale={lr_w}:{lr_h}:flags=area+accurate_rnd+bitexact:{sited}"
    else:
        assert degradation.sigma is not None
        sigma = degradation.sigma
        geometry = FrameGeometry(hr_w, hr_h, pix_fmt)
        sx, sy = geometry.chroma_shift if geometry.has_chroma else (0, 0)
        planes = 3 if geometry.has_chroma else 1
        rows = _convolution("row", [sigma] + [sigma / (1 << sx)] * (planes - 1), scale)
        cols = _convolution("column", [sigma] + [sigma / (1 << sy)] * (planes - 1), scale)
        chain = f"{rows},{cols},scale={lr_w}:{lr_h}:flags=neighbor+bitexact:{sited}"
    return f"{chain},format={pix_fmt}"
