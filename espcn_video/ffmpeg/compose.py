"""The filter graph of `compare`: labelled side-by-side, wipe and difference views, made by ffmpeg.

The encoder is given one wide frame per input frame, the blocks laid side by side by the
pipeline: [baseline | ESPCN] or, with a reference, [baseline | ESPCN | reference], each
`block_w` x `block_h`. Every view is cut from that one frame (split, crop, lut, blend,
hstack, vstack, drawtext), so its parts always come from the same instant: no two streams are
synchronised by timestamp, and the frame count and timestamps are those of the input.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

LAYOUTS = ("side-by-side", "split", "diff")
SWEEP_PERIOD_S = 8.0  # one left-right-left cycle of the moving wipe


@dataclass(frozen=True)
class ComposeSpec:
    layout: str
    block_w: int
    block_h: int
    baseline_label: str
    espcn_label: str
    with_reference: bool = False
    wipe: float | None = 0.5  # fraction of the width shown as baseline; None sweeps
    gain: float = 4.0  # difference and error maps are |a - b| x gain
    bits: int = 8
    full_range: bool = False
    font: str | None = None  # a .ttf for drawtext; None: no labels

    @property
    def output_size(self) -> tuple[int, int]:
        w = self.block_w * (2 if self.layout == "side-by-side" else 1)
        return w, self.block_h * (2 if self.with_reference else 1)

    @property
    def blocks(self) -> int:
        return 3 if self.with_reference else 2


def find_font() -> str | None:
    """DejaVu Sans from matplotlib (a dependency), found without importing matplotlib."""
    spec = importlib.util.find_spec("matplotlib")
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(folder) / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
        if path.is_file():
            return str(path)
    return None


def _escape(value: str) -> str:
    """A filter option value as it must appear in a graph: escaped for the option parser
    (backslash, quote, colon), then for the graph parser (also brackets, comma, semicolon)."""
    for specials in ("\\':", "\\'[],;"):
        value = "".join("\\" + c if c in specials else c for c in value)
    return value


def _label_size(spec: ComposeSpec) -> tuple[int, int]:
    """Font size and box padding of the labels, from the block height."""
    size = max(10, spec.block_h // 24)
    return size, max(2, size // 4)


def _label(spec: ComposeSpec, text: str, x: str, y: str = "0") -> str:
    if spec.font is None:
        return "null"
    size, pad = _label_size(spec)
    return (
        f"drawtext=fontfile={_escape(spec.font)}:text={_escape(text.replace('%', ''))}:fontsize={size}:fontcolor=white"
        f":box=1:boxcolor=black@0.6:boxborderw={pad}:x={x}:y={y}+{pad * 2}"
    )


def _difference(spec: ComposeSpec) -> str:
    """|a - b| x gain on Y, from black (16 or 0) up; neutral chroma: a grey error map."""
    shift = spec.bits - 8
    lo, hi = (0, (256 << shift) - 1) if spec.full_range else (16 << shift, 235 << shift)
    neutral = 128 << shift
    y = f"clip({lo}+val*{spec.gain:g}\\,{lo}\\,{hi})"
    return f"blend=all_mode=difference,lutyuv=y={y}:u={neutral}:v={neutral}"


def _wipe_x(spec: ComposeSpec) -> str:
    """The wipe's column, even (4:2:0 crops move by two luma columns). The sweep follows each
    frame's time t, which the crop of the masks sees (a frame counter would not be the input's)."""
    w = spec.block_w
    if spec.wipe is not None:
        return str(int(round(spec.wipe * w / 2)) * 2)
    return f"2*trunc({w / 4:g}*(1-cos(2*PI*t/{SWEEP_PERIOD_S:g})))"


def _white(spec: ComposeSpec) -> tuple[int, int]:
    """The wipe line's Y and chroma code values at the frames' depth: video white and neutral
    (235 and 128 in 8 bits, what drawbox's white was)."""
    shift = spec.bits - 8
    return 235 << shift, 128 << shift


def _wipe_masks(spec: ComposeSpec, source: str, outs: list[str]) -> list[str]:
    """Masks of the wipe, w x 3h, cut from constant frames made from [source] at the wipe's
    column: rows (all ones left of the wipe | the white line | all ones right of it), zeros
    elsewhere. Zeros are blend's |a - a|, all ones its phoenix min(a, a) - max(a, a) + max (lut
    clips Y'CbCr to the video range); only blend, lut (for the line), crop, hstack and vstack, so
    every pixel format and depth stays as it is (overlay knows 8- and 10-bit Y'CbCr only, drawbox
    8 bits only)."""
    w, h = spec.block_w, spec.block_h
    y, c = _white(spec)
    return [
        f"[{source}]split=5[ka][kb][kc][kd][kw]",
        "[ka][kb]blend=all_mode=difference,split=6[z0][z1][z2][z3][z4][z5]",
        "[kc][kd]blend=all_mode=phoenix,split=2[o0][o1]",
        f"[kw]crop=2:{h}:0:0,lut=c0={y}:c1={c}:c2={c}[wl]",
        f"[z4]crop=2:{h}:0:0[zn0]",
        f"[z5]crop=2:{h}:0:0[zn1]",
        "[o0][z0][zn0]hstack=inputs=3[ml]",  # ones w | zeros w + 2
        "[z1][wl][z2]hstack=inputs=3[mw]",  # zeros w | line 2 | zeros w
        "[z3][zn1][o1]hstack=inputs=3[mr]",  # zeros w + 2 | ones w
        f"[ml][mw][mr]vstack=inputs=3,crop={w}:{3 * h}:x='{w}-{_wipe_x(spec)}':y=0"
        + (f",split={len(outs)}" if len(outs) > 1 else "")
        + "".join(f"[{o}]" for o in outs),
    ]


def _wipe(spec: ComposeSpec, masks: str, base: str, top: str, out: str, tag: str) -> list[str]:
    """[base] left of the wipe, [top] right of it, a white line between them: each masked by
    min with its all-ones/zeros mask, the three put together by max; exact at any depth."""
    w, h = spec.block_w, spec.block_h
    return [
        f"[{masks}]split=3[{tag}ma][{tag}mb][{tag}mc]",
        f"[{tag}ma]crop={w}:{h}:0:0[{tag}ml]",
        f"[{tag}mb]crop={w}:{h}:0:{h}[{tag}mw]",
        f"[{tag}mc]crop={w}:{h}:0:{2 * h}[{tag}mr]",
        f"[{base}][{tag}ml]blend=all_mode=darken[{tag}l]",
        f"[{top}][{tag}mr]blend=all_mode=darken[{tag}r]",
        f"[{tag}l][{tag}r]blend=all_mode=lighten[{tag}lr]",
        f"[{tag}lr][{tag}mw]blend=all_mode=lighten[{out}]",
    ]


def build_compose_filter(spec: ComposeSpec) -> str:
    """The graph from the stacked frame to the view; one input, one output."""
    if spec.layout not in LAYOUTS:
        raise ValueError(f"layout {spec.layout!r}: choose {', '.join(LAYOUTS)}")
    if spec.layout == "diff" and spec.with_reference:
        raise ValueError("the diff layout has no reference row")
    w, h = spec.block_w, spec.block_h
    # (name, block): each view's copy of a block, cut from the stacked frame
    cuts = [("b", 0), ("e", 1)]
    if spec.layout == "split":
        cuts.append(("k", 0))  # the wipe's masks are made from a copy of a block
    if spec.with_reference:
        cuts += [("b2", 0), ("e2", 1), ("r", 2), ("r2", 2)]
    chains = [f"split={len(cuts)}" + "".join(f"[s{name}]" for name, _ in cuts)]
    chains += [f"[s{name}]crop={w}:{h}:{block * w}:0[{name}]" for name, block in cuts]
    if spec.with_reference:
        chains.append(f"[b2][r]{_difference(spec)}[db]")
        chains.append(f"[e2][r2]{_difference(spec)}[de]")
    base_label, sr_label = spec.baseline_label, spec.espcn_label
    right = f"w-text_w-{_label_size(spec)[1] * 2}"
    if spec.layout == "side-by-side":
        chains.append(f"[b]{_label(spec, base_label, '8')}[bl]")
        chains.append(f"[e]{_label(spec, sr_label, '8')}[el]")
        chains.append("[bl][el]hstack=inputs=2[top]")
        if spec.with_reference:
            chains.append(f"[db]{_label(spec, f'{base_label} error ×{spec.gain:g}', '8')}[dbl]")
            chains.append(f"[de]{_label(spec, f'{sr_label} error ×{spec.gain:g}', '8')}[del]")
            chains.append("[dbl][del]hstack=inputs=2[bottom]")
    elif spec.layout == "split":
        chains += _wipe_masks(spec, "k", ["m", "m2"] if spec.with_reference else ["m"])
        chains += _wipe(spec, "m", "b", "e", "wiped", "p")
        chains.append(f"[wiped]{_label(spec, base_label, '8')},{_label(spec, sr_label, right)}[top]")
        if spec.with_reference:
            chains += _wipe(spec, "m2", "db", "de", "dwiped", "d")
            chains.append(
                f"[dwiped]{_label(spec, f'{base_label} error ×{spec.gain:g}', '8')},"
                f"{_label(spec, f'{sr_label} error ×{spec.gain:g}', right)}[bottom]"
            )
    else:
        label = _label(spec, f"|{sr_label} - {base_label}| ×{spec.gain:g}", "8")
        chains.append(f"[e][b]{_difference(spec)},{label}[top]")
    chains.append("[top][bottom]vstack=inputs=2" if spec.with_reference else "[top]null")
    return ";".join(chains)
