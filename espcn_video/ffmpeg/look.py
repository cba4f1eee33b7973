"""A first look at a video before upscaling it: a few luma frames and the encoder's quantizers.

`upscale` without --preset chooses between the clean and the real-video preset from what the
input is (jobs/preset_choice.py). This module builds the ffmpeg run that looks: decode the start
of the first video stream (and, for an input of 20 s or more, a stretch at 1/3 and at 2/3), print
each decoded frame's side data with showinfo (with `-export_side_data venc_params`, the H.264
decoder attaches each frame's quantizer, `qp=N`, on the 0-51 scale of x264's CRF; VP9's and
MPEG-2's use other scales and are not read), and keep every `step`-th frame as 8-bit gray on
stdout.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

LOOK_FRAMES = 12  # frames kept for the aliasing measure at the start
LOOK_STEP = 12  # one frame in this many (about half a second at 25 fps: 6 s of video in all)
LOOK_LATER = (1 / 3, 2 / 3)  # a longer input is also looked at there (an intro is not the programme)
LOOK_LATER_FRAMES = 6
LOOK_LATER_MIN_S = 20.0

# Codecs whose pictures are the source's samples (nothing to amplify) or a visually lossless
# mezzanine (ProRes, DNxHD/HR, CineForm): compression does not rule the clean preset out.
LOSSLESS_CODECS = frozenset(
    {"rawvideo", "ffv1", "huffyuv", "ffvhuff", "utvideo", "magicyuv", "png", "qtrle", "v210", "v410", "r210",
     "yuv4", "y41p", "ayuv", "012v", "v308", "v408", "zlib", "lagarith", "flashsv", "apng", "tiff", "bmp",
     "ppm", "pgm", "pam", "sgi", "dpx", "exr", "qoi"}
)  # fmt: skip
MEZZANINE_CODECS = frozenset({"prores", "dnxhd", "cfhd"})

_QP = re.compile(r"Video encoding parameters: type 1; qp=(-?\d+)")  # type 1: H.264
_TYPE = re.compile(r"\] n:\s*\d+ .*?\btype:([A-Z?])")  # showinfo's frame line: its picture type


def build_look_args(
    ffmpeg: str, input_args: Sequence[str], frames: int, step: int, start_s: float | None = None
) -> list[str]:
    """Decode the input (`input_args` end with `-i IN`) from its start or from `start_s` seconds:
    showinfo on every frame, every `step`-th frame out as gray."""
    graph = f"showinfo,select='not(mod(n\\,{step}))',format=gray"
    seek = ["-ss", f"{start_s:.3f}"] if start_s else []
    return [
        ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "info", "-export_side_data", "venc_params",
        *seek, *input_args, "-map", "0:V:0", "-an", "-sn", "-dn", "-vf", graph,
        "-frames:v", str(frames), "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "gray", "pipe:1",
    ]  # fmt: skip


def parse_frame_qps(stderr: str) -> list[int]:
    """The H.264 quantizer of each decoded frame that carried one (showinfo's venc_params line)."""
    return [int(m.group(1)) for m in _QP.finditer(stderr)]


def parse_inter_qps(stderr: str) -> list[int]:
    """The quantizers of the P and B frames: each venc_params line follows its frame's showinfo
    line, which names the picture type."""
    kind = None
    found = []
    for line in stderr.splitlines():
        if m := _TYPE.search(line):
            kind = m.group(1)
        elif (m := _QP.search(line)) and kind in ("P", "B"):
            found.append(int(m.group(1)))
    return found
