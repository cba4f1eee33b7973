"""Which preset suits an input: the clean one (trained on antialiased, uncompressed LR) or the
real-video one (trained on aliased and compressed LR), decided from the input itself.

At x3 (held-out training images) the clean preset is 0.8 dB better on clean LR and 0.6-2.7 dB
worse than the real one on aliased LR (below bicubic there); compressed LR (x264 CRF 23 and more)
favours the real one by 0.1-0.3 dB.
Two measures tell the cases apart:

- the aliasing index: log10 of the mean spectral power of the luma at 0.4-0.5 cycles a pixel
  over that at 0.2-0.3 (Hann-windowed, the max of the horizontal and vertical frequency). A
  downscale without antialiasing folds energy up to Nyquist: -0.16 to -0.73 on the held-out
  training images at x3, against -0.69 to -1.34 for antialiased bicubic, bilinear, Lanczos and
  Gaussian LR (docs/robustness.md, "auto");
- the encoder's quantizer: the H.264 frame QP (x264's CRF, roughly), or a lossless/mezzanine codec.

The rule, with its thresholds set on the 20 held-out training images (tools/calibrate_auto.py),
never on Set5/Set14 or the shared clips: the clean preset only when the scale has a threshold,
the median aliasing index is at most ALIAS_MAX[scale] and the input is lossless or mezzanine or
H.264 with a mean QP at most QP_MAX (of its P and B frames at most QP_MAX_INTER, for a stream
that has them); the real preset otherwise (any other codec, a pipe, an
unreadable start), since it is the one that never falls below bicubic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Per scale, set on the held-out training images by tools/calibrate_auto.py's rule: the threshold
# with the best mean gain over the real preset among those never putting an image more than 0.5 dB
# under bicubic, minus a margin of 0.1 for content those 20 images do not have; no threshold (the
# real preset always) where that gain is under 0.05 dB. x3: best -0.75 (+0.11 dB), so -0.85
# (+0.10). x2: the best, -0.90, gains +0.02 (the x2 real preset is within 0.74 dB of the clean one
# on clean LR and ahead of it on area LR), so x2 always takes the real preset.
ALIAS_MAX: dict[int, float] = {3: -0.85}
QP_MAX = 20  # CRF 18: the clean preset +0.29 dB over the real one; CRF 23: -0.05
# The limit on the mean QP of P and B frames, for a stream that has them (tools/calibrate_auto.py
# --inter, docs/auto-choice-x3-inter.json): the best limit on the held-out images coded as moving
# clips, 26 (+0.109 dB over the real preset, worst -0.28 against bicubic), less a margin of 2. As
# P/B frames the clean preset is +0.28 dB ahead at CRF 23 (bicubic LR), where as I frames it is
# 0.06 behind.
QP_MAX_INTER: float = 24
MAX_SIDE = 1024  # the centre crop measured on larger frames (the ratio is a property of the texture)


def aliasing_index(y: np.ndarray) -> float | None:
    """log10(P(0.4..0.5) / P(0.2..0.3)) of a luma plane; None for a flat or tiny one."""
    h, w = y.shape
    if min(h, w) < 32:
        return None
    top, left = max(0, (h - MAX_SIDE) // 2), max(0, (w - MAX_SIDE) // 2)
    x = np.asarray(y[top : top + MAX_SIDE, left : left + MAX_SIDE], dtype=np.float64)
    x = x - x.mean()
    h, w = x.shape
    power = np.abs(np.fft.rfft2(x * np.hanning(h)[:, None] * np.hanning(w)[None, :])) ** 2
    fy = np.abs(np.fft.fftfreq(h))[:, None]
    fx = np.abs(np.fft.rfftfreq(w))[None, :]
    f = np.maximum(fy, fx)
    high, mid = power[(f >= 0.4) & (f <= 0.5)].mean(), power[(f >= 0.2) & (f < 0.3)].mean()
    if not mid > 1e-9 or not high > 0:
        return None
    return float(np.log10(high / mid))


@dataclass(frozen=True)
class InputLook:
    """What the first look found: the codec, its H.264 quantizers, the aliasing of sampled frames."""

    codec: str | None
    qps: tuple[int, ...] = ()
    aliasing: tuple[float, ...] = ()
    lossless: bool = False  # a lossless or visually lossless (mezzanine) codec
    inter_qps: tuple[int, ...] = ()  # the quantizers of its P and B frames

    @property
    def mean_qp(self) -> float | None:
        return float(np.mean(self.qps)) if self.qps else None

    @property
    def mean_inter_qp(self) -> float | None:
        return float(np.mean(self.inter_qps)) if self.inter_qps else None

    @property
    def median_aliasing(self) -> float | None:
        return float(np.median(self.aliasing)) if self.aliasing else None


@dataclass(frozen=True)
class PresetChoice:
    clean: bool  # the clean preset suits this input
    reason: str


def choose_by_look(look: InputLook, scale: int) -> PresetChoice:
    """The rule of the module docstring at `scale`, with the reason said in words."""
    limit = ALIAS_MAX.get(scale)
    if limit is None:
        return PresetChoice(False, f"at x{scale} the clean preset is not chosen by a look (docs/robustness.md)")
    alias = look.median_aliasing
    if alias is None:
        return PresetChoice(False, "no frame to measure")
    alias_text = f"aliasing index {alias:.2f}"
    if alias > limit:
        return PresetChoice(False, f"{alias_text} > {limit} (sharp or aliased LR)")
    qp = look.mean_qp
    if look.lossless:
        return PresetChoice(True, f"{alias_text} <= {limit} (antialiased LR), {look.codec} (lossless)")
    if qp is None:
        return PresetChoice(False, f"{alias_text}, but {look.codec or 'the codec'} gives no quantizer to read")
    what, qp_max = "H.264 QP", float(QP_MAX)
    if (inter := look.mean_inter_qp) is not None:  # a stream: judged by its P and B frames
        what, qp, qp_max = "H.264 P/B-frame QP", inter, QP_MAX_INTER
    if qp > qp_max:
        return PresetChoice(False, f"{alias_text}, {what} {qp:.1f} > {qp_max:g} (compressed LR)")
    return PresetChoice(True, f"{alias_text} <= {limit} (antialiased LR), {what} {qp:.1f} <= {qp_max:g}")
