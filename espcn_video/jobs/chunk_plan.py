"""Frame-exact chunk plans from packet timestamps, found by ffmpeg alone (no ffprobe, no decode).

`ffmpeg -copyts -i IN -map 0:V:0 -c copy -f framecrc -` lists every video packet with its pts
and key flag in the stream's time base. Sorted, the pts are the frames in presentation order,
so a chunk is a half-open pts range [start, end) and its frame count is known before any
decoding. A chunk decodes from a coarse seek a few seconds before its start (open GOPs and
imprecise container seeks then still give every frame) and keeps its frames by timestamp.
"""

from __future__ import annotations

import bisect
import itertools
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import Any

from espcn_video.errors import InputError
from espcn_video.ffmpeg.args import build_timed_decode_args
from espcn_video.ffmpeg.timestamps import list_packets as list_file_packets

SEEK_MARGIN_S = 3.0


@dataclass(frozen=True)
class Chunk:
    index: int
    start_pts: int
    end_pts: int | None  # None: to the end of the stream
    frames: int
    # the frames just outside it (None at the stream's ends): what a multi-frame preset reads as
    # the first frame's previous neighbour and the last frame's next one; after_end_pts bounds the
    # decode of the frame at end_pts
    before_pts: int | None = None
    after_end_pts: int | None = None


@dataclass(frozen=True)
class ChunkPlan:
    source: str
    time_base: str  # "1/12800"
    container_start_s: float
    frame_gap_pts: int  # the smallest gap between two frames, for a half-frame tolerance
    total_frames: int
    chunks: list[Chunk] = field(default_factory=list)

    @property
    def tb(self) -> Fraction:
        return Fraction(self.time_base)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_json(doc: dict[str, Any]) -> ChunkPlan:
        chunks = [Chunk(**c) for c in doc["chunks"]]
        return ChunkPlan(**{**doc, "chunks": chunks})

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2)


def list_packets(ffmpeg: str, path: str) -> tuple[Fraction, list[int], list[int]]:
    """Packet pts of the first video stream; duplicates make a frame-exact split impossible."""
    tb, pts, keys = list_file_packets(ffmpeg, path)
    if len(set(pts)) != len(pts):
        raise InputError(f"{path}: duplicate packet timestamps; cannot split frame-exactly")
    return tb, pts, keys


def plan_chunks(
    source: str,
    tb: Fraction,
    frame_pts: list[int],
    key_pts: list[int],
    container_start_s: float,
    *,
    chunks: int | None = None,
    target_s: float = 20.0,
) -> ChunkPlan:
    """Split into `chunks` parts, or parts of about `target_s`; boundaries prefer keyframes.

    Every chunk holds at least one frame: `chunks` above the frame count gives one chunk per
    frame (the caller says so), and a boundary that would fall on or before the previous one (a
    keyframe preferred too far on, or frames far apart in a variable-rate file) moves to the next
    frame, so the plan has exactly min(chunks, frames) chunks.
    """
    n = len(frame_pts)
    if n == 0:
        raise InputError(f"{source}: no video packets; nothing to split into chunks")
    span = frame_pts[-1] - frame_pts[0]
    gap = min((b - a for a, b in itertools.pairwise(frame_pts)), default=1)
    if chunks:
        wanted = min(chunks, n)
        step: float = span / wanted
    else:
        step = max(1, int(target_s / tb))
        wanted = max(1, min(n, round(span / step) if span else 1))
    keyset = set(key_pts)
    # Prefer the next keyframe within a quarter chunk: less decoding before the chunk.
    window = n // wanted // 4 + 1
    starts = [0]
    for k in range(1, wanted):
        i = bisect.bisect_left(frame_pts, frame_pts[0] + k * step)
        j = next((m for m in range(i, min(n, i + window + 1)) if frame_pts[m] in keyset), i)
        # after the previous start, and leaving a frame for each chunk still to come
        starts.append(min(max(j, starts[-1] + 1), n - (wanted - k)))
    plan = []
    for c, s in enumerate(starts):
        e = starts[c + 1] if c + 1 < len(starts) else n
        before = frame_pts[s - 1] if s > 0 else None
        after_end = frame_pts[e + 1] if e + 1 < n else None
        plan.append(Chunk(c, frame_pts[s], frame_pts[e] if e < n else None, e - s, before, after_end))
    return ChunkPlan(source, f"{tb.numerator}/{tb.denominator}", container_start_s, gap, n, plan)


def build_chunk_decode_args(
    ffmpeg: str,
    path: str,
    plan: ChunkPlan,
    chunk: Chunk,
    margin_s: float = SEEK_MARGIN_S,
    filters: Sequence[str] = (),
    size: tuple[int, int] | None = None,
) -> list[str]:
    """Decode one chunk to y4m and timestamps: coarse seek before it, keep start <= pts < end.

    -copyts keeps the file's own timestamps, so the select bounds are the packet pts times;
    the half-frame tolerance absorbs the rounding of pts * time_base to seconds. `filters`
    (a deinterlacer) run before the select, so they see the frames around the chunk as an
    unchunked run does. `size`: the first frame of the file's, which every frame is scaled to
    (a chunk may start after the source changed size).
    """
    tb = plan.tb
    half = float(plan.frame_gap_pts * tb) / 2
    start_s = float(chunk.start_pts * tb)
    seek = max(0.0, start_s - plan.container_start_s - margin_s)
    input_args: list[str] = []
    if seek > 0:
        input_args += ["-ss", f"{seek:.6f}"]
    expr = f"gte(t,{start_s - half:.6f})"
    if chunk.end_pts is not None:
        end_s = float(chunk.end_pts * tb)
        input_args += ["-to", f"{end_s - plan.container_start_s + margin_s:.6f}"]
        expr += f"*lt(t,{end_s - half:.6f})"
    input_args += ["-noaccurate_seek", "-copyts", "-i", path]
    return build_timed_decode_args(ffmpeg, input_args, [*filters, f"select='{expr}'"], size)
